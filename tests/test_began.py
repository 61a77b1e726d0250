"""began.py: Eq. 4's losses and k_t control, M_global, lr decay on stall (--lr-decay-margin), the conv/ELU
autoencoder, learning signal, smoke run with the reconstruction grid, cifar10 and svhn, a streamed folder, SIGTERM and
exact resume, torchrun, resume from the checkpoint's args, bad input."""
import math
import pickle

import numpy as np
import pytest
import torch
import torchvision
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_eval_only,
    check_exact_resume,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    check_smoke,
    join_ranks,
    load_script,
    only_run_dir,
    read_scalars,
    read_tags,
    run_inprocess,
    scores_on_checkpoint,
    start_ranks,
)

began = load_script("began")
SMALL = ["--num-filters", 4, "--h-dim", 8, "--batch-size", 8, "--log-interval", 1]
TAGS = ("losses/d_loss", "losses/g_loss", "losses/real_recon", "losses/fake_recon", "charts/k_t",
        "charts/convergence", "charts/learning_rate")


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


# ----------------------------------------------------------------------------- unit tests
def test_eq4_losses_in_closed_form():
    real, fake, k = torch.tensor(0.2), torch.tensor(0.5), torch.tensor(0.3)
    # L_D = L(x) - k_t L(G(z_D)): at k_0 = 0 D only learns to reconstruct real images
    torch.testing.assert_close(began.discriminator_loss(real, fake, k), torch.tensor(0.2 - 0.3 * 0.5))
    torch.testing.assert_close(began.discriminator_loss(real, fake, torch.tensor(0.0)), real)
    # its gradient: +1 on L(x), -k_t on L(G(z_D)) (D reconstructs real images better, generated ones worse)
    real, fake = real.clone().requires_grad_(), fake.clone().requires_grad_()
    began.discriminator_loss(real, fake, k).backward()
    assert float(real.grad) == 1.0 and math.isclose(float(fake.grad), -0.3, rel_tol=1e-6)
    # L_G = L(G(z_G)) = mean |G(z) - D(G(z))|, the gradient through both the image and its reconstruction
    v, d_v = torch.randn(3, 1, 4, 4, requires_grad=True), torch.randn(3, 1, 4, 4, requires_grad=True)
    loss = began.generator_loss(v, d_v)
    torch.testing.assert_close(loss, (v - d_v).abs().mean())
    loss.backward()
    torch.testing.assert_close(v.grad, torch.sign(v - d_v).detach() / v.numel())
    torch.testing.assert_close(d_v.grad, -v.grad)


def test_k_moves_as_eq4_says_and_stays_in_unit_interval():
    k, gamma, lam = torch.tensor(0.3), 0.5, 0.001
    # gamma L(x) > L(G(z)): G's samples are reconstructed too well, D must push them harder -> k grows
    up = began.update_k(k, torch.tensor(0.2), torch.tensor(0.05), gamma, lam)
    torch.testing.assert_close(up, torch.tensor(0.3 + 0.001 * (0.1 - 0.05)))
    # gamma L(x) < L(G(z)): k shrinks
    assert began.update_k(k, torch.tensor(0.2), torch.tensor(0.3), gamma, lam) < k
    # at equilibrium (Section 3.3) k does not move
    torch.testing.assert_close(began.update_k(k, torch.tensor(0.2), torch.tensor(0.1), gamma, lam), k)
    # clipped to [0, 1], including k_0 = 0 with L(G(z)) > gamma L(x)
    assert began.update_k(torch.tensor(0.0), torch.tensor(0.1), torch.tensor(5.0), gamma, 1.0) == 0
    assert began.update_k(torch.tensor(0.999), torch.tensor(5.0), torch.tensor(0.0), gamma, 1.0) == 1
    gen, k = torch.Generator().manual_seed(0), torch.tensor(0.0)
    for _ in range(2000):
        real, fake = torch.rand(2, generator=gen) * 3
        k = began.update_k(k, real, fake, gamma, 0.05)
        assert 0 <= k <= 1


