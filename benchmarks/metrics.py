# Docs: docs/benchmarks.md | FID: Heusel et al. 2017 | KID: Binkowski et al. 2018 | P/R: Kynkaanniemi et al. 2019
"""Sample-quality metrics for CleanGAN artefacts (samples.npz, translations.npz).

Noise-to-image samples are scored in the feature space of a small CNN classifier trained once on the real
training set, whose weights are committed (benchmarks/classifier_mnist.pt, SHA-256 in docs/benchmarks.md). One
scoring space, 32 px: 28 px images are brought up by the scripts' own 28 -> 32 resize (`resize_uint8`), 32 px
images come as they are, and the reference is the real test set taken to 32 px by that same resize; the network's
fixed first step is a round trip through the 28 px grid (`low_pass`), so that the same per-pixel noise counts
about the same at 28 and at 32 px. Nothing is sharpened.
Image-to-image translations are scored against their targets (L1, PSNR, SSIM).

Usage: python benchmarks/metrics.py runs/<run>/samples.npz --data-dir data [--weights PATH] [--retrain]
       python benchmarks/metrics.py --calibrate --data-dir data   (the calibration table of docs/benchmarks.md)
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F
import tyro
from torch import nn

BENCH_DIR = Path(__file__).resolve().parent
WEIGHTS_FORMAT = 2  # bump when the classifier's architecture, input or the weights file's layout changes
# 1: 28 px input, 32 px samples mapped down by a least-squares inverse of the resize (a sharpening filter)
# 2: 32 px input (28 px images brought up by the scripts' resize), then the fixed round trip 32 -> 28 -> 32 px
DATASET_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # dataset name -> torchvision folder
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # normalisation of the classifier's input (both datasets)
IMG_SIZE = 28  # MNIST's own size: the data files, the 28 px scripts' samples, the default real-data floor
FEATURE_SIZE = 32  # the classifier's input size, the one scoring space (28 px images: `resize_uint8` up to it)


# ---------------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------------
def dataset_key(name: str) -> str:
    """'MNIST', 'fashion_mnist', 'FashionMNIST' -> the canonical 'mnist' / 'fashion-mnist'."""
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist"}.get(key, key)
    if key not in DATASET_FOLDERS:
        raise ValueError(f"no feature classifier for dataset {name!r}; known: {', '.join(DATASET_FOLDERS)}")
    return key


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (uncompressed, or `path`.gz) into a uint8 array shaped as its header says."""
    if not path.exists() and Path(f"{path}.gz").exists():
        with gzip.open(f"{path}.gz", "rb") as f:
            raw = f.read()
    elif path.exists():
        raw = path.read_bytes()
    else:
        raise FileNotFoundError(f"{path} not found (expected torchvision's layout DATA_DIR/<Dataset>/raw)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def load_split(dataset: str, data_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) of an MNIST-like dataset in torchvision's raw layout."""
    raw = Path(data_dir) / DATASET_FOLDERS[dataset_key(dataset)] / "raw"
    prefix = "train" if train else "t10k"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte")[:, None]
    labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte").astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{raw}: {len(images)} {prefix} images but {len(labels)} labels")
    return images, labels


# ---------------------------------------------------------------------------------------------------------------
# Feature extractor: a small CNN classifier
# ---------------------------------------------------------------------------------------------------------------
class FeatureNet(nn.Module):
    """conv3x3(16)-BN-ReLU-pool -> conv3x3(32)-BN-ReLU-pool -> fc 128 ReLU (the features) -> dropout -> fc 10,
    on 32 x 32 input."""

    def __init__(self, width: int = 16, feature_dim: int = 128, num_classes: int = 10, size: int = FEATURE_SIZE):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 16, 16)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, feature_dim), nn.ReLU(),  # (B, 128)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 128), logits (B, 10)) of normalised images (B, 1, 32, 32)."""
        feats = self.body(x)
        return feats, self.head(feats)


