"""infogan.py: Q's heads, the information loss L_I, code priors and traversals, the c1 test error, runs, resume,
preemption, bad input."""
import copy
import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    check_bad_input,
    check_corrupt_resume,
    check_eval_interval,
    check_eval_only,
    check_failed_download_leaves_nothing,
    check_sigterm_and_exact_resume,
    load_script,
    only_run_dir,
    read_scalars,
    read_tags,
    run_dirs,
    run_inprocess,
    scalar_means,
    scores_on_checkpoint,
)

infogan = load_script("infogan")
SMALL = ["--num-filters", 4, "--fc-dim", 16, "--q-dim", 8, "--noise-dim", 8, "--batch-size", 16, "--log-interval", 1]
INFO_TAGS = ["losses/info_loss", "losses/info_loss_cat", "losses/info_loss_cont", "charts/q_accuracy",
             "charts/mi_lower_bound", "charts/c1_test_error"]


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


def test_q_outputs_logits_not_probabilities():
    g, d = small_nets()
    assert not any(isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax, torch.nn.Sigmoid)) for m in d.modules())
    # the loss treats Q's output as logits: shifting them all leaves it unchanged, a softmax applied first changes it
    logits, codes, zeros = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([0]), torch.zeros(1, 1)
    ref = infogan.info_loss(logits, zeros, zeros, codes, zeros, 1.0, 0.0)[1]
    torch.testing.assert_close(infogan.info_loss(logits + 7, zeros, zeros, codes, zeros, 1.0, 0.0)[1], ref)
    assert not torch.isclose(infogan.info_loss(logits.softmax(1), zeros, zeros, codes, zeros, 1.0, 0.0)[1], ref)


def test_categorical_loss_equals_cross_entropy_values_and_gradients():
    """The deterministic form -(log_softmax * one_hot) is F.cross_entropy, value and gradient."""
    torch.manual_seed(0)
    logits = (torch.randn(64, 10) * 3).requires_grad_()
    codes, zeros = torch.randint(10, (64,)), torch.zeros(64, 2)
    ours = infogan.info_loss(logits, zeros, zeros, codes, zeros, 1.0, 0.0)[1]
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits, codes)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)


def test_info_loss_equals_closed_form():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    codes = torch.tensor([0, 2])
    mean, logvar = torch.tensor([[0.5, -0.2], [0.0, 0.3]]), torch.tensor([[0.0, math.log(4.0)], [-1.0, 0.0]])
    cont = torch.tensor([[0.1, 0.8], [-0.5, 0.3]])
    # -log Q(c1|x) with Q = softmax(logits)
    ce = -(torch.tensor([2.0 - math.log(math.e ** 2 + 1 + math.e ** -1), -math.log(3.0)])).mean()
    # fixed sigma = 1 (the official MNIST code): -log N(c; mu, 1) = (c - mu)^2 / 2 + log(2 pi) / 2 per code
    half_sq = torch.tensor([(0.4 ** 2 + 1.0 ** 2) / 2, (0.5 ** 2 + 0.0 ** 2) / 2]).mean()
    total, cat, cont_loss = infogan.info_loss(logits, mean, logvar, codes, cont)  # defaults: fixed-sigma, lambdas 1
    torch.testing.assert_close(cat, ce)
    torch.testing.assert_close(cont_loss, half_sq)
    torch.testing.assert_close(total, ce + half_sq)
    assert math.log(3) - cat.item() <= math.log(3)  # Eq. 5's bound: L_I = H(c) - cross-entropy <= H(c)
    # learnt variance: sum_i [log(2 pi sigma_i^2) + (c_i - mu_i)^2 / sigma_i^2] / 2
    var = logvar.exp()
    nll = (0.5 * torch.log(2 * math.pi * var) + (cont - mean) ** 2 / (2 * var)).sum(1).mean()
    total, _, cont_loss = infogan.info_loss(logits, mean, logvar, codes, cont, 2.0, 0.1, "learnt-sigma")
    torch.testing.assert_close(cont_loss, nll)
    torch.testing.assert_close(total, 2 * ce + 0.1 * nll)


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


