"""pix2pix.py: paper-critical pieces and losses, the ablations of Tables 1-3, learning signal, smoke run, SIGTERM and
exact resume (in memory and streaming), eval files, eval-only, bad input, downloads, torchrun/DDP."""
import hashlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    load_script,
    losses,
    only_run_dir,
    read_scalars,
    read_tags,
    record_download_timeouts,
    run_inprocess,
    scalar_means,
    script_path,
)

p2p = load_script("pix2pix")
SMALL = ["--no-cuda", "--img-size", 32, "--ngf", 4, "--ndf", 4, "--log-interval", 1]
STREAM = ["--in-memory-limit-mb", 0]  # every training set streams from disk
TAGS = ["losses/g_gan", "losses/l1_loss", "charts/learning_rate"]


def write_ab(path, a: np.ndarray, b: np.ndarray):
    """One AB-layout JPEG: A (3, H, W) on the left, B on the right."""
    torchvision.io.write_jpeg(torch.from_numpy(np.concatenate([a, b], 2)), str(path), quality=95)


def make_ab_dataset(root, n_train=4, n_test=2, n_val=0, size=32):
    """Train A lies in [0, 100], val/test A in [200, 255] (so a test image is recognisable); B = 255 - A."""
    rng = np.random.default_rng(0)
    for split, n, (lo, hi) in [("train", n_train, (0, 100)), ("val", n_val, (200, 255)), ("test", n_test, (200, 255))]:
        if n:
            (root / split).mkdir(parents=True)
        for i in range(n):
            a = np.repeat(rng.integers(lo, hi, (1, size // 4, size // 4), dtype=np.uint8), 4, 1).repeat(4, 2)
            a = np.concatenate([a, np.flip(a, 1), a]).copy()
            write_ab(root / split / f"{i}.jpg", a, 255 - a)
    return root


@pytest.fixture(scope="module")
def ab_root(tmp_path_factory):
    return make_ab_dataset(tmp_path_factory.mktemp("ab"))


def base(root):
    return ["--dataset", "folder", "--data-dir", root, "--no-download", *SMALL]


# ----------------------------------------------------------------------------- unit tests
def test_patchgan_is_30x30_map_of_70px_receptive_fields():
    d = p2p.PatchDiscriminator(ndf=4, n_layers=3)
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    rf = 1
    for conv in reversed([m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]):
        rf = (rf - 1) * conv.stride[0] + conv.kernel_size[0]
    assert rf == 70
    assert d.model[0].in_channels == 6  # conditioned: input and output images concatenated
    assert not isinstance(d.model[1], torch.nn.BatchNorm2d) and isinstance(d.model[-1], torch.nn.Conv2d)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_unet_output_shape_equals_input_shape(size):
    g = p2p.UnetGenerator(size, ngf=2)
    x = torch.rand(1, 3, size, size) * 2 - 1
    y = g(x)  # train mode, batch 1 (the paper's setting): the 1x1 bottleneck has no BatchNorm
    assert y.shape == x.shape and y.abs().max() <= 1
    assert sum(isinstance(m, p2p.UnetBlock) for m in g.modules()) == int(np.log2(size))


def test_dropout_only_in_the_three_innermost_decoder_blocks():
    g = p2p.UnetGenerator(256, ngf=2)
    levels, block = [], g.model
    while isinstance(block, p2p.UnetBlock):
        levels.append(block)
        block = block.inner
    assert len(levels) == 8  # unet_256
    has_dropout = [any(isinstance(m, torch.nn.Dropout) for m in lv.up) for lv in levels]
    assert has_dropout == [False] * 5 + [True] * 3
    assert all(m.p == 0.5 for m in g.modules() if isinstance(m, torch.nn.Dropout))
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 3
    assert not any(isinstance(m, torch.nn.Dropout) for lv in levels for m in lv.down)  # no dropout in the encoder


def test_lr_schedule_constant_then_linear_to_zero():
    lam = p2p.lr_lambda(200, 100)
    assert [lam(e) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lam(100) == pytest.approx(1 - 1 / 101) and lam(150) == pytest.approx(1 - 51 / 101)
    assert lam(200) == pytest.approx(0.0)
    diffs = np.diff([lam(e) for e in range(100, 201)])
    assert np.allclose(diffs, -1 / 101)  # linear decay
    assert p2p.lr_lambda(5, 0)(4) == 1.0  # no decay epochs: constant


def test_ab_split_and_direction(tmp_path):
    a = np.zeros((3, 16, 16), np.uint8)
    a[0] = 250  # A: red
    b = np.zeros((3, 16, 16), np.uint8)
    b[2] = 250  # B: blue
    write_ab(tmp_path / "x.jpg", a, b)
    atob = p2p.read_ab(str(tmp_path / "x.jpg"), 8, "AtoB").float()
    btoa = p2p.read_ab(str(tmp_path / "x.jpg"), 8, "BtoA").float()
    assert atob.shape == (6, 8, 8)
    assert atob[0].mean() > 200 and atob[2].mean() < 50 and atob[5].mean() > 200 and atob[3].mean() < 50
    torch.testing.assert_close(btoa, torch.cat([atob[3:], atob[:3]]))


def test_augment_crops_and_flips_input_and_target_together():
    torch.manual_seed(0)
    img = torch.arange(10 * 10, dtype=torch.uint8).view(1, 1, 10, 10).expand(3, 6, 10, 10).contiguous()
    out = p2p.augment(img, 8)
    assert out.shape == (3, 6, 8, 8)
    torch.testing.assert_close(out[:, :3], out[:, 3:])  # same crop and flip for input and target
    src = p2p.normalise(img[0, 0])
    windows = [src[y:y + 8, x:x + 8] for y in range(3) for x in range(3)]
    windows += [w.flip(1) for w in windows]
    for k in range(3):
        assert any(torch.equal(out[k, 0], w) for w in windows)
    many = p2p.augment(img[:1].expand(40, 6, 10, 10), 8)
    flipped = (many[:, 0, 0, 0] > many[:, 0, 0, 1]).float().mean()
    assert 0.2 < flipped < 0.8  # random horizontal flip with p = 0.5


def take(batches, k: int) -> list:
    return [next(batches).tolist() for _ in range(k)]


def test_index_batches_split_the_global_batch_and_restart_anywhere():
    single = take(p2p.index_batches(10, 4, seed=3), 7)
    r0, r1 = (take(p2p.index_batches(10, 4, 3, rank=rank, world=2), 7) for rank in (0, 1))
    for a, b, s in zip(r0, r1, single, strict=True):
        assert len(a) == len(b) == 2 and not set(a) & set(b) and a + b == s
    assert single[0:2] != single[2:4]  # each epoch its own permutation
    assert all(len(set(single[e] + single[e + 1])) == 8 for e in (0, 2, 4))  # 2 batches per epoch, no repeats
    for start in (1, 2, 5):  # a resumed run draws exactly the batches the uninterrupted one drew from there on
        assert take(p2p.index_batches(10, 4, 3, start=start), 7 - start) == single[start:]


def test_test_split_never_enters_training_and_val_feeds_the_grid(tmp_path):
    root = make_ab_dataset(tmp_path / "d", n_train=3, n_test=2, n_val=1)
    args = p2p.Args(dataset="folder", data_dir=str(root), img_size=32, direction="AtoB", num_eval_samples=100)
    train, grid, evals = p2p.find_data(args)
    assert [len(train), len(grid), len(evals)] == [3, 1, 2]
    assert {os.path.basename(os.path.dirname(p)) for p in train} == {"train"}
    assert os.path.dirname(grid[0]).endswith("val") and {os.path.dirname(p)[-4:] for p in evals} == {"test"}
    pairs = p2p.read_pairs(train, 35, "AtoB")
    assert pairs.shape == (3, 6, 35, 35) and pairs[:, :3].float().mean(dim=(1, 2, 3)).max() < 120  # train A is dark
    (root / "val" / "0.jpg").unlink()
    (root / "val").rmdir()
    assert p2p.find_data(args)[1] == evals  # no val/: the grid comes from the test split


def test_test_mode_has_no_side_effects_and_keeps_dropout():
    g = p2p.UnetGenerator(32, ngf=4)
    g(torch.randn(2, 3, 32, 32))  # move the running statistics away from their init
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    rng = torch.get_rng_state()
    with p2p.test_mode(g, True, True, 5, torch.device("cpu")):
        y1 = p2p.translate(g, x, 1)
    with p2p.test_mode(g, True, True, 5, torch.device("cpu")):
        y2 = p2p.translate(g, x, 1)
    with p2p.test_mode(g, True, True, 6, torch.device("cpu")):
        y3 = p2p.translate(g, x, 1)
    with p2p.test_mode(g, False, False, 6, torch.device("cpu")):
        assert not any(m.training for m in g.modules() if isinstance(m, (torch.nn.Dropout, torch.nn.BatchNorm2d)))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)  # seeded; dropout active at test time (Section 3.3)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and g.training


def test_discriminator_loss_is_half_the_two_bce_terms():
    real, fake = torch.tensor([[2.0, -1.0], [0.5, 0.0]]), torch.tensor([[-3.0, 1.0], [0.0, 2.0]])
    expected = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())  # -log sigmoid(r), -log(1 - sigmoid(f))
    torch.testing.assert_close(p2p.discriminator_loss(real, fake), expected)
    zeros = torch.zeros(1, 1, 30, 30)  # D undecided: each term is log 2, and the halved sum is log 2, not 2 log 2
    assert p2p.discriminator_loss(zeros, zeros).item() == pytest.approx(np.log(2))
    assert p2p.discriminator_loss(real + 5, fake - 5) < p2p.discriminator_loss(real, fake)  # D right: lower loss


def test_generator_loss_is_non_saturating_gan_term_plus_lambda_l1():
    logits = torch.tensor([[1.0, -2.0, 0.5]])
    fake, target = torch.full((1, 3, 2, 2), 0.25), torch.full((1, 3, 2, 2), -0.25)
    total, gan, l1 = p2p.generator_loss(logits, fake, target, 100.0)
    torch.testing.assert_close(gan, F.softplus(-logits).mean())  # -log D(x, G(x))
    assert l1.item() == pytest.approx(0.5) and total.item() == pytest.approx(gan.item() + 100 * 0.5)
    assert p2p.generator_loss(logits, fake, target, 0.0)[0].item() == pytest.approx(gan.item())


@pytest.mark.parametrize("lambda_l1", [0.0, 100.0])
def test_generator_step_lowers_its_loss_against_the_d_it_saw(lambda_l1):
    """lambda 0: the adversarial term alone; lambda 100: the paper's total. D is frozen and in train mode (batch
    statistics), as in the loop's G step, with PyTorch's default init (the official one starts D at 1/2 everywhere)."""
    torch.manual_seed(0)
    g, d = p2p.UnetGenerator(32, ngf=4).apply(p2p.init_weights), p2p.PatchDiscriminator(8, 3).requires_grad_(False)
    g.eval()  # no dropout and fixed BatchNorm statistics in G: one deterministic objective
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1

    def loss():
        return p2p.generator_loss(d(torch.cat([x, g(x)], 1)), g(x), y, lambda_l1)[0]

    before = loss().item()
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(10):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before - 2e-3, (before, loss().item())


# ----------------------------------------------------------------------------- Tables 1-3: the ablation flags
@pytest.mark.parametrize("n_layers, pixel, size, rf", [(3, True, 32, 1), (1, False, 128, 16), (3, False, 128, 70),
                                                       (5, False, 320, 286)])
def test_table3_receptive_fields_from_pixelgan_to_imagegan(n_layers, pixel, size, rf):
    """Table 3 / Section 4.4: --netd pixel sees 1x1, --n-layers-d 1 16x16, 3 70x70, 5 286x286 (the official Lua
    defineD_n_layers' comments): measured as the input pixels that move one central logit (eval mode: BatchNorm's
    running statistics, so that no batch statistic spreads the gradient over the whole image)."""
    torch.manual_seed(0)
    d = p2p.PatchDiscriminator(ndf=2, n_layers=n_layers, pixel=pixel).double().eval()
    x = torch.randn(1, 6, size, size, dtype=torch.float64, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    for dims in [(0, 1, 3), (0, 1, 2)]:  # rows, then columns
        seen = x.grad.abs().sum(dim=dims).nonzero()
        assert seen.max() - seen.min() + 1 == rf == len(seen), (seen.min(), seen.max())
    if pixel:  # C64-C128 of 1x1 convolutions, one logit per pixel (Section 6.1.2)
        convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
        assert out.shape == (1, 1, size, size) and len(convs) == 3
        assert convs[-1].bias is None  # the official PixelDiscriminator: bias=use_bias, False with BatchNorm


def test_table2_encoder_decoder_is_the_unet_with_its_skips_severed():
    """Section 4.3: the same layers, each decoder layer fed only by the one below it; so everything passes the 1x1
    bottleneck: with the bottleneck's convolution zeroed, the encoder-decoder's output no longer depends on the image,
    while the U-Net's still does through its skips. (Eval mode: no dropout, fixed BatchNorm statistics.)"""
    unet, enc_dec = p2p.UnetGenerator(32, ngf=4), p2p.UnetGenerator(32, ngf=4, skips=False)
    assert list(unet.state_dict()) == list(enc_dec.state_dict())
    for g, factor in [(unet, 2), (enc_dec, 1)]:
        ups = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]  # innermost first
        assert [m.in_channels for m in ups[1:]] == [factor * m.out_channels for m in ups[:-1]]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for g, depends_on_x in [(unet, True), (enc_dec, False)]:
        innermost = [m for m in g.modules() if isinstance(m, p2p.UnetBlock)][-1]
        g.eval()
        with torch.no_grad():
            innermost.down[1].weight.zero_()  # (LeakyReLU, Conv): the 1x1 bottleneck is 0 for every image
            y = g(x)
        assert bool((y[0] - y[1]).abs().max() > 1e-6) == depends_on_x


@pytest.mark.parametrize("objective, d_in", [("l1", 3), ("gan", 3), ("cgan", 6), ("l1+gan", 3)])
def test_table1_objectives_choose_the_terms_of_eq4_and_what_d_sees(tmp_path, ab_root, objective, d_in):
    """Section 4.2: g_loss = GAN term + lambda L1 with lambda 100 where L1 is on and 0 where not; gan: D sees the
    output alone (3 input channels, Eq. 2), cgan: input and output (Eq. 1); l1: D is never run nor updated (no Adam
    state, no batch in its BatchNorm statistics, no lr step at the epoch's end), the GAN term and D's tags are 0."""
    flags = [*base(ab_root), "--objective", objective, "--max-iters", 4, "--num-eval-samples", 0]  # 4: one epoch
    rc, out, err = run_inprocess("pix2pix", flags, tmp_path)
    assert rc == 0, err[-2000:]
    run = only_run_dir(tmp_path)
    logged = {tag: np.array([v for _, v in values]) for tag, values in read_scalars(run).items()}
    lam = 100.0 if "l1" in objective else 0.0
    np.testing.assert_allclose(logged["losses/g_loss"], logged["losses/g_gan"] + lam * logged["losses/l1_loss"],
                               rtol=1e-5)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["discriminator"]["model.0.weight"].shape[1] == d_in
    trained = bool(ckpt["optimizer_d"]["state"]), int(ckpt["discriminator"]["model.3.num_batches_tracked"]) > 0
    assert trained == ((objective != "l1"),) * 2
    assert (ckpt["scheduler_g"]["last_epoch"], ckpt["scheduler_d"]["last_epoch"]) == (1, int(objective != "l1"))
    d_tags = ["losses/g_gan", "losses/d_loss", "charts/d_real", "charts/d_fake"]
    assert all((logged[t] == 0).all() == (objective == "l1") for t in d_tags), {t: logged[t] for t in d_tags}


def test_generator_and_netd_flags_build_the_networks_and_resume_without_retyping(tmp_path, ab_root):
    """--generator encoder-decoder and --netd pixel: the checkpoint's networks load strictly into the encoder-decoder
    and the PixelGAN (not into the defaults); --n-layers-d means nothing to the PixelGAN (4 would not fit 32 px); a
    --resume without the flags takes them from the checkpoint."""
    flags = [*base(ab_root), "--num-eval-samples", 0, "--generator", "encoder-decoder", "--netd", "pixel",
             "--n-layers-d", 4]
    rc, out, err = run_inprocess("pix2pix", [*flags, "--max-iters", 2], tmp_path)
    assert rc == 0, err[-2000:]
    ckpt_path = only_run_dir(tmp_path) / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    p2p.UnetGenerator(32, 4, skips=False).load_state_dict(ckpt["generator"])
    p2p.PatchDiscriminator(4, pixel=True).load_state_dict(ckpt["discriminator"])
    with pytest.raises(RuntimeError):  # the U-Net's decoder takes twice the channels
        p2p.UnetGenerator(32, 4).load_state_dict(ckpt["generator"])
    with pytest.raises(RuntimeError):  # the PatchGAN's 4x4 kernels
        p2p.PatchDiscriminator(4).load_state_dict(ckpt["discriminator"])
    rc, out, err = run_inprocess("pix2pix", [*base(ab_root), "--max-iters", 3, "--resume", ckpt_path], tmp_path)
    assert rc == 0 and "generator='encoder-decoder'" in out and "netd='pixel'" in out, err[-2000:]
    assert torch.load(ckpt_path, weights_only=False)["iteration"] == 3


# ----------------------------------------------------------------------------- runs
def test_smoke_run_and_lr_schedule_per_epoch(tmp_path, ab_root):
    """check_smoke's checks, in-process (the SIGTERM and torchrun tests run the script as a real process)."""
    flags = [*base(ab_root), "--epochs", 2, "--epochs-decay", 1, "--sample-interval", 4, "--num-eval-samples", 10]
    rc, out, err = run_inprocess("pix2pix", flags, tmp_path)
    assert rc == 0, err[-3000:]
    run = only_run_dir(tmp_path)
    tags = read_tags(run)
    for tag in ["losses/d_loss", "losses/g_loss", "charts/d_real", "charts/d_fake", "charts/SPS", *TAGS]:
        assert tag in tags["scalars"], tag
    assert "samples" in tags["images"] and "hyperparameters/text_summary" in tags["tensors"]
    assert (run / "checkpoint.pt").exists() and not list(run.glob("*.tmp"))
    data = np.load(run / "translations.npz")
    for key in ["inputs", "outputs", "targets"]:
        assert data[key].dtype == np.uint8 and data[key].shape == (2, 3, 32, 32)  # capped at the 2 test images
    assert data["inputs"].mean() < 128 < data["targets"].mean()  # BtoA: input = B = 255 - A, target = A (test A high)
    assert out.startswith(f"pix2pix.py: cpu, run folder runs/{run.name}, iterations 0 -> 8\n")
    assert "iter 8/8" in out and "ETA" in out and "writing the final sample grid" in out
    assert any(v != int(v) for _, v in read_scalars(run)["charts/SPS"])  # a float, not truncated by int()
    lr = dict(read_scalars(run)["charts/learning_rate"])
    assert lr[4] == pytest.approx(2e-4) and lr[5] == pytest.approx(1e-4) and lr[8] == pytest.approx(1e-4)  # as used
    grid = torchvision.io.decode_image(str(run / "samples" / "0000004.png"))
    assert grid.shape[1] == 3 * 32 + 4 * 2  # rows: input | output | target
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 8 and ckpt["epoch"] == 2
    p2p.UnetGenerator(32, 4).load_state_dict(ckpt["generator"])
    p2p.PatchDiscriminator(4, 3).load_state_dict(ckpt["discriminator"])


def test_sigterm_checkpoint_resumes_exactly_while_streaming(tmp_path, ab_root, monkeypatch):
    """Streaming from disk (threshold 0, one persistent worker), batch 2 (2 batches per epoch, so the 2 resumed
    iterations cross an epoch boundary) and an lr that decays every epoch: SIGTERM, then --resume continues exactly."""
    flags = [*base(ab_root), *STREAM, "--num-workers", 1, "--batch-size", 2, "--epochs-decay", 199]
    tags = ("losses/d_loss", "losses/g_loss", "losses/l1_loss", "charts/learning_rate")
    stopped_at, run = check_sigterm_and_exact_resume("pix2pix", flags, tmp_path, monkeypatch, tags=tags)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == (stopped_at + 2) // 2


def test_streaming_feeds_the_same_pairs_as_the_tensor_on_the_device(tmp_path, ab_root):
    """Below and above --in-memory-limit-mb the data order and the crops are the same: identical runs."""
    runs = []
    for name, extra in [("memory", []), ("stream", [*STREAM, "--num-workers", 0])]:
        cwd = tmp_path / name
        cwd.mkdir()
        flags = [*base(ab_root), *extra, "--max-iters", 5, "--num-eval-samples", 0]
        rc, out, err = run_inprocess("pix2pix", flags, cwd)
        assert rc == 0, err[-2000:]
        runs.append(losses(only_run_dir(cwd), ("losses/d_loss", "losses/l1_loss")))
    assert runs[0] == runs[1]


def test_learning_signal_d_separates_real_from_fake_and_l1_falls(tmp_path, ab_root):
    """Guards the loop's call sites: after 40 updates at the paper's lr D scores real pairs above G's (measured: by
    0.74) and the L1 term has fallen (by 20%). With real and fake swapped in discriminator_loss's call, D(real) <
    D(fake) (measured: by 0.79) and this fails."""
    flags = [*base(ab_root), "--ngf", 8, "--ndf", 8, "--max-iters", 40, "--num-eval-samples", 0]
    assert run_inprocess("pix2pix", flags, tmp_path)[0] == 0
    l1 = [v for _, v in read_scalars(only_run_dir(tmp_path))["losses/l1_loss"]]
    m = scalar_means(only_run_dir(tmp_path), ["charts/d_real", "charts/d_fake"], last=5)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.3, m
    assert np.mean(l1[-5:]) < 0.9 * np.mean(l1[:5]), l1
    # D's verdict apart from the logged charts (which come from the same variables as D's loss, so a swap at D's
    # forward passes would swap them too): the checkpoint's G and D, built as the script builds them and in training
    # mode as in training, on the training pairs (the 2 test pairs are unlike anything 4 training pairs taught D):
    # (input, target) against (input, G(input)). Measured: 0.89 against 0.13.
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    args = p2p.Args(**ckpt["args"])
    g, d = p2p.UnetGenerator(args.img_size, args.ngf), p2p.PatchDiscriminator(args.ndf, args.n_layers_d)
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])
    files = sorted((ab_root / "train").iterdir())
    pairs = torch.stack([p2p.read_ab(str(f), args.img_size, args.direction) for f in files])
    a, b = (pairs.float() / 127.5 - 1).split(3, dim=1)
    with torch.no_grad():
        on_real, on_fake = (torch.sigmoid(d(torch.cat([a, target], 1))).mean().item() for target in (b, g(a)))
    assert on_real - on_fake > 0.3, (on_real, on_fake)


