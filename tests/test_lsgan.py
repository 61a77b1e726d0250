"""lsgan.py: the least squares objective of Eq. 2 in both codings, the DCGAN and Figure 3 nets, runs, bad input."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_eval_only,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    check_smoke,
    load_script,
    losses,
    only_run_dir,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

lsgan = load_script("lsgan")
SMALL = ["--ngf", 4, "--ndf", 4, "--latent-dim", 16, "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def write_image_folder(root, n_per_class=20, size=(8, 8)):
    """A tiny ImageFolder tree: two classes of 8x8 RGB PNGs (40 images), a dark and a bright one."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(["a", "b"]):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 128, (*size, 3)) + 127 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- unit tests
@pytest.mark.parametrize("a, b, c", [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)])  # Eq. 9 (0-1 coding), Eq. 8 (chi^2)
def test_losses_equal_closed_form(a, b, c):
    real, fake = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([0.1, -0.7, 1.5])
    d_real, d_fake = lsgan.discriminator_loss(real, fake, a, b)
    torch.testing.assert_close(d_real, 0.5 * ((real - b) ** 2).mean())
    torch.testing.assert_close(d_fake, 0.5 * ((fake - a) ** 2).mean())
    torch.testing.assert_close(lsgan.generator_loss(fake, c), 0.5 * ((fake - c) ** 2).mean())
    # by hand for the first coding: D: 1/2 mean(0.25, 1, 4) + 1/2 mean(0.01, 0.49, 2.25); G: 1/2 mean(0.81, 2.89, 0.25)
    if a == 0:
        torch.testing.assert_close(d_real + d_fake, torch.tensor(5.25 / 6 + 2.75 / 6))
        torch.testing.assert_close(lsgan.generator_loss(fake, c), torch.tensor(3.95 / 6))


def test_gradient_does_not_vanish_for_confident_fakes():
    """Section 3.1: fakes far on the real side of the boundary still get a gradient under the least squares loss."""
    out = torch.tensor([8.0], requires_grad=True)
    lsgan.generator_loss(out, 1.0).backward()
    assert out.grad.abs().item() == pytest.approx(7.0)  # d/dx 1/2 (x - 1)^2 = x - 1


def test_default_is_the_dcgan_network_with_dcgan_latent(tmp_path, mnist_root):
    """Issue 14: the default network is dcgan.py's (z 100-d), Figure 3's LSUN network (z 1024-d) is behind --arch.
    latent_dim stays None (unset) until train() has the checkpoint's args, then follows --arch."""
    args = lsgan.Args()
    lsgan.check_args(args)
    assert (args.arch, args.latent_dim, args.a, args.b, args.c) == ("dcgan", None, 0.0, 1.0, 1.0)
    lsgan.check_args(lsgan.Args(arch="lsun", img_size=112))
    flags = ["--data-dir", mnist_root, "--no-download", "--ngf", 4, "--ndf", 4, "--batch-size", 16, "--max-iters", 1,
             "--num-eval-samples", 0]
    assert run_inprocess("lsgan", flags, tmp_path)[0] == 0
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["args"]["latent_dim"] == 100 and ckpt["generator"]["1.weight"].shape[0] == 100
    g, d = lsgan.dcgan_generator(100, 8, 1, 32), lsgan.dcgan_discriminator(8, 1, 32)
    assert [m.kernel_size for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [(4, 4)] * 4
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 32, 1]
    x = g(lsgan.sample_noise(5, 100, "uniform", "cpu"))
    assert x.shape == (5, 1, 32, 32) and d(x).shape == (5,)
    assert not any(isinstance(m, (nn.Sigmoid, nn.Tanh)) for m in d.modules())  # a raw output for the squared error
    with torch.no_grad():
        d[-2].bias.fill_(-3.0)
    assert (d(torch.zeros(2, 1, 32, 32)) < 0).all()  # not a probability


@pytest.mark.parametrize("img_size, channels", [(32, 1), (112, 3)])  # 112: Figure 3's LSUN side
def test_figure3_network_shapes_and_layout(img_size, channels):
    g, d = lsgan.lsun_generator(16, 4, channels, img_size), lsgan.lsun_discriminator(4, channels, img_size)
    x = g(lsgan.sample_noise(5, 16, "uniform", "cpu"))
    assert x.shape == (5, channels, img_size, img_size) and x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5,)
    deconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.stride[0] for m in deconvs] == [2, 1, 2, 1, 2, 2, 1] and all(m.kernel_size == (3, 3) for m in deconvs)
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in d_convs] == [4, 8, 16, 32] and all(m.kernel_size == (5, 5) for m in d_convs)
    assert isinstance(g[-1], nn.Tanh) and not isinstance(g[-2], nn.BatchNorm2d)  # no BN on G's output
    assert isinstance(d[1], nn.LeakyReLU) and not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    assert all(m.eps == 1e-5 for m in [*g.modules(), *d.modules()] if isinstance(m, nn.BatchNorm2d))