def test_batch_order_is_a_seeded_permutation_per_epoch():
    """Epoch e is randperm(n) seeded by seed * 100_003 + e (the order the golden losses pinned), its incomplete last
    batch dropped; an order started at batch k (a resumed run) goes on as one started at 0 does."""
    seq = list(itertools.islice(infogan.index_batches(50, 16, seed=1), 6))  # 3 batches per epoch
    for epoch in (0, 1):
        perm = torch.randperm(50, generator=torch.Generator().manual_seed(100_003 + epoch))
        assert torch.equal(torch.cat(seq[3 * epoch:3 * epoch + 3]), perm[:48])
    resumed = list(itertools.islice(infogan.index_batches(50, 16, seed=1, start=4), 2))
    assert all(torch.equal(a, b) for a, b in zip(resumed, seq[4:], strict=True))
    assert not torch.equal(next(infogan.index_batches(50, 16, seed=2)), seq[0])


def brute_force_error(codes, labels, cat_dim, n_classes):
    """Try every one-to-one map from codes to classes (a code may also get no class)."""
    counts = np.zeros((cat_dim, n_classes))
    np.add.at(counts, (codes, labels), 1)
    best = 0.0
    for assign in itertools.product(range(-1, n_classes), repeat=cat_dim):
        used = [c for c in assign if c >= 0]
        if len(used) == len(set(used)):
            best = max(best, sum(counts[k, c] for k, c in enumerate(assign) if c >= 0))
    return 1.0 - best / len(codes)


@pytest.mark.parametrize("cat_dim, n_classes", [(3, 3), (4, 4), (5, 3), (2, 5), (4, 6)])
def test_c1_test_error_matches_brute_force(cat_dim, n_classes):
    rng = np.random.default_rng(cat_dim * 10 + n_classes)
    for _ in range(5):
        codes, labels = rng.integers(cat_dim, size=200), rng.integers(n_classes, size=200)
        labels[:100] = (codes[:100] * 7 + 1) % n_classes  # some structure, so the matching matters
        assert infogan.c1_test_error(codes, labels, cat_dim, n_classes) == pytest.approx(
            brute_force_error(codes, labels, cat_dim, n_classes))


def test_c1_test_error_is_one_to_one_not_many_to_one():
    """Codes 0 and 1 both mostly draw class 0. Mapping each code to its most frequent class (the benchmark's old
    code_error) sends both to class 0 and scores 80/100 right; one-to-one, only one of them may take class 0 and the
    other is left with its 10 digits of class 1 or 2: 50/100."""
    codes = np.array([0] * 50 + [1] * 50)
    labels = np.array([0] * 40 + [2] * 10 + [0] * 40 + [1] * 10)
    many_to_one = sum(np.bincount(labels[codes == k]).max() for k in (0, 1)) / 100
    assert many_to_one == 0.8
    assert infogan.c1_test_error(codes, labels, 2, 3) == pytest.approx(0.5)
    assert infogan.c1_test_error(np.arange(10), np.roll(np.arange(10), 3), 10) == 0.0  # a relabelling: no error


def test_generator_step_lowers_its_loss_against_the_d_it_saw():
    torch.manual_seed(0)
    g, d = small_nets()
    for m in d.modules():  # a D with an opinion (PyTorch's default init; the official N(0, 0.02) starts it near 1/2)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.reset_parameters()
    d.eval()  # the D (and Q) of the moment, frozen; G trains with batch statistics as in the loop
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    latent, codes, cont = infogan.sample_latent(64, 8, 10, 2, "cpu")

    def loss():
        fake_logits, cat_logits, mean, logvar = d(g(latent))
        return infogan.generator_loss(fake_logits) + infogan.info_loss(cat_logits, mean, logvar, codes, cont)[0]

    before = loss().item()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before - 1e-3


