"""infogan.py: Q's heads, the information loss L_I, code priors and traversals, runs, resume, bad input."""
import math

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
    read_tags,
    run_inprocess,
)

infogan = load_script("infogan")
SMALL = ["--num-filters", 4, "--fc-dim", 16, "--q-dim", 8, "--noise-dim", 8, "--batch-size", 16, "--log-interval", 1]
INFO_TAGS = ["losses/info_loss", "losses/info_loss_cat", "losses/info_loss_cont", "charts/q_accuracy"]


def base(root):
    return ["--data-dir", root, "--no-download", *SMALL]


def small_nets():
    return infogan.Generator(8 + 10 + 2, 4, 16), infogan.DiscriminatorQ(10, 2, 4, 16, 8)


# ----------------------------------------------------------------------------- unit tests
def test_paper_networks_and_q_head_shapes():
    g, d = infogan.Generator(), infogan.DiscriminatorQ()  # Table 1's MNIST networks
    assert g.fc[0].in_features == 62 + 10 + 2 and g.fc[0].out_features == 1024 and g.fc[3].out_features == 7 * 7 * 128
    assert d.body[0].out_channels == 64 and d.body[2].out_channels == 128 and d.body[6].out_features == 1024
    assert d.q_head[0].out_features == 128 and d.q_head[-1].out_features == 10 + 2 * 2
    assert d.body[1].negative_slope == 0.1
    x = g(infogan.sample_latent(5, 62, 10, 2, "cpu")[0])
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    logit, cat_logits, mean, logvar = d(x)
    assert logit.shape == (5,) and cat_logits.shape == (5, 10) and mean.shape == (5, 2) and logvar.shape == (5, 2)


def test_no_softmax_before_cross_entropy():
    g, d = small_nets()
    assert not any(isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax, torch.nn.Sigmoid)) for m in d.modules())
    src = (ROOT / "infogan.py").read_text()
    assert "Softmax(" not in src and "softmax(" not in src
    # Q's categorical output is used as logits: shifting them all by a constant leaves the loss unchanged,
    # squashing them through a softmax first (the bug) would change it
    logits, codes = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([0])
    zeros = torch.zeros(1, 1)
    ref = infogan.info_loss(logits, zeros, zeros, codes, zeros, 1.0, 0.0)[1]
    torch.testing.assert_close(infogan.info_loss(logits + 7, zeros, zeros, codes, zeros, 1.0, 0.0)[1], ref)
    assert not torch.isclose(infogan.info_loss(logits.softmax(1), zeros, zeros, codes, zeros, 1.0, 0.0)[1], ref)


def test_info_loss_equals_closed_form():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    codes = torch.tensor([0, 2])
    mean, logvar = torch.tensor([[0.5, -0.2], [0.0, 0.3]]), torch.tensor([[0.0, math.log(4.0)], [-1.0, 0.0]])
    cont = torch.tensor([[0.1, 0.8], [-0.5, 0.3]])
    # -log Q(c1|x) with Q = softmax(logits)
    ce = -(torch.tensor([2.0 - math.log(math.e ** 2 + 1 + math.e ** -1), -math.log(3.0)])).mean()
    var = logvar.exp()
    nll = (0.5 * torch.log(2 * math.pi * var) + (cont - mean) ** 2 / (2 * var)).sum(1).mean()
    total, cat, cont_loss = infogan.info_loss(logits, mean, logvar, codes, cont, 1.0, 0.1, "gaussian")
    torch.testing.assert_close(cat, ce)
    torch.testing.assert_close(cont_loss, nll)
    torch.testing.assert_close(total, ce + 0.1 * nll)
    # lower bound of Eq. 5: L_I = H(c) - cross-entropy <= H(c) = log K
    assert math.log(3) - cat.item() <= math.log(3)
    total, _, mse = infogan.info_loss(logits, mean, logvar, codes, cont, 2.0, 0.5, "mse")
    torch.testing.assert_close(mse, ((cont - mean) ** 2).mean())
    torch.testing.assert_close(total, 2 * ce + 0.5 * mse)