@dataclass
class ClassifierConfig:
    """How the feature classifier is trained (recorded in its weights file)."""

    epochs: int = 3
    max_steps: int = 0  # 0 = no cap (smoke tests cap it)
    batch_size: int = 128
    max_lr: float = 3e-3  # one-cycle schedule peak, Adam
    seed: int = 0


@dataclass
class Classifier:
    """The feature classifier, where its weights came from, and the real test set's features."""

    net: FeatureNet
    dataset: str
    data_dir: str
    test_accuracy: float  # on DATA_DIR's test set, measured when loaded
    train_seconds: float
    config: ClassifierConfig
    real_features: np.ndarray = field(repr=False)  # (N_test, 128) float32: the test set at 32 px, the one reference
    test_images: np.ndarray = field(repr=False)  # (N_test, 1, 28, 28) uint8, as in the data files
    test_labels: np.ndarray = field(repr=False)  # (N_test,) int64
    weights_path: str = ""
    sha256: str = ""  # of the weights file
    trained_test_accuracy: float = float("nan")  # recorded in the weights file when it was trained

    def reference(self) -> np.ndarray:
        """Features of the reference set every sample set is scored against: the test set taken to 32 px by the
        scripts' resize."""
        return self.real_features

    def info(self) -> dict:
        return {"dataset": self.dataset, "data_dir": self.data_dir, "test_accuracy": self.test_accuracy,
                "trained_test_accuracy": self.trained_test_accuracy, "train_seconds": self.train_seconds,
                "config": asdict(self.config), "weights": self.weights_path, "sha256": self.sha256,
                "feature_dim": int(self.real_features.shape[1]), "input_size": FEATURE_SIZE,
                "reference": f"test set, {IMG_SIZE} -> {FEATURE_SIZE} px by the scripts' resize"}


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 tensor [N, C, H, W] -> uint8 [N, C, size, size]: bilinear, antialiased, align_corners=False, rounded
    (exactly the scripts' 28 -> 32 px resize of their training data)."""
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).round_().clamp_(0, 255).to(torch.uint8)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size], bilinear with antialiasing (the scripts' 28 -> 32 px resize)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    return torch.cat([_resize(x[i:i + 10000], size) for i in range(0, max(1, len(x)), 10000)]).numpy()


def low_pass(x: torch.Tensor) -> torch.Tensor:
    """The scoring space's fixed first step, float [N, C, 32, 32] -> [N, C, 32, 32]: a round trip through the
    28 px grid, down by the antialiased bilinear resize and up by the scripts' bilinear one, in float (no rounding).
    Both steps average (non-negative weights summing to 1), so it sharpens nothing and never raises the variance of
    white noise. It keeps what a 28 px image can hold: without it, the classifier (which only ever sees digits
    brought up from 28 px) would take the frequencies above 28 px's band, which only 32 px images have, as a
    strong signal, and the same per-pixel noise would score 2-2.5x the FID at 32 px as at 28 px."""
    size = x.shape[-1]
    down = F.interpolate(x, size=(IMG_SIZE, IMG_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(down, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, H, W] -> normalised float [N, 1, 32, 32], the classifier's input: images of another
    size are first taken to 32 px by the scripts' own resize (`resize_uint8`: 28 px samples come in exactly as the
    32 px scripts see their training data, so real digits score the same at 28 and at 32 px), then scaled to
    [0, 1], averaged to grey, passed through `low_pass` and normalised."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
    if x.shape[-2:] != (FEATURE_SIZE, FEATURE_SIZE):
        x = _resize(x, FEATURE_SIZE)
    x = x.float() / 255.0
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    return (low_pass(x) - MNIST_MEAN) / MNIST_STD


@torch.no_grad()
def extract(net: FeatureNet, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, 128], predicted classes int64 [N]) of uint8 images [N, C, H, W]."""
    net.eval()
    feats, preds = [], []
    for i in range(0, len(images), batch_size):
        f, logits = net(to_input(images[i:i + batch_size]))
        feats.append(f)
        preds.append(logits.argmax(dim=1))
    if not feats:
        return np.zeros((0, net.head[1].in_features), np.float32), np.zeros(0, np.int64)
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()


def train_classifier(dataset: str, data_dir: str | Path, config: ClassifierConfig,
                     log: bool = True) -> tuple[FeatureNet, float, float]:
    """Train the feature classifier on the real training set taken to 32 px by the scripts' resize; returns (net,
    accuracy on the test set scored the same way, seconds)."""
    x_train, y_train = load_split(dataset, data_dir, train=True)
    x_train = resize_uint8(x_train, FEATURE_SIZE)  # once, not per batch
    x_test, y_test = load_split(dataset, data_dir, train=False)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = FeatureNet()
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    opt = torch.optim.Adam(net.parameters(), lr=config.max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.max_lr, total_steps=total)
    start, step = time.time(), 0
    net.train()
    while step < total:
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            _, logits = net(to_input(x_train[idx]))
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
        if log:
            print(f"[metrics] classifier: step {step}/{total}, loss {loss.item():.4f}, {time.time() - start:.0f}s",
                  file=sys.stderr, flush=True)
    seconds = time.time() - start
    _, preds = extract(net, x_test)
    return net, float((preds == y_test).mean()), seconds


def default_weights(dataset: str) -> Path:
    """Where the committed weights of `dataset`'s feature classifier live: benchmarks/classifier_{dataset}.pt."""
    return BENCH_DIR / f"classifier_{dataset_key(dataset)}.pt"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(path: str | Path, net: FeatureNet, dataset: str, test_accuracy: float, train_seconds: float,
                 config: ClassifierConfig) -> str:
    """Write the classifier's weights file atomically; returns its SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # not the file: torch.save names the archive after the file, which would change the hash
    torch.save({"format": WEIGHTS_FORMAT, "dataset": dataset_key(dataset), "state_dict": net.state_dict(),
                "test_accuracy": test_accuracy, "train_seconds": train_seconds, "config": asdict(config),
                "input_size": FEATURE_SIZE,
                "torch": str(torch.__version__)}, buffer)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return sha256_file(path)


def get_classifier(dataset: str, data_dir: str | Path, weights: str | Path | None = None, retrain: bool = False,
                   config: ClassifierConfig | None = None, log: bool = True) -> Classifier:
    """The feature classifier for `dataset`, loaded from `weights` (default: the committed
    benchmarks/classifier_{dataset}.pt). Trained on DATA_DIR's training set (and written to `weights`) only when
    `retrain` is set or the file does not exist; the new SHA-256 is printed then."""
    dataset = dataset_key(dataset)
    data_dir = str(Path(data_dir).resolve())
    path = Path(weights) if weights else default_weights(dataset)
    net = FeatureNet()
    if retrain or not path.exists():
        config = config or ClassifierConfig()
        if log:
            why = "--retrain-classifier" if retrain else f"no weights at {path}"
            print(f"[metrics] training the {dataset} feature classifier ({why})", file=sys.stderr, flush=True)
        net, trained_acc, seconds = train_classifier(dataset, data_dir, config, log=log)
        digest = save_weights(path, net, dataset, trained_acc, seconds, config)
        print(f"[metrics] new {dataset} classifier weights {path}: sha256 {digest}", file=sys.stderr, flush=True)
    else:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != WEIGHTS_FORMAT or ckpt.get("dataset") != dataset:
            raise ValueError(f"{path}: weights of format {ckpt.get('format')} for {ckpt.get('dataset')!r}, expected "
                             f"format {WEIGHTS_FORMAT} for {dataset!r} (retrain with --retrain-classifier)")
        net.load_state_dict(ckpt["state_dict"])
        trained_acc, seconds = float(ckpt["test_accuracy"]), float(ckpt["train_seconds"])
        config = ClassifierConfig(**ckpt["config"])
        digest = sha256_file(path)
    x_test, y_test = load_split(dataset, data_dir, train=False)
    real_features, preds = extract(net, x_test)
    return Classifier(net, dataset, data_dir, float((preds == y_test).mean()), seconds, config, real_features, x_test,
                      y_test, str(path), digest, trained_acc)


# ---------------------------------------------------------------------------------------------------------------
# Feature-space metrics
# ---------------------------------------------------------------------------------------------------------------
def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), all in float64.

    tr((S1 S2)^1/2) is computed from the eigenvalues of the symmetric PSD product S1^1/2 S2 S1^1/2, which has the
    same spectrum as S1 S2; eigenvalues that are negative beyond round-off are reported.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrt_psd(sigma1)
    prod = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((prod + prod.T) / 2)
    if eig.min() < -1e-6 * max(1.0, np.abs(eig).max()):
        warnings.warn(f"FID: S1^1/2 S2 S1^1/2 has eigenvalue {eig.min():.3g} < 0 beyond round-off; clipped to 0",
                      stacklevel=2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D]."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    return fid_from_stats(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def kid(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets: (mean, std over subsets).

    Kernel matrices in float32 (the speed), their sums in float64 (the precision of a small difference).
    """
    f1, f2 = torch.as_tensor(np.asarray(feats1, np.float32)), torch.as_tensor(np.asarray(feats2, np.float32))
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {len(f1)} and {len(f2)})")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    mmds = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[torch.from_numpy(rng.choice(len(f1), m, replace=False))]
        y = f2[torch.from_numpy(rng.choice(len(f2), m, replace=False))]
        k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diag = (k_xx.double().sum() - k_xx.diagonal().double().sum()
                    + k_yy.double().sum() - k_yy.diagonal().double().sum()) / (m * (m - 1))
        mmds[i] = float(off_diag - 2 * k_xy.double().mean())
    return float(mmds.mean()), float(mmds.std())


