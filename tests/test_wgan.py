"""wgan.py: weight clipping, critic schedule, RMSProp, no sigmoid, learning signal, folder streaming, SIGTERM and exact
resume, eval interval, bad input."""
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
    read_tags,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

wgan = load_script("wgan")
SMALL = ["--ngf", 4, "--ndf", 4, "--latent-dim", 8, "--batch-size", 8, "--log-interval", 1, "--no-cuda"]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def check_smoke(flags, cwd, scalar_tags, n_eval):
    """In-process (the SIGTERM test runs the script as a user would, in a subprocess): exit 0, the contract's
    TensorBoard tags, a PNG grid, samples.npz, a loadable checkpoint, nothing half-written."""
    rc, out, err = run_inprocess("wgan", [*flags, "--num-eval-samples", n_eval], cwd)
    assert rc == 0, err[-3000:]
    run = only_run_dir(cwd)
    tags = read_tags(run)
    for tag in ["losses/d_loss", "losses/g_loss", "charts/d_real", "charts/d_fake", "charts/SPS", *scalar_tags]:
        assert tag in tags["scalars"], f"missing scalar {tag}: {tags['scalars']}"
    assert "samples" in tags["images"] and "hyperparameters/text_summary" in tags["tensors"]
    assert list((run / "samples").glob("*.png")) and (run / "checkpoint.pt").exists() and not list(run.glob("*.tmp"))
    assert out.startswith("wgan.py: cpu, run folder ") and "writing the final sample grid" in out
    return run, np.load(run / "samples.npz"), out


def record_optimizer_steps(monkeypatch, cls=torch.optim.RMSprop):
    """Wrap cls.step: one (optimizer id, max |param| before the step) per call."""
    calls, real_step = [], cls.step

    def step(self, *a, **k):
        calls.append((id(self), max(p.abs().max().item() for g in self.param_groups for p in g["params"])))
        return real_step(self, *a, **k)

    monkeypatch.setattr(cls, "step", step)
    return calls


def record_generator_forwards(monkeypatch):
    """Wrap ConvTranspose2d.forward (only G has them): whether autograd was on at each call."""
    grad_on, real_forward = [], torch.nn.ConvTranspose2d.forward

    def forward(self, *a, **k):
        grad_on.append(torch.is_grad_enabled())
        return real_forward(self, *a, **k)

    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward", forward)
    return grad_on


# ----------------------------------------------------------------------------- unit tests
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_no_sigmoid(size):
    g, c = wgan.Generator(8, 4, 3, size), wgan.Critic(4, 3, size)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, 3, size, size) and x.min() >= -1 and x.max() <= 1
    assert c(x).shape == (5,)
    assert not any(isinstance(m, (torch.nn.Sigmoid, torch.nn.Tanh)) for m in c.modules())


def test_official_widths():
    g, c = wgan.Generator(100, 64, 1, 32), wgan.Critic(64, 1, 32)
    assert [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [256, 128, 64, 1]
    assert [m.out_channels for m in c.modules() if isinstance(m, torch.nn.Conv2d)] == [64, 128, 256, 1]


def test_losses_on_known_scores():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.5])
    # critic minimises -(E[f(x)] - E[f(g(z))]); generator minimises -E[f(g(z))]
    torch.testing.assert_close(wgan.critic_loss(real, fake), -(2.0 - (-0.25)) * torch.ones(()))
    torch.testing.assert_close(wgan.generator_loss(fake), torch.tensor(0.25))


def test_every_critic_parameter_clipped_after_a_critic_step():
    c = wgan.Critic(4, 1, 32)
    opt = torch.optim.RMSprop(c.parameters(), lr=0.5)  # a big step pushes weights far outside [-c, c]
    loss = wgan.critic_loss(c(torch.randn(6, 1, 32, 32)), c(torch.randn(6, 1, 32, 32)))
    loss.backward()
    opt.step()
    assert max(p.abs().max() for p in c.parameters()) > 0.01
    wgan.clip_weights(c, 0.01)
    assert all(p.abs().max() <= 0.01 for p in c.parameters())  # BatchNorm scale and shift included