def test_convergence_measure_and_recon_error():
    real, fake = torch.tensor(0.4), torch.tensor(0.35)
    torch.testing.assert_close(began.convergence_measure(real, fake, 0.5), torch.tensor(0.4 + 0.15))
    torch.testing.assert_close(began.convergence_measure(real, torch.tensor(0.1), 0.5), torch.tensor(0.5))
    v, d_v = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(began.recon_error(v, d_v), (v - d_v).abs().mean())  # Eq. 1, eta = 1


def test_lr_halves_when_the_window_mean_stalls_and_the_state_resumes():
    windows = [1.0, 0.5, 0.5, 0.4, 0.399, 0.3]  # means of consecutive windows of 3 iterations
    # 0.5 after 0.5: not below best -> halve; 0.399 after 0.4: < 1% better -> halve; the others improve
    expected = [False, False, True, False, True, False]
    sched = began.StallDecay(1e-4, window=3, margin=0.01)
    decisions = []
    for i, m in enumerate(windows):
        steps = [sched.step(torch.tensor(m + d)) for d in (-0.01, 0.0, 0.01)]
        assert not any(steps[:2])  # decisions only at the end of a window
        decisions.append(steps[2])
        if i == 2:  # a mid-run save/restore changes nothing
            state = sched.state_dict()  # what the checkpoint holds
            sched = began.StallDecay(1e-4, window=3, margin=0.01)
            sched.load_state_dict(state)
    assert decisions == expected
    assert math.isclose(sched.lr, 1e-4 / 4) and math.isclose(sched.best, 0.3, rel_tol=1e-6)
    off = began.StallDecay(1e-4, window=0, margin=0.01)
    assert not any(off.step(torch.tensor(1.0)) for _ in range(10)) and off.lr == 1e-4
    # resuming mid-window: the device-side running sum is part of the state
    a = began.StallDecay(1.0, window=4, margin=0.0)
    [a.step(torch.tensor(x)) for x in (1.0, 2.0)]
    assert a.state_dict()["count"] == 2 and float(a.state_dict()["total"]) == 3.0
    # the margin: a window must beat the best by that fraction, else the lr halves
    for margin, halved in [(0.0, False), (0.1, True)]:
        m = began.StallDecay(1.0, window=1, margin=margin)
        assert [m.step(torch.tensor(x)) for x in (1.0, 0.95)] == [False, halved]


@pytest.mark.parametrize("img_size, scales", [(32, 3), (64, 4)])
def test_architecture_is_the_conv_elu_autoencoder_of_figure_1(img_size, scales):
    n, h = 8, 16
    g, d = began.Generator(3, n, h, img_size), began.Discriminator(3, n, h, img_size)
    z = began.sample_noise(5, h, "cpu")
    assert z.min() >= -1 and z.max() <= 1
    x = g(z)
    assert x.shape == (5, 3, img_size, img_size) and d(x).shape == x.shape
    assert d.encoder(x).shape == (5, h)
    for net in (g, d):
        mods = list(net.modules())
        # pinned: BEGAN is NOT a fully connected autoencoder with BatchNorm/ReLU
        banned = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.Tanh)
        assert not any(isinstance(m, banned) for m in mods)
        assert any(isinstance(m, torch.nn.ELU) for m in mods)
        ups = [m for m in mods if isinstance(m, torch.nn.Upsample)]
        assert len(ups) == scales - 1 and all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)
        convs = [m for m in mods if isinstance(m, torch.nn.Conv2d)]
        assert all(c.kernel_size == (3, 3) for c in convs)
    # linear layers only to and from the embedding: G one, D two
    assert sum(isinstance(m, torch.nn.Linear) for m in g.modules()) == 1
    assert sum(isinstance(m, torch.nn.Linear) for m in d.modules()) == 2
    # encoder: stride-2 subsampling, filters growing n, 2n, 3n, ...; decoder/generator: n filters throughout
    enc = [m for m in d.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.stride == (2, 2) for c in enc) == scales - 1
    assert sorted({c.out_channels for c in enc}) == [n * (s + 1) for s in range(scales)]
    assert {c.out_channels for c in g.modules() if isinstance(c, torch.nn.Conv2d)} == {n, 3}
    # G: the decoder's architecture with its own weights
    assert [p.shape for p in g.parameters()] == [p.shape for p in d.decoder.parameters()]
    assert not {p.data_ptr() for p in g.parameters()} & {p.data_ptr() for p in d.parameters()}


