"""cyclegan.py: the paper's pieces in closed form, learning signal, streaming data, exact resume after SIGTERM, one
download under torchrun with identical weights on every rank, eval-interval translations, --input-dir, bad input."""
import hashlib
import os
import random
import re
import signal
import zipfile
from pathlib import Path

import helpers
import numpy as np
import pytest
import torch
import torchvision
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    join_ranks,
    load_script,
    losses,
    only_run_dir,
    read_scalars,
    read_tags,
    record_download_timeouts,
    run_inprocess,
    scalar_means,
    start_ranks,
)

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision.io
cyc = load_script("cyclegan")
SMALL = ["--img-size", 32, "--ngf", 4, "--ndf", 4, "--n-blocks", 1, "--pool-size", 2, "--log-interval", 1, "--no-cuda"]
LOSS_TAGS = ("losses/d_loss", "losses/g_loss", "losses/g_gan", "losses/cycle_loss", "losses/identity_loss")
NETS = ("g_ab", "g_ba", "d_a", "d_b")


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
    pool = []
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(cyc.image_pool(pool, first, 3), first) and len(pool) == 3  # filling: returned as they are
    stored, n = 0, 4000
    for i in range(n):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        before = torch.cat(pool).flatten().tolist()
        out = cyc.image_pool(pool, new, 3).item()
        after = torch.cat(pool).flatten().tolist()
        assert len(pool) == 3
        if out != new.item():  # a stored image came back and the new one took its place
            stored += 1
            assert out in before and new.item() in after and out not in after
        else:
            assert after == before
    assert abs(stored / n - 0.5) < 0.03
    history = []
    out = cyc.image_pool(history, first.clone().requires_grad_(True), 0)
    assert torch.equal(out, first) and not out.requires_grad and history == []  # --pool-size 0: no history, detached


def test_adversarial_targets_real_1_fake_0_in_closed_form():
    real, fake = torch.tensor([0.2, 1.5, -0.3]), torch.tensor([0.9, -0.1, 0.4])
    torch.testing.assert_close(cyc.generator_loss(fake), ((fake - 1) ** 2).mean())  # G wants fakes scored 1
    expected = 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())  # halved D loss (Section 4)
    torch.testing.assert_close(cyc.discriminator_loss(real, fake), expected)
    ones, zeros = torch.ones(5), torch.zeros(5)
    assert cyc.discriminator_loss(ones, zeros).item() == 0.0 and cyc.discriminator_loss(zeros, ones).item() == 1.0
    assert cyc.generator_loss(ones).item() == 0.0 and cyc.generator_loss(zeros).item() == 1.0


def test_cycle_and_identity_losses_match_the_official_scaling():
    """Official backward_G: loss_idt = L1(G_A(real_B), real_B) * lambda_B * lambda_identity; cycle = L1 * lambda_A."""
    x = torch.zeros(2, 3, 4, 4)
    rec = x + torch.tensor([0.1, -0.3, 0.2]).view(1, 3, 1, 1)  # |error| mean = 0.2
    torch.testing.assert_close(cyc.cycle_loss(rec, x, 10.0), torch.tensor(10.0 * 0.2))  # lambda ||F(G(x)) - x||_1
    torch.testing.assert_close(cyc.identity_loss(rec, x, 10.0, 0.5), torch.tensor(10.0 * 0.5 * 0.2))
    torch.testing.assert_close(cyc.identity_loss(rec, x, 4.0, 0.1), torch.tensor(4.0 * 0.1 * 0.2))
    assert cyc.identity_loss(rec, x, 10.0, 0.0).item() == 0.0


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = cyc.ResnetGenerator(4, 1), cyc.NLayerDiscriminator(4)
    opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    before = cyc.generator_loss(d(g(a))).item()
    for _ in range(5):
        opt.zero_grad()
        cyc.generator_loss(d(g(a))).backward()
        opt.step()
    assert cyc.generator_loss(d(g(a))).item() < before - 1e-3


