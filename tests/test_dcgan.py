"""dcgan.py: the paper's architecture rules, init, sampling without side effects, data paths, runs, bad input."""
import itertools
import os

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
    only_run_dir,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

dcgan = load_script("dcgan")
SMALL = ["--ngf", 8, "--ndf", 8, "--latent-dim", 16, "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def convs(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


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


def folder_flags(root, workers=1):
    return ["--dataset", "folder", "--data-dir", root, *SMALL, "--in-memory-limit-mb", 0, "--workers", workers]


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


def test_losses_on_known_logits():
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.3, -2.0])
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    torch.testing.assert_close(dcgan.discriminator_loss(real, fake), -(torch.log(pr).mean() + torch.log(1 - pf).mean()))
    smooth = -((0.9 * torch.log(pr) + 0.1 * torch.log(1 - pr)).mean() + torch.log(1 - pf).mean())
    torch.testing.assert_close(dcgan.discriminator_loss(real, fake, 0.9), smooth)
    torch.testing.assert_close(dcgan.generator_loss(fake), -torch.log(pf).mean())  # non-saturating
    # by hand: the two terms are summed (not averaged): -(log s(1) + log s(-.5))/2 - (log s(-.3) + log s(2))/2
    torch.testing.assert_close(dcgan.discriminator_loss(real, fake), torch.tensor((0.31326 + 0.97408) / 2
                                                                                  + (0.85436 + 0.12693) / 2),
                               atol=1e-4, rtol=0)


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = dcgan.Generator(16, 8, 1, 32), dcgan.Discriminator(8, 1, 32).eval()
    for m in convs(d):  # a D with an opinion (N(0, 0.02) starts it at D = 1/2 everywhere)
        torch.nn.init.normal_(m.weight, 0, 0.2)
    opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    z = dcgan.sample_noise(32, 16, "uniform", "cpu")
    before = dcgan.generator_loss(d(g(z))).item()
    for _ in range(5):
        opt.zero_grad()
        dcgan.generator_loss(d(g(z))).backward()
        opt.step()
    assert dcgan.generator_loss(d(g(z))).item() < before - 0.05, before


def test_noise_priors():
    u = dcgan.sample_noise(20000, 4, "uniform", "cpu")
    assert u.shape == (20000, 4, 1, 1) and u.min() >= -1 and u.max() <= 1 and abs(u.var() - 1 / 3) < 0.01
    assert abs(dcgan.sample_noise(20000, 4, "normal", "cpu").std() - 1) < 0.02


def test_sampling_leaves_batchnorm_state_unchanged():
    g = dcgan.Generator(16, 8, 1, 32)
    g(dcgan.sample_noise(8, 16, "uniform", "cpu"))  # some training-mode statistics
    before = {k: v.clone() for k, v in g.state_dict().items()}
    args = dcgan.Args(latent_dim=16)
    x = dcgan.generate_uint8(g, 8, args, "cpu", torch.Generator().manual_seed(0))
    assert g.training and x.dtype == torch.uint8 and x.shape == (8, 1, 32, 32)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())  # running stats and counters
    assert torch.equal(x, dcgan.generate_uint8(g, 8, args, "cpu", torch.Generator().manual_seed(0)))


def test_spectral_norm_wraps_discriminator_convs():
    from torch.nn.utils import parametrize

    d = dcgan.Discriminator(8, 1, 32, spectral_norm=True)
    assert all(parametrize.is_parametrized(m, "weight") for m in convs(d))
    for m in convs(d):  # Section 4's N(0, 0.02) init reaches the stored weight, not only a discarded computed one
        assert abs(m.parametrizations.weight.original.std().item() - 0.02) < 0.004
    assert not any(parametrize.is_parametrized(m, "weight") for m in convs(dcgan.Discriminator(8, 1, 32)))
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_mnist_is_resized_once_to_img_size(mnist_root):
    args = dcgan.Args(data_dir=str(mnist_root), download=False)
    data = dcgan.load_images(args)
    assert data.dtype == torch.uint8 and data.shape == (256, 1, 32, 32)
    raw = dcgan.load_images(dcgan.Args(data_dir=str(mnist_root), download=False, img_size=64))
    assert raw.shape == (256, 1, 64, 64)
    assert data.min() == 0 and data.max() > 200  # the whole 0..255 range survives the resize


def take(batches, n):
    return [b.tolist() for b in itertools.islice(batches, n)]


def test_batch_order_is_seeded_per_epoch_and_resumable():
    """Epoch e is a permutation seeded by (seed, e), the incomplete last batch dropped; an order started at step k
    yields what one started at 0 yields from its k-th batch on (a resumed run)."""
    seq = take(dcgan.index_batches(10, 3, seed=1), 9)  # 3 batches per epoch
    assert len(set(sum(seq[:3], []))) == 9 and len(set(sum(seq[3:6], []))) == 9 and seq[:3] != seq[3:6]
    assert take(dcgan.index_batches(10, 3, seed=1, start=4), 5) == seq[4:]
    assert take(dcgan.index_batches(10, 3, seed=2), 3) != seq[:3]
    ranks = [take(dcgan.index_batches(10, 4, seed=1, rank=r, world=2), 4) for r in (0, 1)]  # torchrun: halves
    assert [a + b for a, b in zip(*ranks, strict=True)] == take(dcgan.index_batches(10, 4, seed=1), 4)


def run_object(step=0, workers=0):
    """A Run of the common block without a training run: only what batches() reads."""
    run = dcgan.Run.__new__(dcgan.Run)
    run.args, run.step, run.rank, run.world = dcgan.Args(seed=1), step, 0, 1
    run.device, run.streams = torch.device("cpu"), []
    return run