def test_info_to_body_scales_only_what_reaches_the_shared_body():
    """Eq. 6's lambda in the D step: Q's head gets its whole loss's gradient, the shared body lambda times it, D's own
    head and every output value none of it."""
    torch.manual_seed(0)
    d = small_nets()[1]
    x = torch.randn(16, 1, 28, 28)
    latent, codes, cont = infogan.sample_latent(16, 8, 10, 2, "cpu")
    grads, outputs = {}, {}
    for scale in (1.0, 0.5, 0.0):
        d.zero_grad()
        out = d(x, scale)
        infogan.info_loss(*out[1:], codes, cont)[0].backward()
        grads[scale] = {n: p.grad.clone() for n, p in d.named_parameters() if p.grad is not None}
        outputs[scale] = out
    for scale in (0.5, 0.0):
        assert all(torch.equal(a, b) for a, b in zip(outputs[scale], outputs[1.0], strict=True))
        for name, grad in grads[1.0].items():
            want = grad if name.startswith("q_head") else scale * grad
            torch.testing.assert_close(grads[scale][name], want, msg=name)
    assert not any(name.startswith("d_head") for name in grads[1.0])
    assert all(grads[1.0][name].abs().sum() > 0 for name in grads[1.0] if name.startswith("body"))


def test_lambda_zero_d_step_trains_q_and_leaves_d_a_regular_gans():
    """Section 7.1's baseline: with lambda 0 D's body and head take the same steps as with no information term at
    all, while Q's head still learns to recover c1 (its cross-entropy falls)."""
    torch.manual_seed(0)
    g, d = small_nets()
    latent, codes, cont = infogan.sample_latent(64, 8, 10, 2, "cpu")
    with torch.no_grad():
        fake = g(latent)
    real = torch.rand(64, 1, 28, 28) * 2 - 1
    regular = copy.deepcopy(d)
    cross_entropy = []
    for net, with_info in ((d, True), (regular, False)):
        opt = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.5, 0.999))
        for _ in range(40):
            fake_logits, cat_logits, mean, logvar = net(fake, 0.0)
            loss = infogan.discriminator_loss(net(real)[0], fake_logits)
            if with_info:
                info, cat, _ = infogan.info_loss(cat_logits, mean, logvar, codes, cont)
                cross_entropy.append(cat.item())
                loss = loss + info
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, a), b in zip(d.named_parameters(), regular.parameters(), strict=True):
        assert torch.equal(a, b) != name.startswith("q_head"), name  # D equal; Q's head moved
    assert cross_entropy[0] > 0.95 * math.log(10) and cross_entropy[-1] < cross_entropy[0] - 0.1, cross_entropy


# ----------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path, mnist_root):
    """check_smoke's checks, in-process (a real process is launched by the SIGTERM test)."""
    flags = [*base(mnist_root), "--max-iters", 3, "--num-eval-samples", 30, "--no-cuda"]
    rc, out, err = run_inprocess("infogan", flags, tmp_path)
    assert rc == 0, err[-3000:]
    run = only_run_dir(tmp_path)
    tags = read_tags(run)
    for tag in ["losses/d_loss", "losses/g_loss", "charts/d_real", "charts/d_fake", "charts/SPS", *INFO_TAGS]:
        assert tag in tags["scalars"], f"missing scalar {tag}: {tags['scalars']}"
    assert {"samples", "samples_c3"} <= set(tags["images"]) and "hyperparameters/text_summary" in tags["tensors"]
    assert (run / "checkpoint.pt").exists() and not list(run.glob("*.tmp"))
    data = np.load(run / "samples.npz")
    images, codes = data["images"], data["codes"]
    assert images.dtype == np.uint8 and images.shape == (30, 1, 28, 28)
    assert codes.dtype == np.int64 and np.bincount(codes).tolist() == [3] * 10
    assert out.startswith("infogan.py: cpu, run folder runs/") and "iterations 0 -> 3" in out
    assert "iter 3/3" in out and "ETA" in out and "writing the final sample grid and samples.npz" in out
    assert (run / "samples" / "0000003.png").exists() and (run / "samples" / "0000003_c3.png").exists()
    # Section 7.2's metric on the 100 test digits: logged at the final iteration and printed
    [(step, logged)] = read_scalars(run)["charts/c1_test_error"]
    printed = float(re.search(r"c1_test_error (\S+) \(Q's c1 on the 100 real test digits", out).group(1))
    assert step == 3 and 0 <= logged <= 0.9 and printed == pytest.approx(logged, abs=1e-4)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and ckpt["seconds"] > 0
    g, d = small_nets()
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])
    # D, Q's head and their shared body in one group at D's 2e-4 (official code: Q is under D's variables); G 1e-3
    assert [group["lr"] for group in ckpt["optimizer_d"]["param_groups"]] == [2e-4]
    assert ckpt["optimizer_g"]["param_groups"][0]["lr"] == 1e-3