def test_critic_warmup_schedule():
    steps = [wgan.critic_steps(i, 5, True) for i in range(1501)]
    assert all(steps[i] == 100 for i in [*range(25), 500, 1000, 1500])
    assert all(steps[i] == 5 for i in range(1501) if not (i < 25 or i % 500 == 0))
    assert {wgan.critic_steps(i, 5, False) for i in range(1001)} == {5}
    assert wgan.iterations_for_batches(2500, 5, True) == 25 and wgan.iterations_for_batches(2504, 5, True) == 25
    assert wgan.iterations_for_batches(2505, 5, True) == 26 and wgan.iterations_for_batches(12, 5, False) == 2


def test_paper_defaults():
    a = wgan.Args()
    assert (a.lr, a.batch_size, a.n_critic, a.clip_value, a.critic_warmup, a.optimizer, a.ngf, a.ndf) == (
        5e-5, 64, 5, 0.01, True, "rmsprop", 64, 64)


def test_generator_step_lowers_its_loss_against_the_critic_it_saw():
    torch.manual_seed(0)
    g, c = wgan.Generator(8, 4, 1, 32), wgan.Critic(4, 1, 32).eval()
    opt = torch.optim.RMSprop(g.parameters(), lr=1e-3)
    z = torch.randn(16, 8)
    before = wgan.generator_loss(c(g(z))).item()
    for _ in range(3):
        opt.zero_grad()
        wgan.generator_loss(c(g(z))).backward()
        opt.step()
    assert wgan.generator_loss(c(g(z))).item() < before - 1e-4


# ----------------------------------------------------------------------------- runs
def test_n_critic_steps_clipping_and_no_generator_backward_in_critic_steps(tmp_path, mnist_root, monkeypatch):
    calls, grad_on = record_optimizer_steps(monkeypatch), record_generator_forwards(monkeypatch)
    flags = [*base(mnist_root), "--no-critic-warmup", "--max-iters", 3, "--num-eval-samples", 0]
    rc, out, err = run_inprocess("wgan", flags, tmp_path)
    assert rc == 0, err
    counts = Counter(i for i, _ in calls)
    critic_id, n = counts.most_common(1)[0]
    assert sorted(counts.values()) == [3, 15] and n == 15  # n_critic = 5 critic steps per generator step
    assert all(m <= 0.01 + 1e-7 for i, m in calls[1:] if i == critic_id)  # clipped after every critic step
    # G runs with autograd only in its own update: 4 transposed convs x 3 iterations (critic steps use no_grad)
    assert sum(grad_on) == 4 * 3
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 15  # one iteration consumes n_critic real batches
    params = {k: v for k, v in ckpt["critic"].items() if "running" not in k and "num_batches" not in k}
    assert all(v.abs().max() <= 0.01 for v in params.values())  # BatchNorm's running statistics are not weights
    group = ckpt["optimizer_c"]["param_groups"][0]
    assert group["lr"] == 5e-5 and "alpha" in group and "betas" not in group  # RMSProp, not Adam


def test_warmup_runs_100_critic_steps(tmp_path, mnist_root, monkeypatch):
    calls = record_optimizer_steps(monkeypatch)
    flags = [*base(mnist_root), "--epochs", 100, "--max-iters", 1, "--num-eval-samples", 0]
    assert run_inprocess("wgan", flags, tmp_path)[0] == 0
    assert sorted(Counter(i for i, _ in calls).values()) == [1, 100]
    assert torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)["step"] == 100


def test_smoke_run(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--no-critic-warmup", "--max-iters", 3]
    run, data, out = check_smoke(flags, tmp_path, ["losses/wasserstein_estimate"], n_eval=30)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 32, 32)  # MNIST resized to 32 on load
    assert "iter 3/3" in out and "ETA" in out
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3
    wgan.Generator(8, 4, 1, 32).load_state_dict(ckpt["generator"])
    wgan.Critic(4, 1, 32).load_state_dict(ckpt["critic"])


def write_pngs(folder, n, shape=(3, 40, 50)):
    import torchvision

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
        torchvision.io.write_png(image, str(folder / f"{i:04d}.png"))


