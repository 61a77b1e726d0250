"""cyclegan.py: paper-critical pieces, smoke run, determinism, exact resume, eval, DDP, bad input."""
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from helpers import (
    ROOT,
    check_bad_input,
    check_smoke,
    load_script,
    losses,
    only_run_dir,
    read_scalars,
    run_inprocess,
    script_path,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision.io
cyc = load_script("cyclegan")
SMALL = ["--img-size", 32, "--ngf", 4, "--ndf", 4, "--n-blocks", 1, "--pool-size", 2, "--log-interval", 1]
LOSS_TAGS = ("losses/d_loss", "losses/g_loss", "losses/g_gan", "losses/cycle_loss", "losses/identity_loss")


# ----------------------------------------------------------------------------- tiny datasets (written under tmp_path)
def coded_image(value: int, h: int = 40, w: int = 40, seed: int = 0) -> torch.Tensor:
    """A flat grey image at `value` (so that it survives JPEG and resizing) with a little texture."""
    g = torch.Generator().manual_seed(seed)
    return (torch.full((3, h, w), float(value)) + torch.randn(3, h, w, generator=g) * 4).clamp(0, 255).to(torch.uint8)


def write_unaligned(root, counts=(6, 5, 3, 3), train_value=40, test_value=200):
    """trainA/ trainB/ testA/ testB/ JPEGs; test images are bright, training images dark; testA/testB names match."""
    for d, n in zip(["trainA", "trainB", "testA", "testB"], counts, strict=True):
        os.makedirs(root / d, exist_ok=True)
        for i in range(n):
            value = (test_value if d.startswith("test") else train_value) + (8 * i if d.endswith("A") else -8 * i)
            torchvision.io.write_jpeg(coded_image(value, seed=i), str(root / d / f"{i}.jpg"))
    return root


def write_aligned(root, n_train=6, n_test=3):
    """AB layout {train,test}/N.jpg, 80x40: left half A at grey 10 + 20 N, right half B at grey 250 - 20 N."""
    for split, n in [("train", n_train), ("test", n_test)]:
        os.makedirs(root / split, exist_ok=True)
        for i in range(n):
            ab = torch.cat([coded_image(10 + 20 * i, seed=i), coded_image(250 - 20 * i, seed=i + 50)], dim=-1)
            torchvision.io.write_jpeg(ab, str(root / split / f"{i}.jpg"))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """DATA_DIR with facades_cyclegan/ (unpaired layout, as `--dataset facades` expects) and facades/ (AB layout)."""
    root = tmp_path_factory.mktemp("cycdata")
    write_unaligned(root / "facades_cyclegan")
    write_aligned(root / "facades")
    return root


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


# ----------------------------------------------------------------------------- unit tests
def test_image_pool_returns_stored_images_half_the_time_and_never_grows():
    random.seed(0)
    pool = cyc.ImagePool(3)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool.images) == 3  # filling: returned as they are
    stored, n = 0, 4000
    for i in range(n):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        before = torch.cat(pool.images).flatten().tolist()
        out = pool.query(new).item()
        after = torch.cat(pool.images).flatten().tolist()
        assert len(pool.images) == 3
        if out != new.item():  # a stored image came back and the new one took its place
            stored += 1
            assert out in before and new.item() in after and out not in after
        else:
            assert after == before
    assert abs(stored / n - 0.5) < 0.03
    assert torch.equal(cyc.ImagePool(0).query(first), first)  # --pool-size 0: no history


def test_lsgan_losses_are_mean_squared_errors():
    real, fake = torch.tensor([0.2, 1.5, -0.3]), torch.tensor([0.9, -0.1, 0.4])
    torch.testing.assert_close(cyc.lsgan_loss(real, True), ((real - 1) ** 2).mean())
    torch.testing.assert_close(cyc.lsgan_loss(fake, False), (fake ** 2).mean())
    expected = 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())  # halved D loss (Section 4)
    torch.testing.assert_close(cyc.discriminator_loss(real, fake), expected)


def test_cycle_and_identity_losses_match_closed_forms():
    x = torch.zeros(2, 3, 4, 4)
    rec = x + torch.tensor([0.1, -0.3, 0.2]).view(1, 3, 1, 1)  # |error| mean = 0.2
    torch.testing.assert_close(cyc.cycle_loss(rec, x, 10.0), torch.tensor(10.0 * 0.2))  # lambda ||F(G(x)) - x||_1
    torch.testing.assert_close(cyc.identity_loss(rec, x, 10.0, 0.5), torch.tensor(10.0 * 0.5 * 0.2))
    assert cyc.identity_loss(rec, x, 10.0, 0.0).item() == 0.0


