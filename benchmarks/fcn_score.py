# Docs: docs/benchmarks.md | FCN-score: Isola et al. 2017 (pix2pix) Sec. 4.1 | scores: Long et al. 2015 Sec. 5
"""FCN-score of CMP Facades labels->photo translations: how well an off-the-shelf segmenter recovers the input label
map from a generated photo (pix2pix Sec. 4.1 and CycleGAN Sec. 5.1 use it on Cityscapes labels->photo with an FCN-8s
trained on real Cityscapes; neither paper reports it for facades, so these numbers have no published counterpart).

The segmenter is a small U-Net trained once on the 400 facades training photos -> their class maps at 128 px (the
pix2pix CPU budgets' --img-size), seeded, on one CPU thread; its weights are committed (benchmarks/fcn_facades.pt,
SHA-256 `WEIGHTS_SHA256`, checked on load). Any photo is resized to 128 px for the segmenter and its scores are
upsampled back to the label map's size, so the score is taken at the translation's resolution, as the official
scripts/eval_cityscapes/evaluate.py does.

Label maps: the facades B images draw the 12 CMP classes in 12 colours (JPEG-compressed, then resized by the scripts);
each pixel is mapped to the nearest colour of `PALETTE` (derived from the training maps by `palette_modes`).

Usage:
  python benchmarks/fcn_score.py runs/<run>/translations.npz [--calibrate] [--data-dir data]
  python benchmarks/fcn_score.py --calibrate --img-size 128 --data-dir data    # the calibration rows only
  python benchmarks/fcn_score.py --train --data-dir data                       # how fcn_facades.pt was made
(the committed weights: `--train --data-dir DATA_DIR`, defaults, torch 2.14.1, 1 thread: 501 s of CPU, 14 epochs;
a second run wrote the same bytes, SHA-256 WEIGHTS_SHA256)
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
import tyro
from torch import nn

BENCH_DIR = Path(__file__).resolve().parent
WEIGHTS_PATH = BENCH_DIR / "fcn_facades.pt"
WEIGHTS_SHA256 = "89ab4cdf7dabde9932ebd87de7ea3ff744b6618f2b1fe2ed5fd664cb6e3d0f86"
WEIGHTS_FORMAT = 1  # bump when the network or the weights file's layout changes
INPUT_SIZE = 128  # the segmenter's input: the pix2pix quick/long budgets' --img-size
CLASSES = ("background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco", "molding",
           "pillar", "shop")  # CMP label ids 1..12 (Tylecek & Sara 2013, label_names.txt), here 0..11
# Colour of each class in the facades label maps: the 12 modes of the flat (5x5-uniform) pixels of the 400 training
# maps, in the order of the jet colour map they follow (within 46 per channel of matplotlib's jet(k / 12), k = 1..12),
# which is the order of the CMP ids. Checked against the layout: door is the lowest class (mean row 207 of 256), shop
# next (178); cornice pixels sit above windows, sill pixels below them; background touches the image border most.
PALETTE = np.array([
    (0, 0, 222),      # background
    (1, 48, 254),     # facade
    (1, 127, 254),    # window
    (1, 207, 255),    # door
    (32, 255, 224),   # cornice
    (112, 254, 143),  # sill
    (192, 255, 63),   # balcony
    (254, 240, 2),    # blind
    (255, 159, 1),    # deco
    (254, 80, 1),     # molding
    (253, 1, 1),      # pillar
    (174, 0, 1),      # shop
], dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Label maps -> classes
# ---------------------------------------------------------------------------------------------------------------
def classes_from_label_maps(label_maps: np.ndarray | torch.Tensor, chunk: int = 16) -> np.ndarray:
    """uint8 colour label maps (N, 3, H, W) -> int64 class maps (N, H, W): each pixel's nearest PALETTE colour."""
    maps = torch.as_tensor(label_maps)
    if maps.ndim != 4 or maps.shape[1] != 3 or maps.dtype != torch.uint8:
        raise ValueError(f"expected uint8 label maps (N, 3, H, W), got {maps.dtype} {tuple(maps.shape)}")
    palette = torch.from_numpy(PALETTE).float()  # (12, 3)
    out = []
    for i in range(0, len(maps), chunk):
        pixels = maps[i:i + chunk].permute(0, 2, 3, 1).float()  # (n, H, W, 3)
        dist = ((pixels[..., None, :] - palette) ** 2).sum(-1)  # (n, H, W, 12) squared RGB distances
        out.append(dist.argmin(-1))
    if not out:
        return np.zeros((0, *maps.shape[2:]), np.int64)
    return torch.cat(out).numpy()


