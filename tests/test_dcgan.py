"""dcgan.py: the paper's architecture rules, init, sampling without side effects, data paths, runs, bad input."""
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
    only_run_dir,
    run_inprocess,
)

dcgan = load_script("dcgan")
SMALL = ["--ngf", 8, "--ndf", 8, "--latent-dim", 16, "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def convs(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def write_image_folder(root, n_per_class=6, size=(40, 48)):
    """A tiny ImageFolder tree of RGB PNGs (two classes), not square so that Resize + CenterCrop matter."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ["a", "b"]:
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- unit tests
@pytest.mark.parametrize("img_size, channels", [(32, 1), (64, 3)])
def test_output_shapes_follow_img_size(img_size, channels):
    g = dcgan.Generator(100, 8, channels, img_size)
    d = dcgan.Discriminator(8, channels, img_size)
    x = g(dcgan.sample_noise(5, 100, "uniform", "cpu"))
    assert x.shape == (5, channels, img_size, img_size) and x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5,)
    n_up = sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert n_up == {32: 4, 64: 5}[img_size]  # 1 -> 4, then doubling to the image side


def test_init_statistics():
    g, d = dcgan.Generator(100, 64, 1, 64), dcgan.Discriminator(64, 1, 64)
    for net in (g, d):
        w = torch.cat([m.weight.flatten() for m in convs(net)])
        assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3  # Section 4: N(0, 0.02)
        bn = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert abs(bn.mean() - 1) < 5e-3 and abs(bn.std() - 0.02) < 5e-3  # official code: N(1, 0.02)
        assert all(m.bias is None or not m.bias.any() for m in convs(net))


def test_batchnorm_placement_and_activations():
    g, d = dcgan.Generator(100, 8, 1, 32), dcgan.Discriminator(8, 1, 32)
    gl, dl = list(g.net), list(d.net)
    assert isinstance(gl[-2], nn.ConvTranspose2d) and isinstance(gl[-1], nn.Tanh)  # no BN on G's output layer
    assert isinstance(dl[0], nn.Conv2d) and isinstance(dl[1], nn.LeakyReLU)  # no BN on D's input layer
    is_bn = [isinstance(m, nn.BatchNorm2d) for m in gl]
    assert all(is_bn[i + 1] for i, m in enumerate(gl[:-2]) if isinstance(m, nn.ConvTranspose2d))
    assert all(isinstance(dl[i + 1], nn.BatchNorm2d) for i, m in enumerate(dl[:-1]) if i and isinstance(m, nn.Conv2d))
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)] + [m for m in d.modules()
                                                                       if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)  # not Keras' eps=0.8
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert any(isinstance(m, nn.ReLU) for m in g.modules()) and not any(isinstance(m, nn.Linear) for m in g.modules())
    assert not any(isinstance(m, (nn.Sigmoid, nn.Linear)) for m in d.modules())  # D outputs a logit


def test_discriminator_outputs_unbounded_logits():
    d = dcgan.Discriminator(8, 1, 32)
    with torch.no_grad():
        d.net[-1].bias.fill_(5.0)
    assert (d(torch.zeros(2, 1, 32, 32)) > 1).all()


def test_losses_on_known_logits():
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.3, -2.0])
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    torch.testing.assert_close(dcgan.discriminator_loss(real, fake), -(torch.log(pr).mean() + torch.log(1 - pf).mean()))
    smooth = -((0.9 * torch.log(pr) + 0.1 * torch.log(1 - pr)).mean() + torch.log(1 - pf).mean())
    torch.testing.assert_close(dcgan.discriminator_loss(real, fake, 0.9), smooth)
    torch.testing.assert_close(dcgan.generator_loss(fake), -torch.log(pf).mean())  # non-saturating


def test_noise_priors():
    u = dcgan.sample_noise(20000, 4, "uniform", "cpu")
    assert u.shape == (20000, 4, 1, 1) and u.min() >= -1 and u.max() <= 1 and abs(u.var() - 1 / 3) < 0.01
    assert abs(dcgan.sample_noise(20000, 4, "normal", "cpu").std() - 1) < 0.02


def test_sampling_leaves_batchnorm_state_unchanged():
    g = dcgan.Generator(16, 8, 1, 32)
    g(dcgan.sample_noise(8, 16, "uniform", "cpu"))  # some training-mode statistics
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = dcgan.generate(g, dcgan.sample_noise(8, 16, "uniform", "cpu"))
    assert g.training and not x.requires_grad
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())  # running stats and counters


def test_spectral_norm_wraps_discriminator_convs():
    from torch.nn.utils import parametrize

    d = dcgan.Discriminator(8, 1, 32, spectral_norm=True)
    assert all(parametrize.is_parametrized(m, "weight") for m in convs(d))
    assert not any(parametrize.is_parametrized(m, "weight") for m in convs(dcgan.Discriminator(8, 1, 32)))
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_mnist_is_resized_once_to_img_size(mnist_root):
    args = dcgan.Args(data_dir=str(mnist_root), download=False)
    data = dcgan.load_images(args)
    assert data.dtype == torch.uint8 and data.shape == (256, 1, 32, 32)
    raw = dcgan.load_images(dcgan.Args(data_dir=str(mnist_root), download=False, img_size=64))
    assert raw.shape == (256, 1, 64, 64)
    b = dcgan.EpochBatches(data, 16, seed=1)
    x = b.get(0)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("dataset, layout", [("cifar10", (10, 32, 32, 3)), ("svhn", (10, 3, 32, 32))])
def test_colour_sets_become_nchw_uint8(monkeypatch, dataset, layout):
    """CIFAR-10's .data is (N, H, W, C), SVHN's (N, C, H, W); both end as (N, 3, S, S) uint8."""
    raw = np.random.default_rng(0).integers(0, 256, layout, dtype=np.uint8)

    class Fake:
        def __init__(self, root, download, **split):
            self.data = raw

    monkeypatch.setitem(dcgan.SOURCES, dataset, (Fake, *dcgan.SOURCES[dataset][1:]))
    for size in (32, 64):
        data = dcgan.load_images(dcgan.Args(dataset=dataset, img_size=size))
        assert data.dtype == torch.uint8 and data.shape == (10, 3, size, size)
    nchw = torch.as_tensor(raw if layout[1] == 3 else raw.transpose(0, 3, 1, 2))
    assert torch.equal(dcgan.load_images(dcgan.Args(dataset=dataset)), nchw)  # no resize at 32: same pixels


def test_folder_batches_resume_exactly(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    a = dcgan.FolderBatches(str(root), 32, 4, seed=1, workers=0, device=torch.device("cpu"))
    seq = [a.get(s) for s in range(5)]  # 3 batches per epoch: crosses an epoch boundary
    assert seq[0].shape == (4, 3, 32, 32) and a.per_epoch == 3
    b = dcgan.FolderBatches(str(root), 32, 4, seed=1, workers=0, device=torch.device("cpu"))
    torch.testing.assert_close(b.get(4), seq[4])  # a fresh loader started at step 4 (resume)
    torch.testing.assert_close(b.get(1), seq[1])


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("dcgan", [*base(mnist_root), "--max-iters", 3], tmp_path, [], n_eval=30)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 32, 32)
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and ckpt["step"] == 3
    dcgan.Generator(16, 8, 1, 32).load_state_dict(ckpt["generator"])
    dcgan.Discriminator(8, 1, 32).load_state_dict(ckpt["discriminator"])


def test_image_folder_run(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    work = tmp_path / "work"
    work.mkdir()
    flags = ["--dataset", "folder", "--data-dir", root, *SMALL, "--batch-size", 4, "--workers", 1, "--max-iters", 4,
             "--spectral-norm", "--num-eval-samples", 5]
    rc, out, err = run_inprocess("dcgan", flags, work)
    assert rc == 0, err
    run = only_run_dir(work)
    assert run.name.startswith("folder__dcgan__1__")
    assert np.load(run / "samples.npz")["images"].shape == (5, 3, 32, 32)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4  # 3 batches per epoch, wrapped once


def test_determinism_and_exact_resume(tmp_path, mnist_root):
    check_exact_resume("dcgan", [*base(mnist_root), "--num-eval-samples", 0], tmp_path)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    assert check_eval_only("dcgan", base(mnist_root), tmp_path, 12)["images"].shape == (12, 1, 32, 32)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--img-size", 48], "--img-size"),
    (["--ngf", 0], "--ngf"),
    (["--label-smoothing", 1.5], "--label-smoothing"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("dcgan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("dcgan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()
    check_bad_input("dcgan", ["--dataset", "folder", "--data-dir", tmp_path / "none"], tmp_path, 1, "--data-dir")


def test_resume_that_does_not_match_exits_2(tmp_path, mnist_root):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("dcgan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    flags = [*base(mnist_root), "--ngf", 16, "--resume", only_run_dir(src) / "checkpoint.pt"]
    rc, out, err = run_inprocess("dcgan", flags, dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: the BCE loss turns NaN from its 10th call on (iteration 4; 3 calls per iteration)."""
    real_bce, calls = torch.nn.functional.binary_cross_entropy_with_logits, []

    def bce_then_nan(*a, **k):
        calls.append(1)
        out = real_bce(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", bce_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("dcgan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
