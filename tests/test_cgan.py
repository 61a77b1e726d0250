"""cgan.py: label conditioning, BCE-with-logits loss, the paper's SGD schedule, runs, resume, bad input."""
import numpy as np
import pytest
import torch
from helpers import (
    ROOT,
    check_bad_input,
    check_eval_only,
    check_exact_resume,
    check_smoke,
    load_script,
    only_run_dir,
    read_scalars,
    run_inprocess,
)

cgan = load_script("cgan")
SMALL = ["--z-hidden", 16, "--y-hidden", 16, "--joint-hidden", 32, "--maxout-units", 16, "--y-maxout-units", 8,
         "--batch-size", 16, "--log-interval", 1]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def small_nets():
    return cgan.Generator(100, 16, 16, 32), cgan.Discriminator(16, 8)


# ----------------------------------------------------------------------------- unit tests
def test_one_hot_labels_and_network_shapes():
    y = cgan.one_hot(torch.tensor([3, 0, 9]))
    assert y.shape == (3, 10) and y.dtype == torch.float32
    assert torch.equal(y.sum(1), torch.ones(3)) and torch.equal(y.argmax(1), torch.tensor([3, 0, 9]))
    g, d = cgan.Generator(), cgan.Discriminator()  # the paper's sizes (Section 4.1)
    assert g.z_net[0].in_features == 100 and g.z_net[0].out_features == 200 and g.y_net[0].out_features == 1000
    assert g.joint[0].out_features == 1200 and g.joint[-2].out_features == 784
    assert d.x_net[-1].linear.out_features == 240 * 5 and d.y_net.linear.out_features == 50 * 5
    assert d.joint[1].linear.in_features == 290 and d.joint[1].linear.out_features == 240 * 4
    x = g(cgan.sample_noise(7, 100, "cpu"), cgan.one_hot(torch.arange(7)))
    assert x.shape == (7, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert d(x, cgan.one_hot(torch.arange(7))).shape == (7,)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())  # D outputs logits


def test_init_gan_code_ranges_but_label_layers_at_pytorch_default():
    g, d = cgan.Generator(), cgan.Discriminator()
    bound = 1 / 10 ** 0.5  # nn.Linear's default for fan_in 10: the one-hot y carries a usable signal
    for layer in (g.y_net[0], d.y_net.linear):
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.5 * bound
    assert g.z_net[0].weight.abs().max() <= 0.05 and g.joint[0].weight.abs().max() <= 0.05
    assert d.x_net[-1].linear.weight.abs().max() <= 0.005 and d.joint[1].linear.weight.abs().max() <= 0.005


def test_generator_output_changes_with_label_for_fixed_z():
    torch.manual_seed(0)
    g, d = small_nets()
    g.eval(), d.eval()
    z = cgan.sample_noise(1, 100, "cpu").repeat(10, 1)  # the same z for every class
    x = g(z, cgan.one_hot(torch.arange(10)))
    for i in range(10):
        for j in range(i + 1, 10):
            assert not torch.allclose(x[i], x[j]), f"classes {i} and {j} give the same image for the same z"
    torch.testing.assert_close(g(z[:1], cgan.one_hot(torch.tensor([4]))), x[4:5])  # deterministic in eval mode
    logits = d(x[:1].repeat(2, 1, 1, 1), cgan.one_hot(torch.tensor([0, 1])))
    assert logits[0] != logits[1]  # D's verdict depends on y too


def test_loss_is_bce_with_logits_not_least_squares():
    """Eq. 2 of the paper (log D terms), never the least-squares loss of LSGAN under the cGAN name."""
    real, fake = torch.tensor([1.0, -0.5, 3.0]), torch.tensor([0.3, -2.0, 0.0])
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -0.5 * (torch.log(pr).mean() + torch.log(1 - pf).mean())  # halved, as the GAN official code
    torch.testing.assert_close(cgan.discriminator_loss(real, fake), expected)
    torch.testing.assert_close(cgan.generator_loss(fake), -torch.log(pf).mean())
    least_squares = ((real - 1) ** 2).mean() + (fake ** 2).mean()
    assert not torch.isclose(cgan.discriminator_loss(real, fake), 0.5 * least_squares)
    src = (ROOT / "cgan.py").read_text()
    assert "mse_loss" not in src and "MSELoss" not in src and "** 2" not in src