def test_vanishing_residuals_carry_from_identity_to_plain_conv_elu():
    g, d = began.Generator(1, 8, 16, 32), began.Discriminator(1, 8, 16, 32)
    layers = [m for net in (g, d) for m in net.modules() if isinstance(m, began.ConvELU)]
    same = [m for m in layers if m.residual]
    # only same-sized layers carry: not the first encoder conv (C -> n), the stride-2 ones or the n -> 2n ones
    assert same and all(m.conv.in_channels == m.conv.out_channels and m.conv.stride == (1, 1) for m in same)
    assert all(m.conv.in_channels != m.conv.out_channels or m.conv.stride == (2, 2) for m in layers if not m.residual)
    x = torch.randn(2, 8, 8, 8)
    for it, carry in [(0, 1.0), (4000, 0.75), (16000, 0.0)]:
        began.set_carry(it, (g, 16000), (d, 16000))
        assert all(float(m.carry) == carry for m in layers)
        m = same[0]
        torch.testing.assert_close(m(x), carry * x + (1 - carry) * torch.nn.functional.elu(m.conv(x)))
    began.set_carry(20000, (g, 16000), (d, 16000))  # past carry_steps: stays 0, nothing to do
    assert all(float(m.carry) == 0 for m in layers)
    began.set_carry(0, (g, 0), (d, 0))  # --carry-steps 0: the plain conv-ELU of Figure 1 from the start
    assert all(float(m.carry) == 0 for m in layers)
    began.set_carry(0, (g, 16000), (d, 16000))
    torch.testing.assert_close(same[0](x), x)  # carry 1: the layer passes its input through
    began.set_carry(250, (g, 500), (d, 1000))  # --g-carry-steps 500 --carry-steps 1000: each net its own schedule
    assert {float(m.carry) for m in g.modules() if isinstance(m, began.ConvELU)} == {0.5}
    assert {float(m.carry) for m in d.modules() if isinstance(m, began.ConvELU)} == {0.75}
    # the carry is a function of the iteration, recomputed on resume, so the checkpoint does not hold it
    assert not any("carry" in k for k in [*g.state_dict(), *d.state_dict()])


def test_mnist_is_resized_to_32_once_on_load(mnist_root):
    args = began.Args(data_dir=str(mnist_root), download=False)
    images = began.load_images(args, "cpu")
    assert images.dtype == torch.uint8 and images.shape == (256, 1, 32, 32)


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("began", [*base(mnist_root), "--max-iters", 3, "--sample-interval", 2, "--no-cuda"],
                                  tmp_path, TAGS[2:], n_eval=30)
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 32, 32)
    assert "began.py: cpu, run folder runs/mnist__began__1__" in proc.stdout and "iterations 0 -> 3" in proc.stdout
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    assert (run / "samples" / "0000002.png").exists() and (run / "samples" / "0000003.png").exists()
    # beside each sample grid, the reconstruction grid (training images x and D(x)); also in TensorBoard
    assert (run / "samples" / "0000002_recon.png").exists() and (run / "samples" / "0000003_recon.png").exists()
    assert "reconstructions" in read_tags(run)["images"]
    s = read_scalars(run)
    for (_, real), (_, d_real) in zip(s["losses/real_recon"], s["charts/d_real"], strict=True):
        assert real == d_real  # BEGAN's "D output" is the reconstruction error
    assert all(0 <= v <= 1 for _, v in s["charts/k_t"])
    assert any(v != int(v) for _, v in s["charts/SPS"])  # a float, not truncated
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and 0 <= float(ckpt["k_t"]) <= 1 and ckpt["scheduler"]["lr"] == 1e-4
    assert ckpt["scheduler"]["margin"] == 0.01 and ckpt["seconds"] > 0 and len(ckpt["ranks"]) == 1
    began.Generator(1, 4, 8, 32).load_state_dict(ckpt["generator"])
    began.Discriminator(1, 4, 8, 32).load_state_dict(ckpt["discriminator"])
    # G's output bias starts at the data's mean pixel in [-1, 1] (docs item 7); 3 Adam steps move it by < 3 lr
    mean = began.load_images(began.Args(data_dir=str(mnist_root), download=False), "cpu").float().mean() / 127.5 - 1
    name, bias = list(ckpt["generator"].items())[-1]
    assert name.endswith("bias") and abs(float(bias) - float(mean)) < 3e-4 and float(mean) < -0.3