def test_folder_uses_one_persistent_loader_for_the_run(tmp_path, monkeypatch):
    """Several epochs of --dataset folder come from ONE DataLoader (persistent workers), in epoch_batches' order,
    and a loader started at a later step (a resumed run) continues that order."""
    root = write_image_folder(tmp_path / "imgs")
    built, real_loader = [], torch.utils.data.DataLoader

    def loader(*a, **k):
        built.append(k)
        return real_loader(*a, **k)

    monkeypatch.setattr(torch.utils.data, "DataLoader", loader)
    dataset = dcgan.load_images(dcgan.Args(dataset="folder", data_dir=str(root), in_memory_limit_mb=0))
    run = run_object()
    seq = list(itertools.islice(run.batches(dataset, 16, torch.stack, 1), 5))  # 2 per epoch
    assert len(built) == 1 and built[0]["persistent_workers"] and built[0]["num_workers"] == 1
    assert built[0]["worker_init_fn"] is dcgan.quiet_worker and run.step == 5
    assert seq[0].shape == (16, 3, 32, 32) and seq[0].dtype == torch.uint8
    targets = [int(os.path.basename(os.path.dirname(p)) == "b") for p in dataset.paths]  # class b: the bright one
    labels = torch.tensor([targets[i] for i in sum(take(dcgan.index_batches(40, 16, seed=1), 5), [])])
    assert torch.equal(labels.view(5, 16), torch.stack([(x.float().mean((1, 2, 3)) > 127.5).long() for x in seq]))
    run.close()
    torch.testing.assert_close(next(run_object(step=3).batches(dataset, 16, torch.stack, 0)), seq[3])


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("dcgan", [*base(mnist_root), "--max-iters", 3, "--no-cuda"], tmp_path, [], n_eval=30)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 32, 32)
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout and "dcgan.py: cpu, run folder runs/" in proc.stdout
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and ckpt["step"] == 3
    dcgan.Generator(16, 8, 1, 32).load_state_dict(ckpt["generator"])
    dcgan.Discriminator(8, 1, 32).load_state_dict(ckpt["discriminator"])


def test_sigterm_checkpoint_resumes_exactly_on_an_image_folder(tmp_path, monkeypatch):
    """SIGTERM -> checkpoint, exit 143; --resume (RNG states read on the CPU) continues exactly, here on the
    --dataset folder path with a DataLoader worker, across epochs (40 images, 2 batches per epoch)."""
    root = write_image_folder(tmp_path / "imgs")
    stopped_at, run = check_sigterm_and_exact_resume("dcgan", [*folder_flags(root), "--spectral-norm"], tmp_path,
                                                     monkeypatch, extra_iters=3)
    assert run.name.startswith("folder__dcgan__1__")


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("dcgan", base(mnist_root), tmp_path)
    assert files[0]["images"].shape == (2000, 1, 32, 32) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("dcgan", base(mnist_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("dcgan", SMALL, tmp_path, monkeypatch)


def test_learning_signal_d_separates_real_from_fake(tmp_path, mnist_root):
    """Guards the training loop's call sites: after a few dozen updates D scores real digits above G's samples.
    With real and fake swapped in discriminator_loss's call, D(real) < D(fake) and this fails."""
    flags = [*base(mnist_root), "--lr", 1e-3, "--max-iters", 40, "--log-interval", 5, "--num-eval-samples", 200]
    assert run_inprocess("dcgan", flags, tmp_path)[0] == 0
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake"], last=3)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.3, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = dcgan.load_images(dcgan.Args(data_dir=str(mnist_root), download=False))
    on_real, on_fake = scores_on_checkpoint("dcgan", only_run_dir(tmp_path), real, d_probability)
    assert on_real - on_fake > 0.3, (on_real, on_fake)


def d_probability(module, ckpt, x, labels):
    """D(x) of the checkpoint's D, built as dcgan.py builds it, in training mode as D saw each batch (BatchNorm's
    batch statistics, real and fake in separate passes)."""
    args = module.Args(**ckpt["args"])
    d = module.Discriminator(args.ndf, x.shape[1], args.img_size, args.spectral_norm)
    d.load_state_dict(ckpt["discriminator"])
    return torch.sigmoid(d(x))


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


def test_resume_builds_the_checkpoints_networks_and_refuses_another_scripts(tmp_path, mnist_root):
    """The networks come from the args saved in the checkpoint where the command line leaves them at their default
    (and the run says so); --resume --eval-only needs no width flag; a typed width the checkpoint does not have, or
    another script's checkpoint, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("dcgan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    rc, out, err = run_inprocess("dcgan", ["--data-dir", mnist_root, "--no-download", "--max-iters", 2, "--resume",
                                           ckpt], src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["batch_size=16", "latent_dim=16", "ndf=8", "ngf=8"], out
    rc, out, err = run_inprocess("dcgan", [*base(mnist_root), "--ngf", 16, "--max-iters", 3, "--resume", ckpt], src)
    assert rc == 2 and "ngf=16 as typed (checkpoint: 8)" in out and "does not match" in err, err
    rc, out, err = run_inprocess("dcgan", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 5, "--no-cuda"], src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (5, 1, 32, 32), err
    assert run_inprocess("gan", ["--data-dir", mnist_root, "--no-download", "--hidden-dim", 32, "--maxout-units", 8,
                                 "--batch-size", 16, "--max-iters", 1, "--num-eval-samples", 0], dst)[0] == 0
    rc, out, err = run_inprocess("dcgan", [*base(mnist_root), "--resume", only_run_dir(dst) / "checkpoint.pt"], dst)
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
    rc, out, err = run_inprocess("dcgan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