def test_resnet_generator_architecture_and_shape():
    g = cyc.ResnetGenerator(ngf=4, n_blocks=2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert sum(isinstance(m, cyc.ResnetBlock) for m in g.modules()) == 2
    assert isinstance(g[0], torch.nn.ReflectionPad2d) and g[0].padding == (3, 3, 3, 3)  # c7s1-64 with reflection
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and not any(m.affine or m.track_running_stats for m in norms)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert isinstance(g[-1], torch.nn.Tanh)
    convs = [m.weight for m in cyc.ResnetGenerator(ngf=32, n_blocks=1).modules() if isinstance(m, torch.nn.Conv2d)]
    assert abs(torch.cat([w.flatten() for w in convs]).std().item() - 0.02) < 0.002  # N(0, 0.02)


def test_reflection_padding_is_3_not_channels():
    """The 7x7 convolutions pad by 3 whatever the channel count: a 1-channel image keeps its size."""
    g = cyc.ResnetGenerator(ngf=4, n_blocks=1, channels=1)
    assert g(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_patchgan_has_70x70_receptive_field():
    d = cyc.NLayerDiscriminator(ndf=4)
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 30, 30)  # the official 70x70 PatchGAN at 256
    for i, m in enumerate(d):  # InstanceNorm mixes all positions; without it each output sees a 70x70 patch
        d[i] = torch.nn.Identity() if isinstance(m, torch.nn.InstanceNorm2d) else m
    d(x)[0, 0, 15, 15].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert isinstance(d[-1], torch.nn.Conv2d) and not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())


def test_linear_decay_schedule_values():
    f = cyc.linear_decay(200, 100)  # 100 epochs at 2e-4, then linearly to zero (official lr_policy linear)
    assert [f(e) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert f(100) == pytest.approx(1 - 1 / 101) and f(149) == pytest.approx(1 - 50 / 101)
    assert f(199) == pytest.approx(1 / 101) and all(f(e) > f(e + 1) for e in range(99, 199))


def test_unaligned_pairing_changes_across_epochs_and_depends_only_on_step():
    b = cyc.UnpairedBatches(6, 5, 1, seed=1)
    assert b.per_epoch == 6  # max(n_a, n_b) positions, as the official dataset length
    epochs = [[tuple(x[0] for x in b.get(e * 6 + i)) for i in range(6)] for e in range(3)]
    for pairs in epochs:
        assert sorted(a for a, _ in pairs) == list(range(6))  # each A once per epoch
        assert set(x for _, x in pairs) == set(range(5))  # every B at least once
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # new random pairing each epoch
    assert cyc.UnpairedBatches(6, 5, 1, seed=1).get(13) == b.get(13)  # the same batch whatever came before
    assert cyc.UnpairedBatches(6, 5, 1, seed=2).get(0) != b.get(0) or cyc.UnpairedBatches(6, 5, 1, 2).get(1) != b.get(1)
    # under torchrun each rank takes a disjoint slice of the same global batch
    full = cyc.UnpairedBatches(6, 5, 2, seed=1).get(4)
    r0, r1 = cyc.UnpairedBatches(6, 5, 2, 1, rank=0, world=2).get(4), cyc.UnpairedBatches(6, 5, 2, 1, 1, 2).get(4)
    assert (r0[0] + r1[0], r0[1] + r1[1]) == full and len(r0[0]) == 1


def test_augment_crops_flips_and_scales():
    data = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).repeat(1, 3, 1, 1)
    torch.manual_seed(0)
    outs = [cyc.augment(data, [0], 4) for _ in range(50)]
    assert all(o.shape == (1, 3, 4, 4) and o.min() >= -1 and o.max() <= 1 for o in outs)
    flipped = [bool((o[0, 0, 0, 0] > o[0, 0, 0, 1]).item()) for o in outs]  # rows increase left to right unflipped
    assert 10 < sum(flipped) < 40 and len({o[0, 0, 0, 0].item() for o in outs}) > 3