def test_sgd_schedule_of_the_paper():
    args = cgan.Args(lr=0.1, beta1=0.5, momentum_final=0.7, momentum_saturate=100, lr_decay=1.00004, min_lr=1e-6)
    assert cgan.sgd_schedule(args, 0) == (0.1, 0.5)
    lr, momentum = cgan.sgd_schedule(args, 50)
    assert lr == pytest.approx(0.1 / 1.00004 ** 50) and momentum == pytest.approx(0.6)
    assert cgan.sgd_schedule(args, 1000)[1] == pytest.approx(0.7)  # saturated
    assert cgan.sgd_schedule(args, 10 ** 7)[0] == 1e-6  # floored at min_lr


def test_epoch_batches_keep_images_and_labels_together():
    labels = torch.arange(20) % 10
    data = labels.to(torch.uint8).view(20, 1, 1, 1) * 10
    b = cgan.EpochBatches(data, labels, 6, seed=1)
    for s in range(5):
        x, y = b.get(s)
        assert y.dtype == torch.int64 and torch.equal(((x.view(-1) + 1) * 127.5).round() / 10, y.float())


def test_balanced_labels():
    assert torch.equal(torch.bincount(cgan.balanced_labels(1000, "cpu")), torch.full((10,), 100))


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("cgan", [*base(mnist_root), "--max-iters", 3], tmp_path, [], n_eval=30)
    images, labels = data["images"], data["labels"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (30,) and np.bincount(labels).tolist() == [3] * 10
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    import PIL.Image
    assert PIL.Image.open(sorted((run / "samples").glob("*.png"))[-1]).size == (302, 302)  # 10 x 10 grid, 28 + 2 px
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3
    g, d = small_nets()
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])


def test_paper_sgd_with_schedule_and_fashion_mnist(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--dataset", "fashion-mnist", "--optimizer", "sgd", "--lr", 0.1, "--lr-decay", 1.1,
             "--momentum-saturate", 2, "--max-iters", 3, "--num-eval-samples", 0]
    rc, out, err = run_inprocess("cgan", flags, tmp_path)
    assert rc == 0, err
    run = only_run_dir(tmp_path)
    assert run.name.startswith("fashion-mnist__cgan__1__")
    scalars = read_scalars(run)
    lrs = [v for _, v in scalars["charts/learning_rate"]]
    assert lrs == pytest.approx([0.1, 0.1 / 1.1, 0.1 / 1.1 ** 2])
    assert [v for _, v in scalars["charts/momentum"]] == pytest.approx([0.5, 0.6, 0.7])
    assert torch.load(run / "checkpoint.pt", weights_only=False)["optimizer_d"]["param_groups"][0]["momentum"] == 0.7


def test_determinism_and_exact_resume(tmp_path, mnist_root):
    check_exact_resume("cgan", [*base(mnist_root), "--num-eval-samples", 0], tmp_path)


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    data = check_eval_only("cgan", base(mnist_root), tmp_path, 20)
    assert data["images"].shape == (20, 1, 28, 28) and np.bincount(data["labels"]).tolist() == [2] * 10


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--batch-size", 0], "--batch-size"),
    (["--dropout", 1.0], "--dropout"),
    (["--joint-pieces", 0], "--joint-pieces"),
    (["--lr-decay", 0.5], "--lr-decay"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("cgan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("cgan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_that_does_not_match_exits_2(tmp_path, mnist_root):
    src = tmp_path / "src"
    src.mkdir()
    assert run_inprocess("cgan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    dst = tmp_path / "dst"
    dst.mkdir()
    rc, out, err = run_inprocess("cgan", [*base(mnist_root), "--y-hidden", 8, "--resume", ckpt], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, mnist_root, monkeypatch):
    """Fault injection into BCE with logits (the loss the script must use): NaN from its 10th call on, i.e.
    iteration 4 (3 calls per iteration)."""
    real_bce, calls = torch.nn.functional.binary_cross_entropy_with_logits, []

    def bce_then_nan(*a, **k):
        calls.append(1)
        out = real_bce(*a, **k)
        return out * float("nan") if len(calls) >= 10 else out

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", bce_then_nan)
    flags = [*base(mnist_root), "--num-eval-samples", 0, "--checkpoint-interval", 2, "--max-iters", 50]
    rc, out, err = run_inprocess("cgan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
