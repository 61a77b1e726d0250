# Docs: docs/benchmarks.md
"""The benchmark report's figures, drawn from report.py's pandas frames with matplotlib Figure objects (no pyplot,
no global backend state): lines with bands over seeds in panels, and pictures of samples."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import torch
import torchvision
from matplotlib.figure import Figure

SCRIPT_ORDER = ("gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan")
LOSS_KINDS = {"d": "D / critic loss (losses/d_loss)", "g": "G loss (losses/g_loss)",  # one figure each
              "gap": "D(real) − D(fake) (charts/d_real − charts/d_fake), or the critic's Wasserstein estimate"}
OWN_PANEL = ("losses/wasserstein_estimate", "charts/convergence", "charts/k_t")  # plotted beside the losses
# facades labels -> photo, the papers' direction: pix2pix's test split (--direction BtoA), CycleGAN's B -> A (A: photos)
LABELS_TO_PHOTO = {"pix2pix": "test", "cyclegan": "b2a"}
STYLE = {"axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7,
         "figure.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3}
DPI = 80


def color(name: str) -> str:
    return f"C{(SCRIPT_ORDER.index(name) if name in SCRIPT_ORDER else len(SCRIPT_ORDER)) % 10}"


def band(frame: pd.DataFrame, key: str, x: str, at: str = "iteration", std: bool = False) -> pd.DataFrame:
    """At each `at` that every seed of the frame reached: the mean of `x`; of `key` the mean and min-max (or ± std)."""
    f = frame.dropna(subset=[key, x])
    g = f.groupby(at).agg(x=(x, "mean"), mean=(key, "mean"), lo=(key, "min"), hi=(key, "max"), sd=(key, "std"),
                          n=(key, "count"))
    if std:
        g["lo"], g["hi"] = g["mean"] - g["sd"].fillna(0), g["mean"] + g["sd"].fillna(0)
    return g[g["n"] == f["seed"].nunique()]


def plot_panels(panels: list[dict], title: str, out: Path, cols: int, w: float, h: float, **kw) -> bool:
    """Panels {'title', 'x', 'y' (axis labels), 'lines': [(label, color, band frame)], optional 'logx', 'logy',
    'floor': (y, label)}, `cols` to a row, each w x h inches; False (nothing written) without panels."""
    if not panels:
        return False
    cols, rows = min(cols, len(panels)), -(-len(panels) // min(cols, len(panels)))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(w * cols, h * rows + 0.5), dpi=DPI, layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, **kw).ravel()
        for ax, p in zip(axes, panels, strict=False):
            for label, c, g in p["lines"]:
                ax.plot(g["x"], g["mean"], lw=1.2, marker="." if len(g) < 30 else None, color=c, label=label)
                ax.fill_between(g["x"], g["lo"], g["hi"], color=c, alpha=0.15)
            if p.get("floor"):
                ax.axhline(p["floor"][0], ls="--", lw=1, color="k", label=p["floor"][1])
            ax.set(title=p.get("title", ""), xlabel=p.get("x", ""), ylabel=p.get("y", ""),
                   xscale="log" if p.get("logx") else "linear", yscale="log" if p.get("logy") else "linear")
            if p.get("legend", True) and any(label for label, _, _ in p["lines"]):
                ax.legend(ncol=2 if len(p["lines"]) > 5 else 1)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(title)
    fig.savefig(out)
    return True


def plot_quality(curves: pd.DataFrame, floors: dict, clock: str, out: Path) -> bool:
    """The first figure: each noise-to-image script's FID against minutes and iterations, precision and coverage
    (recall without it) against minutes; mean over seeds, min-max band; the real-data floor dashed."""
    noise, floor = curves.dropna(subset=["fid"]) if "fid" in curves else curves.iloc[:0], floors.get("curve", {})
    return not noise.empty and plot_panels([
        {"x": "iteration (log scale)" if x == "iteration" else "minutes", "legend": i == 0,
         "y": "FID ↓ (log scale)" if key == "fid" else f"{key} ↑", "logx": x == "iteration", "logy": key == "fid",
         "floor": (floor[key], f"real data (n = {floor['n']})") if key in floor else None,
         "lines": [(n, color(n), band(f, key, x)) for n, f in noise.groupby("script", sort=False)]}
        for i, (key, x) in enumerate([("fid", "minutes"), ("fid", "iteration"), ("precision", "minutes"),
                                      ("coverage" if "coverage" in noise else "recall", "minutes")])],
        f"Sample quality during training (eval files, mean over seeds, band: min-max)\nx: {clock}", out, 2, 6, 3.6)


def plot_translation_quality(curves: pd.DataFrame, clock: str, out: Path) -> bool:
    """L1 and SSIM of the image-to-image scripts' eval files against minutes, per direction (reconstructions out)."""
    lines = [(n, f, c[:-3]) for n, f in curves.groupby("script", sort=False) for c in curves.columns
             if c.endswith("/l1") and not c.endswith("_cycle/l1") and f[c].notna().any()]
    return bool(lines) and plot_panels([
        {"x": "minutes", "y": key + (" ↓" if key == "l1" else " ↑"),
         "lines": [(f"{n} {d}", f"C{i}", band(f, f"{d}/{key}", "minutes")) for i, (n, f, d) in enumerate(lines)]}
        for key in ("l1", "ssim")], f"Translation quality during training (eval files: a fixed test subset)\n"
        f"x: {clock}", out, 2, 5.5, 3.6)