def test_folder_streamed_from_disk_gives_the_in_memory_run_and_resumes_exactly(tmp_path):
    """--dataset folder at 64 px: held in memory (default limit) or streamed by a DataLoader (limit 0, one worker
    process): the same batches, so the same losses and weights; a streamed run resumed halfway ends identically."""
    write_pngs(tmp_path / "imgs" / "sub", 12)
    flags = ["--dataset", "folder", "--data-dir", tmp_path / "imgs", "--img-size", 64, "--ngf", 2, "--ndf", 2,
             "--latent-dim", 8, "--batch-size", 4, "--n-critic", 1, "--no-critic-warmup", "--epochs", 2, "--no-cuda",
             "--log-interval", 1, "--num-eval-samples", 0]
    stream = ["--in-memory-limit-mb", 0]
    runs = {}
    for name, extra in [("memory", []), ("stream", [*stream, "--num-workers", 1]),
                        ("resumed", [*stream, "--num-workers", 0])]:
        cwd = tmp_path / name
        cwd.mkdir()
        if name == "resumed":
            assert run_inprocess("wgan", [*flags, *extra, "--max-iters", 3], cwd)[0] == 0
            extra = [*extra, "--resume", only_run_dir(cwd) / "checkpoint.pt"]
        rc, out, err = run_inprocess("wgan", [*flags, *extra], cwd)
        assert rc == 0, err
        assert "iter 6/6" in out and ("streaming" in out) == (name != "memory")
        runs[name] = only_run_dir(cwd)
    ckpts = {k: torch.load(run / "checkpoint.pt", weights_only=False) for k, run in runs.items()}
    for k in ["stream", "resumed"]:
        assert losses(runs[k]) == losses(runs["memory"]), k
        for net in ["generator", "critic"]:
            assert all(torch.equal(ckpts["memory"][net][n], v) for n, v in ckpts[k][net].items()), (k, net)
    assert ckpts["memory"]["step"] == 6


def test_folder_samples_and_eval_only(tmp_path):
    write_pngs(tmp_path / "imgs", 8, (3, 30, 36))
    flags = ["--dataset", "folder", "--data-dir", tmp_path / "imgs", "--img-size", 64, "--ngf", 2, "--ndf", 2,
             "--latent-dim", 8, "--batch-size", 4, "--n-critic", 1, "--no-critic-warmup", "--in-memory-limit-mb", 0,
             "--num-workers", 0, "--no-cuda"]
    assert check_eval_only("wgan", flags, tmp_path, 5)["images"].shape == (5, 3, 64, 64)


def test_learning_signal_critic_scores_real_above_fake(tmp_path, mnist_root):
    """Guards the training loop's call sites: after 20 iterations the critic's Wasserstein estimate, mean f(x) - mean
    f(g(z)) taken from the scores themselves, is clearly positive. With real and fake swapped in critic_loss's call,
    the critic learns the opposite sign and this fails. (c = 0.1 and lr 5e-4 give the tiny critic a visible gap.)"""
    flags = [*base(mnist_root), "--no-critic-warmup", "--clip-value", 0.1, "--lr", 5e-4, "--max-iters", 20,
             "--log-interval", 5, "--num-eval-samples", 200]
    assert run_inprocess("wgan", flags, tmp_path)[0] == 0
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake", "losses/wasserstein_estimate"], 3)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.5, m
    assert abs(m["losses/wasserstein_estimate"] - (m["charts/d_real"] - m["charts/d_fake"])) < 1e-4, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = wgan.load_images(wgan.Args(data_dir=str(mnist_root), download=False))
    on_real, on_fake = scores_on_checkpoint("wgan", only_run_dir(tmp_path), real, critic_score)
    assert on_real - on_fake > 0.5, (on_real, on_fake)