def _knn_radii(feats: torch.Tensor, ks: tuple[int, ...], batch_size: int) -> list[torch.Tensor]:
    """For each k in `ks`, the distance of each point to its k-th nearest neighbour in the same set (itself
    excluded), from one pass over the pairwise distances."""
    kmax = max(ks)
    nearest = torch.cat([torch.cdist(feats[i:i + batch_size], feats).topk(kmax + 1, dim=1, largest=False).values
                         for i in range(0, len(feats), batch_size)])  # (N, kmax + 1), ascending, column 0 = itself
    return [nearest[:, k] for k in ks]


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of `queries` inside at least one ball B(support_j, radii_j)."""
    inside = [(torch.cdist(queries[i:i + batch_size], support) <= radii[None]).any(dim=1)
              for i in range(0, len(queries), batch_size)]
    return float(torch.cat(inside).double().mean())


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 3, dc_k: int = 5, batch_size: int = 1000,
         seed: int = 0) -> dict[str, float]:
    """Precision and recall with k-NN balls of `k` (Kynkaanniemi et al. 2019), density and coverage with the real
    features' k-NN balls of `dc_k` (Naeem et al. 2020), from one subsample: the larger set is subsampled to the size
    of the smaller (seeded, order kept). Balls are closed (distance <= radius).

    precision = fraction of samples Y_j inside at least one real ball B(X_i, NND_k(X_i));
    recall = fraction of real X_i inside at least one sample ball B(Y_j, NND_k(Y_j));
    density = (1/kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))] with k = dc_k (how many real balls hold a sample, over
    k: about 1 when the two sets are drawn alike, above 1 where samples crowd the dense real regions);
    coverage = (1/N) sum_i 1[some Y_j in B(X_i, NND_k(X_i))] with k = dc_k (real balls holding a sample)."""
    n = min(len(real), len(fake))
    if n <= max(k, dc_k):
        raise ValueError(f"precision/recall/density/coverage with k={max(k, dc_k)} needs more than {max(k, dc_k)} "
                         f"samples per set (got {n})")
    rng = np.random.default_rng(seed)
    real = real[np.sort(rng.choice(len(real), n, replace=False))] if len(real) > n else real
    fake = fake[np.sort(rng.choice(len(fake), n, replace=False))] if len(fake) > n else fake
    r, f = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)
    real_k, real_dc = _knn_radii(r, (k, dc_k), batch_size)
    (fake_k,) = _knn_radii(f, (k,), batch_size)
    in_real, inside_count, covered = [], 0, torch.zeros(n, dtype=torch.bool)
    for i in range(0, n, batch_size):
        dist = torch.cdist(f[i:i + batch_size], r)  # (b, N): sample j to real i
        in_real.append((dist <= real_k[None]).any(dim=1))
        inside = dist <= real_dc[None]
        inside_count += int(inside.sum())
        covered |= inside.any(dim=0)
    return {"precision": float(torch.cat(in_real).double().mean()),  # samples within the real manifold
            "recall": _coverage(r, f, fake_k, batch_size),  # real within the samples' manifold
            "density": inside_count / (dc_k * n), "coverage": float(covered.double().mean())}


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls; the larger set is subsampled."""
    out = prdc(real, fake, k, k, batch_size, seed)
    return out["precision"], out["recall"]


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5, batch_size: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with the real features' k-NN balls; see `prdc`."""
    out = prdc(real, fake, k, k, batch_size, seed)
    return out["density"], out["coverage"]


