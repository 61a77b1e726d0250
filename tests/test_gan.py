"""gan.py: paper-critical pieces, smoke run, determinism, exact resume, bad input."""
import itertools

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
    check_smoke,
    load_script,
    only_run_dir,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

gan = load_script("gan")
SMALL = ["--hidden-dim", 64, "--maxout-units", 16, "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


# ----------------------------------------------------------------------------- unit tests
def test_shapes_and_logits():
    g, d = gan.Generator(100, 64), gan.Discriminator(16, 5)
    x = g(torch.rand(7, 100) * 2 - 1)
    assert x.shape == (7, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (7,)
    assert not any(isinstance(m, (torch.nn.Sigmoid, torch.nn.BatchNorm1d)) for m in d.modules())


def test_official_init_and_output_bias_from_marginals():
    g, d = gan.Generator(100, 64), gan.Discriminator(16, 5)
    assert all(p.abs().max() <= 0.005 for n, p in d.named_parameters() if n.endswith("weight"))
    assert all(p.abs().max() <= 0.05 for n, p in g.named_parameters() if n.endswith("weight"))
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    images[:, :, 0, 0] = 0  # an always-black pixel: bias clipped, not -inf
    g.init_output_bias(images)
    p = (images.float().mean(0) / 255).flatten().clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():  # with z = 0 and zero biases the hidden layers are 0: G(0) is the mean image
        torch.testing.assert_close((g(torch.zeros(1, 100)).flatten() + 1) / 2, p, atol=1e-5, rtol=1e-4)


def test_input_dropout_sees_pixels_in_0_1_so_a_dropped_pixel_is_background():
    d = gan.Discriminator(16, 5)
    seen = []
    d.net[1].register_forward_hook(lambda m, inp, out: seen.append((inp[0], out)))  # the input dropout
    d.train()
    d(-torch.ones(4, 1, 28, 28))  # an all-background image in [-1, 1]
    inp, out = seen[0]
    assert torch.equal(inp, torch.zeros_like(inp)) and torch.equal(out, inp)  # dropping black changes nothing
    d(torch.ones(4, 1, 28, 28))  # all white: dropout zeroes about 20% of the pixels to black
    inp, out = seen[1]
    assert inp.min() == 1 and 0.1 < (out == 0).float().mean() < 0.3


def test_maxout_is_max_over_pieces():
    m = gan.Maxout(3, 2, 4)
    x = torch.randn(5, 3)
    expected = m.linear(x).view(5, 2, 4).max(dim=2).values
    torch.testing.assert_close(m(x), expected)


def test_generator_losses_on_known_logits():
    logits = torch.tensor([0.0, 2.0, -3.0])
    p = torch.sigmoid(logits)
    # non-saturating: -log D(G(z)); saturating (minimax): log(1 - D(G(z)))
    torch.testing.assert_close(gan.generator_loss(logits, "non-saturating"), -torch.log(p).mean())
    torch.testing.assert_close(gan.generator_loss(logits, "saturating"), torch.log(1 - p).mean())
    # the saturating loss has a vanishing gradient where D confidently rejects fakes (Section 3 of the paper)
    lo = torch.tensor([-8.0], requires_grad=True)
    gan.generator_loss(lo, "saturating").backward()
    g_sat = lo.grad.abs().item()
    lo.grad = None
    gan.generator_loss(lo, "non-saturating").backward()
    assert g_sat < 1e-3 < lo.grad.abs().item()


def test_discriminator_loss_and_one_sided_label_smoothing():
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.3, -2.0])
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -0.5 * (torch.log(pr).mean() + torch.log(1 - pf).mean())  # halved, as the official code's cost
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected)
    smooth = -0.5 * ((0.9 * torch.log(pr) + 0.1 * torch.log(1 - pr)).mean() + torch.log(1 - pf).mean())
    torch.testing.assert_close(gan.discriminator_loss(real, fake, 0.9), smooth)  # fakes keep target 0


def test_noise_priors():
    u = gan.sample_noise(20000, 4, "uniform", "cpu")
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.02 and abs(u.var() - 1 / 3) < 0.01
    n = gan.sample_noise(20000, 4, "normal", "cpu")
    assert abs(n.std() - 1) < 0.02 and n.abs().max() > 1


def run_object(step=0):
    """A Run of the common block without a training run: only what batches() reads."""
    run = gan.Run.__new__(gan.Run)
    run.args, run.step, run.rank, run.world = gan.Args(seed=1), step, 0, 1
    run.device, run.streams = torch.device("cpu"), []
    return run


def test_batches_cover_each_epoch_once_and_depend_only_on_step():
    """run.batches on the device tensor: each epoch a permutation seeded by (seed, epoch), the last incomplete batch
    dropped, so a run resumed at step k sees exactly the batches of an uninterrupted one (uint8, normalised in the
    training loop)."""
    data = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    seq = list(itertools.islice(run_object().batches(data, 3), 6))
    assert all(b.dtype == torch.uint8 and b.shape == (3, 1, 1, 1) for b in seq)
    assert len(set(torch.cat(seq[:3]).flatten().tolist())) == 9  # 3 full batches, the last incomplete one dropped
    assert len(set(torch.cat(seq[3:]).flatten().tolist())) == 9
    assert [b.tolist() for b in seq[:3]] != [b.tolist() for b in seq[3:]]  # reshuffled per epoch
    torch.testing.assert_close(next(run_object(step=4).batches(data, 3)), seq[4])  # same batch whatever came before
    first = torch.randperm(10, generator=torch.Generator().manual_seed(1 * 100_003))[:3]  # the old EpochBatches seed
    assert torch.equal(seq[0].flatten(), first.to(torch.uint8))


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("gan", [*base(mnist_root), "--max-iters", 3], tmp_path, [], n_eval=30)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 28, 28)
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3
    g = gan.Generator(100, 64)
    g.load_state_dict(ckpt["generator"])
    gan.Discriminator(16, 5).load_state_dict(ckpt["discriminator"])