def test_lambda_info_zero_keeps_the_information_term_out_of_g_and_d(tmp_path, mnist_root):
    """--lambda-info 0 trains G and D exactly as a run whose information loss is zero (--lambda-cat 0 --lambda-cont 0)
    does, while its Q's head learns; the default (1) trains another G; Figure 1's bound is logged every log point."""
    runs = {}
    for name, flags in [("zero", ["--lambda-info", 0]), ("no_info", ["--lambda-cat", 0, "--lambda-cont", 0]),
                        ("default", [])]:
        (tmp_path / name).mkdir()
        rc, out, err = run_inprocess("infogan", [*base(mnist_root), "--max-iters", 3, "--num-eval-samples", 0,
                                                 "--no-cuda", *flags], tmp_path / name)
        assert rc == 0, err[-3000:]
        runs[name] = only_run_dir(tmp_path / name)
    ckpt = {name: torch.load(run / "checkpoint.pt", weights_only=False) for name, run in runs.items()}
    zero, no_info = ckpt["zero"], ckpt["no_info"]
    assert zero["args"]["lambda_info"] == 0
    assert all(torch.equal(v, no_info["generator"][k]) for k, v in zero["generator"].items())
    for k, v in zero["discriminator"].items():
        if k.startswith(("body", "d_head")):
            assert torch.equal(v, no_info["discriminator"][k]), k
    q_weights = [k for k in zero["discriminator"] if k.startswith("q_head") and k.endswith("weight")]
    assert not all(torch.equal(zero["discriminator"][k], no_info["discriminator"][k]) for k in q_weights)
    assert not all(torch.equal(v, ckpt["default"]["generator"][k]) for k, v in zero["generator"].items())
    scalars = {name: read_scalars(run) for name, run in runs.items()}
    for tag in ("losses/d_loss", "losses/g_loss"):
        assert scalars["zero"][tag] == scalars["no_info"][tag], tag
    for name in runs:
        bound, cat = scalars[name]["charts/mi_lower_bound"], scalars[name]["losses/info_loss_cat"]
        assert [s for s, _ in bound] == [1, 2, 3]
        assert all(b == pytest.approx(math.log(10) - c, abs=1e-5) for (_, b), (_, c) in zip(bound, cat, strict=True))


