"""wgan_gp.py: the gradient penalty (Eq. 3), interpolates, no BatchNorm, Adam(1e-4, 0, 0.9), learning signal, folder
streaming, SIGTERM and exact resume, eval interval, bad input; Section 3's weight-clipping baseline and the per-layer
gradient norms of Figure 1b."""
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_eval_only,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    load_script,
    losses,
    only_run_dir,
    read_scalars,
    read_tags,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

wgan_gp = load_script("wgan_gp")
SMALL = ["--dim", 4, "--latent-dim", 8, "--batch-size", 8, "--log-interval", 1, "--no-cuda"]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def check_smoke(flags, cwd, scalar_tags, n_eval):
    """In-process (the SIGTERM test runs the script as a user would, in a subprocess): exit 0, the contract's
    TensorBoard tags, a PNG grid, samples.npz, a loadable checkpoint, nothing half-written."""
    rc, out, err = run_inprocess("wgan_gp", [*flags, "--num-eval-samples", n_eval], cwd)
    assert rc == 0, err[-3000:]
    run = only_run_dir(cwd)
    tags = read_tags(run)
    for tag in ["losses/d_loss", "losses/g_loss", "charts/d_real", "charts/d_fake", "charts/SPS", *scalar_tags]:
        assert tag in tags["scalars"], f"missing scalar {tag}: {tags['scalars']}"
    assert "samples" in tags["images"] and "hyperparameters/text_summary" in tags["tensors"]
    assert list((run / "samples").glob("*.png")) and (run / "checkpoint.pt").exists() and not list(run.glob("*.tmp"))
    assert out.startswith("wgan_gp.py: cpu, run folder ") and "writing the final sample grid" in out
    return run, np.load(run / "samples.npz"), out


class LinearCritic(torch.nn.Module):
    """f(x) = w.x + b: grad_x f = w everywhere, so the penalty is (||w|| - 1)^2 in closed form."""

    def __init__(self, d):
        super().__init__()
        self.linear = torch.nn.Linear(d, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).view(-1)


# ----------------------------------------------------------------------------- unit tests
def test_penalty_of_a_linear_critic_is_closed_form():
    torch.manual_seed(0)
    critic = LinearCritic(784)
    real, fake = torch.randn(6, 1, 28, 28), torch.randn(6, 1, 28, 28)
    gp, norms, _ = wgan_gp.gradient_penalty(critic, real, fake)
    w_norm = critic.linear.weight.norm()
    torch.testing.assert_close(norms, w_norm.expand(6))
    torch.testing.assert_close(gp, (w_norm - 1) ** 2)
    # create_graph=True: the penalty's gradient reaches the weights, d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    gp.backward()
    w = critic.linear.weight.detach()
    torch.testing.assert_close(critic.linear.weight.grad, 2 * (w_norm.detach() - 1) * w / w_norm.detach())


def test_interpolates_lie_on_segments_with_per_sample_eps():
    real, fake = torch.randn(64, 1, 28, 28), torch.randn(64, 1, 28, 28)
    _, _, x_hat = wgan_gp.gradient_penalty(LinearCritic(784), real, fake)
    d, r = (real - fake).flatten(1), (x_hat.detach() - fake).flatten(1)
    eps = (r * d).sum(1) / (d * d).sum(1)  # x^ = fake + eps (real - fake)
    torch.testing.assert_close(r, eps[:, None] * d, atol=1e-5, rtol=1e-5)  # on the line through real and fake
    assert eps.min() >= 0 and eps.max() <= 1 and eps.std() > 0.1  # between them; one eps per sample
    torch.testing.assert_close(wgan_gp.interpolate(real, fake, torch.ones(64, 1, 1, 1)), real)


def test_penalty_gradient_reaches_every_critic_weight():
    critic = wgan_gp.Critic(4, 1, "layernorm")
    gp, _, _ = wgan_gp.gradient_penalty(critic, torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28))
    gp.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in critic.named_parameters()
               if n.endswith("weight"))


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_critic_has_no_batchnorm_and_no_sigmoid(norm):
    c = wgan_gp.Critic(8, 3, norm)
    kinds = {type(m) for m in c.modules()}
    assert not kinds & {torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.Sigmoid}
    assert (torch.nn.GroupNorm in kinds) == (norm == "layernorm")
    assert c(torch.randn(3, 3, 32, 32)).shape == (3,)
    # per-sample: a sample's score does not depend on the rest of the batch (what the penalty assumes)
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(c(x)[:2], c(x[:2]))