def test_fashion_mnist_and_k_steps(tmp_path, mnist_root):
    rc, out, err = run_inprocess("gan", [*base(mnist_root), "--dataset", "fashion-mnist", "--k-steps", 2,
                                         "--max-iters", 2, "--num-eval-samples", 0], tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    assert run.name.startswith("fashion-mnist__gan__1__")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4  # k = 2 real minibatches per generator update
    assert not (run / "samples.npz").exists()


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, mnist_root, monkeypatch):
    check_sigterm_and_exact_resume("gan", base(mnist_root), tmp_path, monkeypatch)


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("gan", base(mnist_root), tmp_path)
    assert files[0]["images"].shape == (2000, 1, 28, 28) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("gan", base(mnist_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, mnist_root, monkeypatch):
    check_failed_download_leaves_nothing("gan", SMALL, tmp_path, monkeypatch)


def test_learning_signal_d_separates_real_from_fake(tmp_path, mnist_root):
    """Guards the training loop's call sites: after 60 updates D scores real digits above G's samples. With
    real and fake swapped in discriminator_loss's call, D(real) < D(fake) and this fails."""
    flags = [*base(mnist_root), "--optimizer", "adam", "--lr", 1e-3, "--max-iters", 60, "--log-interval", 10,
             "--num-eval-samples", 200]
    assert run_inprocess("gan", flags, tmp_path)[0] == 0
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake"], last=3)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.2, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = gan.load_images(gan.Args(data_dir=str(mnist_root), download=False))
    on_real, on_fake = scores_on_checkpoint("gan", only_run_dir(tmp_path), real, d_probability)
    assert on_real - on_fake > 0.2, (on_real, on_fake)


def d_probability(module, ckpt, x, labels):
    """D(x) of the checkpoint's D, built as gan.py builds it, in eval mode (no dropout)."""
    args = module.Args(**ckpt["args"])
    d = module.Discriminator(args.maxout_units, args.maxout_pieces)
    d.load_state_dict(ckpt["discriminator"])
    return torch.sigmoid(d.eval()(x))


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = gan.Generator(100, 64), gan.Discriminator(16, 5).eval()
    gan.init_uniform(d, 0.1)  # a D with an opinion (the official init starts it at D = 1/2 everywhere)
    opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    z = torch.randn(64, 100)
    before = gan.generator_loss(d(g(z))).item()
    for _ in range(5):
        opt.zero_grad()
        gan.generator_loss(d(g(z))).backward()
        opt.step()
    assert gan.generator_loss(d(g(z))).item() < before - 1e-3


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    assert check_eval_only("gan", base(mnist_root), tmp_path, 12)["images"].shape == (12, 1, 28, 28)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--k-steps", 0], "--k-steps"),
    (["--label-smoothing", 1.5], "--label-smoothing"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("gan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("gan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_builds_the_checkpoints_networks_and_refuses_another_scripts(tmp_path, mnist_root):
    """The networks and the optimiser come from the args saved in the checkpoint where the command line leaves them at
    their default (and the run says so; an unset --lr is the checkpoint's, not the default of --optimizer);
    --resume --eval-only needs no other flag; a typed width the checkpoint does not have, or another script's
    checkpoint, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    flags = [*base(mnist_root), "--optimizer", "adam", "--lr", 1e-3, "--max-iters", 1, "--num-eval-samples", 0]
    assert run_inprocess("gan", flags, src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    rc, out, err = run_inprocess("gan", ["--data-dir", mnist_root, "--no-download", "--max-iters", 2,
                                         "--num-eval-samples", 0, "--resume", ckpt], src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["batch_size=16", "hidden_dim=64", "lr=0.001", "maxout_units=16", "optimizer='adam'"], out
    assert torch.load(ckpt, weights_only=False)["args"]["lr"] == 1e-3
    rc, out, err = run_inprocess("gan", [*base(mnist_root), "--hidden-dim", 32, "--max-iters", 3, "--resume", ckpt],
                                 src)
    assert rc == 2 and "hidden_dim=32 as typed (checkpoint: 64)" in out and "does not match" in err, err
    rc, out, err = run_inprocess("gan", ["--resume", ckpt, "--eval-only"], src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (10000, 1, 28, 28), err
    assert run_inprocess("dcgan", ["--data-dir", mnist_root, "--no-download", "--ngf", 4, "--ndf", 4, "--latent-dim",
                                   8, "--batch-size", 16, "--max-iters", 1, "--num-eval-samples", 0], dst)[0] == 0
    rc, out, err = run_inprocess("gan", [*base(mnist_root), "--resume", only_run_dir(dst) / "checkpoint.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: the BCE loss turns NaN from its 10th call on (iteration 4; 3 calls per iteration)."""
    real_bce, calls = torch.nn.functional.binary_cross_entropy_with_logits, []

    def bce_then_nan(*a, **k):
        calls.append(1)
        out = real_bce(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", bce_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("gan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