def test_sampling_leaves_batchnorm_state_unchanged():
    g = lsgan.dcgan_generator(16, 4, 1, 32)
    g(lsgan.sample_noise(8, 16, "uniform", "cpu"))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = lsgan.generate_uint8(g, 8, lsgan.Args(latent_dim=16), "cpu", torch.Generator().manual_seed(0))
    assert g.training and x.dtype == torch.uint8 and x.shape == (8, 1, 32, 32)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = lsgan.dcgan_generator(16, 8, 1, 32), lsgan.dcgan_discriminator(8, 1, 32).eval()
    for m in d.modules():  # a D with an opinion (N(0, 0.02) starts it near 0 everywhere)
        if isinstance(m, nn.Conv2d):
            torch.nn.init.normal_(m.weight, 0, 0.2)
    opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    z = lsgan.sample_noise(32, 16, "uniform", "cpu")
    before = lsgan.generator_loss(d(g(z)), 1.0).item()
    for _ in range(5):
        opt.zero_grad()
        lsgan.generator_loss(d(g(z)), 1.0).backward()
        opt.step()
    assert lsgan.generator_loss(d(g(z)), 1.0).item() < 0.8 * before, before


def test_noise_priors_and_the_uniform_default():
    """--noise: p_z is U(-1, 1) (the default: the official code's, and the golden losses') or N(0, 1)."""
    assert lsgan.Args().noise == "uniform"
    u = lsgan.sample_noise(20000, 4, "uniform", "cpu")
    assert u.shape == (20000, 4) and u.min() >= -1 and u.max() <= 1 and abs(u.var() - 1 / 3) < 0.01
    n = lsgan.sample_noise(20000, 4, "normal", "cpu")
    assert n.shape == (20000, 4) and abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.02 and n.abs().max() > 3
    g = lsgan.dcgan_generator(16, 4, 1, 32)
    x = {kind: lsgan.generate_uint8(g, 4, lsgan.Args(latent_dim=16, noise=kind), "cpu",
                                    torch.Generator().manual_seed(0)) for kind in ("uniform", "normal")}
    assert not torch.equal(x["uniform"], x["normal"])  # the samples follow --noise


def test_noise_normal_trains_and_resumes_from_the_checkpoints_prior(tmp_path, mnist_root, monkeypatch):
    """--noise normal draws no uniform z (training, grid, samples.npz); --resume --eval-only without the flag keeps
    the checkpoint's prior."""
    def no_uniform(*a, **k):
        raise AssertionError("--noise normal must not draw torch.rand")

    monkeypatch.setattr(torch, "rand", no_uniform)
    rc, out, err = run_inprocess("lsgan", [*base(mnist_root), "--noise", "normal", "--max-iters", 2,
                                           "--num-eval-samples", 4], tmp_path)
    assert rc == 0, err
    ckpt = only_run_dir(tmp_path) / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=False)["args"]["noise"] == "normal"
    rc, out, err = run_inprocess("lsgan", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 3, "--no-cuda"],
                                 tmp_path)
    assert rc == 0 and "noise='normal'" in out, err
    assert np.load(only_run_dir(tmp_path) / "samples.npz")["images"].shape == (3, 1, 32, 32)


def take(batches, n):
    return [b.tolist() for b in itertools.islice(batches, n)]


def test_batch_order_is_seeded_per_epoch_and_resumable():
    seq = take(lsgan.index_batches(10, 3, seed=1), 9)  # 3 batches per epoch
    assert len(set(sum(seq[:3], []))) == 9 and seq[:3] != seq[3:6]
    assert take(lsgan.index_batches(10, 3, seed=1, start=4), 5) == seq[4:]
    run = lsgan.Run.__new__(lsgan.Run)  # a Run of the common block without a training run: what batches() reads
    run.args, run.step, run.rank, run.world = lsgan.Args(seed=1), 4, 0, 1
    run.device, run.streams = torch.device("cpu"), []
    data = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    x = next(run.batches(data, 3))
    assert x.dtype == torch.uint8 and torch.equal(x, torch.tensor(seq[4], dtype=torch.uint8).view(3, 1, 1, 1))
    assert run.step == 5


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("lsgan", [*base(mnist_root), "--max-iters", 3, "--no-cuda"], tmp_path,
                                  ["losses/d_loss_real", "losses/d_loss_fake"], n_eval=20)
    assert data["images"].dtype == np.uint8 and data["images"].shape == (20, 1, 32, 32)
    assert "iter 3/3" in proc.stdout and "lsgan.py: cpu, run folder runs/" in proc.stdout
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    lsgan.dcgan_generator(16, 4, 1, 32).load_state_dict(ckpt["generator"])
    lsgan.dcgan_discriminator(4, 1, 32).load_state_dict(ckpt["discriminator"])