@pytest.mark.parametrize("p", [1, 3])
def test_deterministic_reflection_pad_equals_f_pad_in_values_and_gradients(p):
    """The slice-and-flip padding used under deterministic algorithms (on CUDA, ReflectionPad2d's backward has no
    deterministic kernel) gives F.pad(mode="reflect")'s values and gradients; checked here on the CPU."""
    was = torch.are_deterministic_algorithms_enabled()
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 3, 7 + 2 * p, 9 + 2 * p, dtype=torch.float64)
    ref = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    (ref_grad,) = torch.autograd.grad(ref, x, up)
    try:
        for deterministic in (True, False):
            torch.use_deterministic_algorithms(deterministic)
            out = cyc.ReflectionPad2d(p)(x)
            (grad,) = torch.autograd.grad(out, x, up)
            assert torch.equal(out, ref)
            torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)
    finally:
        torch.use_deterministic_algorithms(was)


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


def take(batches, k: int) -> list:
    return [next(batches).tolist() for _ in range(k)]


def test_two_streams_pair_anew_each_epoch_and_depend_only_on_the_step():
    """A and B: index_batches' streams 0 and 1, epochs of max(n_a, n_b) = 6 positions (official), each its own
    permutation seeded (seed * 100_003 + epoch) * 2 + domain, as the golden losses were pinned with."""
    batches = take(cyc.index_batches(6, 1, 1, length=6, streams=2, stream=0), 18)
    b_side = take(cyc.index_batches(5, 1, 1, length=6, streams=2, stream=1), 18)
    for e in range(3):
        assert sorted(b[0] for b in batches[6 * e:6 * e + 6]) == list(range(6))  # each A once per epoch
        assert set(b[0] for b in b_side[6 * e:6 * e + 6]) == set(range(5))  # every B at least once
        g = torch.Generator().manual_seed((1 * 100_003 + e) * 2 + 1)
        perm = torch.cat([torch.randperm(5, generator=g), torch.randperm(5, generator=g)])[:6]
        assert [b[0] for b in b_side[6 * e:6 * e + 6]] == perm.tolist()
    pairs = [[(a[0], b[0]) for a, b in zip(batches[6 * e:6 * e + 6], b_side[6 * e:6 * e + 6], strict=True)]
             for e in range(3)]
    assert pairs[0] != pairs[1] != pairs[2]  # a new random pairing each epoch
    assert take(cyc.index_batches(6, 1, 1, start=13, length=6, streams=2, stream=0), 1) == batches[13:14]  # resumed
    assert take(cyc.index_batches(6, 1, 2, length=6, streams=2, stream=0), 18) != batches  # another seed


