"""lsgan.py: the least squares objective of Eq. 2 in both codings, the Figure 3 nets, runs, bad input."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import (
    check_bad_input,
    check_eval_only,
    check_exact_resume,
    check_smoke,
    load_script,
    losses,
    only_run_dir,
    run_inprocess,
)

lsgan = load_script("lsgan")
SMALL = ["--ngf", 4, "--ndf", 4, "--latent-dim", 16, "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


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


@pytest.mark.parametrize("img_size, channels", [(32, 1), (64, 3)])
def test_shapes_and_figure3_layout(img_size, channels):
    g, d = lsgan.Generator(16, 4, channels, img_size), lsgan.Discriminator(4, channels, img_size)
    x = g(lsgan.sample_noise(5, 16, "uniform", "cpu"))
    assert x.shape == (5, channels, img_size, img_size) and x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5,)
    deconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.stride[0] for m in deconvs] == [2, 1, 2, 1, 2, 2, 1] and all(m.kernel_size == (3, 3) for m in deconvs)
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in d_convs] == [4, 8, 16, 32] and all(m.kernel_size == (5, 5) for m in d_convs)
    assert isinstance(g.net[-1], nn.Tanh) and not isinstance(g.net[-2], nn.BatchNorm2d)  # no BN on G's output
    assert isinstance(d.net[1], nn.LeakyReLU)  # no BN after D's first conv
    assert all(m.eps == 1e-5 for m in [*g.modules(), *d.modules()] if isinstance(m, nn.BatchNorm2d))


def test_discriminator_output_is_linear():
    d = lsgan.Discriminator(4, 1, 32)
    assert not any(isinstance(m, (nn.Sigmoid, nn.Tanh)) for m in d.modules())
    with torch.no_grad():
        d.net[-1].bias.fill_(-3.0)
    assert (d(torch.zeros(2, 1, 32, 32)) < 0).all()  # a raw value, not a probability


def test_sampling_leaves_batchnorm_state_unchanged():
    g = lsgan.Generator(16, 4, 1, 32)
    g(lsgan.sample_noise(8, 16, "uniform", "cpu"))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    lsgan.generate(g, lsgan.sample_noise(8, 16, "uniform", "cpu"))
    assert g.training and all(torch.equal(before[k], v) for k, v in g.state_dict().items())


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("lsgan", [*base(mnist_root), "--max-iters", 3], tmp_path,
                                  ["losses/d_loss_real", "losses/d_loss_fake"], n_eval=20)
    assert data["images"].dtype == np.uint8 and data["images"].shape == (20, 1, 32, 32)
    assert "iter 3/3" in proc.stdout
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    lsgan.Generator(16, 4, 1, 32).load_state_dict(ckpt["generator"])
    lsgan.Discriminator(4, 1, 32).load_state_dict(ckpt["discriminator"])


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


def test_determinism_and_exact_resume(tmp_path, mnist_root):
    check_exact_resume("lsgan", [*base(mnist_root), "--num-eval-samples", 0], tmp_path)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    assert check_eval_only("lsgan", base(mnist_root), tmp_path, 7, train_iters=1)["images"].shape == (7, 1, 32, 32)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", 0], "--lr"),
    (["--batch-size", -4], "--batch-size"),
    (["--img-size", 28], "--img-size"),
    (["--a", 1], "--a"),  # a == b: D would have nothing to separate
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("lsgan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("lsgan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_that_does_not_match_exits_2(tmp_path, mnist_root):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("lsgan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    flags = [*base(mnist_root), "--img-size", 64, "--resume", only_run_dir(src) / "checkpoint.pt"]
    rc, out, err = run_inprocess("lsgan", flags, dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1


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
