"""pix2pix.py: paper-critical pieces, smoke run, determinism, exact resume, eval-only, bad input, torchrun/DDP."""
import hashlib
import os
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch
import torchvision
from helpers import (
    check_bad_input,
    check_smoke,
    load_script,
    losses,
    only_run_dir,
    read_scalars,
    run_inprocess,
    script_path,
)

p2p = load_script("pix2pix")
SMALL = ["--img-size", 32, "--ngf", 4, "--ndf", 4, "--log-interval", 1]
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
    out = p2p.augment(img, torch.arange(3), 8)
    assert out.shape == (3, 6, 8, 8)
    torch.testing.assert_close(out[:, :3], out[:, 3:])  # same crop and flip for input and target
    src = p2p.normalise(img[0, 0])
    windows = [src[y:y + 8, x:x + 8] for y in range(3) for x in range(3)]
    windows += [w.flip(1) for w in windows]
    for k in range(3):
        assert any(torch.equal(out[k, 0], w) for w in windows)
    many = p2p.augment(img[:1].expand(40, 6, 10, 10), torch.zeros(40, dtype=torch.long), 8)
    flipped = (many[:, 0, 0, 0] > many[:, 0, 0, 1]).float().mean()
    assert 0.2 < flipped < 0.8  # random horizontal flip with p = 0.5


def test_epoch_batches_split_the_global_batch_across_ranks():
    single = p2p.EpochBatches(10, 4, seed=3)
    r0, r1 = p2p.EpochBatches(10, 4, 3, rank=0, world=2), p2p.EpochBatches(10, 4, 3, rank=1, world=2)
    for step in range(5):
        a, b = r0.get(step, "cpu"), r1.get(step, "cpu")
        assert len(a) == len(b) == 2 and not set(a.tolist()) & set(b.tolist())
        assert torch.equal(torch.cat([a, b]), single.get(step, "cpu"))
    assert single.per_epoch == 2


def test_test_split_never_enters_training_and_val_feeds_the_grid(tmp_path):
    root = make_ab_dataset(tmp_path / "d", n_train=3, n_test=2, n_val=1)
    args = p2p.Args(dataset="folder", data_dir=str(root), img_size=32, direction="AtoB", num_eval_samples=100)
    train, grid, evals = p2p.load_data(args, 35)
    assert train.shape == (3, 6, 35, 35) and grid.shape == (1, 6, 32, 32) and evals.shape == (2, 6, 32, 32)
    assert train[:, :3].float().mean(dim=(1, 2, 3)).max() < 120  # train A is dark
    assert evals[:, :3].float().mean(dim=(1, 2, 3)).min() > 180 and grid[:, :3].float().mean() > 180
    (root / "val" / "0.jpg").unlink()
    (root / "val").rmdir()
    _, grid, _ = p2p.load_data(args, 35)  # no val/: the grid comes from the test split
    assert grid.shape == (2, 6, 32, 32)


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


# ----------------------------------------------------------------------------- runs
def test_smoke_run_and_lr_schedule_per_epoch(tmp_path, ab_root):
    flags = [*base(ab_root), "--epochs", 2, "--epochs-decay", 1, "--sample-interval", 4]
    run, data, proc = check_smoke("pix2pix", flags, tmp_path, TAGS, artefact="translations.npz", n_eval=10)
    for key in ["inputs", "outputs", "targets"]:
        assert data[key].dtype == np.uint8 and data[key].shape == (2, 3, 32, 32)  # capped at the 2 test images
    assert data["inputs"].mean() < 128 < data["targets"].mean()  # BtoA: input = B = 255 - A, target = A (test A high)
    assert "iter 8/8" in proc.stdout and "ETA" in proc.stdout
    lr = dict(read_scalars(run)["charts/learning_rate"])
    assert lr[3] == pytest.approx(2e-4) and lr[4] == pytest.approx(1e-4) and lr[8] == pytest.approx(0.0)
    grid = torchvision.io.decode_image(str(run / "samples" / "0000004.png"))
    assert grid.shape[1] == 3 * 32 + 4 * 2  # rows: input | output | target
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 8 and ckpt["epoch"] == 2
    p2p.UnetGenerator(32, 4).load_state_dict(ckpt["generator"])
    p2p.PatchDiscriminator(4, 3).load_state_dict(ckpt["discriminator"])


def test_determinism_and_exact_resume_across_an_epoch_boundary(tmp_path, ab_root):
    full, half = tmp_path / "full", tmp_path / "half"
    full.mkdir(), half.mkdir()
    common = [*base(ab_root), "--num-eval-samples", 0, "--epochs", 2, "--epochs-decay", 1]
    assert run_inprocess("pix2pix", [*common, "--max-iters", 6], full)[0] == 0
    assert run_inprocess("pix2pix", [*common, "--max-iters", 3], half)[0] == 0
    run = only_run_dir(half)
    rc, out, err = run_inprocess("pix2pix", [*common, "--max-iters", 6, "--resume", run / "checkpoint.pt"], half)
    assert rc == 0, err
    tags = ("losses/d_loss", "losses/g_loss", "losses/l1_loss", "charts/learning_rate")
    a, b = losses(only_run_dir(full), tags), losses(run, tags)
    assert [s for s, _ in a["losses/d_loss"]] == list(range(1, 7))
    assert a == b  # 3 + resumed 3 == 6 in one go, value for value (augmentation RNG and lr schedule included)
    wa = torch.load(only_run_dir(full) / "checkpoint.pt", weights_only=False)
    wb = torch.load(run / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(wa["generator"][k], wb["generator"][k]) for k in wa["generator"])
    assert wa["scheduler_g"] == wb["scheduler_g"]


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
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--input-dir", "."], "--input-dir"),
    (["--batch-size", 100], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, ab_root, flags, mention):
    check_bad_input("pix2pix", [*base(ab_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("pix2pix", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "facades")
    assert str(tmp_path / "empty" / "facades" / "train") in line and "--data-dir" in line
    line = check_bad_input("pix2pix", ["--dataset", "cityscapes", "--data-dir", tmp_path], tmp_path, 1, "cityscapes")
    assert "cannot be downloaded" in line


def test_failed_download_exits_1_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    line = check_bad_input("pix2pix", ["--data-dir", tmp_path / "data"], tmp_path, 1, "download failed")
    assert "facades" in line and not (tmp_path / "data").exists()


def test_resume_that_does_not_match_exits_2(tmp_path, ab_root):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("pix2pix", [*base(ab_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    flags = [*base(ab_root), "--ngf", 8, "--resume", only_run_dir(src) / "checkpoint.pt"]
    rc, out, err = run_inprocess("pix2pix", flags, dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1


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


def test_torchrun_two_cpu_ranks_end_with_identical_weights(tmp_path, ab_root):
    """DDP on gloo: global batch 2 split 1 + 1; both ranks print a checksum of their generator parameters."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           script_path("pix2pix"), *map(str, base(ab_root)), "--batch-size", "2", "--max-iters", "2",
           "--num-eval-samples", "0"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = dict(re.findall(r"rank (\d): generator sha256 ([0-9a-f]+)", proc.stdout))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], proc.stdout
    run = only_run_dir(tmp_path)  # only rank 0 writes
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    g = p2p.UnetGenerator(32, 4)
    g.load_state_dict(ckpt["generator"])
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in g.parameters())).hexdigest()
    assert digest == sums["0"] and ckpt["iteration"] == 2 and len(ckpt["rng"]) == 2