def test_latent_priors_uniform_codes():
    latent, codes, cont = infogan.sample_latent(20000, 62, 10, 2, "cpu")
    assert latent.shape == (20000, 74)
    z, onehot, c = latent[:, :62], latent[:, 62:72], latent[:, 72:]
    torch.testing.assert_close(c, cont)
    # continuous codes ~ U(-1, 1), not N(0, 1): bounded, variance 1/3
    assert c.min() >= -1 and c.max() <= 1 and abs(c.mean()) < 0.02 and abs(c.var() - 1 / 3) < 0.01
    assert z.min() >= -1 and z.max() <= 1 and abs(z.var() - 1 / 3) < 0.01
    assert torch.equal(onehot.argmax(1), codes) and torch.equal(onehot.sum(1), torch.ones(20000))
    assert (torch.bincount(codes, minlength=10).float() / 20000 - 0.1).abs().max() < 0.01  # Cat(K=10, p=0.1)
    fixed = infogan.sample_latent(4, 62, 10, 2, "cpu", codes=torch.tensor([3, 3, 7, 7]))[1]
    assert fixed.tolist() == [3, 3, 7, 7]


def test_code_sweep_grid_layout():
    z_rows = torch.rand(10, 5) * 2 - 1
    values = torch.linspace(-2, 2, 10)
    latent = infogan.sweep_latents(z_rows, 10, 2, 1, values).view(10, 10, 5 + 10 + 2)  # (row, column, D)
    for r in range(10):
        assert torch.equal(latent[r, :, :5], z_rows[r].expand(10, 5))  # the noise is fixed along a row
        assert torch.equal(latent[r, :, 5:15].argmax(1), torch.full((10,), r))  # row r: c1 = r
        torch.testing.assert_close(latent[r, :, 16], values)  # c3 swept from -2 to 2 across the columns
        assert torch.equal(latent[r, :, 15], torch.zeros(10))  # c2 held at 0


def test_epoch_batches_keep_images_and_labels_together():
    labels = torch.arange(20) % 10
    b = infogan.EpochBatches(labels.to(torch.uint8).view(20, 1, 1, 1) * 10, labels, 6, seed=1)
    x, y = b.get(4)
    assert y.dtype == torch.int64 and torch.equal(((x.view(-1) + 1) * 127.5).round() / 10, y.float())


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    run, data, proc = check_smoke("infogan", [*base(mnist_root), "--max-iters", 3], tmp_path, INFO_TAGS, n_eval=30)
    images, codes = data["images"], data["codes"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 28, 28)
    assert codes.dtype == np.int64 and np.bincount(codes).tolist() == [3] * 10
    assert "iter 3/3" in proc.stdout and "ETA" in proc.stdout
    assert "samples_c3" in read_tags(run)["images"]
    assert (run / "samples" / "0000003.png").exists() and (run / "samples" / "0000003_c3.png").exists()
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3
    g, d = small_nets()
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])
    lrs = [group["lr"] for group in ckpt["optimizer_d"]["param_groups"]]
    assert lrs == [2e-4, 1e-3] and ckpt["optimizer_g"]["param_groups"][0]["lr"] == 1e-3  # D 2e-4; G and Q 1e-3


def test_supervised_categorical_and_mse(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--supervised-categorical", "--continuous-loss", "mse", "--max-iters", 2,
             "--num-eval-samples", 0]
    rc, out, err = run_inprocess("infogan", flags, tmp_path)
    assert rc == 0, err
    scalars = read_scalars(only_run_dir(tmp_path))
    assert "losses/supervised_loss" in scalars and all(np.isfinite(v) for _, v in scalars["losses/info_loss_cont"])


def test_determinism_and_exact_resume(tmp_path, mnist_root):
    check_exact_resume("infogan", [*base(mnist_root), "--num-eval-samples", 0], tmp_path,
                       tags=("losses/d_loss", "losses/g_loss", "losses/info_loss"))


def test_eval_only_generates_from_checkpoint(tmp_path, mnist_root):
    data = check_eval_only("infogan", base(mnist_root), tmp_path, 20)
    assert data["images"].shape == (20, 1, 28, 28) and np.bincount(data["codes"]).tolist() == [2] * 10


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--lr-g", 0], "--lr-g"),
    (["--batch-size", 0], "--batch-size"),
    (["--cat-dim", 1], "--cat-dim"),
    (["--supervised-categorical", "--cat-dim", 5], "--cat-dim"),
    (["--lambda-cont", -0.1], "--lambda-cont"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("infogan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("infogan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_that_does_not_match_exits_2(tmp_path, mnist_root):
    src = tmp_path / "src"
    src.mkdir()
    assert run_inprocess("infogan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    dst = tmp_path / "dst"
    dst.mkdir()
    rc, out, err = run_inprocess("infogan", [*base(mnist_root), "--cont-dim", 3, "--resume", ckpt], dst)
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
    rc, out, err = run_inprocess("infogan", flags, tmp_path)
    assert rc == 1 and "non-finite loss at iteration 4" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
