"""Unit tests of benchmarks/metrics.py on constructed inputs (no data files, no network)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import metrics  # noqa: E402


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A feature classifier's weights file with a seeded, untrained network (no data needed, milliseconds)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "classifier_mnist.pt"
    metrics.save_weights(path, metrics.FeatureNet(), "mnist", 0.1, 0.0, metrics.ClassifierConfig(max_steps=1))
    return path


def gaussian(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def random_cov(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- FID -------------------------------------------------------------------------------------------------------
def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(500, np.zeros(8), random_cov(8, 0), seed=1)
    assert abs(metrics.fid(x, x)) < 1e-8


def test_fid_of_two_gaussians_matches_the_closed_form():
    # diagonal covariances: FID = ||mu1 - mu2||^2 + sum_i (s1_i - s2_i)^2 with s = standard deviations
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert metrics.fid_from_stats(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # and from samples of those Gaussians, within sampling error
    x, y = gaussian(200_000, mu1, np.diag(var1), 0), gaussian(200_000, mu2, np.diag(var2), 1)
    assert metrics.fid(x, y) == pytest.approx(expected, rel=0.02)


def test_fid_trace_term_agrees_with_scipy_sqrtm():
    s1, s2 = random_cov(16, 2), random_cov(16, 3)
    mu = np.zeros(16)
    reference = np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert metrics.fid_from_stats(mu, s1, mu, s2) == pytest.approx(reference, rel=1e-8)


def test_fid_is_symmetric_and_order_invariant():
    x = gaussian(400, np.zeros(6), random_cov(6, 4), seed=5)
    y = gaussian(300, np.ones(6), random_cov(6, 6), seed=7)
    perm = np.random.default_rng(0).permutation(len(x))
    assert metrics.fid(x, y) == pytest.approx(metrics.fid(y, x), rel=1e-9)
    assert metrics.fid(x[perm], y) == pytest.approx(metrics.fid(x, y), rel=1e-9)


# --- KID -------------------------------------------------------------------------------------------------------
def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    x = gaussian(2000, np.zeros(8), np.eye(8), seed=0)
    y = gaussian(2000, np.zeros(8), np.eye(8), seed=1)
    z = gaussian(2000, np.full(8, 1.0), np.eye(8), seed=2)
    same, same_std = metrics.kid(x, y, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    far, _ = metrics.kid(x, z, num_subsets=20, subset_size=500)
    assert far > 10 * max(abs(same), same_std)


def test_kid_is_unbiased_mmd_with_cubic_kernel():
    x, y = gaussian(5, np.zeros(3), np.eye(3), 0), gaussian(5, np.ones(3), np.eye(3), 1)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 5
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    mean, std = metrics.kid(x, y, num_subsets=3, subset_size=5)  # subsets of all 5 = the whole sets
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-5, abs=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


# --- precision / recall ----------------------------------------------------------------------------------------
def test_precision_recall_identical_sets_are_one():
    x = gaussian(300, np.zeros(5), np.eye(5), seed=0)
    assert metrics.precision_recall(x, x.copy(), k=3) == (1.0, 1.0)


def test_precision_recall_far_apart_sets_are_zero():
    x = gaussian(300, np.zeros(5), np.eye(5), seed=0)
    assert metrics.precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)


def test_precision_high_recall_low_for_a_collapsed_generator():
    real = gaussian(1000, np.zeros(2), np.eye(2), seed=0)
    fake = gaussian(1000, np.zeros(2), 0.01 * np.eye(2), seed=1)  # all mass near the real mode's centre
    precision, recall = metrics.precision_recall(real, fake, k=3)
    assert precision > 0.95 and recall < 0.2


# --- mode coverage, labels, codes ------------------------------------------------------------------------------
def test_mode_coverage_uniform_and_collapsed():
    uniform = metrics.mode_coverage(np.repeat(np.arange(10), 100))
    assert uniform["modes"] == 10 and uniform["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    collapsed = metrics.mode_coverage(np.full(1000, 3))
    assert collapsed["modes"] == 1 and collapsed["kl_uniform"] == pytest.approx(math.log(10))
    # two classes at 49.5 % each and one at 1 %: three modes at the 1 % threshold, KL by hand
    preds = np.array([0] * 495 + [1] * 495 + [2] * 10)
    cov = metrics.mode_coverage(preds)
    expected = 2 * 0.495 * math.log(4.95) + 0.01 * math.log(0.1)
    assert cov["modes"] == 3 and cov["kl_uniform"] == pytest.approx(expected)
    assert metrics.mode_coverage(np.array([0] * 995 + [1] * 5))["modes"] == 1  # 0.5 % is below the threshold


def test_label_accuracy_and_code_error():
    labels = np.repeat(np.arange(10), 10)
    preds = labels.copy()
    preds[:5] = 9
    assert metrics.label_accuracy(preds, labels) == pytest.approx(0.95)
    codes = np.repeat(np.arange(10), 10)
    preds = (codes + 3) % 10  # a permutation of classes: no error after mapping
    preds[0] = 5  # one sample of code 0 lands elsewhere
    error, mapping = metrics.code_error(preds, codes)
    assert error == pytest.approx(0.01) and mapping[0] == 3 and mapping[9] == 2


def test_class_spread_is_one_for_real_like_samples_and_zero_for_one_image_per_label():
    rng = np.random.default_rng(0)
    real_labels = np.repeat(np.arange(10), 200)
    centres = rng.normal(0, 10, (10, 16))
    real = centres[real_labels] + rng.normal(0, 1, (2000, 16))
    labels = np.repeat(np.arange(10), 100)
    same_law = centres[labels] + rng.normal(0, 1, (1000, 16))  # drawn like the real features of each class
    assert metrics.class_spread(same_law, labels, real, real_labels) == pytest.approx(1.0, abs=0.05)
    half = centres[labels] + rng.normal(0, 0.5, (1000, 16))  # half the spread within each label
    assert metrics.class_spread(half, labels, real, real_labels) == pytest.approx(0.5, abs=0.05)
    collapsed = centres[labels] + 0.0  # one image per label
    assert metrics.class_spread(collapsed, labels, real, real_labels) == pytest.approx(0.0)


def test_code_error_matches_codes_to_classes_one_to_one():
    # codes 0 and 1 both produce mostly class 0: the old most-frequent-class mapping sends both to class 0 (error
    # 6/30); a one-to-one matching must give one of them class 1, and the best choice is code 1 (error 8/30)
    codes = np.repeat([0, 1, 2], 10)
    preds = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4 + [2] * 10)
    many_to_one = {c: int(np.bincount(preds[codes == c]).argmax()) for c in range(3)}
    assert many_to_one == {0: 0, 1: 0, 2: 2}
    old_error = float((np.array([many_to_one[c] for c in codes]) != preds).mean())
    error, mapping = metrics.code_error(preds, codes, num_classes=3)
    assert mapping == {0: 0, 1: 1, 2: 2}
    assert error == pytest.approx(8 / 30) and old_error == pytest.approx(6 / 30)
    # more codes than classes: the code left without a class is wrong for all its samples
    error, mapping = metrics.code_error(np.array([0, 0, 1, 1, 1, 1]), np.array([0, 0, 1, 1, 2, 2]), num_classes=2)
    assert sorted(mapping.values()) == [-1, 0, 1] and mapping[0] == 0 and error == pytest.approx(2 / 6)


# --- image-to-image --------------------------------------------------------------------------------------------
def test_psnr_ssim_identical_images():
    x = np.random.default_rng(0).integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    assert np.all(np.isinf(metrics.psnr(x, x)))
    assert metrics.ssim(x, x) == pytest.approx(np.ones(3), abs=1e-12)
    assert metrics.l1_error(x, x) == 0.0


def test_psnr_of_a_constant_offset_is_closed_form():
    x = np.random.default_rng(0).uniform(0.2, 0.7, size=(2, 1, 16, 16))
    delta = 0.1
    assert metrics.psnr(x, x + delta) == pytest.approx(np.full(2, -20 * math.log10(delta)))
    assert metrics.l1_error(x, x + delta) == pytest.approx(delta)
    xu = np.full((1, 3, 16, 16), 100, np.uint8)  # uint8 input is scaled by 1/255
    assert metrics.psnr(xu, xu + 10)[0] == pytest.approx(-20 * math.log10(10 / 255))


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.5, 0.6
    x, y = np.full((1, 1, 20, 20), a), np.full((1, 1, 20, 20), b)
    c1 = 0.01 ** 2
    assert metrics.ssim(x, y)[0] == pytest.approx((2 * a * b + c1) / (a ** 2 + b ** 2 + c1))


def test_ssim_drops_with_noise_and_rejects_small_images():
    x = np.random.default_rng(0).uniform(size=(2, 1, 24, 24))
    noisy = np.clip(x + np.random.default_rng(1).normal(0, 0.2, size=x.shape), 0, 1)
    assert np.all(metrics.ssim(x, noisy) < 0.9)
    with pytest.raises(ValueError, match="window"):
        metrics.ssim(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)))


def test_score_translations_reads_both_layouts(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(4, 3, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "p2p.npz", inputs=img, outputs=img, targets=img)
    np.savez(tmp_path / "cyc.npz", a2b_inputs=img, a2b_outputs=img, a2b_targets=img, b2a_inputs=img, b2a_outputs=img,
             b2a_cycle=255 - img)
    assert metrics.score_translations(tmp_path / "p2p.npz")["test"]["ssim"] == pytest.approx(1.0)
    scored = metrics.score_translations(tmp_path / "cyc.npz")
    assert set(scored) == {"a2b", "b2a_cycle"}  # b2a has no targets, a2b no reconstruction
    assert scored["b2a_cycle"]["l1"] == pytest.approx(metrics.l1_error(img, 255 - img))


# --- feature extractor input -----------------------------------------------------------------------------------
def test_to_input_resizes_and_normalises():
    x = np.zeros((2, 1, 32, 32), np.uint8)
    t = metrics.to_input(x)
    assert t.shape == (2, 1, 28, 28)
    assert torch.allclose(t, torch.full_like(t, -metrics.MNIST_MEAN / metrics.MNIST_STD))
    with pytest.raises(ValueError, match="uint8"):
        metrics.to_input(np.zeros((2, 1, 28, 28), np.float32))


def test_dataset_names():
    assert metrics.dataset_key("MNIST") == "mnist"
    assert metrics.dataset_key("fashion_mnist") == "fashion-mnist"
    assert metrics.dataset_of_run("runs/mnist__gan__1__1700000000") == "mnist"
    with pytest.raises(ValueError, match="facades"):
        metrics.dataset_key("facades")


# --- the classifier and scoring a samples.npz ------------------------------------------------------------------
def test_classifier_weights_are_loaded_and_trained_only_when_missing_or_asked(mnist_root, tmp_path, capsys):
    config = metrics.ClassifierConfig(epochs=1, max_steps=3)
    path = tmp_path / "clf.pt"
    first = metrics.get_classifier("mnist", mnist_root, path, config=config, log=False)  # missing: trained, written
    assert path.exists() and first.sha256 == metrics.sha256_file(path) and f"sha256 {first.sha256}" in \
        capsys.readouterr().err
    mtime = path.stat().st_mtime_ns
    again = metrics.get_classifier("MNIST", mnist_root, path, config=metrics.ClassifierConfig(epochs=5), log=False)
    assert path.stat().st_mtime_ns == mtime and again.sha256 == first.sha256  # loaded, not retrained
    assert again.config == config  # the config recorded in the file, not the one passed
    assert np.array_equal(again.real_features, first.real_features)
    _, preds = metrics.extract(again.net, again.test_images)
    _, labels = metrics.load_split("mnist", mnist_root, train=False)
    assert again.test_accuracy == float((preds == labels).mean())
    retrained = metrics.get_classifier("mnist", mnist_root, path, retrain=True, config=config, log=False)
    assert retrained.sha256 == metrics.sha256_file(path) and f"sha256 {retrained.sha256}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fashion-mnist"):
        metrics.get_classifier("fashion-mnist", mnist_root, path, log=False)  # weights of another dataset


def test_committed_weights_match_the_hash_in_the_docs():
    path = metrics.default_weights("mnist")
    assert path.exists(), f"{path} is missing: the benchmark's feature classifier must be committed"
    digest = metrics.sha256_file(path)
    assert digest in (ROOT / "docs" / "benchmarks.md").read_text(), f"docs/benchmarks.md does not name sha256 {digest}"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["dataset"] == "mnist" and ckpt["format"] == metrics.WEIGHTS_FORMAT
    metrics.FeatureNet().load_state_dict(ckpt["state_dict"])


def extract_blurred(clf, images):
    """Features of images taken to 32 px and back with an antialiased bilinear resize (what a naive 32 -> 28 step
    would score)."""
    x = torch.from_numpy(metrics.resize_uint8(images, 32)).float()
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return metrics.extract(clf.net, x.round().clamp(0, 255).to(torch.uint8).numpy())[0]


def test_downsample_matrix_inverts_the_scripts_resize():
    images = (np.random.default_rng(0).random((4, 1, 28, 28)) * 255).astype(np.uint8)
    back = (metrics.to_input(metrics.resize_uint8(images, 32)) * metrics.MNIST_STD + metrics.MNIST_MEAN) * 255
    assert (back - torch.from_numpy(images).float()).abs().max() < 3  # uint8 rounding at 32 px only


def test_every_size_is_scored_against_the_raw_28px_test_set(mnist_root, tmp_path, tiny_weights):
    clf = metrics.get_classifier("mnist", mnist_root, tiny_weights, log=False)
    _, labels = metrics.load_split("mnist", mnist_root, train=False)
    np.savez(tmp_path / "raw.npz", images=clf.test_images, labels=labels, iteration=7, train_seconds=1.5)
    raw = metrics.score_samples(tmp_path / "raw.npz", clf, kid_subsets=5)
    assert raw["size"] == 28 and abs(raw["fid"]) < 1e-6 and raw["precision"] == raw["recall"] == 1.0
    assert raw["iteration"] == 7 and raw["train_seconds"] == 1.5  # an eval file's header passes through
    _, preds = metrics.extract(clf.net, clf.test_images)
    assert raw["label_accuracy"] == float((preds == labels).mean())
    np.savez(tmp_path / "big.npz", images=metrics.resize_uint8(clf.test_images, 32))
    big = metrics.score_samples(tmp_path / "big.npz", clf, kid_subsets=0)
    assert big["size"] == 32 and "kid" not in big
    feats, _ = metrics.extract(clf.net, metrics.resize_uint8(clf.test_images, 32))
    assert big["fid"] == pytest.approx(metrics.fid(clf.real_features, feats), rel=1e-6)
    assert big["fid"] < 0.05 * metrics.fid(clf.real_features, extract_blurred(clf, clf.test_images))  # no blur added
    floor = metrics.real_floor(clf, size=32, kid_subsets=5)
    train, _ = metrics.load_split("mnist", mnist_root, train=True)
    feats, _ = metrics.extract(clf.net, metrics.resize_uint8(train, 32))
    assert floor["size"] == 32 and floor["n"] == 256 and floor["fid"] == pytest.approx(
        metrics.fid(clf.real_features, feats), rel=1e-6)


def test_scoring_is_identical_in_two_fresh_processes(mnist_root, tmp_path, tiny_weights):
    images, _ = metrics.load_split("mnist", mnist_root, train=True)
    np.savez(tmp_path / "samples.npz", images=images[:120])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "metrics.py"), str(tmp_path / "samples.npz"), "--dataset",
           "mnist", "--data-dir", str(mnist_root), "--weights", str(tiny_weights)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    first, second = (json.loads(o[0]) for o in outs)
    assert first["samples"]["fid"] == second["samples"]["fid"] and first["samples"] == second["samples"]
    assert first["classifier"]["sha256"] == metrics.sha256_file(tiny_weights)