def test_crops_depend_on_the_step_and_position_not_on_the_ranks():
    """crop_batch keys each image by seed/domain/epoch/position: every crop differs, and under torchrun the ranks'
    slices of a global batch are cropped exactly as one process crops the whole batch."""
    args = cyc.Args(img_size=4, batch_size=2)
    data = torch.randint(0, 256, (6, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    full = next(cyc.index_batches(6, 2, 1, start=4, length=6, streams=2, stream=0))
    r0, r1 = (next(cyc.index_batches(6, 2, 1, 4, rank, 2, length=6, streams=2, stream=0)) for rank in (0, 1))
    whole = cyc.crop_batch(data[full], args, 0, 4, 3)
    halves = [cyc.crop_batch(data[r], args, 0, 4, 3, rank, 2) for rank, r in ((0, r0), (1, r1))]
    assert whole.shape == (2, 3, 4, 4) and torch.equal(torch.cat(halves), whole)
    assert whole.min() >= -1 and whole.max() <= 1
    crops = torch.stack([cyc.crop_batch(data[:2], args, 0, step, 3) for step in range(3)])  # the same images
    assert len({c.sum().item() for c in crops.flatten(0, 1)}) > 3  # crops differ by position and epoch
    assert not torch.equal(cyc.crop_batch(data[:2], args, 1, 0, 3), crops[0])  # and by domain


def test_augment_crops_and_flips_by_key():
    img = torch.arange(36, dtype=torch.uint8).view(1, 6, 6).repeat(3, 1, 1)
    outs = [cyc.augment(img, f"k{i}", 4) for i in range(60)]
    assert all(o.shape == (3, 4, 4) for o in outs)
    assert torch.equal(cyc.augment(img, "k7", 4), outs[7])  # the key alone fixes the crop and the flip
    flipped = [bool(o[0, 0, 0] > o[0, 0, 1]) for o in outs]  # rows increase left to right unflipped
    assert 15 < sum(flipped) < 45 and len({o[0, 0, 0].item() for o in outs}) > 3


def test_test_split_never_enters_training(data_root):
    args = cyc.Args(data_dir=str(data_root), download=False, img_size=32)
    train_a, train_b, test_a, test_b, paired = cyc.find_images(args)
    assert (len(train_a), len(train_b), len(test_a), len(test_b)) == (6, 5, 3, 3) and paired
    assert all(f"{os.sep}train" in p and half is None for p, half in train_a + train_b)
    assert all(f"{os.sep}test" in p for p, _ in test_a + test_b)
    train_means = [cyc.read_rgb(p, 36, h).float().mean().item() for p, h in train_a + train_b]
    test_means = [cyc.read_rgb(p, 32, h).float().mean().item() for p, h in test_a + test_b]
    assert max(train_means) < 100 and min(test_means) > 150


def test_aligned_mode_reads_halves_and_keeps_test_pairs(data_root):
    args = cyc.Args(data_dir=str(data_root), download=False, img_size=32, dataset_mode="aligned")
    train_a, train_b, test_a, test_b, paired = cyc.find_images(args)
    assert paired and len(train_a) == 6 and [h for _, h in train_a + train_b] == [0] * 6 + [1] * 6
    grey = [cyc.read_rgb(p, 32, h).float().mean().item() for p, h in test_a + test_b]
    assert [round((g - 10) / 20) for g in grey[:3]] == [0, 1, 2]  # left half A at 10 + 20 N
    assert [round((250 - g) / 20) for g in grey[3:]] == [0, 1, 2]  # right half B at 250 - 20 N


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, data_root):
    flags = [*base(data_root), "--max-iters", 3, "--sample-interval", 2, "--num-eval-samples", 2]
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    tags = read_tags(run)
    for tag in [*LOSS_TAGS, "charts/d_real", "charts/d_fake", "charts/SPS", "charts/learning_rate",
                *(f"losses/{k}_{d}" for k in ("g_gan", "cycle_loss", "identity_loss", "d_loss") for d in "ab")]:
        assert tag in tags["scalars"], tag
    assert "samples" in tags["images"] and "hyperparameters/text_summary" in tags["tensors"]
    identity = [v for _, v in read_scalars(run)["losses/identity_loss"]]
    assert identity == [0.0] * len(identity)  # off by default: the paper's labels <-> photos setting (Section 5.2)
    assert out.startswith(f"cyclegan.py: cpu, run folder runs/{run.name}, iterations 0 -> 3")
    assert "iter 3/3" in out and "ETA" in out and "writing the final sample grid" in out
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["0000002.png", "0000003.png"]
    data = np.load(run / "translations.npz")
    for d in ("a2b", "b2a"):
        for k in ("inputs", "outputs", "targets", "cycle"):
            assert data[f"{d}_{k}"].dtype == np.uint8 and data[f"{d}_{k}"].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(data["a2b_targets"], data["b2a_inputs"])
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and len(ckpt["ranks"][0]["pool_a"]["images"]) == 2 and ckpt["seconds"] > 0
    cyc.ResnetGenerator(4, 1).load_state_dict(ckpt["g_ab"])
    cyc.NLayerDiscriminator(4).load_state_dict(ckpt["d_b"])
    assert not list(run.glob("*.tmp"))


def test_aligned_run_scores_against_ground_truth(tmp_path, data_root):
    flags = [*base(data_root), "--dataset-mode", "aligned", "--max-iters", 2, "--num-eval-samples", 3]
    assert run_inprocess("cyclegan", flags, tmp_path)[0] == 0
    data = np.load(only_run_dir(tmp_path) / "translations.npz")
    assert data["a2b_targets"].shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(data["a2b_targets"], data["b2a_inputs"])


def test_learning_signal_d_scores_real_above_fake_and_cycle_loss_falls(tmp_path, data_root):
    """Guards the loop's call sites: over 30 updates D_A and D_B score real images above the (pooled) fakes (measured:
    0.74 against 0.29 on average), and the cycle loss falls (13.8 at iteration 3, about 2 by the end). With real and
    fake swapped in discriminator_loss's calls, D(real) < D(fake)."""
    flags = [*base(data_root), "--max-iters", 30, "--log-interval", 3, "--lr", 1e-3, "--num-eval-samples", 0]
    assert run_inprocess("cyclegan", flags, tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    m = scalar_means(run, ["charts/d_real", "charts/d_fake"], last=10)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.2, m
    # D's verdict apart from the logged charts (which come from the same variables as D's loss, so a swap at D's
    # forward passes would swap them too): the checkpoint's G, F, D_A and D_B, built as the script builds them, on
    # the training images (the tests' test images are brighter than anything D saw): each domain's real images
    # against the latest translations into it, D_A's and D_B's margins averaged.
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    args = cyc.Args(**ckpt["args"])
    nets = {name: cyc.ResnetGenerator(args.ngf, args.n_blocks) for name in ("g_ab", "g_ba")}
    nets.update({name: cyc.NLayerDiscriminator(args.ndf) for name in ("d_a", "d_b")})
    for name, net in nets.items():
        net.load_state_dict(ckpt[name])
    folders = {domain: sorted((data_root / "facades_cyclegan" / f"train{domain}").iterdir()) for domain in "AB"}
    real = {domain: torch.stack([cyc.read_rgb(str(f), args.img_size) for f in files]).float() / 127.5 - 1
            for domain, files in folders.items()}
    with torch.no_grad():
        margins = [(nets[d](real[domain]).mean() - nets[d](nets[g](real[other])).mean()).item()
                   for d, domain, g, other in [("d_a", "A", "g_ba", "B"), ("d_b", "B", "g_ab", "A")]]
    assert np.mean(margins) > 0.15, margins  # measured: 0.52 (D_A) and 0.02 (D_B)
    cycle = [v for _, v in read_scalars(run)["losses/cycle_loss"]]
    assert np.mean(cycle[-3:]) < 0.5 * cycle[0], cycle


@pytest.mark.parametrize("objective, gan, forward, backward", [
    ("cycle-alone", False, True, True), ("gan-alone", True, False, False),
    ("gan+forward", True, True, False), ("gan+backward", True, False, True)])
def test_objective_ablation_keeps_only_its_terms_and_no_identity(tmp_path, data_root, objective, gan, forward,
                                                                  backward):
    """--objective (Section 5.1.4, Tables 4-5): each dropped term of Eq. 3 logs 0 at every iteration and the kept
    ones are positive; forward is F(G(a)) ~ a (cycle_loss_a), backward G(F(b)) ~ b; no variant has the identity loss
    (the ablation had none); g_loss is the sum of the kept terms. Without the GAN terms (Cycle alone) D_A and D_B are
    never updated (optimizer_d holds no state), d_loss logs 0 and no D charts are written."""
    flags = [*base(data_root), "--objective", objective, "--max-iters", 3, "--num-eval-samples", 0]
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    scalars = read_scalars(run)
    kept = {"g_gan": (gan, gan), "d_loss": (gan, gan), "cycle_loss": (forward, backward),
            "identity_loss": (False, False)}
    total = np.zeros(3)
    for term, on_ab in kept.items():
        for d, on in zip("ab", on_ab, strict=True):
            values = np.array([v for _, v in scalars[f"losses/{term}_{d}"]])
            assert len(values) == 3 and (values > 0 if on else values == 0).all(), (term, d, values)
            if term != "d_loss":  # g_loss: G's terms
                total += values
    np.testing.assert_allclose([v for _, v in scalars["losses/g_loss"]], total, rtol=1e-5)
    assert ("charts/d_real" in scalars) == gan and ("charts/d_fake" in scalars) == gan
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["args"]["objective"] == objective and bool(ckpt["optimizer_d"]["state"]) == gan


class _OnRunDeviceWithRanks(helpers._OnRunDevice):
    """helpers' GPU emulation, extended to the per-rank RNG states and image pools (ckpt["ranks"][r])."""

    def __call__(self, f, *a, map_location=None, **k):
        obj = super().__call__(f, *a, map_location=map_location, **k)
        if map_location != "cpu" and isinstance(obj, dict):
            for own in obj.get("ranks", []):
                own.update({key: own[key].to("meta") for key in ("torch", "cuda") if torch.is_tensor(own[key])})
        return obj


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(helpers, "_OnRunDevice", _OnRunDeviceWithRanks)
    check_sigterm_and_exact_resume("cyclegan", [*base(data_root), "--batch-size", 2], tmp_path, monkeypatch,
                                   nets=NETS, tags=LOSS_TAGS)


def test_streaming_from_disk_gives_the_in_memory_batches_and_resumes_exactly(tmp_path, data_root):
    """--in-memory-limit-mb 0 streams the training set through a DataLoader (one worker): 2 iterations, then --resume
    to 5, log what the in-memory run logs in one go (crops, flips, pools, RNG, optimisers and the LambdaLR)."""
    common = [*base(data_root), "--batch-size", 2, "--epochs", 3, "--epochs-decay", 2, "--num-eval-samples", 0]
    memory, stream = tmp_path / "memory", tmp_path / "stream"
    memory.mkdir(), stream.mkdir()
    assert run_inprocess("cyclegan", [*common, "--max-iters", 5], memory)[0] == 0
    streamed = [*common, "--in-memory-limit-mb", 0, "--num-workers", 1]
    assert run_inprocess("cyclegan", [*streamed, "--max-iters", 2], stream)[0] == 0
    run = only_run_dir(stream)
    rc, out, err = run_inprocess("cyclegan", [*streamed, "--max-iters", 5, "--resume", run / "checkpoint.pt"], stream)
    assert rc == 0, err
    a, b = losses(only_run_dir(memory), LOSS_TAGS), losses(run, LOSS_TAGS)
    assert [s for s, _ in a["losses/g_loss"]] == list(range(1, 6)) and a == b
    lr = [v for _, v in read_scalars(run)["charts/learning_rate"]]  # 3 iterations per epoch: 1, then 1 - 1/3
    assert lr[:3] == pytest.approx([2e-4] * 3) and lr[3:] == pytest.approx([2e-4 * 2 / 3] * 2)
    wa = torch.load(only_run_dir(memory) / "checkpoint.pt", weights_only=False)
    wb = torch.load(run / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(wa[n][k], wb[n][k]) for n in NETS for k in wa[n])


def test_eval_interval_writes_translations_and_leaves_training_unchanged(tmp_path, data_root):
    files = check_eval_interval("cyclegan", base(data_root), tmp_path, nets=NETS)
    for f in files:  # the fixed test subset: all 3 test images of each domain here (up to 50)
        for k in ("a2b_inputs", "a2b_outputs", "a2b_targets", "b2a_inputs", "b2a_outputs", "b2a_targets"):
            assert f[k].shape == (3, 3, 32, 32) and f[k].dtype == np.uint8, k
        np.testing.assert_array_equal(f["a2b_targets"], f["b2a_inputs"])
    np.testing.assert_array_equal(files[0]["a2b_inputs"], files[1]["a2b_inputs"])
    assert not np.array_equal(files[0]["a2b_outputs"], files[1]["a2b_outputs"])  # G moved in between


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, data_root):
    check_corrupt_resume("cyclegan", base(data_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("cyclegan", SMALL, tmp_path, monkeypatch)


def test_eval_only_needs_no_model_flags_and_input_dir_translates_a_folder(tmp_path, data_root):
    """--resume --eval-only writes translations.npz with the checkpoint's networks (no model flag typed). With
    --input-dir it needs no dataset: each image of the folder, resized to --img-size, goes through G (--direction
    AtoB) or F (BtoA) into RUN_FOLDER/AtoB or BtoA as a PNG; no training happens."""
    assert run_inprocess("cyclegan", [*base(data_root), "--max-iters", 1, "--num-eval-samples", 0], tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    ckpt = run / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    flags = ["--resume", ckpt, "--eval-only", "--data-dir", data_root, "--no-cuda", "--num-eval-samples", 2]
    rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
    assert rc == 0, err
    assert np.load(run / "translations.npz")["b2a_outputs"].shape == (2, 3, 32, 32)
    inputs = tmp_path / "photos"
    inputs.mkdir()
    torchvision.io.write_png(coded_image(90, 50, 30), str(inputs / "wide.png"))  # any size: resized to --img-size
    torchvision.io.write_jpeg(coded_image(30), str(inputs / "x.jpg"))
    state = torch.load(ckpt, weights_only=False)
    nets = {name: cyc.ResnetGenerator(4, 1) for name in ("g_ab", "g_ba")}
    for direction, name in [("BtoA", "g_ba"), ("AtoB", "g_ab")]:
        nets[name].load_state_dict(state[name])
        flags = ["--resume", ckpt, "--eval-only", "--input-dir", inputs, "--direction", direction, "--no-cuda",
                 "--data-dir", tmp_path / "nothing-here", "--no-download"]  # no dataset needed
        rc, out, err = run_inprocess("cyclegan", flags, tmp_path)
        assert rc == 0 and f"2 images translated {direction}" in out, err
        assert sorted(p.name for p in (run / direction).iterdir()) == ["wide.png", "x.png"]
        for src, png in [("wide.png", "wide.png"), ("x.jpg", "x.png")]:
            written = torchvision.io.read_image(str(run / direction / png))
            with torch.no_grad():
                expected = cyc.to_uint8(nets[name](cyc.read_rgb(str(inputs / src), 32)[None].float() / 127.5 - 1))
            assert written.shape == (3, 32, 32) and (written.int() - expected[0].int()).abs().max() <= 1, direction
    a, b = (torchvision.io.read_image(str(run / d / "x.png")) for d in ("AtoB", "BtoA"))
    assert not torch.equal(a, b)  # G and F: two networks
    assert not (tmp_path / "nothing-here").exists()
    assert ckpt.stat().st_mtime_ns == before  # no training happened


def test_aligned_download_unpacks_the_tar_and_refuses_members_outside_it(tmp_path):
    """--dataset-mode aligned fetches pix2pix's facades.tar.gz: its AB folder lands in DATA_DIR/facades in one rename;
    an archive whose member points outside the temporary folder is refused (tarfile's "data" filter), and nothing of
    it is left anywhere."""
    import tarfile

    mirror = tmp_path / "mirror" / "pix2pix" / "datasets"
    mirror.mkdir(parents=True)
    src = write_aligned(tmp_path / "src" / "facades")
    with tarfile.open(mirror / "facades.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="facades")
    args = cyc.Args(data_dir=str(tmp_path / "data"), dataset_mode="aligned", mirror=f"file://{tmp_path / 'mirror'}")
    assert len(cyc.find_images(args)[0]) == 6  # downloaded: the six training pairs, read as A halves
    assert sorted(os.listdir(tmp_path / "data")) == ["facades"]  # no temporary folder left

    escaped = tmp_path / "escaped.txt"
    with tarfile.open(mirror / "facades.tar.gz", "w:gz") as tar:
        tar.add(src / "train" / "0.jpg", arcname="facades/train/0.jpg")
        tar.add(src / "train" / "1.jpg", arcname="../../escaped.txt")  # DATA_DIR/.facades.download-*/ -> tmp_path
    problem = cyc.download(f"file://{mirror}/facades.tar.gz", "facades", str(tmp_path / "data2" / "facades"))
    assert problem is not None and "failed" in problem
    assert not escaped.exists() and not (tmp_path / "data2").exists()


def write_mirror(tmp_path):
    """A local mirror holding cyclegan/datasets/facades.zip in the official layout; returns (mirror, source tree)."""
    src = write_unaligned(tmp_path / "src" / "facades")
    mirror = tmp_path / "mirror"
    (mirror / "cyclegan" / "datasets").mkdir(parents=True)
    with zipfile.ZipFile(mirror / "cyclegan" / "datasets" / "facades.zip", "w") as z:
        for f in sorted(src.rglob("*.jpg")):
            z.write(f, f.relative_to(src.parent))
    return mirror, src


def test_download_reads_the_mirror_with_a_timeout(tmp_path, monkeypatch):
    """A stalled mirror cannot hang the run: the archive is read by urlopen with a 60 s timeout (urlretrieve has
    none), and the set lands in DATA_DIR/facades_cyclegan."""
    mirror, src = write_mirror(tmp_path)
    timeouts = record_download_timeouts(monkeypatch)
    args = cyc.Args(data_dir=str(tmp_path / "data"), mirror=f"file://{mirror}")
    assert len(cyc.find_images(args)[0]) == 6 and timeouts == [60]
    assert sorted(os.listdir(tmp_path / "data")) == ["facades_cyclegan"]


def test_backend_flag_picks_the_process_group_backend(monkeypatch):
    """--backend nccl|gloo reaches init_process_group under torchrun; unset: gloo on the CPU (nccl on CUDA)."""
    chosen = []

    def init_process_group(backend, *a, **k):
        chosen.append(backend)
        raise RuntimeError("stop here (test)")

    monkeypatch.setattr(cyc.dist, "init_process_group", init_process_group)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for backend in ("gloo", "nccl", None):
        with pytest.raises(RuntimeError, match="stop here"):
            cyc.Run(cyc.Args(backend=backend, cuda=False, torch_deterministic=False))
    assert chosen == ["gloo", "nccl", "gloo"]


def test_torchrun_two_ranks_download_once_end_with_the_same_weights_and_stop_together(tmp_path):
    """Two gloo ranks (--backend gloo) with --download from a local mirror: only rank 0 fetches and unpacks,
    atomically, so one intact copy and no temporary files remain. SIGTERM sent to rank 1 alone stops both ranks after
    the same iteration; each rank prints the sha256 of the parameters of its G, F, D_A and D_B: the same on both (DDP
    keeps the ranks' weights equal), and that of the checkpoint rank 0 wrote, which holds both ranks' states."""
    mirror, src = write_mirror(tmp_path)
    data = tmp_path / "data"
    flags = [*SMALL, "--data-dir", data, "--download", "--mirror", f"file://{mirror}", "--batch-size", 2,
             "--max-iters", 100000, "--num-eval-samples", 0, "--checkpoint-interval", 100000, "--backend", "gloo"]
    log = tmp_path / "rank"
    ranks = start_ranks("cyclegan", flags, tmp_path, log)  # as torchrun starts them
    helpers.wait_for_log_line(ranks[0], Path(f"{log}_0"), "iter ")
    os.kill(ranks[1].pid, signal.SIGTERM)
    codes, out, err = join_ranks(ranks, log, timeout=120)
    assert codes == [143, 143], err[-3000:]
    assert err.count("stopped by SIGTERM: checkpoint in") == 1, err[-3000:]  # said once, by rank 0
    sums = dict(re.findall(r"rank (\d): (iteration \d+, weights sha256 \w+)", out))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], (out, err[-3000:])  # same iteration, same weights
    run = only_run_dir(tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    nets = {name: cyc.ResnetGenerator(4, 1) for name in ("g_ab", "g_ba")}
    nets.update({name: cyc.NLayerDiscriminator(4) for name in ("d_a", "d_b")})
    for name in NETS:
        nets[name].load_state_dict(ckpt[name])
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for name in NETS for p in nets[name].parameters()))
    digest = digest.hexdigest()
    assert sums["0"] == f"iteration {ckpt['iteration']}, weights sha256 {digest}" and len(ckpt["ranks"]) == 2
    assert sorted(p.name for p in data.iterdir()) == ["facades_cyclegan"]  # no temporary folder or archive left
    copied = sorted(p.relative_to(data / "facades_cyclegan") for p in (data / "facades_cyclegan").rglob("*.jpg"))
    assert copied == sorted(p.relative_to(src) for p in src.rglob("*.jpg"))
    assert all((data / "facades_cyclegan" / p).read_bytes() == (src / p).read_bytes() for p in copied)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--img-size", 30], "--img-size"),
    (["--img-size", 20], "--img-size"),
    (["--epochs-decay", 300], "--epochs-decay"),
    (["--pool-size", -1], "--pool-size"),
    (["--lambda-cycle", -1], "--lambda-cycle"),
    (["--objective", "cycle-alone", "--lambda-cycle", 0], "--objective cycle-alone"),
    (["--eval-interval", -1], "--eval-interval"),
    (["--in-memory-limit-mb", -1], "--in-memory-limit-mb"),
    (["--num-workers", -1], "--num-workers"),
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


def test_resume_builds_the_checkpoints_networks_and_refuses_a_corrupted_one(tmp_path, data_root):
    """The networks come from the args saved in the checkpoint where the command line leaves them at their default
    (and the run says so); a typed width the checkpoint does not have, or a checkpoint whose G holds another width's
    weights, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("cyclegan", [*base(data_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    flags = ["--data-dir", data_root, "--no-download", "--no-cuda", "--max-iters", 2, "--num-eval-samples", 0]
    rc, out, err = run_inprocess("cyclegan", [*flags, "--resume", ckpt], src)
    assert rc == 0 and "args from the checkpoint" in out, err
    said = out.splitlines()[0].split("unless typed: ", 1)[1].split(", ")
    assert sorted(said) == ["img_size=32", "n_blocks=1", "ndf=4", "ngf=4", "pool_size=2"], out
    rc, out, err = run_inprocess("cyclegan", [*base(data_root), "--ngf", 8, "--max-iters", 3, "--resume", ckpt], dst)
    assert rc == 2 and "ngf=8 as typed (checkpoint: 4)" in out and "does not match" in err, err
    assert len(err.strip().splitlines()) == 1, err
    state = torch.load(ckpt, weights_only=False)
    torch.save({**state, "g_ab": cyc.ResnetGenerator(8, 1).state_dict()}, dst / "corrupted.pt")
    rc, out, err = run_inprocess("cyclegan", [*base(data_root), "--resume", dst / "corrupted.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


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