def test_official_mnist_architecture():
    g, c = wgan_gp.Generator(128, 64, 1, 28), wgan_gp.Critic(64, 1)
    x = g(torch.randn(3, 128))
    assert x.shape == (3, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert c(x).shape == (3,)
    assert g.fc[0].out_features == 4 * 4 * 4 * 64 and [m.out_channels for m in g.modules() if
                                                       isinstance(m, torch.nn.ConvTranspose2d)] == [128, 64, 1]
    convs = [m for m in c.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [(64, (5, 5), (2, 2)), (128, (5, 5), (2, 2)),
                                                                          (256, (5, 5), (2, 2))]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())  # gan_mnist.py: no BN in wgan-gp mode
    assert wgan_gp.Generator(128, 8, 3, 32)(torch.randn(2, 128)).shape == (2, 3, 32, 32)


def test_paper_defaults():
    a = wgan_gp.Args()
    assert (a.lr, a.beta1, a.beta2, a.lambda_gp, a.n_critic, a.critic_norm) == (1e-4, 0.0, 0.9, 10.0, 5, "none")
    assert (a.dim, a.latent_dim, a.batch_size) == (64, 128, 50)  # gan_mnist.py: DIM, noise size, BATCH_SIZE
    assert (a.constraint, a.clip_value) == ("gradient-penalty", 0.01)  # the penalty; WGAN's c for the baseline


def test_clip_weights_clamps_every_parameter():
    critic = wgan_gp.Critic(4, 1, "layernorm")  # conv, GroupNorm and linear weights and biases
    assert max(p.abs().max() for p in critic.parameters()) > 0.5  # tflib init and GroupNorm's scale 1
    wgan_gp.clip_weights(critic, 0.01)
    assert all(p.abs().max() <= 0.01 for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())  # clamped in place: still the critic's parameters


def test_layer_grad_norms_are_activation_gradients_input_to_output():
    """Figure 1b's measure: layer1 is the gradient of the WGAN loss with respect to the images, layer4 the one with
    respect to the last hidden layer, (+-1/B) w per sample for the linear output w: ||w|| sqrt(2 / B). No weight
    gradient is left behind."""
    torch.manual_seed(0)
    critic, real, fake = wgan_gp.Critic(4, 1, "layernorm"), torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    norms = wgan_gp.layer_grad_norms(critic, real, fake)
    assert list(norms) == [f"charts/critic_grad_norm/layer{i}" for i in range(1, 5)]
    x = torch.cat([real, fake]).requires_grad_(True)
    grad_x, = torch.autograd.grad(wgan_gp.critic_loss(*critic(x).split(3)), x)
    torch.testing.assert_close(norms["charts/critic_grad_norm/layer1"], grad_x.norm())
    torch.testing.assert_close(norms["charts/critic_grad_norm/layer4"], critic.net[9].weight.norm() * (2 / 3) ** 0.5)
    assert all(p.grad is None for p in critic.parameters())


@pytest.mark.parametrize("c", [0.01, 0.001])
def test_clipped_critic_gradients_vanish_going_back(c):
    """Section 3.2: with every weight at +-c (Figure 1b, right: clipping pushes them to the ends), the gradient decays
    exponentially from the output layer back to the input."""
    torch.manual_seed(0)
    critic = wgan_gp.Critic(8, 1)
    with torch.no_grad():
        for p in critic.parameters():
            p.copy_(c * torch.sign(p) if p.dim() > 1 else torch.zeros_like(p))
    real, fake = torch.rand(8, 1, 28, 28) * 2 - 1, torch.rand(8, 1, 28, 28) * 2 - 1
    norms = list(wgan_gp.layer_grad_norms(critic, real, fake).values())
    assert all(norms[i] < 0.3 * norms[i + 1] for i in range(3)), norms


def test_wgan_losses_on_known_scores():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.5])
    # critic: E[D(x~)] - E[D(x)] (Eq. 3 without the penalty); generator: -E[D(G(z))] (Algorithm 1, line 12)
    torch.testing.assert_close(wgan_gp.critic_loss(real, fake), torch.tensor(-0.25 - 2.0))
    torch.testing.assert_close(wgan_gp.generator_loss(fake), torch.tensor(0.25))


def test_generator_step_lowers_its_loss_against_the_critic_it_saw():
    torch.manual_seed(0)
    g, c = wgan_gp.Generator(8, 4, 1, 28), wgan_gp.Critic(4, 1)
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.9))
    z = torch.randn(16, 8)
    before = wgan_gp.generator_loss(c(g(z))).item()
    for _ in range(3):
        opt.zero_grad()
        wgan_gp.generator_loss(c(g(z))).backward()
        opt.step()
    assert wgan_gp.generator_loss(c(g(z))).item() < before - 1e-3