def test_test_split_never_enters_training(data_root):
    args = cyc.Args(data_dir=str(data_root), download=False, img_size=32)
    train_a, train_b, test_a, test_b, paired = cyc.load_dataset(args)
    assert train_a.shape == (6, 3, 36, 36) and train_b.shape == (5, 3, 36, 36)  # load size 32 * 286 / 256
    assert test_a.shape == (3, 3, 32, 32) and paired  # test at --img-size; N.jpg in testA and testB match
    assert train_a.float().mean(dim=(1, 2, 3)).max() < 100 and train_b.float().mean(dim=(1, 2, 3)).max() < 100
    assert test_a.float().mean(dim=(1, 2, 3)).min() > 150 and test_b.float().mean(dim=(1, 2, 3)).min() > 150
    b = cyc.UnpairedBatches(len(train_a), len(train_b), 1, seed=1)
    assert all(max(b.get(s)[0]) < 6 and max(b.get(s)[1]) < 5 for s in range(30))  # indices into training tensors only


def test_aligned_mode_keeps_test_pairs_and_breaks_training_pairs(data_root):
    args = cyc.Args(data_dir=str(data_root), download=False, img_size=32, dataset_mode="aligned")
    train_a, train_b, test_a, test_b, paired = cyc.load_dataset(args)
    assert paired and train_a.shape == (6, 3, 36, 36) and test_b.shape == (3, 3, 32, 32)
    ids = lambda t, a: ((t.float().mean(dim=(1, 2, 3)) - (10 if a else 250)) / (20 if a else -20)).round().long()
    assert ids(test_a, True).tolist() == ids(test_b, False).tolist() == [0, 1, 2]  # left half A, right half B, paired
    b = cyc.UnpairedBatches(6, 6, 1, seed=1)
    pairs = [b.get(s) for s in range(6)]
    assert any(a != x for a, x in pairs)  # training shuffles B independently of A


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, data_root):
    flags = [*base(data_root), "--max-iters", 3, "--sample-interval", 2]
    tags = [*LOSS_TAGS[2:], "losses/cycle_loss_a", "losses/cycle_loss_b", "losses/identity_loss_a",
            "losses/identity_loss_b", "losses/g_gan_a", "losses/g_gan_b", "losses/d_loss_a", "charts/learning_rate"]
    run, data, proc = check_smoke("cyclegan", flags, tmp_path, tags, artefact="translations.npz", n_eval=2)
    for d in ("a2b", "b2a"):
        for k in ("inputs", "outputs", "targets", "cycle"):
            assert data[f"{d}_{k}"].dtype == np.uint8 and data[f"{d}_{k}"].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(data["a2b_targets"], data["b2a_inputs"])
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    assert len(list((run / "samples").glob("*.png"))) == 2  # iteration 2 and the final grid
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and len(ckpt["ranks"][0]["pool_a"]) == 2
    cyc.ResnetGenerator(4, 1).load_state_dict(ckpt["g_ab"])
    cyc.NLayerDiscriminator(4).load_state_dict(ckpt["d_b"])


def test_aligned_run_scores_against_ground_truth(tmp_path, data_root):
    flags = [*base(data_root), "--dataset-mode", "aligned", "--max-iters", 2, "--num-eval-samples", 3]
    assert run_inprocess("cyclegan", flags, tmp_path)[0] == 0
    data = np.load(only_run_dir(tmp_path) / "translations.npz")
    assert data["a2b_targets"].shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(data["a2b_targets"], data["b2a_inputs"])


def test_determinism_and_exact_resume_with_pool_and_decay(tmp_path, data_root):
    """6 iterations in one go == 3 + resumed 3: image pools, RNG, optimisers and the LambdaLR all restored."""
    full, half = tmp_path / "full", tmp_path / "half"
    full.mkdir(), half.mkdir()
    common = [*base(data_root), "--batch-size", 2, "--epochs", 3, "--epochs-decay", 2, "--num-eval-samples", 0]
    assert run_inprocess("cyclegan", [*common, "--max-iters", 6], full)[0] == 0
    assert run_inprocess("cyclegan", [*common, "--max-iters", 3], half)[0] == 0
    run = only_run_dir(half)
    rc, out, err = run_inprocess("cyclegan", [*common, "--max-iters", 6, "--resume", run / "checkpoint.pt"], half)
    assert rc == 0, err
    a, b = losses(only_run_dir(full), LOSS_TAGS), losses(run, LOSS_TAGS)
    assert [s for s, _ in a["losses/g_loss"]] == list(range(1, 7))
    assert a == b
    lr = [v for _, v in read_scalars(run)["charts/learning_rate"]]  # 3 iterations per epoch: 1, then 1 - 1/3
    assert lr[:3] == pytest.approx([2e-4] * 3) and lr[3:] == pytest.approx([2e-4 * 2 / 3] * 3)
    wa = torch.load(only_run_dir(full) / "checkpoint.pt", weights_only=False)
    wb = torch.load(run / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(wa[n][k], wb[n][k]) for n in ("g_ab", "g_ba", "d_a", "d_b") for k in wa[n])