def test_learnt_sigma_option_runs(tmp_path, mnist_root):
    flags = [*base(mnist_root), "--continuous-loss", "learnt-sigma", "--lambda-cont", 0.1, "--max-iters", 2,
             "--num-eval-samples", 0]
    rc, out, err = run_inprocess("infogan", flags, tmp_path)
    assert rc == 0, err
    assert all(np.isfinite(v) for _, v in read_scalars(only_run_dir(tmp_path))["losses/info_loss_cont"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_root):
    """60 updates on the synthetic digits with slightly wider nets and larger rates, shared by the learning-signal
    tests (seeds 1-3 measured: D(real) - D(fake) 0.24-0.27 and -log Q(c1|x) 0.54-0.69 over the last 3 logs)."""
    cwd = tmp_path_factory.mktemp("learning")
    flags = ["--data-dir", mnist_root, "--no-download", "--num-filters", 8, "--fc-dim", 32, "--q-dim", 16,
             "--noise-dim", 8, "--batch-size", 32, "--lr", 5e-3, "--lr-g", 5e-3, "--max-iters", 60, "--log-interval", 5,
             "--num-eval-samples", 200]
    rc, out, err = run_inprocess("infogan", flags, cwd)
    assert rc == 0, err
    return only_run_dir(cwd)


def test_learning_signal_d_separates_real_from_fake(trained_run, mnist_root):
    """Guards the D step's call sites: with real and fake swapped in discriminator_loss, or at D's two forward
    passes, D(real) < D(fake) in the logged charts or in the checkpoint's D."""
    m = scalar_means(trained_run, ["charts/d_real", "charts/d_fake"], last=3)
    assert m["charts/d_real"] - m["charts/d_fake"] > 0.1, m
    # D from checkpoint.pt, apart from the charts: a swap at D's forward passes swaps those too, not this
    real = infogan.torchvision_images("mnist", str(mnist_root), False)[0]
    on_real, on_fake = scores_on_checkpoint("infogan", trained_run, real, d_probability)
    assert on_real - on_fake > 0.1, (on_real, on_fake)


def d_probability(module, ckpt, x, labels):
    """D(x) of the checkpoint's D/Q, built as infogan.py builds it, in training mode as D saw each batch."""
    args = module.Args(**ckpt["args"])
    d = module.DiscriminatorQ(args.cat_dim, args.cont_dim, args.num_filters, args.fc_dim, args.q_dim, args.leak)
    d.load_state_dict(ckpt["discriminator"])
    return torch.sigmoid(d(x)[0])


def test_q_learns_the_categorical_code(trained_run):
    """-log Q(c1|G(z, c)) starts at log 10 (Q guesses) and falls as G and Q make c1 recoverable."""
    cat = [v for _, v in read_scalars(trained_run)["losses/info_loss_cat"]]
    assert cat[0] > 0.8 * math.log(10) and np.mean(cat[-3:]) < 0.5 * math.log(10), cat
    assert scalar_means(trained_run, ["charts/q_accuracy"], last=3)["charts/q_accuracy"] > 0.5
    # Figure 1: L_I = H(c1) - E[-log Q(c1|x)] in nats, below H(c1) = ln 10 and rising towards it
    bound = [v for _, v in read_scalars(trained_run)["charts/mi_lower_bound"]]
    assert all(b == pytest.approx(math.log(10) - c, abs=1e-5) for b, c in zip(bound, cat, strict=True))
    assert max(bound) <= math.log(10) and np.mean(bound[-3:]) > 0.5 * math.log(10), bound


def test_sigterm_checkpoint_resumes_exactly_from_cpu_loaded_state(tmp_path, mnist_root, monkeypatch):
    check_sigterm_and_exact_resume("infogan", [*base(mnist_root), "--no-cuda"], tmp_path, monkeypatch,
                                   tags=("losses/d_loss", "losses/g_loss", "losses/info_loss"))


def test_eval_interval_writes_samples_and_leaves_training_unchanged(tmp_path, mnist_root):
    files = check_eval_interval("infogan", base(mnist_root), tmp_path)
    assert files[0]["images"].shape == (2000, 1, 28, 28) and files[0]["images"].dtype == np.uint8
    assert files[0]["codes"].dtype == np.int64 and np.bincount(files[0]["codes"]).tolist() == [200] * 10


def test_corrupt_or_truncated_checkpoint_exits_2(tmp_path, mnist_root):
    check_corrupt_resume("infogan", base(mnist_root), tmp_path)


def test_failed_download_leaves_nothing(tmp_path, mnist_root, monkeypatch):
    check_failed_download_leaves_nothing("infogan", SMALL, tmp_path, monkeypatch)


def test_eval_only_generates_from_checkpoint_and_reports_c1_test_error(tmp_path, mnist_root):
    data = check_eval_only("infogan", base(mnist_root), tmp_path, 20)
    assert data["images"].shape == (20, 1, 28, 28) and np.bincount(data["codes"]).tolist() == [2] * 10
    # the training run and the --eval-only run each log the metric at the checkpoint's iteration, with equal values
    logged = read_scalars(only_run_dir(tmp_path))["charts/c1_test_error"]
    assert [s for s, _ in logged] == [2, 2] and logged[0][1] == logged[1][1]


@pytest.mark.parametrize("flags, mention", [
    (["--lr", -1], "--lr"),
    (["--lr-g", 0], "--lr-g"),
    (["--batch-size", 0], "--batch-size"),
    (["--cat-dim", 0], "--cat-dim"),
    (["--lambda-cont", -0.1], "--lambda-cont"),
    (["--lambda-info", -1], "--lambda-info"),
    (["--lambda-info", "nan"], "--lambda-info"),
    (["--eval-interval", -1], "--eval-interval"),
    (["--resume", "nope/checkpoint.pt"], "--resume"),
    (["--eval-only"], "--eval-only"),
    (["--batch-size", 1000], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, mnist_root, flags, mention):
    check_bad_input("infogan", [*base(mnist_root), *flags], tmp_path, 2, mention)


def test_missing_data_exits_1(tmp_path):
    line = check_bad_input("infogan", ["--data-dir", tmp_path / "empty", "--no-download"], tmp_path, 1, "MNIST")
    assert "--data-dir" in line and not (tmp_path / "empty" / "MNIST").exists()


def test_resume_builds_the_checkpoints_networks_and_refuses_what_does_not_match(tmp_path, mnist_root):
    """The networks come from the checkpoint's args where the command line leaves them at their default (and the run
    says so); --resume --eval-only needs no width flag; a typed width or --output the checkpoint does not have, or
    another script's checkpoint, ends in one line, exit 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    assert run_inprocess("infogan", [*base(mnist_root), "--max-iters", 1, "--num-eval-samples", 0], src)[0] == 0
    ckpt = only_run_dir(src) / "checkpoint.pt"
    data = ["--data-dir", mnist_root, "--no-download", "--no-cuda"]
    rc, out, err = run_inprocess("infogan", [*data, "--max-iters", 2, "--resume", ckpt], src)
    assert rc == 0 and "batch_size=16, noise_dim=8, num_filters=4, fc_dim=16, q_dim=8" in out, err
    rc, out, err = run_inprocess("infogan", [*data, "--resume", ckpt, "--eval-only", "--num-eval-samples", 10], src)
    assert rc == 0 and np.load(only_run_dir(src) / "samples.npz")["images"].shape == (10, 1, 28, 28), err
    rc, out, err = run_inprocess("infogan", [*base(mnist_root), "--cont-dim", 3, "--resume", ckpt], dst)
    assert rc == 2 and "cont_dim=3 as typed (checkpoint: 2)" in out and "does not match" in err
    assert len(err.strip().splitlines()) == 1 and not run_dirs(dst), err
    # the output layer has no weights: a tanh checkpoint resumed with --output sigmoid must be refused by name
    rc, out, err = run_inprocess("infogan", [*base(mnist_root), "--output", "sigmoid", "--resume", ckpt], dst)
    assert rc == 2 and "--output tanh" in err and len(err.strip().splitlines()) == 1 and not run_dirs(dst), err
    assert run_inprocess("dcgan", ["--data-dir", mnist_root, "--no-download", "--ngf", 4, "--ndf", 4, "--latent-dim",
                                   8, "--batch-size", 16, "--max-iters", 1, "--num-eval-samples", 0], dst)[0] == 0
    rc, out, err = run_inprocess("infogan", [*base(mnist_root), "--resume", only_run_dir(dst) / "checkpoint.pt"], dst)
    assert rc == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


def test_pixel_scales_round_trip_and_sigmoid_option_samples_in_range(tmp_path, mnist_root):
    """to_pixels maps uint8 to G's range ([-1, 1] tanh, the default; [0, 1] sigmoid) and from_pixels inverts it; the
    official sigmoid output trains, writes samples and c1_test_error, and a resume keeps it."""
    x = torch.arange(256, dtype=torch.uint8)
    for output, lo in [("tanh", -1.0), ("sigmoid", 0.0)]:
        pixels = infogan.to_pixels(x, output)
        assert pixels[0] == lo and pixels[-1] == 1.0
        assert torch.equal(infogan.from_pixels(pixels, output), x)
    assert infogan.Args().output == "tanh" and isinstance(infogan.Generator(20, 4, 16).conv[-1], torch.nn.Tanh)
    assert isinstance(infogan.Generator(20, 4, 16, "sigmoid").conv[-1], torch.nn.Sigmoid)
    flags = [*base(mnist_root), "--output", "sigmoid", "--max-iters", 2, "--num-eval-samples", 20]
    rc, out, err = run_inprocess("infogan", flags, tmp_path)
    assert rc == 0, err[-3000:]
    run = only_run_dir(tmp_path)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["args"]["output"] == "sigmoid"
    images = np.load(run / "samples.npz")["images"]
    assert images.dtype == np.uint8 and images.shape == (20, 1, 28, 28) and 0 < images.mean() < 255
    assert "c1_test_error" in out and (run / "samples" / "0000002_c3.png").exists()
    rc, out, err = run_inprocess("infogan", ["--data-dir", mnist_root, "--no-download", "--no-cuda", "--resume",
                                             run / "checkpoint.pt", "--max-iters", 3], tmp_path)
    assert rc == 0 and "output='sigmoid'" in out, err[-3000:]


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