def palette_distance(images: np.ndarray | torch.Tensor) -> float:
    """Median over pixels of the RGB distance to the nearest PALETTE colour (label maps: a few units; photos: 50+)."""
    x = torch.as_tensor(images)[:16].permute(0, 2, 3, 1).reshape(-1, 1, 3).float()
    return float(torch.cdist(x, torch.from_numpy(PALETTE).float()[None]).amin(-1).median())


def palette_modes(label_maps: np.ndarray, n: int = len(CLASSES), flat_range: int = 12, min_gap: int = 40,
                  radius: int = 24) -> np.ndarray:
    """The n dominant colours of uint8 label maps (N, 3, H, W), how PALETTE was derived: keep the pixels whose 5x5
    neighbourhood is flat (each channel varies by <= flat_range, away from JPEG ringing at edges), take the most
    frequent 4-level colour bins at least min_gap apart (max over channels), then the mean of the flat pixels within
    `radius` of each. Returns uint8 (n, 3) ordered by frequency."""
    x = torch.from_numpy(label_maps).float()
    spread = F.max_pool2d(x, 5, 1, 2) + F.max_pool2d(-x, 5, 1, 2)  # per-channel max - min over 5x5
    flat = (spread.amax(1) <= flat_range).flatten()  # (N * H * W,)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3)[flat]
    bins = (pixels // 4).long()
    keys, counts = torch.unique(bins[:, 0] * 4096 + bins[:, 1] * 64 + bins[:, 2], return_counts=True)
    centres = torch.stack([keys // 4096, keys // 64 % 64, keys % 64], 1).float() * 4 + 1.5
    modes = []
    for i in counts.argsort(descending=True).tolist():
        if all((centres[i] - m).abs().max() > min_gap for m in modes):
            modes.append(centres[i])
        if len(modes) == n:
            break
    refined = [pixels[(pixels - m).abs().amax(1) <= radius].double().mean(0) for m in modes]
    return torch.stack(refined).round().clamp(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------------------------
# Scores (Long et al. 2015, Sec. 5; the official scripts/eval_cityscapes/util.py get_scores)
# ---------------------------------------------------------------------------------------------------------------
def confusion_matrix(true: np.ndarray, pred: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    """(n, n) int64 counts: row = ground-truth class, column = predicted class."""
    true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"{true.size} ground-truth pixels but {pred.size} predictions")
    return np.bincount(n * true.astype(np.int64) + pred, minlength=n * n).reshape(n, n)


def scores_from_confusion(hist: np.ndarray) -> dict:
    """Long et al.'s three numbers from confusion counts n_ij (true i, predicted j), t_i = sum_j n_ij:
    per-pixel acc = sum_i n_ii / sum_i t_i; per-class acc = mean_i n_ii / t_i; class IoU = mean_i n_ii / (t_i +
    sum_j n_ji - n_ii); means over the classes present in the ground truth (the official get_scores counts an absent
    class as 0 instead; on the 106 facades test maps every class is present, so the two agree there)."""
    hist = np.asarray(hist, np.float64)
    if hist.sum() == 0:
        raise ValueError("no pixels to score")
    hits, true_counts, pred_counts = np.diag(hist), hist.sum(1), hist.sum(0)
    present = true_counts > 0
    class_acc = hits[present] / true_counts[present]
    class_iou = hits[present] / (true_counts + pred_counts - hits)[present]
    return {"per_pixel_acc": float(hits.sum() / hist.sum()), "per_class_acc": float(class_acc.mean()),
            "class_iou": float(class_iou.mean())}


# ---------------------------------------------------------------------------------------------------------------
# The segmenter: a small U-Net (Ronneberger et al. 2015)
# ---------------------------------------------------------------------------------------------------------------
def conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """(conv3x3 - BN - ReLU) x 2 at one resolution."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder blocks at 128, 64, 32, 16 px (widths 16-32-64-128, max-pool between), decoder of 2x2 transposed convs
    with skip concatenation back to 128 px, then a 1x1 conv to 12 class scores. Receptive field 68 px."""

    def __init__(self, widths: tuple = (16, 32, 64, 128), num_classes: int = len(CLASSES)):
        super().__init__()
        self.widths = tuple(widths)
        chans = [3, *widths]
        self.encoder = nn.ModuleList(conv_block(chans[i], chans[i + 1]) for i in range(len(widths)))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(w_in, w_out, 2, stride=2)
                                      for w_in, w_out in zip(widths[:0:-1], widths[-2::-1], strict=True))
        self.decoder = nn.ModuleList(conv_block(2 * w, w) for w in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Photos in [-1, 1] (B, 3, S, S), S a multiple of 8 -> class scores (B, 12, S, S)."""
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < len(self.encoder) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, block in zip(self.upsample, self.decoder, strict=True):
            x = block(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., H, W) -> uint8 (..., size, size), bicubic antialiased (the scripts' resize, official PIL BICUBIC)."""
    if images.shape[-2:] == (size, size):
        return images
    return TF.resize(images, [size, size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)


def to_input(photos: torch.Tensor) -> torch.Tensor:
    """uint8 photos (B, 3, H, W) -> the segmenter's input: float [-1, 1] at INPUT_SIZE (as the scripts normalise)."""
    return resize(photos, INPUT_SIZE).float().div(127.5).sub(1.0)


@torch.no_grad()
def predict(model: UNet, photos: np.ndarray | torch.Tensor, size: tuple | None = None,
            batch_size: int = 16) -> np.ndarray:
    """uint8 photos (N, 3, H, W) -> int64 predicted classes (N, *size) (default (H, W)): the segmenter runs at
    INPUT_SIZE, its class scores are upsampled bilinearly to `size`, then argmax."""
    photos = torch.as_tensor(photos)
    if photos.ndim != 4 or photos.shape[1] != 3 or photos.dtype != torch.uint8:
        raise ValueError(f"expected uint8 photos (N, 3, H, W), got {photos.dtype} {tuple(photos.shape)}")
    size = tuple(size or photos.shape[-2:])
    model.eval()
    out = []
    for i in range(0, len(photos), batch_size):
        logits = model(to_input(photos[i:i + batch_size]))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        out.append(logits.argmax(1))
    if not out:
        return np.zeros((0, *size), np.int64)
    return torch.cat(out).numpy()


def score(photos: np.ndarray | torch.Tensor, classes: np.ndarray, model: UNet | None = None) -> dict:
    """FCN-score of uint8 photos (N, 3, H', W') against int64 class maps (N, H, W): per_pixel_acc, per_class_acc,
    class_iou, accumulated over all pixels of all images (one confusion matrix, as the official evaluate.py)."""
    classes = np.asarray(classes)
    if classes.ndim != 3 or len(classes) != len(photos):
        raise ValueError(f"expected class maps (N={len(photos)}, H, W), got {classes.shape}")
    model = model or load()
    return scores_from_confusion(confusion_matrix(classes, predict(model, photos, classes.shape[1:])))


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def half_state(model: UNet) -> dict:
    """The model's state dict with floating tensors in float16 (what the weights file holds: under 1 MB)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def half_round_trip(model: UNet) -> UNet:
    """A copy of the model as loaded from its weights file (float16 weights back in float32), in eval mode."""
    copy = UNet(model.widths)
    copy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half_state(model).items()})
    return copy.eval()


def save_weights(path: str | Path, model: UNet, config: TrainConfig, test_scores: dict) -> str:
    """Write the weights (float16) atomically; returns the file's SHA-256. Nothing run-dependent (no timings) goes
    in, so a retrain with the same seed, torch and thread count gives the same file."""
    state = half_state(model)
    buffer = io.BytesIO()  # not the file: torch.save names the archive after the file, which would change the hash
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": state, "classes": list(CLASSES),
                "palette": PALETTE.tolist(), "input_size": INPUT_SIZE, "config": asdict(config),
                "test_scores": test_scores, "torch": str(torch.__version__)}, buffer)
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return sha256_bytes(buffer.getvalue())


def load(path: str | Path = WEIGHTS_PATH, sha256: str = WEIGHTS_SHA256) -> UNet:
    """The segmenter (eval mode) from its weights file, after checking the file's SHA-256 against `sha256`."""
    data = Path(path).read_bytes()
    digest = sha256_bytes(data)
    if digest != sha256:
        raise ValueError(f"{path}: SHA-256 {digest} is not the expected {sha256} (corrupted or retrained weights; "
                         f"after --train, put the printed SHA-256 in WEIGHTS_SHA256)")
    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if ckpt.get("format") != WEIGHTS_FORMAT or tuple(ckpt.get("classes", ())) != CLASSES:
        raise ValueError(f"{path}: weights of format {ckpt.get('format')}, expected {WEIGHTS_FORMAT} with {CLASSES}")
    model = UNet(tuple(ckpt["config"]["widths"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Data and training
# ---------------------------------------------------------------------------------------------------------------
def read_split(folder: str | Path, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Facades AB JPEGs of `folder` (sorted by number) -> uint8 (photos A, label maps B), each (N, 3, size, size),
    halves resized as pix2pix.py's read_ab does (None: as stored, 256 px)."""
    files = sorted(Path(folder).glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise FileNotFoundError(f"no .jpg files in {folder} (expected DATA_DIR/facades/{{train,test}}/N.jpg)")
    photos, maps = [], []
    for f in files:
        ab = torchvision.io.decode_image(str(f), mode=torchvision.io.ImageReadMode.RGB)  # (3, H, 2W)
        half = ab.shape[2] // 2
        a, b = ab[:, :, :half], ab[:, :, half:2 * half]
        photos.append(a if size is None else resize(a, size))
        maps.append(b if size is None else resize(b, size))
    return torch.stack(photos), torch.stack(maps)


@dataclass
class TrainConfig:
    """How the segmenter is trained (recorded in its weights file)."""

    epochs: int = 14
    batch_size: int = 8
    max_lr: float = 3e-3  # one-cycle schedule peak, Adam
    widths: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0
    max_steps: int = 0  # 0 = no cap (smoke tests cap it)


def train(data_dir: str | Path, config: TrainConfig, log: bool = True) -> tuple[UNet, float]:
    """Train the segmenter on the facades train split (photo -> classes, cross-entropy) with pix2pix's jitter: the
    pair resized to 143 px (286/256 of 128), a random 128 px crop, a random horizontal flip.
    Returns (model in eval mode, seconds)."""
    load_size = INPUT_SIZE * 286 // 256
    photos, maps = read_split(Path(data_dir) / "facades" / "train", load_size)
    targets = torch.from_numpy(classes_from_label_maps(maps))  # (N, 143, 143)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = UNet(config.widths)
    steps_per_epoch = len(photos) // config.batch_size
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    opt = torch.optim.Adam(model.parameters(), lr=config.max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.max_lr, total_steps=total)
    start, cpu_start, step = time.time(), time.process_time(), 0
    model.train()
    while step < total:
        order = torch.randperm(len(photos), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            tops = torch.randint(0, load_size - INPUT_SIZE + 1, (len(idx),), generator=gen).tolist()
            lefts = torch.randint(0, load_size - INPUT_SIZE + 1, (len(idx),), generator=gen).tolist()
            flips = (torch.rand(len(idx), generator=gen) < 0.5).tolist()
            xs, ys = [], []
            for i, top, left, flip in zip(idx.tolist(), tops, lefts, flips, strict=True):
                x = photos[i, :, top:top + INPUT_SIZE, left:left + INPUT_SIZE]
                y = targets[i, top:top + INPUT_SIZE, left:left + INPUT_SIZE]
                xs.append(x.flip(-1) if flip else x)
                ys.append(y.flip(-1) if flip else y)
            loss = F.cross_entropy(model(to_input(torch.stack(xs))), torch.stack(ys))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if log and (step % steps_per_epoch == 0 or step == total):
                print(f"[fcn_score] step {step}/{total} loss {loss.item():.4f} ({time.time() - start:.0f} s, "
                      f"CPU {time.process_time() - cpu_start:.0f} s)", file=sys.stderr, flush=True)
            if step == total:
                break
    return model.eval(), time.time() - start


# ---------------------------------------------------------------------------------------------------------------
# Translations and calibration
# ---------------------------------------------------------------------------------------------------------------
def find_labels_to_photo(arrays: dict) -> tuple[str, str]:
    """The (label maps, generated photos) keys of a translations.npz: pix2pix's inputs/outputs, or the CycleGAN
    direction whose inputs are label maps (b2a on facades: B = label maps)."""
    for prefix in ("", "b2a_", "a2b_"):
        inputs, outputs = f"{prefix}inputs", f"{prefix}outputs"
        if inputs in arrays and outputs in arrays and palette_distance(arrays[inputs]) < 20:
            return inputs, outputs
    raise ValueError(f"no labels->photo translations (inputs that are facades label maps) among {', '.join(arrays)}")


def score_translations(npz_path: str | Path, model: UNet | None = None) -> dict:
    """FCN-score of a pix2pix or CycleGAN translations.npz: its generated photos against its input label maps."""
    with np.load(npz_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    inputs, outputs = find_labels_to_photo(arrays)
    out = score(arrays[outputs], classes_from_label_maps(arrays[inputs]), model)
    return {**out, "n": len(arrays[outputs]), "label_maps": inputs, "photos": outputs}


def gaussian_blur(photos: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 photos blurred by a Gaussian of std `sigma` pixels (kernel 2 * ceil(3 sigma) + 1)."""
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return TF.gaussian_blur(photos, [kernel, kernel], [sigma, sigma])


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation with no fixed point: image perm[i] takes the label map of image perm[i + 1]."""
    perm = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[perm] = np.roll(perm, -1)
    return out


def calibrate(data_dir: str | Path, size: int, model: UNet) -> dict:
    """Reference rows on the 106 test pairs at `size` px (photos and label maps resized as the scripts do)."""
    photos, maps = read_split(Path(data_dir) / "facades" / "test", size)
    classes = classes_from_label_maps(maps)
    train_photos, _ = read_split(Path(data_dir) / "facades" / "train", size)
    mean_photo = train_photos.float().mean(0).round().to(torch.uint8)
    rows = {
        "real photos (ceiling)": score(photos, classes, model),
        "real photos, shuffled label maps": score(photos, classes[derangement(len(classes))], model),
        "real photos, Gaussian blur sigma 2 px": score(gaussian_blur(photos, 2.0), classes, model),
        "real photos, Gaussian blur sigma 4 px": score(gaussian_blur(photos, 4.0), classes, model),
        "mean train photo for every input (floor)": score(mean_photo.expand_as(photos), classes, model),
    }
    return {"size": size, "n": len(photos), "rows": rows}


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Args:
    path: tyro.conf.Positional[Optional[str]] = None
    """a pix2pix or CycleGAN translations.npz on facades (or the run folder holding one)"""
    data_dir: str = "data"
    """folder holding facades/{train,test} (for --calibrate and --train)"""
    calibrate: bool = False
    """also score the reference rows on the test split (at the translations' size, else --img-size)"""
    img_size: int = 128
    """size of the calibration rows when no translations.npz is given"""
    weights: str = ""
    """the segmenter's weights file (default: the committed benchmarks/fcn_facades.pt)"""
    sha256: str = WEIGHTS_SHA256
    """its expected SHA-256"""
    train: bool = False
    """train the segmenter on DATA_DIR's facades train split and write WEIGHTS (prints the new SHA-256)"""
    config: TrainConfig = field(default_factory=TrainConfig)


def main(args: Args) -> dict:
    torch.set_num_threads(1)  # the 2-core benchmark machine runs other jobs beside this one; also bitwise repeatable
    if not (args.train or args.calibrate or args.path):
        raise SystemExit("fcn_score.py: error: give a translations.npz, --calibrate or --train")
    out: dict = {}
    weights = args.weights or WEIGHTS_PATH
    if args.train:
        model, seconds = train(args.data_dir, args.config)
        test = calibrate(args.data_dir, INPUT_SIZE, half_round_trip(model))["rows"]["real photos (ceiling)"]
        args.sha256 = save_weights(weights, model, args.config, test)
        print(f"[fcn_score] {seconds:.0f} s; wrote {weights}: sha256 {args.sha256} (put it in WEIGHTS_SHA256)",
              file=sys.stderr, flush=True)
        _, train_maps = read_split(Path(args.data_dir) / "facades" / "train")
        out["train"] = {"seconds": seconds, "sha256": args.sha256, "test_real_photos": test,
                        "palette_modes": palette_modes(train_maps.numpy()).tolist()}
    model = load(weights, args.sha256)
    size = args.img_size
    if args.path is not None:
        path = Path(args.path)
        path = path / "translations.npz" if path.is_dir() else path
        if not path.exists():
            raise SystemExit(f"fcn_score.py: error: {path} does not exist")
        out["fcn_score"] = score_translations(path, model)
        with np.load(path) as npz:
            size = int(npz[out["fcn_score"]["label_maps"]].shape[-1])
    if args.calibrate:
        out["calibration"] = calibrate(args.data_dir, size, model)
    return out


if __name__ == "__main__":
    print(json.dumps(main(tyro.cli(Args)), indent=2))