def test_eval_only_and_input_dir(tmp_path, data_root):
    assert run_inprocess("cyclegan", [*base(data_root), "--max-iters", 1, "--num-eval-samples", 0], tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    flags = [*base(data_root), "--resume", run / "checkpoint.pt", "--eval-only", "--num-eval-samples", 2]
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 0, err
    assert np.load(run / "translations.npz")["b2a_outputs"].shape == (2, 3, 32, 32)
    inputs = tmp_path / "photos"
    inputs.mkdir()
    torchvision.io.write_png(coded_image(90, 50, 30), str(inputs / "wide.png"))  # any size: resized to --img-size
    torchvision.io.write_jpeg(coded_image(30), str(inputs / "x.jpg"))
    flags = ["--no-download", *SMALL, "--resume", run / "checkpoint.pt", "--eval-only", "--input-dir", inputs,
             "--direction", "BtoA", "--data-dir", tmp_path / "nothing-here"]  # no dataset needed
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 0, err
    written = sorted(p.name for p in (run / "BtoA").iterdir())
    assert written == ["wide.png", "x.png"]
    assert torchvision.io.read_image(str(run / "BtoA" / "wide.png")).shape == (3, 32, 32)
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before  # no training happened


def test_ddp_two_ranks_on_cpu_end_with_identical_generators(tmp_path, data_root):
    flags = [*base(data_root), "--batch-size", 2, "--max-iters", 2, "--num-eval-samples", 2, "--no-cuda"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           script_path("cyclegan"), *map(str, flags)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = dict(re.findall(r"rank (\d) generator checksum (\S+)", proc.stdout))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], proc.stdout
    run = only_run_dir(tmp_path)  # only rank 0 writes
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2 and len(ckpt["ranks"]) == 2  # both ranks' pools and RNG states
    assert (run / "translations.npz").exists()


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--img-size", 30], "--img-size"),
    (["--img-size", 20], "--img-size"),
    (["--epochs-decay", 300], "--epochs-decay"),
    (["--pool-size", -1], "--pool-size"),
    (["--lambda-cycle", -1], "--lambda-cycle"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--input-dir", "."], "--input-dir"),
    (["--dataset-mode", "aligned", "--dataset", "horse2zebra"], "--dataset-mode"),
    (["--batch-size", 64], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, data_root, flags, mention):
    check_bad_input("cyclegan", [*base(data_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("cyclegan", ["--data-dir", tmp_path / "empty", "--no-download", "--dataset", "horse2zebra"],
                           tmp_path, 1, str(tmp_path / "empty" / "horse2zebra" / "trainA"))
    assert "--data-dir" in line and not (tmp_path / "empty").exists()
    check_bad_input("cyclegan", ["--data-dir", tmp_path, "--no-download", "--dataset-mode", "aligned"],
                    tmp_path, 1, str(tmp_path / "facades" / "train"))


def test_resume_that_does_not_match_exits_2(tmp_path, data_root):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("cyclegan", [*base(data_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    rc, out, err = run_inprocess("cyclegan", [*base(data_root), "--ngf", 8, "--resume",
                                              only_run_dir(src) / "checkpoint.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data_root, monkeypatch):
    """Fault injection: L1 turns NaN from its 13th call on (iteration 4; 4 calls per iteration)."""
    real_l1, calls = torch.nn.functional.l1_loss, []

    def l1_then_nan(*a, **k):
        calls.append(1)
        out = real_l1(*a, **k)
        return out * float("nan") if len(calls) >= 13 else out

    monkeypatch.setattr(torch.nn.functional, "l1_loss", l1_then_nan)
    flags = [*base(data_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["g_ab"].values())


def test_script_is_self_contained():
    assert (ROOT / "cyclegan.py").read_text().count("\n") <= 550