def test_reconstruction_grid_pairs_training_images_with_ds_reconstructions(tmp_path, mnist_root):
    """samples/*_recon.png: 50 training images x (the first 50 of the set) in the even tiles, each followed by the
    run's D(x) (D from the checkpoint written at the same iteration), 10 tiles of 32x32 a row with 2-pixel padding."""
    assert run_inprocess("began", [*base(mnist_root), "--max-iters", 2, "--num-eval-samples", 0], tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    grid = torchvision.io.decode_image(str(run / "samples" / "0000002_recon.png"))[0].float()  # grey: one channel
    tiles = torch.stack([grid[2 + 34 * r:34 + 34 * r, 2 + 34 * c:34 + 34 * c] for r in range(10) for c in range(10)])
    x = began.load_images(began.Args(data_dir=str(mnist_root), download=False), "cpu")[:50, 0].float()
    torch.testing.assert_close(tiles[0::2], x, atol=1, rtol=0)  # normalised from [-1, 1]: back to the 0..255 pixels
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    d = began.Discriminator(1, 4, 8, 32)
    d.load_state_dict(ckpt["discriminator"])
    began.set_carry(2, (d, began.Args().carry_steps))
    with torch.no_grad():
        recon = d(x[:, None] / 127.5 - 1)[:, 0].clamp(-1, 1).add(1).mul(127.5)
    torch.testing.assert_close(tiles[1::2], recon, atol=1.01, rtol=0)
    assert (tiles[1::2] - tiles[0::2]).abs().mean() > 5  # D(x) is not x: 2 updates in, D reconstructs poorly


def write_cifar10(root, n=20):
    """CIFAR-10's python layout (cifar-10-batches-py: pickled batches of rows R..G..B, 3072 bytes an image), n images
    in each of the five training batches; returns the training images as uint8 (5n, 3, 32, 32)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = torch.randint(0, 256, (5 * n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batches = [(f"data_batch_{i + 1}", images[i * n:(i + 1) * n]) for i in range(5)] + [("test_batch", images[:n])]
    for name, x in batches:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x.reshape(len(x), -1).numpy(), "labels": [0] * len(x)}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    return images


def write_svhn(root, n=60):
    """SVHN's train_32x32.mat (X: 32 x 32 x 3 x N, y: N x 1, digit 0 labelled 10); returns X as uint8 (N, 3, 32, 32)."""
    import scipy.io

    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "train_32x32.mat", {"X": images.permute(2, 3, 1, 0).numpy(), "y": np.full((n, 1), 10)})
    return images