# ----------------------------------------------------------------------------- runs
def test_lr_flag_adam_settings_n_critic_and_no_generator_backward_in_critic_steps(tmp_path, mnist_root, monkeypatch):
    calls, real_step = [], torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: calls.append(id(self)) or real_step(self))
    grad_on, real_forward = [], torch.nn.ConvTranspose2d.forward

    def forward(self, *a, **k):
        grad_on.append(torch.is_grad_enabled())
        return real_forward(self, *a, **k)

    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward", forward)
    rc, out, err = run_inprocess("wgan_gp", [*base(mnist_root), "--lr", "1e-4", "--max-iters", 3,
                                             "--num-eval-samples", 0], tmp_path)
    assert rc == 0, err
    assert sorted(Counter(calls).values()) == [3, 15]  # n_critic = 5 critic steps per generator step
    assert sum(grad_on) == 3 * 3  # G's 3 transposed convs with autograd only in its own 3 updates
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 15  # one iteration consumes n_critic real batches
    for name in ["optimizer_c", "optimizer_g"]:
        group = ckpt[name]["param_groups"][0]
        assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.0, 0.9)  # not DCGAN's (2e-4, 0.5, 0.999)


def test_weight_clipping_bounds_the_critic_after_every_step_and_adds_no_penalty(tmp_path, mnist_root, monkeypatch):
    """--constraint weight-clipping: before each critic step but the first (the tflib init) every critic parameter
    lies in [-c, c], so each step was followed by a clip, and so does the checkpoint's critic; the critic loss is the
    WGAN loss alone (d_loss = -wasserstein_estimate) although the measured penalty is far from 0."""
    c, largest, real_step = 0.005, {}, torch.optim.Adam.step

    def step(self, *a, **k):
        largest.setdefault(id(self), []).append(max(p.abs().max().item() for g in self.param_groups
                                                    for p in g["params"]))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    flags = [*base(mnist_root), "--constraint", "weight-clipping", "--clip-value", c, "--critic-norm", "layernorm",
             "--max-iters", 3, "--num-eval-samples", 0]
    rc, out, err = run_inprocess("wgan_gp", flags, tmp_path)
    assert rc == 0, err
    critic_steps = next(v for v in largest.values() if len(v) == 15)  # 3 iterations x n_critic 5
    assert critic_steps[0] > c and max(critic_steps[1:]) <= c, critic_steps
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["args"]["constraint"] == "weight-clipping" and ckpt["args"]["clip_value"] == c
    assert all(v.abs().max() <= c for v in ckpt["critic"].values())
    assert sum((v.abs() == c).sum() for v in ckpt["critic"].values()) > 100  # weights pushed to the ends (Fig. 1b)
    scalars = read_scalars(only_run_dir(tmp_path))
    for (_, d), (_, w), (_, gp) in zip(scalars["losses/d_loss"], scalars["losses/wasserstein_estimate"],
                                       scalars["losses/gradient_penalty"], strict=True):
        assert d == pytest.approx(-w, rel=1e-6, abs=1e-9) and gp > 0.5, (d, w, gp)
    assert all(f"charts/critic_grad_norm/layer{i}" in scalars for i in range(1, 5))