def curve_panels(tags: set[str]) -> list[list[str]]:
    """Tags per panel: each losses/* tag with its per-domain parts (CycleGAN's x_a, x_b), d_loss and g_loss first;
    WGAN's and BEGAN's signals alone; D's outputs on real and fake together."""
    losses = [t for t in ("losses/d_loss", "losses/g_loss") if t in tags]
    groups: dict[str, list[str]] = {}
    for t in losses + [t for t in sorted(tags) if t.startswith("losses/") and t not in losses and t not in OWN_PANEL]:
        groups.setdefault(re.sub(r"_[abAB]$", "", t), []).append(t)
    d_out = [t for t in ("charts/d_real", "charts/d_fake") if t in tags]
    return list(groups.values()) + [[t] for t in OWN_PANEL if t in tags] + ([d_out] if d_out else [])


def plot_script(name: str, scalars: pd.DataFrame, out: Path) -> bool:
    """Every logged loss of one script, mean ± std over seeds, against the iteration."""
    return plot_panels([{"title": "D output on real / fake" if tags[0] == "charts/d_real" else tags[0],
                         "x": "iteration", "lines": [(t.split("/")[-1] if len(tags) > 1 else None, f"C{i}",
                                                      band(scalars[scalars["tag"] == t], "value", "step", "step", True))
                                                     for i, t in enumerate(tags)]}
                        for tags in curve_panels(set(scalars["tag"]))],
                       f"{name}: mean ± std over {scalars['seed'].nunique()} seed(s)", out, 4, 3.6, 2.6)


def loss_frame(scalars: pd.DataFrame, kind: str) -> tuple[str, pd.DataFrame] | None:
    """(label, rows of seed, step, minutes, value) of one loss kind of one script: d_loss, g_loss, or the
    D(real) − D(fake) gap (the Wasserstein estimate where the script logs one)."""
    tags, tag = set(scalars["tag"]), f"losses/{kind}_loss" if kind != "gap" else "losses/wasserstein_estimate"
    if tag in tags:
        return tag.split("/")[1], scalars[scalars["tag"] == tag]
    if kind != "gap" or not {"charts/d_real", "charts/d_fake"} <= tags:
        return None
    wide = scalars.pivot_table(index=["seed", "step", "minutes"], columns="tag", values="value").reset_index()
    return "d_real − d_fake", wide.assign(value=wide["charts/d_real"] - wide["charts/d_fake"])


def plot_losses(scalars: pd.DataFrame, kind: str, clock: str, out: Path) -> bool:
    """One loss kind, every script in its own panel against minutes, one shared x axis: mean over seeds, min-max."""
    found = {n: f for n, s in scalars.groupby("script", sort=False) if (f := loss_frame(s, kind)) is not None}
    return plot_panels([{"title": f"{n}: {label}", "x": "minutes",
                         "lines": [(None, color(n), band(f, "value", "minutes", "step"))]}
                        for n, (label, f) in found.items()],
                       f"{LOSS_KINDS[kind]}: mean over seeds, band min-max\nx: {clock}", out, 4, 3.4, 2.5, sharex=True)