@pytest.mark.parametrize("dataset, write", [("cifar10", write_cifar10), ("svhn", write_svhn)])
def test_cifar10_and_svhn_train_on_32x32_rgb(tmp_path, monkeypatch, dataset, write):
    """--dataset cifar10 / svhn read torchvision's files (here tiny ones, so the md5 checks are skipped) through the
    image-data block: every training image, pixel for pixel, as (N, 3, 32, 32); a short run trains on them."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *a, **k: True)
    images = write(tmp_path / "data")
    args = began.Args(dataset=dataset, data_dir=str(tmp_path / "data"), download=False)
    assert torch.equal(began.load_images(args, "cpu"), images)
    flags = ["--dataset", dataset, *base(tmp_path / "data"), "--max-iters", 2, "--num-eval-samples", 5]
    rc, out, err = run_inprocess("began", flags, tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    assert run.name.startswith(f"{dataset}__began__1__")
    assert np.load(run / "samples.npz")["images"].shape == (5, 3, 32, 32)
    name, bias = list(torch.load(run / "checkpoint.pt", weights_only=False)["generator"].items())[-1]
    assert name.endswith("bias")  # G's output bias starts at the data's mean colour, here per RGB channel
    torch.testing.assert_close(bias, images.float().mean((0, 2, 3)) / 127.5 - 1, atol=3e-4, rtol=0)  # per channel


def test_defaults_are_mnists_recipe_at_reference_width():
    a = began.Args()
    assert (a.gamma, a.lambda_k, a.g_carry_steps, a.carry_steps, a.num_filters) == (1.0, 0.01, 500, 16000, 64)
    assert (a.batch_size, a.lr, a.h_dim, a.img_size, a.dataset) == (16, 1e-4, 64, 32, "mnist")



def reconstruction_error(module, ckpt, x, labels):
    """|x - D(x)| per image (Eq. 1's L1) of the checkpoint's autoencoder D, built as began.py builds it."""
    args = module.Args(**ckpt["args"])
    d = module.Discriminator(x.shape[1], args.num_filters, args.h_dim, args.img_size)
    d.load_state_dict(ckpt["discriminator"])
    return (d(x) - x).abs().mean((1, 2, 3))

def test_learning_signal_real_reconstructed_better_than_fake_and_k_follows_eq4(tmp_path, mnist_root):
    """Guards the training loop's call sites: after 40 updates D reconstructs real digits better than G's samples.
    With real and fake swapped in discriminator_loss's call (k_0 = 0, so D then learns only the fakes), D
    reconstructs the fakes better and this fails. The logged k_t follows Eq. 4's update from the logged L(x) and
    L(G(z_G)) at every iteration, with a gain large enough that k_t moves."""
    lam = 0.2
    flags = [*base(mnist_root), "--lr", 1e-3, "--lambda-k", lam, "--max-iters", 40, "--num-eval-samples", 200]
    assert run_inprocess("began", flags, tmp_path)[0] == 0
    s = read_scalars(only_run_dir(tmp_path))
    real, fake = (np.mean([v for _, v in s[t][-10:]]) for t in ("charts/d_real", "charts/d_fake"))
    assert fake - real > 0.05, (real, fake)
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    images = began.load_images(began.Args(data_dir=str(mnist_root), download=False), "cpu")
    on_real, on_fake = scores_on_checkpoint("began", only_run_dir(tmp_path), images, reconstruction_error)
    assert on_fake - on_real > 0.05, (on_real, on_fake)
    # and the logged L(x) is D's error on real digits: with the two halves of D's pass swapped it is L(G(z)), which
    # D then learns (measured: the checkpoint's D on the training digits 1.4x the last logged L(x); swapped, 8.7x)
    assert on_real < 2.5 * real, (on_real, real)
    k = [v for _, v in s["charts/k_t"]]
    expected = [min(1.0, max(0.0, k0 + lam * (x - g))) for k0, (_, x), (_, g) in
                zip([0.0, *k[:-1]], s["losses/real_recon"], s["losses/g_loss"], strict=True)]
    np.testing.assert_allclose(k, expected, atol=1e-6)
    assert max(k) > 0.01  # gamma L(x) > L(G(z)) happened: k_t rose


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = began.Generator(1, 8, 16, 32), began.Discriminator(1, 8, 16, 32)
    for net in (g, d):
        net.apply(began.init_weights)
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    z = began.sample_noise(16, 16, "cpu")
    before = began.generator_loss(g(z), d(g(z))).item()
    for _ in range(5):
        opt.zero_grad()
        fake = g(z)
        began.generator_loss(fake, d(fake)).backward(inputs=list(g.parameters()))
        opt.step()
    assert began.generator_loss(g(z), d(g(z))).item() < before - 1e-3


def write_png_folder(root, n=10):
    imgs = root / "imgs" / "sub"
    imgs.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        torchvision.io.write_png(torch.randint(0, 255, (3, 40 + i, 50), dtype=torch.uint8, generator=gen),
                                 str(imgs / f"{i}.png"))
    return root / "imgs"


def test_folder_dataset_at_64(tmp_path):
    rc, out, err = run_inprocess("began", ["--data-dir", write_png_folder(tmp_path), "--dataset", "folder",
                                           "--img-size", 64, *SMALL, "--max-iters", 1, "--num-eval-samples", 4],
                                 tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    assert run.name.startswith("folder__began__1__")
    assert np.load(run / "samples.npz")["images"].shape == (4, 3, 64, 64)


def test_streamed_folder_trains_as_in_memory_and_resumes_exactly(tmp_path, monkeypatch):
    """Above --in-memory-limit-mb (0 here) the folder streams through one DataLoader: it sees the same batches as
    the in-memory run (identical losses and weights), and a resumed streamed run continues exactly."""
    loaders, real_loader = [], torch.utils.data.DataLoader

    def counting_loader(*a, **k):
        loaders.append(k)
        return real_loader(*a, **k)

    monkeypatch.setattr(torch.utils.data, "DataLoader", counting_loader)
    common = ["--data-dir", write_png_folder(tmp_path, 12), "--dataset", "folder", "--img-size", 16, *SMALL,
              "--batch-size", 4, "--num-eval-samples", 0, "--num-workers", 0]
    (tmp_path / "streamed").mkdir()
    streamed, _, _ = check_exact_resume("began", [*common, "--in-memory-limit-mb", 0], tmp_path / "streamed",
                                        tags=TAGS, n=8)  # 3 batches per epoch: the resume lands mid-epoch
    assert len(loaders) == 3 and loaders[0]["persistent_workers"] is False  # one DataLoader per run, none more
    (tmp_path / "memory").mkdir()
    assert run_inprocess("began", [*common, "--max-iters", 8], tmp_path / "memory")[0] == 0
    assert len(loaders) == 3  # 12 images of 16 x 16 under the default limit: held in memory
    memory = torch.load(only_run_dir(tmp_path / "memory") / "checkpoint.pt", weights_only=False)
    for net in ("generator", "discriminator"):
        assert all(torch.equal(streamed[net][k], memory[net][k]) for k in memory[net]), net


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, mnist_root, monkeypatch):
    # a 1-iteration lr-decay window (a decision every iteration, from the restored best) and short carries: the lr
    # and the carries change across the resume
    common = [*base(mnist_root), "--lr-decay-window", 1, "--carry-steps", 6, "--g-carry-steps", 3, "--no-cuda"]
    stopped_at, run = check_sigterm_and_exact_resume("began", common, tmp_path, monkeypatch, tags=TAGS,
                                                     extra_iters=4)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == stopped_at + 4 and ckpt["seconds"] > 0
    assert ckpt["scheduler"]["lr"] < 1e-4  # the stall rule halved the lr at least once


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("began", base(mnist_root), tmp_path)
    assert files[0]["images"].shape == (2000, 1, 32, 32) and files[0]["images"].dtype == np.uint8


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("began", base(mnist_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    check_failed_download_leaves_nothing("began", SMALL, tmp_path, monkeypatch)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    assert check_eval_only("began", base(mnist_root), tmp_path, 12)["images"].shape == (12, 1, 32, 32)


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--img-size", 48], "--img-size"),
    (["--img-size", 8], "--img-size"),
    (["--num-filters", 0], "--num-filters"),
    (["--h-dim", 0], "--h-dim"),
    (["--gamma", 0], "--gamma"),
    (["--gamma", 1.5], "--gamma"),
    (["--lambda-k", 0], "--lambda-k"),
    (["--lr-decay-window", -1], "--lr-decay-window"),
    (["--lr-decay-margin", 1], "--lr-decay-margin"),
    (["--lr-decay-margin", -0.1], "--lr-decay-margin"),
    (["--carry-steps", -1], "--carry-steps"),
    (["--g-carry-steps", -1], "--g-carry-steps"),
    (["--eval-interval", -1], "--eval-interval"),
    (["--in-memory-limit-mb", -1], "--in-memory-limit-mb"),
    (["--num-workers", -1], "--num-workers"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("began", [*base(mnist_root), *flags], tmp_path, 2, mention)


@pytest.mark.parametrize("dataset, path", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                           ("cifar10", "cifar-10-batches-py"), ("svhn", "train_32x32.mat"),
                                           ("folder", "empty")])
def test_missing_data_exits_1(tmp_path, dataset, path):
    line = check_bad_input("began", ["--data-dir", tmp_path / "empty", "--no-download", "--dataset", dataset],
                           tmp_path, 1, path)
    assert "--data-dir" in line and not (tmp_path / "empty").exists()


def test_resume_takes_the_checkpoints_args_and_refuses_another_scripts(tmp_path, mnist_root):
    """--resume CKPT --eval-only needs no other flag (the networks are built from the checkpoint's args); a typed width
    that differs from the checkpoint's, another script's checkpoint, and one whose D has a weight of another shape
    each end in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("began", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    rc, out, err = run_inprocess("began", ["--resume", ckpt, "--eval-only", "--num-eval-samples", 5, "--no-cuda"], src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (5, 1, 32, 32), err
    state = torch.load(ckpt, weights_only=False)
    state["discriminator"]["encoder.0.conv.weight"] = torch.zeros(5, 1, 3, 3)  # n = 5 in a net of n = 4
    torch.save(state, tmp_path / "reshaped.pt")
    flags = ["--data-dir", mnist_root, "--no-download", "--ngf", 8, "--ndf", 8, "--latent-dim", 16, "--batch-size", 16,
             "--max-iters", 1, "--num-eval-samples", 0]
    assert run_inprocess("dcgan", flags, dst)[0] == 0
    for bad, typed in [(ckpt, ["--num-filters", 8]), (tmp_path / "reshaped.pt", []),
                       (only_run_dir(dst) / "checkpoint.pt", [])]:
        rc, out, err = run_inprocess("began", [*base(mnist_root), *typed, "--resume", bad], dst)
        assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, (bad, err)


def test_lr_decay_margin_sets_how_much_better_a_window_must_be(tmp_path, mnist_root):
    """--lr-decay-margin 0.9 with a 1-iteration window: no later iteration's M_global is 10x below the best, so the
    lr halves at every iteration after the first, in both optimisers; the checkpoint keeps the margin."""
    flags = [*base(mnist_root), "--lr-decay-window", 1, "--lr-decay-margin", 0.9, "--max-iters", 5,
             "--num-eval-samples", 0]
    assert run_inprocess("began", flags, tmp_path)[0] == 0
    lrs = [v for _, v in read_scalars(only_run_dir(tmp_path))["charts/learning_rate"]]
    np.testing.assert_allclose(lrs, [1e-4 / 2 ** i for i in range(5)], rtol=1e-6)
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["scheduler"]["margin"] == 0.9 and ckpt["scheduler"]["lr"] == 1e-4 / 16
    assert {g["lr"] for opt in ("optimizer_g", "optimizer_d") for g in ckpt[opt]["param_groups"]} == {1e-4 / 16}


def test_torchrun_two_ranks_keep_one_k_t_and_lr(tmp_path, mnist_root):
    """Two gloo ranks (half the batch each; started as torchrun starts them, helpers.start_ranks): L(x) and L(G(z))
    are averaged over the ranks before k_t's update and the lr rule, so both ranks decide alike and end with the same
    weights (a decision every iteration here; with rank-local values the ranks' lrs part and so do their weights)."""
    flags = [*base(mnist_root), "--lr-decay-window", 1, "--max-iters", 4, "--num-eval-samples", 0, "--no-cuda"]
    codes, out, err = join_ranks(start_ranks("began", flags, tmp_path, tmp_path / "rank"), tmp_path / "rank")
    assert codes == [0, 0], err[-3000:]
    digests = sorted(line.split()[-1] for line in out.splitlines() if "weights sha256" in line)
    assert len(digests) == 2 and digests[0] == digests[1], out[-2000:]
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 4 and len(ckpt["ranks"]) == 2


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection: L1 turns NaN from its 10th call on (iteration 4; 3 calls per iteration)."""
    real_l1, calls = torch.nn.functional.l1_loss, []

    def l1_then_nan(*a, **k):
        calls.append(1)
        out = real_l1(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "l1_loss", l1_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("began", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values()) and torch.isfinite(ckpt["k_t"])