@pytest.mark.parametrize("flags, mention", [
    (["--clip-value", 0.05], "--clip-value"),  # without weight clipping it would do nothing
    (["--constraint", "weight-clipping", "--lambda-gp", 5], "--lambda-gp"),  # no penalty to weigh
    (["--constraint", "weight-clipping", "--clip-value", 0], "--clip-value"),
    (["--constraint", "weight-clipping", "--clip-value", -0.01], "--clip-value"),
    (["--constraint", "weight-clipping", "--clip-value", "nan"], "--clip-value"),
    (["--constraint", "weight-clipping", "--clip-value", "inf"], "--clip-value"),
])
def test_constraint_flags_that_would_do_nothing_or_are_invalid_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("wgan_gp", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_unknown_constraint_exits_2(tmp_path, mnist_root):
    rc, out, err = run_inprocess("wgan_gp", [*base(mnist_root), "--constraint", "clipping"], tmp_path)
    assert rc == 2 and "--constraint" in err and not (tmp_path / "runs").exists()


def test_smoke_run(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--max-iters", 3, "--critic-norm", "layernorm"]
    tags = ["losses/gradient_penalty", "losses/wasserstein_estimate", "charts/grad_norm",
            *[f"charts/critic_grad_norm/layer{i}" for i in range(1, 5)]]
    run, data, out = check_smoke(flags, tmp_path, tags, n_eval=30)
    scalars = read_scalars(run)  # the penalty path: d_loss = -W + lambda gp (Eq. 3)
    for (_, d), (_, w), (_, gp) in zip(scalars["losses/d_loss"], scalars["losses/wasserstein_estimate"],
                                       scalars["losses/gradient_penalty"], strict=True):
        assert d == pytest.approx(-w + 10 * gp, rel=1e-5, abs=1e-5)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 28, 28)
    assert "iter 3/3" in out and "ETA" in out
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3
    wgan_gp.Generator(8, 4, 1, 28).load_state_dict(ckpt["generator"])
    wgan_gp.Critic(4, 1, "layernorm").load_state_dict(ckpt["critic"])


def test_fashion_mnist(tmp_path, mnist_root):
    rc, out, err = run_inprocess("wgan_gp", [*base(mnist_root), "--dataset", "fashion-mnist", "--max-iters", 1,
                                             "--num-eval-samples", 0], tmp_path)
    assert rc == 0, err
    assert only_run_dir(tmp_path).name.startswith("fashion-mnist__wgan_gp__1__")


def test_folder_streamed_from_disk_gives_the_in_memory_run_and_resumes_exactly(tmp_path):
    """--dataset folder (32x32, gan_cifar.py's model): held in memory (default limit) or streamed by a DataLoader
    (limit 0, one worker process): the same batches, so the same losses and weights; a streamed run resumed halfway
    ends identically; and samples come out at 32x32 with 3 channels."""
    import torchvision

    folder = tmp_path / "imgs"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(10):
        image = torch.randint(0, 256, (3, 36, 30), dtype=torch.uint8, generator=gen)
        torchvision.io.write_png(image, str(folder / f"{i}.png"))
    flags = ["--dataset", "folder", "--data-dir", folder, *SMALL, "--batch-size", 2, "--n-critic", 1, "--epochs", 1,
             "--num-eval-samples", 0]
    stream = ["--in-memory-limit-mb", 0]
    runs = {}
    for name, extra in [("memory", []), ("stream", [*stream, "--num-workers", 1]),
                        ("resumed", [*stream, "--num-workers", 0])]:
        cwd = tmp_path / name
        cwd.mkdir()
        if name == "resumed":
            assert run_inprocess("wgan_gp", [*flags, *extra, "--max-iters", 2], cwd)[0] == 0
            extra = [*extra, "--resume", only_run_dir(cwd) / "checkpoint.pt", "--num-eval-samples", 4]
        rc, out, err = run_inprocess("wgan_gp", [*flags, *extra], cwd)
        assert rc == 0, err
        assert "iter 5/5" in out and ("streaming" in out) == (name != "memory")
        runs[name] = only_run_dir(cwd)
    ckpts = {k: torch.load(run / "checkpoint.pt", weights_only=False) for k, run in runs.items()}
    for k in ["stream", "resumed"]:
        assert losses(runs[k]) == losses(runs["memory"]), k
        for net in ["generator", "critic"]:
            assert all(torch.equal(ckpts["memory"][net][n], v) for n, v in ckpts[k][net].items()), (k, net)
    assert np.load(runs["resumed"] / "samples.npz")["images"].shape == (4, 3, 32, 32)


def test_learning_signal_critic_scores_real_above_fake(tmp_path, mnist_root):
    """Guards the training loop's call sites: after 12 iterations at the paper's settings the critic's Wasserstein
    estimate, mean D(x) - mean D(x~) taken from the scores themselves, is clearly positive. With real and fake swapped
    in critic_loss's call, the critic learns the opposite sign and this fails."""
    flags = [*base(mnist_root), "--max-iters", 12, "--log-interval", 5, "--num-eval-samples", 200]
    assert run_inprocess("wgan_gp", flags, tmp_path)[0] == 0
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake", "losses/wasserstein_estimate"], 2)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.5, m
    assert abs(m["losses/wasserstein_estimate"] - (m["charts/d_real"] - m["charts/d_fake"])) < 1e-3, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = wgan_gp.load_images(wgan_gp.Args(data_dir=str(mnist_root), download=False))
    on_real, on_fake = scores_on_checkpoint("wgan_gp", only_run_dir(tmp_path), real, critic_score)
    assert on_real - on_fake > 0.5, (on_real, on_fake)


def critic_score(module, ckpt, x, labels):
    """D(x) of the checkpoint's critic, built as wgan_gp.py builds it (no BatchNorm)."""
    args = module.Args(**ckpt["args"])
    critic = module.Critic(args.dim, x.shape[1], args.critic_norm)
    critic.load_state_dict(ckpt["critic"])
    return critic(x)


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, mnist_root, monkeypatch):
    check_sigterm_and_exact_resume("wgan_gp", [*base(mnist_root), "--n-critic", 2, "--epochs", 100], tmp_path,
                                   monkeypatch, nets=("generator", "critic"),
                                   tags=("losses/d_loss", "losses/g_loss", "losses/gradient_penalty",
                                         "losses/wasserstein_estimate"))


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("wgan_gp", [*base(mnist_root), "--n-critic", 1], tmp_path, nets=("generator", "critic"))
    assert files[0]["images"].shape == (2000, 1, 28, 28) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("wgan_gp", [*base(mnist_root), "--n-critic", 1], tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("wgan_gp", SMALL, tmp_path, monkeypatch)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--n-critic", 1]
    assert check_eval_only("wgan_gp", flags, tmp_path, 12)["images"].shape == (12, 1, 28, 28)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--n-critic", 0], "--n-critic"),
    (["--lambda-gp", -1], "--lambda-gp"),
    (["--dim", 0], "--dim"),
    (["--beta2", 1.0], "--beta2"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 100], "--batch-size"),  # 2 batches of 100 cannot feed 5 critic steps
    (["--eval-interval", -1], "--eval-interval"),
    (["--in-memory-limit-mb", -1], "--in-memory-limit-mb"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("wgan_gp", [*base(mnist_root), *flags], tmp_path, 2, mention)


@pytest.mark.parametrize("dataset, expected", [("mnist", "MNIST"), ("svhn", "train_32x32.mat")])
def test_missing_data_exits_1(tmp_path, dataset, expected):
    empty = tmp_path / "empty"
    line = check_bad_input("wgan_gp", ["--dataset", dataset, "--data-dir", empty, "--no-download"], tmp_path, 1,
                           expected)
    assert "--data-dir" in line and not (empty.exists() and list(empty.iterdir()))


def test_resume_builds_the_checkpoints_networks_and_refuses_another_scripts(tmp_path, mnist_root):
    """The networks come from the args saved in the checkpoint where the command line leaves them at their default
    (and the run says so); --resume --eval-only needs no other flag; a typed --critic-norm the checkpoint does not
    have, or another script's checkpoint (dcgan.py's), ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    flags = [*base(mnist_root), "--n-critic", 1, "--num-eval-samples", 0]
    assert run_inprocess("wgan_gp", [*flags, "--max-iters", 1], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    rc, out, err = run_inprocess("wgan_gp", ["--data-dir", mnist_root, "--no-download", "--no-cuda", "--max-iters", 2,
                                             "--num-eval-samples", 0, "--resume", ckpt], src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["batch_size=8", "dim=4", "latent_dim=8", "n_critic=1"], out
    assert torch.load(ckpt, weights_only=False)["iteration"] == 2
    rc, out, err = run_inprocess("wgan_gp", [*flags, "--critic-norm", "layernorm", "--max-iters", 3, "--resume", ckpt],
                                 src)
    assert rc == 2 and "critic_norm='layernorm' as typed (checkpoint: 'none')" in out and "does not match" in err, err
    rc, out, err = run_inprocess("wgan_gp", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 5, "--no-cuda"],
                                 src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (5, 1, 28, 28), err
    assert run_inprocess("dcgan", ["--data-dir", mnist_root, "--no-download", "--no-cuda", "--ngf", 8, "--ndf", 8,
                                   "--latent-dim", 16, "--batch-size", 16, "--max-iters", 1, "--num-eval-samples", 0],
                         dst)[0] == 0
    rc, out, err = run_inprocess("wgan_gp", [*flags, "--resume", only_run_dir(dst) / "checkpoint.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: the penalty's input gradient turns NaN from its 11th call on (iteration 3, 5 per iteration);
    only the penalty's calls (create_graph=True) count, not the per-layer diagnostic's."""
    real_grad, calls = torch.autograd.grad, []

    def grad_then_nan(*a, **k):
        calls.append(k.get("create_graph", False))
        out = real_grad(*a, **k)
        return tuple(g * float("nan") for g in out) if sum(calls) >= 11 and calls[-1] else out

    monkeypatch.setattr(torch.autograd, "grad", grad_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("wgan_gp", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 3" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["critic"].values())