def test_trained_with_least_squares_not_bce(tmp_path, mnist_root, monkeypatch):
    real_mse, calls = torch.nn.functional.mse_loss, []

    def bce(*a, **k):
        raise AssertionError("lsgan must not use the cross-entropy loss")

    def mse(*a, **k):
        calls.append(1)
        return real_mse(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", bce)
    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy", bce)
    monkeypatch.setattr(torch.nn.functional, "mse_loss", mse)
    flags = [*base(mnist_root), "--max-iters", 2, "--num-eval-samples", 0, "--a", -1, "--c", 0]
    rc, out, err = run_inprocess("lsgan", flags, tmp_path)
    assert rc == 0, err
    assert len(calls) == 6  # per iteration: D's two terms and G's one
    scalars = losses(only_run_dir(tmp_path), ("losses/d_loss", "losses/d_loss_real", "losses/d_loss_fake",
                                              "charts/d_real", "charts/d_fake"))
    (_, total), (_, real), (_, fake) = (scalars[t][-1] for t in ["losses/d_loss", "losses/d_loss_real",
                                                                 "losses/d_loss_fake"])
    assert total == pytest.approx(real + fake, rel=1e-5)


def test_sigterm_checkpoint_resumes_exactly_on_an_image_folder_with_figure3_nets(tmp_path, monkeypatch):
    """SIGTERM -> checkpoint, exit 143; --resume (RNG states read on the CPU) continues exactly: --arch lsun on the
    --dataset folder path with a DataLoader worker, across epochs (40 images, 2 batches per epoch)."""
    root = write_image_folder(tmp_path / "imgs")
    flags = ["--dataset", "folder", "--data-dir", root, *SMALL, "--in-memory-limit-mb", 0, "--workers", 1,
             "--arch", "lsun"]
    _, run = check_sigterm_and_exact_resume("lsgan", flags, tmp_path, monkeypatch, extra_iters=3,
                                            tags=("losses/d_loss", "losses/g_loss", "losses/d_loss_real"))
    assert run.name.startswith("folder__lsgan__1__")


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("lsgan", base(mnist_root), tmp_path)
    assert files[0]["images"].shape == (2000, 1, 32, 32) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("lsgan", base(mnist_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("lsgan", SMALL, tmp_path, monkeypatch)


def test_learning_signal_d_separates_real_from_fake(tmp_path, mnist_root):
    """Guards the training loop's call sites: after a few dozen updates D's raw output is nearer b on real digits
    than on G's samples. With real and fake swapped in discriminator_loss's call, D(real) < D(fake) and this fails."""
    flags = [*base(mnist_root), "--lr", 1e-3, "--max-iters", 40, "--log-interval", 5, "--num-eval-samples", 200]
    assert run_inprocess("lsgan", flags, tmp_path)[0] == 0
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake"], last=3)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.3, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = lsgan.load_images(lsgan.Args(data_dir=str(mnist_root), download=False))
    on_real, on_fake = scores_on_checkpoint("lsgan", only_run_dir(tmp_path), real, d_output)
    assert on_real - on_fake > 0.3, (on_real, on_fake)


def d_output(module, ckpt, x, labels):
    """D's raw output of the checkpoint's D, built as lsgan.py builds it, in training mode as D saw each batch."""
    args = module.Args(**ckpt["args"])
    d = module.NETWORKS[args.arch][1](args.ndf, x.shape[1], args.img_size)
    d.load_state_dict(ckpt["discriminator"])
    return d(x).flatten()


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    assert check_eval_only("lsgan", base(mnist_root), tmp_path, 7, train_iters=1)["images"].shape == (7, 1, 32, 32)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", 0], "--lr"),
    (["--batch-size", -4], "--batch-size"),
    (["--img-size", 28], "--img-size"),
    (["--img-size", 112], "--img-size"),  # 112 only with --arch lsun
    (["--a", 1], "--a"),  # a == b: D would have nothing to separate
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("lsgan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("lsgan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_builds_the_checkpoints_networks_and_refuses_another_scripts(tmp_path, mnist_root):
    """The networks come from the args saved in the checkpoint (here Figure 3's, --arch lsun, z 1024-d by default),
    so --resume --eval-only needs no other flag; dcgan.py's checkpoint (the same entries, other modules) ends in one
    line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    flags = ["--data-dir", mnist_root, "--no-download", "--ngf", 4, "--ndf", 4, "--batch-size", 16, "--arch", "lsun",
             "--max-iters", 1, "--num-eval-samples", 0]
    assert run_inprocess("lsgan", flags, src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=False)["args"]["latent_dim"] == 1024  # Figure 3's z
    rc, out, err = run_inprocess("lsgan", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 5, "--no-cuda"], src)
    assert rc == 0 and "arch='lsun'" in out and "latent_dim=1024" in out, err
    assert np.load(only_run_dir(src) / "samples.npz")["images"].shape == (5, 1, 32, 32)
    dcgan_flags = ["--ngf", 4, "--ndf", 4, "--latent-dim", 16, "--batch-size", 16]
    assert run_inprocess("dcgan", ["--data-dir", mnist_root, "--no-download", *dcgan_flags, "--max-iters", 1,
                                   "--num-eval-samples", 0], dst)[0] == 0
    rc, out, err = run_inprocess("lsgan", [*base(mnist_root), "--resume", only_run_dir(dst) / "checkpoint.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: the squared error turns NaN from its 10th call on (iteration 4; 3 calls per iteration)."""
    real_mse, calls = torch.nn.functional.mse_loss, []

    def mse_then_nan(*a, **k):
        calls.append(1)
        out = real_mse(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "mse_loss", mse_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("lsgan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