def plot_claims(claims: dict[str, dict], out: Path) -> bool:
    """Each paper's estimate against FID over training, one panel per script, each seed a line in iteration order."""
    panels = [{"title": f"{n}: mean Spearman ρ = " + ("–" if c["mean_spearman"] is None else
                                                      f"{c['mean_spearman']:.2f}"),
               "x": "FID of the eval file (log scale)", "y": c["label"], "logx": True,
               "lines": [(f"seed {seed}", f"C{i}", pd.DataFrame({"x": s["fid"], "mean": s["estimate"],
                                                                 "lo": s["estimate"], "hi": s["estimate"]}))
                         for i, (seed, s) in enumerate(c["seeds"].items())]}
              for n, c in claims.items() if any(len(s["fid"]) for s in c["seeds"].values())]
    return plot_panels(panels, "The papers' estimates against FID over training (nearest logged iteration; the "
                       "last point: the end of the run)", out, len(panels) or 1, 4.2, 3.4)


def plot_pictures(pictures: list[tuple[str, np.ndarray]], out: Path, cols: int, width: float) -> bool:
    """Captioned images (uint8, or floats in [0, 1] as read from PNGs), `cols` to a row, each `width` inches wide."""
    if not pictures:
        return False
    cols, rows = min(cols, len(pictures)), -(-len(pictures) // min(cols, len(pictures)))
    ratio = max(im.shape[0] / im.shape[1] for _, im in pictures)
    fig = Figure(figsize=(width * cols, (width * ratio + 0.3) * rows), dpi=100, layout="constrained")
    for ax, (caption, im) in zip(fig.subplots(rows, cols, squeeze=False).ravel(), pictures + [("", None)] * cols,
                                 strict=False):
        if im is not None:
            ax.imshow(im, cmap="gray", interpolation="antialiased")
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    fig.savefig(out)
    return True


def plot_montage(grids: dict[str, Path], out: Path, cols: int, max_px: int = 420) -> bool:
    """Sample grid PNGs in one figure, `cols` to a row, `max_px` wide each, captioned `name (iteration it)`."""
    return plot_pictures([(f"{n} ({int(p.stem[:7])} it)" if p.stem[:7].isdigit() else n, mpimg.imread(p))
                          for n, p in grids.items()], out, cols, max_px / 100)


def grid(images: np.ndarray, nrow: int) -> np.ndarray:
    """(N, C, H, W) uint8 images as one (H', W', 3) uint8 picture, `nrow` to a row, 2 px white gaps."""
    return torchvision.utils.make_grid(torch.from_numpy(images), nrow, 2, pad_value=255).permute(1, 2, 0).numpy()


def final_picture(name: str, run_dir: Path, png: Path | None = None) -> tuple[str, np.ndarray] | None:
    """(caption, picture) of a run's final samples: the first 64 of samples.npz as an 8x8 grid (sorted by label where
    conditional), input | output | target of three test images of translations.npz (labels -> photo), else `png`."""
    if (run_dir / "samples.npz").exists():
        with np.load(run_dir / "samples.npz") as f:
            order = np.argsort(f["labels"][:64], kind="stable") if "labels" in f.files else slice(None)
            return name, grid(f["images"][:64][order], 8)
    if (run_dir / "translations.npz").exists():
        with np.load(run_dir / "translations.npz") as f:
            prefix = next((p for p in (f"{LABELS_TO_PHOTO.get(name)}_", "", "a2b_") if f"{p}inputs" in f.files), "")
            keys = [k for k in ("inputs", "outputs", "targets") if f"{prefix}{k}" in f.files]
            if keys:
                triplets = np.stack([f[f"{prefix}{k}"][:3] for k in keys], 1)  # (3 images, keys, C, H, W)
                return f"{name}: {' | '.join(k[:-1] for k in keys)}", grid(np.concatenate(triplets), len(keys))
    return (name, mpimg.imread(png)) if png else None