def critic_score(module, ckpt, x, labels):
    """f(x) of the checkpoint's critic, built as wgan.py builds it, in training mode as it saw each batch."""
    args = module.Args(**ckpt["args"])
    critic = module.Critic(args.ndf, x.shape[1], args.img_size)
    critic.load_state_dict(ckpt["critic"])
    return critic(x)


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, mnist_root, monkeypatch):
    common = [*base(mnist_root), "--no-critic-warmup", "--n-critic", 2, "--epochs", 100]
    check_sigterm_and_exact_resume("wgan", common, tmp_path, monkeypatch, nets=("generator", "critic"),
                                   tags=("losses/d_loss", "losses/g_loss", "losses/wasserstein_estimate"))


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("wgan", [*base(mnist_root), "--no-critic-warmup", "--n-critic", 1], tmp_path,
                                nets=("generator", "critic"))
    assert files[0]["images"].shape == (2000, 1, 32, 32) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("wgan", [*base(mnist_root), "--no-critic-warmup", "--n-critic", 1], tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("wgan", SMALL, tmp_path, monkeypatch)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--no-critic-warmup", "--n-critic", 1]
    assert check_eval_only("wgan", flags, tmp_path, 12)["images"].shape == (12, 1, 32, 32)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--n-critic", 0], "--n-critic"),
    (["--clip-value", 0], "--clip-value"),
    (["--ndf", 0], "--ndf"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
    (["--epochs", 1], "--epochs"),  # 32 batches cannot feed the 100 warm-up critic steps of iteration 0
    (["--eval-interval", -1], "--eval-interval"),
    (["--in-memory-limit-mb", -1], "--in-memory-limit-mb"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("wgan", [*base(mnist_root), *flags], tmp_path, 2, mention)


@pytest.mark.parametrize("dataset, expected", [("mnist", "MNIST"), ("cifar10", "cifar-10-batches-py")])
def test_missing_data_exits_1(tmp_path, dataset, expected):
    empty = tmp_path / "empty"
    line = check_bad_input("wgan", ["--dataset", dataset, "--data-dir", empty, "--no-download"], tmp_path, 1, expected)
    assert "--data-dir" in line and not (empty.exists() and list(empty.iterdir()))


def test_resume_builds_the_checkpoints_networks_and_refuses_one_that_does_not_match(tmp_path, mnist_root):
    """The networks come from the args saved in the checkpoint where the command line leaves them at their default
    (and the run says so); --resume --eval-only needs no other flag; a typed width the checkpoint does not have, or a
    checkpoint whose critic has other shapes, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    flags = [*base(mnist_root), "--no-critic-warmup", "--n-critic", 1, "--num-eval-samples", 0]
    assert run_inprocess("wgan", [*flags, "--max-iters", 1], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    rc, out, err = run_inprocess("wgan", ["--data-dir", mnist_root, "--no-download", "--no-cuda", "--max-iters", 2,
                                          "--num-eval-samples", 0, "--resume", ckpt], src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["batch_size=8", "critic_warmup=False", "latent_dim=8", "n_critic=1", "ndf=4", "ngf=4"]
    assert torch.load(ckpt, weights_only=False)["iteration"] == 2
    rc, out, err = run_inprocess("wgan", [*flags, "--ndf", 8, "--max-iters", 3, "--resume", ckpt], src)
    assert rc == 2 and "ndf=8 as typed (checkpoint: 4)" in out and "does not match" in err, err
    rc, out, err = run_inprocess("wgan", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 5, "--no-cuda"], src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (5, 1, 32, 32), err
    state = torch.load(ckpt, weights_only=False)
    state["critic"]["net.0.weight"] = torch.zeros(8, 1, 4, 4)  # another width's critic
    torch.save(state, tmp_path / "other.pt")
    rc, out, err = run_inprocess("wgan", [*flags, "--resume", tmp_path / "other.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: from the 13th optimiser step on (iteration 3's first critic step) the weights turn NaN."""
    real_step, calls = torch.optim.RMSprop.step, []

    def step_then_nan(self, *a, **k):
        calls.append(1)
        out = real_step(self, *a, **k)
        if len(calls) >= 13:
            with torch.no_grad():
                for g in self.param_groups:
                    for p in g["params"]:
                        p.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.RMSprop, "step", step_then_nan)
    flags = [*base(mnist_root), "--no-critic-warmup", "--num-eval-samples", 0, "--checkpoint-interval", 2,
             "--max-iters", 50]
    rc, out, err = run_inprocess("wgan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 3" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values() if v.is_floating_point())