def mode_coverage(preds: np.ndarray, num_classes: int = 10, threshold: float = 0.01) -> dict:
    """Class histogram of predictions, classes holding >= `threshold` of them, and KL(histogram || uniform)."""
    hist = np.bincount(np.asarray(preds, np.int64), minlength=num_classes)[:num_classes] / max(1, len(preds))
    nz = hist > 0
    kl = float((hist[nz] * np.log(hist[nz] * num_classes)).sum())
    return {"modes": int((hist >= threshold).sum()), "kl_uniform": kl, "histogram": hist.round(4).tolist()}


def label_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of conditional samples classified as the label they were generated for."""
    return float((np.asarray(preds) == np.asarray(labels)).mean())


def mean_pairwise_distance(feats: np.ndarray, n: int = 1000) -> float:
    """Mean Euclidean distance between the first `n` feature vectors, over all pairs."""
    return torch.pdist(torch.as_tensor(feats[:n], dtype=torch.float64)).mean().item()


def class_spread(feats: np.ndarray, labels: np.ndarray, real_feats: np.ndarray, real_labels: np.ndarray,
                 num_classes: int = 10) -> float:
    """How varied conditional samples are within a label, against real digits: for each class c, the mean pairwise
    feature distance of the samples drawn for label c over that of the real test digits of class c, averaged over
    the classes (real training digits score about 1; one image per label scores 0)."""
    labels, real_labels = np.asarray(labels), np.asarray(real_labels)
    ratios = [mean_pairwise_distance(feats[labels == c]) / mean_pairwise_distance(real_feats[real_labels == c])
              for c in range(num_classes) if (labels == c).sum() > 1]
    return float(np.mean(ratios))


def code_error(preds: np.ndarray, codes: np.ndarray, num_classes: int = 10) -> tuple[float, dict[int, int]]:
    """InfoGAN categorical-code error with a one-to-one code -> class matching (Hungarian algorithm on the
    code x class count matrix, maximising the matched samples); (error, map). A code left without a class (more codes
    than classes) counts as wrong for all its samples and maps to -1."""
    preds, codes = np.asarray(preds, np.int64), np.asarray(codes, np.int64)
    values = np.unique(codes)
    counts = np.stack([np.bincount(preds[codes == c], minlength=num_classes)[:num_classes] for c in values])
    rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
    mapping = {int(c): -1 for c in values}
    mapping.update({int(values[r]): int(k) for r, k in zip(rows, cols, strict=True)})
    mapped = np.array([mapping[int(c)] for c in codes])
    return float((mapped != preds).mean()), mapping


def feature_metrics(real_feats: np.ndarray, fake_feats: np.ndarray, fake_preds: np.ndarray,
                    labels: np.ndarray | None = None, codes: np.ndarray | None = None,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, k: int = 3,
                    real_labels: np.ndarray | None = None, dc_k: int = 5) -> dict:
    """Every noise-to-image metric for one sample set (features already extracted); kid_subsets=0 skips KID.
    Precision/recall use k-NN balls with `k` (3), density/coverage the real balls with `dc_k` (5)."""
    out = {"n": len(fake_feats), "fid": fid(real_feats, fake_feats), **prdc(real_feats, fake_feats, k, dc_k),
           **mode_coverage(fake_preds)}
    if kid_subsets:
        out["kid"], out["kid_std"] = kid(real_feats, fake_feats, kid_subsets, kid_subset_size)
    if labels is not None:
        out["label_accuracy"] = label_accuracy(fake_preds, labels)
        if real_labels is not None:
            out["class_spread"] = class_spread(fake_feats, labels, real_feats, real_labels)
    if codes is not None:
        out["code_error"], mapping = code_error(fake_preds, codes)
        out["code_to_class"] = {str(c): v for c, v in mapping.items()}
    return out


def score_samples(path: str | Path, clf: Classifier, **kwargs) -> dict:
    """Metrics of a samples.npz (`images`, optional `labels` / `codes`; an eval file's `iteration` and
    `train_seconds` are passed through) against the test set at 32 px; samples of another size are brought to 32 px
    by `to_input` (the scripts' own resize), the one fixed method."""
    with np.load(path) as npz:
        if "images" not in npz:
            raise ValueError(f"{path}: no `images` array (has {', '.join(npz.files)})")
        images = npz["images"]
        labels, codes = npz.get("labels"), npz.get("codes")
        extra = {k: npz[k].item() for k in ("iteration", "train_seconds") if k in npz.files}
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{path}: `images` must be square [N, C, H, W], got {images.shape}")
    feats, preds = extract(clf.net, images)
    return {**extra, "size": int(images.shape[-1]),
            **feature_metrics(clf.reference(), feats, preds, labels, codes, real_labels=clf.test_labels, **kwargs)}


def real_training_sample(clf: Classifier, n: int = 10000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 1, 28, 28], labels) of `n` real training images, a seeded sample in file order."""
    x_train, y_train = load_split(clf.dataset, clf.data_dir, train=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(x_train), min(n, len(x_train)), replace=False))
    return x_train[idx], y_train[idx]


def real_floor(clf: Classifier, size: int = IMG_SIZE, n: int = 10000, seed: int = 0, **kwargs) -> dict:
    """Every metric for `n` real training images (with their labels) against the test set, scored exactly like
    samples of `size` px: the 28 px images, or taken to `size` px first by the scripts' resize (as the 32 px scripts
    take their training data). At 28 and at 32 px the classifier sees the same images, so those floors are equal."""
    images, labels = real_training_sample(clf, n, seed)
    images = images if size == IMG_SIZE else resize_uint8(images, size)
    feats, preds = extract(clf.net, images)
    return {"size": size, **feature_metrics(clf.reference(), feats, preds, labels=labels,
                                            real_labels=clf.test_labels, **kwargs)}


# ---------------------------------------------------------------------------------------------------------------
# Calibration: real digits, and real digits spoilt in known ways, at 28 and at 32 px
# ---------------------------------------------------------------------------------------------------------------
def add_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 images plus per-pixel Gaussian noise of std `sigma` (uint8 units), rounded and clipped to [0, 255]."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


def box_blur(images: np.ndarray, width: int = 3) -> np.ndarray:
    """uint8 images [N, C, H, W] averaged over a `width` x `width` box (zero padding, the digits' background),
    rounded."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    kernel = torch.full((x.shape[1], 1, width, width), 1.0 / width ** 2)
    return F.conv2d(x, kernel, padding=width // 2, groups=x.shape[1]).round_().clamp_(0, 255).to(torch.uint8).numpy()


def calibration_sets(clf: Classifier, n: int = 10000, seed: int = 0) -> list[tuple[str, int, np.ndarray]]:
    """(what, size in px, uint8 images) of every calibration row: `n` real training digits at 28 px and taken to
    32 px by the scripts' resize; the same with Gaussian noise (sigma 15 and 30) or a 3 x 3 box blur applied at that
    size; digits 0-4 only; digit 1 only (all of them when fewer than `n`); uniform noise."""
    images, labels = real_training_sample(clf, n, seed)
    at = {IMG_SIZE: images, FEATURE_SIZE: resize_uint8(images, FEATURE_SIZE)}
    rows = [("real digits", size, x) for size, x in at.items()]
    for sigma in (15, 30):
        rows += [(f"+ Gaussian noise, sigma {sigma}", size, add_noise(x, sigma, seed + 1)) for size, x in at.items()]
    rows += [("3 x 3 box blur", size, box_blur(x)) for size, x in at.items()]
    x_train, y_train = load_split(clf.dataset, clf.data_dir, train=True)
    rng = np.random.default_rng(seed)
    for what, keep in [("digits 0-4 only", y_train < 5), ("digit 1 only", y_train == 1)]:
        idx = np.flatnonzero(keep)
        rows.append((what, IMG_SIZE, x_train[np.sort(rng.choice(idx, min(n, len(idx)), replace=False))]))
    rows.append(("uniform noise", FEATURE_SIZE, rng.integers(0, 256, (n, 1, FEATURE_SIZE, FEATURE_SIZE), np.uint8)))
    return rows


def calibrate(clf: Classifier, n: int = 10000, seed: int = 0) -> list[dict]:
    """Every metric (KID skipped) of every calibration row against the reference, as `score_samples` scores."""
    out = []
    for what, size, images in calibration_sets(clf, n, seed):
        feats, preds = extract(clf.net, images)
        out.append({"what": what, "size": size, **feature_metrics(clf.reference(), feats, preds, kid_subsets=0)})
    return out


def calibration_table(rows: list[dict]) -> str:
    """The calibration rows as the markdown table of docs/benchmarks.md."""
    lines = ["| images | px | n | FID | precision | recall | density | coverage | modes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['size']} | {r['n']} | {r['fid']:.1f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} | {r['modes']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Image-to-image metrics (images in [0, 1])
# ---------------------------------------------------------------------------------------------------------------
def _as_unit(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images -> float64 in [0, 1]; float images are taken as already in [0, 1]."""
    t = torch.as_tensor(x)
    return t.double() / 255.0 if t.dtype == torch.uint8 else t.double()


def l1_error(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Mean absolute difference of images in [0, 1]."""
    return float((_as_unit(x) - _as_unit(y)).abs().mean())


def psnr(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB, 10 log10(1 / MSE), of images [N, C, H, W] in [0, 1] (inf where identical)."""
    mse = ((_as_unit(x) - _as_unit(y)) ** 2).flatten(1).mean(dim=1)
    with np.errstate(divide="ignore"):
        return (10 * np.log10(1.0 / mse.numpy()))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)  # (size, size), sums to 1


def ssim(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, window: int = 11, sigma: float = 1.5,
         batch_size: int = 16) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004): gaussian window 11x11, sigma 1.5, 'valid' filtering, data range 1."""
    x, y = _as_unit(x), _as_unit(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"SSIM needs two [N, C, H, W] batches of one shape (got {tuple(x.shape)}, {tuple(y.shape)})")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM window {window} is larger than the images {tuple(x.shape[-2:])}")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    channels = x.shape[1]
    w = _gaussian_window(window, sigma).expand(channels, 1, window, window)
    out = []
    for i in range(0, len(x), batch_size):
        a, b = x[i:i + batch_size], y[i:i + batch_size]
        mu_a, mu_b = F.conv2d(a, w, groups=channels), F.conv2d(b, w, groups=channels)
        var_a = F.conv2d(a * a, w, groups=channels) - mu_a ** 2
        var_b = F.conv2d(b * b, w, groups=channels) - mu_b ** 2
        cov = F.conv2d(a * b, w, groups=channels) - mu_a * mu_b
        smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        out.append(smap.flatten(1).mean(dim=1))
    return torch.cat(out).numpy()


def translation_metrics(outputs: np.ndarray, targets: np.ndarray) -> dict:
    """L1, PSNR (mean over images) and SSIM (mean over images) of outputs against targets."""
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {outputs.shape} and targets {targets.shape} differ in shape")
    p = psnr(outputs, targets)
    return {"n": len(outputs), "l1": l1_error(outputs, targets), "psnr": float(np.mean(p)),
            "ssim": float(np.mean(ssim(outputs, targets)))}


def score_translations(path: str | Path) -> dict[str, dict]:
    """Metrics of a translations.npz per direction: {'test': ...} (pix2pix) or {'a2b': ..., 'b2a': ...} (CycleGAN,
    where the test split is paired), plus 'a2b_cycle' / 'b2a_cycle': reconstructions against the inputs."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    out = {}
    for prefix, name in [("", "test"), ("a2b_", "a2b"), ("b2a_", "b2a")]:
        if f"{prefix}outputs" in arrays and f"{prefix}targets" in arrays:
            out[name] = translation_metrics(arrays[f"{prefix}outputs"], arrays[f"{prefix}targets"])
        if f"{prefix}cycle" in arrays and f"{prefix}inputs" in arrays:  # CycleGAN's reconstruction F(G(a)) vs a
            out[f"{name}_cycle"] = translation_metrics(arrays[f"{prefix}cycle"], arrays[f"{prefix}inputs"])
    if not out:
        raise ValueError(f"{path}: no outputs/targets pair to score (has {', '.join(arrays)})")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def dataset_of_run(path: str | Path) -> str | None:
    """The dataset named by a run folder `{dataset}__{exp_name}__{seed}__{unix_time}` (None if not one)."""
    parts = Path(path).name.split("__")
    return parts[0] if len(parts) >= 4 else None


@dataclass
class Args:
    path: tyro.conf.Positional[str] = ""
    """a samples.npz or translations.npz (or the run folder holding one); not needed with --calibrate"""
    data_dir: str = "data"
    """folder holding the real dataset in torchvision's layout (DATA_DIR/MNIST/raw)"""
    dataset: str | None = None
    """dataset of the samples (default: read from the run folder's name)"""
    weights: str = ""
    """the feature classifier's weights (default: the committed benchmarks/classifier_DATASET.pt)"""
    retrain: bool = False
    """train the classifier again on DATA_DIR and overwrite WEIGHTS (prints the new SHA-256)"""
    floor: bool = False
    """also score 10,000 real training images against the real test set (at the samples' size)"""
    calibrate: bool = False
    """print the calibration table of docs/benchmarks.md (real digits, noise, blur, fewer classes at 28 and 32 px)"""
    calibration_n: int = 10000
    """images per calibration row"""


def main(args: Args) -> dict | str:
    if args.calibrate:
        try:
            clf = get_classifier(args.dataset or "mnist", args.data_dir, args.weights or None, retrain=args.retrain)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"metrics.py: error: {e}") from None
        return (f"classifier {clf.weights_path}, sha256 {clf.sha256}, test accuracy {clf.test_accuracy:.4f}\n\n"
                + calibration_table(calibrate(clf, args.calibration_n)))
    if not args.path:
        raise SystemExit("metrics.py: error: give a samples.npz / translations.npz (or a run folder), or --calibrate")
    path = Path(args.path)
    if path.is_dir():
        found = [path / n for n in ("samples.npz", "translations.npz") if (path / n).exists()]
        if not found:
            raise SystemExit(f"metrics.py: error: {path} holds neither samples.npz nor translations.npz")
        path = found[0]
    if not path.exists():
        raise SystemExit(f"metrics.py: error: {path} does not exist")
    if path.name.startswith("translations"):
        return {"translations": score_translations(path)}
    dataset = args.dataset or dataset_of_run(path.parent)
    if dataset is None:
        raise SystemExit(f"metrics.py: error: cannot tell the dataset from {path.parent.name}; pass --dataset")
    try:
        clf = get_classifier(dataset, args.data_dir, args.weights or None, retrain=args.retrain)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"metrics.py: error: {e}") from None
    out = {"classifier": clf.info(), "samples": score_samples(path, clf)}
    if args.floor:
        out["real_floor"] = real_floor(clf, out["samples"]["size"])
    return out


if __name__ == "__main__":
    result = main(tyro.cli(Args))
    print(result if isinstance(result, str) else json.dumps(result, indent=2))