def test_eval_interval_writes_translations_and_leaves_training_unchanged(tmp_path, ab_root):
    files = check_eval_interval("pix2pix", base(ab_root), tmp_path)
    for key in ("inputs", "outputs", "targets"):  # the 2 test images (first min(50, n))
        assert files[0][key].shape == (2, 3, 32, 32) and files[0][key].dtype == np.uint8
    assert np.array_equal(files[0]["inputs"], files[1]["inputs"]) and not np.array_equal(files[0]["outputs"],
                                                                                            files[1]["outputs"])


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, ab_root):
    check_corrupt_resume("pix2pix", base(ab_root), tmp_path)


def test_eval_only_and_input_dir(tmp_path, ab_root):
    assert run_inprocess("pix2pix", [*base(ab_root), "--max-iters", 2, "--num-eval-samples", 0], tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    ckpt = run / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    rc, out, err = run_inprocess("pix2pix", [*base(ab_root), "--resume", ckpt, "--eval-only"], tmp_path)
    assert rc == 0, err
    assert np.load(run / "translations.npz")["outputs"].shape == (2, 3, 32, 32)
    folder = tmp_path / "in"
    folder.mkdir()
    torchvision.io.write_png(torch.randint(0, 256, (3, 30, 45), dtype=torch.uint8), str(folder / "a.png"))
    torchvision.io.write_jpeg(torch.randint(0, 256, (3, 64, 20), dtype=torch.uint8), str(folder / "b.jpg"))
    flags = ["--resume", ckpt, "--eval-only", "--input-dir", folder, *SMALL]  # no dataset needed
    rc, out, err = run_inprocess("pix2pix", flags, tmp_path)
    assert rc == 0, err
    for name in ["a", "b"]:
        assert torchvision.io.decode_image(str(run / "translated" / f"{name}.png")).shape == (3, 32, 32)
    assert ckpt.stat().st_mtime_ns == before  # no training happened


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--img-size", 48], "--img-size"),
    (["--img-size", 16], "--img-size"),
    (["--n-layers-d", 4], "--n-layers-d"),
    (["--epochs-decay", 300], "--epochs-decay"),
    (["--lambda-l1", -1], "--lambda-l1"),
    (["--objective", "l1", "--lambda-l1", 0], "--lambda-l1"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--input-dir", "."], "--input-dir"),
    (["--batch-size", 100], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, ab_root, flags, mention):
    check_bad_input("pix2pix", [*base(ab_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    flags = ["--no-cuda", "--data-dir", tmp_path / "empty", "--no-download"]
    line = check_bad_input("pix2pix", flags, tmp_path, 1, "facades")
    assert str(tmp_path / "empty" / "facades" / "train") in line and "--data-dir" in line
    flags = ["--no-cuda", "--dataset", "cityscapes", "--data-dir", tmp_path]
    line = check_bad_input("pix2pix", flags, tmp_path, 1, "cityscapes")
    assert "cannot be downloaded" in line


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("pix2pix", SMALL, tmp_path, monkeypatch)


def test_download_reads_the_mirror_with_a_timeout(tmp_path, ab_root, monkeypatch):
    """A stalled mirror cannot hang the run (the image-to-image data block's download, shared with CycleGAN): the
    archive is read by urlopen with a 60 s timeout, never by urlretrieve (which has none), and lands in
    DATA_DIR/facades in one rename."""
    (tmp_path / "mirror").mkdir()
    with tarfile.open(tmp_path / "mirror" / "facades.tar.gz", "w:gz") as tar:
        tar.add(ab_root, arcname="facades")
    timeouts = record_download_timeouts(monkeypatch)
    args = p2p.Args(data_dir=str(tmp_path / "data"), mirror=(tmp_path / "mirror").as_uri())
    train, grid, test = p2p.find_data(args)
    assert timeouts == [60] and sorted(os.listdir(tmp_path / "data")) == ["facades"] and train and test


def test_resume_builds_the_checkpoints_networks_and_refuses_a_corrupted_one(tmp_path, ab_root):
    """The networks come from the args saved in the checkpoint where the command line leaves them at their default
    (and the run says so); --resume --eval-only needs no model flag (only where the data is); a typed width the
    checkpoint does not have, or a checkpoint whose generator holds D's weights, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("pix2pix", [*base(ab_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    flags = ["--data-dir", ab_root, "--no-download", "--no-cuda", "--max-iters", 2, "--resume", ckpt]
    rc, out, err = run_inprocess("pix2pix", flags, src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["dataset='folder'", "img_size=32", "ndf=4", "ngf=4"], out
    rc, out, err = run_inprocess("pix2pix", [*base(ab_root), "--ngf", 8, "--max-iters", 3, "--resume", ckpt], src)
    assert rc == 2 and "ngf=8 as typed (checkpoint: 4)" in out and "does not match" in err, err
    assert len(err.strip().splitlines()) == 1, err
    flags = ["--resume", ckpt, "--eval-only", "--data-dir", ab_root, "--no-cuda", "--num-eval-samples", 1]
    rc, out, err = run_inprocess("pix2pix", flags, src)
    assert rc == 0 and np.load(only_run_dir(src) / "translations.npz")["outputs"].shape == (1, 3, 32, 32), err
    state = torch.load(ckpt, weights_only=False)
    torch.save({**state, "generator": state["discriminator"]}, dst / "corrupted.pt")
    rc, out, err = run_inprocess("pix2pix", [*base(ab_root), "--resume", dst / "corrupted.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, ab_root, monkeypatch):
    """Fault injection: the BCE loss turns NaN from its 10th call on (iteration 4; 3 calls per iteration)."""
    real_bce, calls = torch.nn.functional.binary_cross_entropy_with_logits, []

    def bce_then_nan(*a, **k):
        calls.append(1)
        out = real_bce(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", bce_then_nan)
    flags = [*base(ab_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("pix2pix", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 240) -> str:
    """Read the child's stdout until a line holds `needle` and return what was read; fails if it never comes."""
    sel, deadline, seen = selectors.DefaultSelector(), time.time() + timeout, []
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.time() < deadline and proc.poll() is None:
        if sel.select(timeout=1):
            seen.append(proc.stdout.readline())
            if needle in seen[-1]:
                return "".join(seen)
    proc.kill()
    raise AssertionError(f"never printed {needle!r}: {''.join(seen)[-2000:]} {proc.stderr.read()[-2000:]}")


def test_torchrun_two_cpu_ranks_download_once_and_stop_together_on_sigterm(tmp_path):
    """Two gloo ranks, --download from a local mirror holding the official archive layout: rank 0 alone fetches and
    unpacks (atomically), rank 1 waits; one intact copy, no temporary folder. Then DDP with the global batch 2 split
    1 + 1 until SIGTERM reaches torchrun, which passes it on: both ranks stop at the same iteration, and rank 0 writes
    the checkpoint, whose weights are those it printed the checksum of."""
    src = make_ab_dataset(tmp_path / "src" / "facades")
    (tmp_path / "mirror").mkdir()
    with tarfile.open(tmp_path / "mirror" / "facades.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="facades")
    data = tmp_path / "data"
    flags = ["--download", "--mirror", (tmp_path / "mirror").as_uri(), "--data-dir", data, *SMALL, "--batch-size", 2,
             "--max-iters", 100000, "--checkpoint-interval", 100000, "--num-eval-samples", 0]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           script_path("pix2pix"), *map(str, flags)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        head = wait_for_line(proc, "iter ")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        out = head + out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.count("downloading ") == 1 and os.listdir(data) == ["facades"], (out, os.listdir(data))
    for split in ("train", "test"):
        names = sorted(os.listdir(src / split))
        assert sorted(os.listdir(data / "facades" / split)) == names
        assert all((data / "facades" / split / n).read_bytes() == (src / split / n).read_bytes() for n in names)
    # Run.close() prints each rank's checksum of its networks' parameters: equal on both ranks (gradients averaged),
    # at the same stop iteration, and rank 0's is that of the checkpoint it wrote. (BatchNorm running statistics are
    # each rank's own: DDP with broadcast_buffers=False.)
    sums = {rank: tuple(v) for rank, *v in re.findall(r"rank (\d): iteration (\d+), weights sha256 (\w+)", out)}
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], (out, err[-3000:])  # every rank: the same weights
    assert err.count("stopped by SIGTERM: checkpoint in") == 1, err[-3000:]  # rank 0 says it
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)  # only rank 0 writes
    g, d = p2p.UnetGenerator(32, 4), p2p.PatchDiscriminator(4, 3)
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for net in (g, d) for p in net.parameters()))
    assert sums["0"] == (str(ckpt["iteration"]), digest.hexdigest()), (sums, ckpt["iteration"])
    assert len(ckpt["ranks"]) == 2
