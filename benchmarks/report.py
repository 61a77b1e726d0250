# Docs: docs/benchmarks.md
"""Benchmark report from a runs folder: quality over wall-clock time, loss curves side by side, speed, final sample
quality, the WGAN/BEGAN estimates against FID, speed against the machine's peak; README's results table.

Reads only the contract's artefacts (TensorBoard events, samples/*.png, samples_*.npz, samples.npz,
translations.npz) plus what run.py leaves beside them (benchmark.json: the commands; flops.json: FLOPs per iteration
and the peak rate; RUN_DIR/commit.txt: the commit a run ran).
Usage: python benchmarks/report.py benchmarks/runs/quick [--results-dir benchmarks/results/quick] [--data-dir data]
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch
import tyro
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

try:  # `python benchmarks/report.py` puts benchmarks/ on sys.path, `python -m benchmarks.report` the repo root
    from benchmarks import metrics
except ImportError:
    import metrics

SCRIPT_ORDER = ("gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan")
IMAGE_TO_IMAGE = ("pix2pix", "cyclegan")
# (key in metrics, column title, format); arrows say which way is better
QUALITY_COLUMNS = [("fid", "FID ↓", ".2f"), ("kid", "KID ↓", ".3f"), ("precision", "precision ↑", ".3f"),
                   ("recall", "recall ↑", ".3f"), ("modes", "modes ≥1% ↑", ".1f"), ("kl_uniform", "KL(p‖U) ↓", ".3f"),
                   ("label_accuracy", "label acc ↑", ".3f"), ("class_spread", "class spread →1", ".2f"),
                   ("code_error", "code error ↓", ".3f")]
TRANSLATION_COLUMNS = [("l1", "L1 ↓", ".4f"), ("psnr", "PSNR (dB) ↑", ".2f"), ("ssim", "SSIM ↑", ".4f")]
SCALE: dict[str, float] = {}  # e.g. {"kid": 1e3} to show KID x 10^3
OWN_PANEL = ("losses/wasserstein_estimate", "charts/convergence", "charts/k_t")  # plotted beside the losses
# The papers' claims about their own curves: the estimate each paper says tracks sample quality (WGAN Figures 3-4:
# the critic's Wasserstein estimate falls as samples improve; BEGAN Section 3.4.1: M_global tracks convergence).
# (tag, sign): `-losses/d_loss` stands in for the estimate when a run did not log it.
CLAIMS: dict[str, list[tuple[str, float]]] = {
    "wgan": [("losses/wasserstein_estimate", 1.0), ("losses/d_loss", -1.0)],
    "wgan_gp": [("losses/wasserstein_estimate", 1.0), ("losses/d_loss", -1.0)],
    "began": [("charts/convergence", 1.0)],
}
# The loss figures, one per kind, every script side by side against training seconds
LOSS_KINDS = {"d": "D / critic loss (losses/d_loss)", "g": "G loss (losses/g_loss)",
              "gap": "D(real) − D(fake) (charts/d_real − charts/d_fake), or the critic's Wasserstein estimate"}
EVAL_GLOB = "samples_[0-9]*.npz"  # the --eval-interval files, samples_{iteration:07d}.npz
MANIFEST = ".report_files.json"  # what report.py wrote into the results folder (the only files it deletes)
LEGACY_FILES = ("wallclock.png",)  # written by earlier versions of report.py, no longer
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
DPI = 80
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


# ---------------------------------------------------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One run folder `{dataset}__{exp_name}__{seed}__{unix_time}` and its scalars."""

    path: Path
    dataset: str
    exp_name: str
    seed: int
    started: int
    scalars: dict[str, np.ndarray] = field(default_factory=dict)  # tag -> (K, 3): step, wall time, value
    first_wall: float = 0.0
    hparams: dict[str, str] = field(default_factory=dict)

    def eval_files(self) -> list[Path]:
        return sorted(self.path.glob(EVAL_GLOB))

    def commit(self) -> str:
        path = self.path / "commit.txt"
        return path.read_text().strip() if path.exists() else "unknown"


def parse_run_name(name: str) -> tuple[str, str, int, int] | None:
    """(dataset, exp_name, seed, unix_time) of a run folder name, None if it is not one."""
    parts = name.split("__")
    if len(parts) < 4 or not (parts[-1].isdigit() and parts[-2].lstrip("-").isdigit()):
        return None
    return parts[0], "__".join(parts[1:-2]), int(parts[-2]), int(parts[-1])


def find_runs(runs_dir: Path) -> dict[str, dict[int, Run]]:
    """{exp_name: {seed: Run}} of RUNS_DIR/runs/* (or RUNS_DIR/* itself), the latest run of each (name, seed)."""
    folders = [p for base in (runs_dir / "runs", runs_dir) if base.is_dir() for p in base.iterdir() if p.is_dir()]
    found: dict[str, dict[int, Run]] = defaultdict(dict)
    for p in folders:
        parsed = parse_run_name(p.name)
        if parsed is None:
            continue
        dataset, exp, seed, started = parsed
        if seed not in found[exp] or found[exp][seed].started < started:
            found[exp][seed] = Run(p, dataset, exp, seed, started)
    return {k: dict(sorted(v.items())) for k, v in sorted(found.items(), key=lambda kv: script_rank(kv[0]))}


def script_rank(name: str) -> tuple[int, str]:
    return (SCRIPT_ORDER.index(name) if name in SCRIPT_ORDER else len(SCRIPT_ORDER), name)


def load_events(run: Run) -> Run:
    """Fill in the run's scalars, first event time and hyperparameters from its TensorBoard event files."""
    acc = EventAccumulator(str(run.path), size_guidance={"scalars": 0, "tensors": 0, "images": 1})
    acc.Reload()
    run.scalars = {tag: np.array([(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)], dtype=np.float64)
                   for tag in acc.Tags()["scalars"]}
    try:
        run.first_wall = acc.FirstEventTimestamp()
    except ValueError:  # no events at all
        run.first_wall = 0.0
    if "hyperparameters/text_summary" in acc.Tags().get("tensors", []):
        text = acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
        rows = [r.strip().strip("|").split("|") for r in text.splitlines()]
        run.hparams = {r[0].strip(): r[1].strip() for r in rows if len(r) == 2 and r[0].strip() not in ("param", "-")}
    return run


def speed(run: Run) -> dict:
    """Iterations, wall time (first to last event), training it/s (between the first and last logged loss), SPS."""
    loss_tags = [t for t in run.scalars if t.startswith("losses/")]
    if not loss_tags:
        return {}
    iterations = int(max(run.scalars[t][:, 0].max() for t in loss_tags))
    last_wall = max(a[:, 1].max() for a in run.scalars.values())
    wall = last_wall - run.first_wall if run.first_wall else float("nan")
    g = run.scalars.get("losses/g_loss", run.scalars[loss_tags[0]])
    if len(g) >= 2 and g[-1, 1] > g[0, 1]:
        its = (g[-1, 0] - g[0, 0]) / (g[-1, 1] - g[0, 1])
    else:
        its = iterations / wall if wall and wall > 0 else float("nan")
    sps = float(run.scalars["charts/SPS"][-1, 2]) if "charts/SPS" in run.scalars else float("nan")
    return {"iterations": iterations, "wall_s": float(wall), "its": float(its), "sps": float(sps)}


def last_grid(run: Run) -> Path | None:
    """The last `samples/{iteration:07d}.png` (InfoGAN/BEGAN's suffixed extra grids only if there is no plain one)."""
    pngs = sorted((run.path / "samples").glob("*.png"))
    plain = [p for p in pngs if p.stem.isdigit()]
    return (plain or pngs or [None])[-1]


# ---------------------------------------------------------------------------------------------------------------
# Quality metrics (cached per run in RUNS_DIR/metrics_cache/)
# ---------------------------------------------------------------------------------------------------------------
class Scorer:
    """Scores artefacts, with one feature classifier per dataset (the committed weights unless `retrain`) and a cache
    keyed by file and the classifier's SHA-256."""

    def __init__(self, data_dir: str, runs_dir: Path, weights: str | None = None, retrain: bool = False,
                 config: metrics.ClassifierConfig | None = None):
        self.data_dir, self.weights, self.retrain, self.config = data_dir, weights, retrain, config
        self.classifiers: dict[str, metrics.Classifier] = {}
        self.store = Path(runs_dir) / "metrics_cache"

    def classifier(self, dataset: str) -> metrics.Classifier:
        key = metrics.dataset_key(dataset)
        if key not in self.classifiers:
            self.classifiers[key] = metrics.get_classifier(key, self.data_dir, self.weights, self.retrain,
                                                           self.config)
            print(f"[report] {key} feature classifier {self.classifiers[key].weights_path}: sha256 "
                  f"{self.classifiers[key].sha256}", file=sys.stderr, flush=True)
        return self.classifiers[key]

    def cached(self, name: str, key: str, compute) -> dict:
        path = self.store / f"{name}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return saved["value"]
        value = compute()
        self.store.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "value": value}))
        os.replace(tmp, path)
        return value

    def score_file(self, name: str, npz: Path, dataset: str, **kwargs) -> dict:
        """{'samples': {...}} or {'translations': {direction: {...}}} of one npz (cached)."""
        stat = npz.stat()
        with np.load(npz) as f:
            is_translation = "images" not in f.files
        if is_translation:
            key = f"{stat.st_size}:{stat.st_mtime_ns}"
            return {"translations": self.cached(name, key, lambda: metrics.score_translations(npz))}
        clf = self.classifier(dataset)
        key = f"{stat.st_size}:{stat.st_mtime_ns}:{clf.sha256}:{json.dumps(kwargs, sort_keys=True)}"
        return {"samples": self.cached(name, key, lambda: metrics.score_samples(npz, clf, **kwargs))}

    def score(self, run: Run) -> dict:
        """The final artefact's metrics: {'samples': {...}} or {'translations': {direction: {...}}}, or
        {'error': ...}."""
        try:
            for name in ("samples.npz", "translations.npz"):
                if (run.path / name).exists():
                    return self.score_file(run.path.name, run.path / name, run.dataset)
            return {"error": "no samples.npz or translations.npz (failed run, or --num-eval-samples 0)"}
        except Exception as e:  # one bad artefact must not sink the report
            return {"error": f"{type(e).__name__}: {e}"}

    def curve(self, run: Run) -> list[dict]:
        """One point per eval file (`samples_{iteration:07d}.npz`): iteration, training seconds, FID, precision,
        recall, modes (KID skipped), or per-direction L1/PSNR/SSIM. Files that fail to score are left out."""
        points = []
        for npz in run.eval_files():
            try:
                with np.load(npz) as f:
                    head = {"iteration": int(f["iteration"]), "train_seconds": float(f["train_seconds"])}
                scored = self.score_file(f"{run.path.name}__{npz.stem}", npz, run.dataset, kid_subsets=0)
            except Exception as e:
                print(f"[report] warning: {npz}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            if "samples" in scored:
                keep = ("n", "size", "fid", "precision", "recall", "modes", "kl_uniform", "label_accuracy",
                        "class_spread", "code_error")
                points.append({**head, **{k: scored["samples"][k] for k in keep if k in scored["samples"]}})
            else:
                points.append({**head, "translations": scored["translations"]})
        return sorted(points, key=lambda p: p["iteration"])

    def floor(self, dataset: str, size: int, n: int = 10000) -> dict:
        clf = self.classifier(dataset)
        return self.cached(f"floor_{clf.dataset}_{size}px_{n}", clf.sha256, lambda: metrics.real_floor(clf, size, n))


# ---------------------------------------------------------------------------------------------------------------
# Analysis: training clock, the papers' estimates against FID
# ---------------------------------------------------------------------------------------------------------------
def train_clock(run: Run, curve: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, training seconds) knots that map an iteration to the training seconds at it: the eval files'
    `train_seconds` (time spent writing them excluded) from (0, 0); without eval files, the TensorBoard wall time
    of the logged losses since the run's first event."""
    if curve:
        return (np.array([0.0] + [p["iteration"] for p in curve]),
                np.array([0.0] + [p["train_seconds"] for p in curve]))
    loss = run.scalars.get("losses/g_loss")
    if loss is None or not len(loss) or not run.first_wall:
        return np.zeros(0), np.zeros(0)
    return loss[:, 0], loss[:, 1] - run.first_wall


def to_seconds(steps: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Training seconds at `steps`, linear between the knots, extrapolated at the last knots' rate beyond them."""
    its, secs = knots
    if len(its) < 2:
        return np.full(len(steps), np.nan)
    out = np.interp(steps, its, secs)
    rate = (secs[-1] - secs[-2]) / max(its[-1] - its[-2], 1e-9)
    beyond = steps > its[-1]
    out[beyond] = secs[-1] + (steps[beyond] - its[-1]) * rate
    return out


def claim_estimate(name: str, run: Run) -> tuple[str, np.ndarray] | None:
    """(label, (K, 2) array of step, estimate) of the paper's quality estimate in the run, None if not logged."""
    for tag, sign in CLAIMS.get(name, []):
        if tag in run.scalars and len(run.scalars[tag]):
            a = run.scalars[tag]
            return ("−" if sign < 0 else "") + tag, np.stack([a[:, 0], sign * a[:, 2]], axis=1)
    return None


def claim_pairs(estimate: np.ndarray, curve: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, FIDs, estimates): each eval point's FID with the estimate logged at the nearest iteration."""
    points = [p for p in curve if "fid" in p]
    if not points or not len(estimate):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    its = np.array([p["iteration"] for p in points], dtype=np.float64)
    nearest = np.abs(estimate[:, 0][None, :] - its[:, None]).argmin(axis=1)
    return its, np.array([p["fid"] for p in points]), estimate[nearest, 1]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation of two series (None with fewer than 3 points or a constant series)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


# ---------------------------------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects: no pyplot, no global backend state)
# ---------------------------------------------------------------------------------------------------------------
def aligned(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over seeds of (K, 3) scalar arrays, interpolated onto the first seed's steps."""
    steps = arrays[0][:, 0]
    values = np.stack([np.interp(steps, a[:, 0], a[:, 2]) for a in arrays])
    return steps, values.mean(0), values.std(0)


def curve_panels(runs: dict[int, Run]) -> list[list[str]]:
    """Tags per panel: each losses/* tag with its per-domain parts (CycleGAN's x_a, x_b), d_loss and g_loss first;
    WGAN's and BEGAN's signals alone; D's outputs on real and fake together."""
    tags = sorted({t for r in runs.values() for t in r.scalars})
    losses = [t for t in ("losses/d_loss", "losses/g_loss") if t in tags]
    losses += [t for t in tags if t.startswith("losses/") and t not in losses and t not in OWN_PANEL]
    groups: dict[str, list[str]] = {}
    for t in losses:
        groups.setdefault(re.sub(r"_[abAB]$", "", t), []).append(t)
    panels = list(groups.values()) + [[t] for t in OWN_PANEL if t in tags]
    d_out = [t for t in ("charts/d_real", "charts/d_fake") if t in tags]
    return panels + ([d_out] if d_out else [])


def plot_script(name: str, runs: dict[int, Run], out: Path) -> None:
    """Every logged loss of one script, mean ± std over seeds, against the iteration."""
    panels = curve_panels(runs)
    if not panels:
        return
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, tags in zip(axes, panels, strict=False):
        for tag in tags:
            arrays = [r.scalars[tag] for r in runs.values() if tag in r.scalars and len(r.scalars[tag])]
            if not arrays:
                continue
            steps, mean, std = aligned(arrays)
            ax.plot(steps, mean, lw=1, label=tag.split("/")[-1])
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.set_title("D output on real / fake" if tags[0] == "charts/d_real" else tags[0], fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(tags) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{name}: mean ± std over {len(runs)} seed(s)", fontsize=10)
    fig.savefig(out)


def script_color(name: str) -> str:
    return f"C{script_rank(name)[0] % 10}"


def band_over_seeds(series: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Seeds' (iterations, seconds, values) reduced at the iterations every seed has: (iterations, mean seconds,
    mean, min, max of the values)."""
    series = [s for s in series if len(s[0])]
    if not series:
        return None
    common = sorted(set.intersection(*(set(s[0].tolist()) for s in series)))
    if not common:
        return None
    pick = [np.searchsorted(s[0], common) for s in series]
    secs = np.stack([s[1][i] for s, i in zip(series, pick, strict=True)])
    vals = np.stack([s[2][i] for s, i in zip(series, pick, strict=True)])
    return np.array(common, dtype=np.float64), secs.mean(0), vals.mean(0), vals.min(0), vals.max(0)


def plot_quality(results: dict[str, dict], floors: dict[str, dict], out: Path) -> bool:
    """The first figure: every noise-to-image script's FID against training seconds and against iterations, precision
    and recall against training seconds; mean over seeds, min-max band; the real-data floor dashed."""
    names = [n for n, r in results.items() if any(p.get("fid") is not None for s in r["seeds"].values()
                                                 for p in s.get("curve", []))]
    if not names:
        return False
    fig = Figure(figsize=(12, 7.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    panels = [("fid", "train_seconds", "FID ↓ (log scale)"), ("fid", "iteration", "FID ↓ (log scale)"),
              ("precision", "train_seconds", "precision ↑"), ("recall", "train_seconds", "recall ↑")]
    for ax, (key, xkey, ylabel) in zip(axes, panels, strict=True):
        for name in names:
            series = []
            for s in results[name]["seeds"].values():
                pts = [p for p in s.get("curve", []) if p.get(key) is not None]
                series.append((np.array([p["iteration"] for p in pts], dtype=np.float64),
                               np.array([p["train_seconds"] for p in pts]), np.array([p[key] for p in pts])))
            reduced = band_over_seeds(series)
            if reduced is None:
                continue
            its, secs, mean, lo, hi = reduced
            x = secs if xkey == "train_seconds" else its
            ax.plot(x, mean, lw=1.5, marker=".", color=script_color(name), label=name)
            ax.fill_between(x, lo, hi, color=script_color(name), alpha=0.15)
        floor = floors.get("curve")
        if floor and key in floor:
            ax.axhline(floor[key], ls="--", lw=1, color="k", label=f"real data (n = {floor['n']})")
        if key == "fid":
            ax.set_yscale("log")
        if xkey == "iteration":
            ax.set_xscale("log")
        ax.set_xlabel("training seconds" if xkey == "train_seconds" else "iteration (log scale)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle("Sample quality during training (eval files, mean over seeds; band: min-max)", fontsize=11)
    fig.savefig(out)
    return True


def plot_translation_quality(results: dict[str, dict], out: Path) -> bool:
    """L1 and SSIM of the image-to-image scripts' eval files against training seconds, per direction."""
    lines = []
    for name, r in results.items():
        dirs = sorted({d for s in r["seeds"].values() for p in s.get("curve", []) for d in p.get("translations", {})})
        lines += [(name, d) for d in dirs if not d.endswith("_cycle")]
    if not lines:
        return False
    fig = Figure(figsize=(11, 3.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, ylabel in zip(axes, ("l1", "ssim"), ("L1 ↓", "SSIM ↑"), strict=True):
        for i, (name, d) in enumerate(lines):
            series = []
            for s in results[name]["seeds"].values():
                pts = [p for p in s.get("curve", []) if d in p.get("translations", {})]
                series.append((np.array([p["iteration"] for p in pts], dtype=np.float64),
                               np.array([p["train_seconds"] for p in pts]),
                               np.array([p["translations"][d][key] for p in pts])))
            reduced = band_over_seeds(series)
            if reduced is None:
                continue
            _, secs, mean, lo, hi = reduced
            ax.plot(secs, mean, lw=1.5, marker=".", color=f"C{i}", label=f"{name} {d}")
            ax.fill_between(secs, lo, hi, color=f"C{i}", alpha=0.15)
        ax.set_xlabel("training seconds", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Translation quality during training (eval files over a fixed test subset)", fontsize=11)
    fig.savefig(out)
    return True


def loss_series(name: str, run: Run, kind: str) -> tuple[str, np.ndarray] | None:
    """(label, (K, 2) step, value) of one loss kind in a run: d_loss, g_loss, or the D(real) − D(fake) gap (the
    Wasserstein estimate where the run logs one)."""
    if kind in ("d", "g"):
        a = run.scalars.get(f"losses/{kind}_loss")
        return (f"{kind}_loss", a[:, [0, 2]]) if a is not None and len(a) else None
    w = run.scalars.get("losses/wasserstein_estimate")
    if w is not None and len(w):
        return "wasserstein_estimate", w[:, [0, 2]]
    real, fake = run.scalars.get("charts/d_real"), run.scalars.get("charts/d_fake")
    if real is None or fake is None or not len(real) or not len(fake):
        return None
    return "d_real − d_fake", np.stack([real[:, 0], real[:, 2] - np.interp(real[:, 0], fake[:, 0], fake[:, 2])], 1)


def plot_losses(groups: dict[str, dict[int, Run]], clocks: dict[str, dict[int, tuple]], kind: str,
                out: Path) -> bool:
    """One loss kind, every script in its own panel against training seconds, one shared x axis: mean over seeds
    (values interpolated onto the first seed's steps), min-max band."""
    found = {}
    for name, runs in groups.items():
        per_seed = {seed: loss_series(name, run, kind) for seed, run in runs.items()}
        per_seed = {seed: v for seed, v in per_seed.items() if v is not None}
        if per_seed:
            found[name] = per_seed
    if not found:
        return False
    cols = min(4, len(found))
    rows = -(-len(found) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.5 * rows + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    for ax, (name, per_seed) in zip(axes, found.items(), strict=False):
        label, first = next(iter(per_seed.values()))
        steps = first[:, 0]
        values = np.stack([np.interp(steps, a[:, 0], a[:, 1]) for _, a in per_seed.values()])
        secs = np.nanmean(np.stack([to_seconds(steps, clocks[name][seed]) for seed in per_seed]), axis=0)
        ax.plot(secs, values.mean(0), lw=1, color=script_color(name))
        ax.fill_between(secs, values.min(0), values.max(0), color=script_color(name), alpha=0.2)
        ax.set_title(f"{name}: {label}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(found):]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel("training seconds", fontsize=8)
    fig.suptitle(f"{LOSS_KINDS[kind]}: mean over seeds, band min-max", fontsize=10)
    fig.savefig(out)
    return True


def plot_claims(claims: dict[str, dict], out: Path) -> bool:
    """Each paper's estimate against FID over training, one panel per script, each seed a line in iteration order."""
    names = [n for n, c in claims.items() if any(len(s["fid"]) for s in c["seeds"].values())]
    if not names:
        return False
    fig = Figure(figsize=(4.2 * len(names), 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=True):
        c = claims[name]
        for i, (seed, s) in enumerate(c["seeds"].items()):
            ax.plot(s["fid"], s["estimate"], marker="o", ms=3, lw=1, color=f"C{i}", label=f"seed {seed}")
            if len(s["fid"]):
                ax.annotate("end", (s["fid"][-1], s["estimate"][-1]), fontsize=7)
        rho = f"{c['mean_spearman']:.2f}" if c["mean_spearman"] is not None else "–"
        ax.set_title(f"{name}: mean Spearman ρ = {rho}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("FID of the eval file (log scale)", fontsize=8)
        ax.set_ylabel(c["label"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("The papers' estimates against FID over training (nearest logged iteration)", fontsize=10)
    fig.savefig(out)
    return True


def translation_rows(arrays: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Labelled rows of a translations.npz: pix2pix input / output / target; CycleGAN, per direction, real /
    translated / reconstructed (and target where the test split is paired)."""
    rows = []
    for prefix, tag in [("", ""), ("a2b_", "A→B "), ("b2a_", "B→A ")]:
        labels = ([("inputs", "input"), ("outputs", "output"), ("targets", "target")] if not prefix else
                  [("inputs", "real"), ("outputs", "translated"), ("cycle", "reconstructed"), ("targets", "target")])
        rows += [(f"{tag}{label}", arrays[f"{prefix}{key}"]) for key, label in labels if f"{prefix}{key}" in arrays]
    return rows


def plot_translation_montage(npzs: dict[str, Path], out: Path, cols: int = 4) -> bool:
    """The first `cols` test images of each image-to-image script's final translations.npz, rows labelled."""
    blocks = []
    for name, path in npzs.items():
        with np.load(path) as f:
            rows = translation_rows({k: f[k] for k in f.files})
        blocks += [(name, label, images[:cols]) for label, images in rows if len(images)]
    if not blocks:
        return False
    ncols = max(len(b[2]) for b in blocks)
    fig = Figure(figsize=(1.6 * ncols + 1.4, 1.6 * len(blocks) + 0.3), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(blocks), ncols, squeeze=False)
    for r, (name, label, images) in enumerate(blocks):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = images[c].transpose(1, 2, 0)
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None)
            else:
                ax.set_visible(False)
            if c == 0:
                ax.set_ylabel(f"{name}\n{label}", fontsize=8)
            if r == 0:
                ax.set_title(f"test image {c + 1}", fontsize=8)
    fig.suptitle("Final translations (first seed)", fontsize=10)
    fig.savefig(out)
    return True


def plot_montage(grids: dict[str, Path], out: Path, cols: int, max_px: int = 420, dpi: int = 100) -> None:
    """The final sample grid of each script in one figure: columns `max_px` wide at most, grids never upscaled."""
    if not grids:
        return
    cols = min(cols, len(grids))
    rows = -(-len(grids) // cols)
    images = {n: mpimg.imread(p) for n, p in grids.items()}
    col_px = min(max_px, max(im.shape[1] for im in images.values()))
    shown = [im.shape[0] * min(1.0, col_px / im.shape[1]) for im in images.values()]  # displayed heights (px)
    heights = [max(shown[r * cols:(r + 1) * cols]) for r in range(rows)]
    fig = Figure(figsize=(col_px * cols / dpi, sum(heights) / dpi + 0.3 * rows), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"height_ratios": heights}).ravel()
    for ax, (name, im) in zip(axes, images.items(), strict=False):
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="antialiased")
        stem = grids[name].stem
        ax.set_title(f"{name} ({int(stem[:7])} it)" if stem[:7].isdigit() else name, fontsize=9)
        ax.axis("off")
    for ax in axes[len(images):]:
        ax.set_visible(False)
    fig.savefig(out)


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float] | None:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(v):
        return None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(stat: tuple[float, float] | None, spec: str, scale: float = 1.0, seeds: int = 1) -> str:
    if stat is None:
        return "–"
    mean, std = stat[0] * scale, stat[1] * scale
    return f"{mean:{spec}} ± {std:{spec}}" if seeds > 1 else f"{mean:{spec}}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine_info(flops: dict, meta: dict) -> dict:
    cpu = flops.get("cpu")
    if not cpu:
        try:
            from benchmarks.flops import cpu_model
        except ImportError:
            from flops import cpu_model
        cpu = cpu_model()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "threads_per_run": meta.get("threads_per_run"),
            "workers": meta.get("workers"), "torch": torch.__version__, "python": platform.python_version(),
            "device": flops.get("device", "cpu"), "peak_gflops": flops.get("peak_gflops"),
            "peak_repeats": flops.get("peak_repeats"), "peak_size": flops.get("peak_size"),
            "theoretical_peak": flops.get("theoretical_peak"),
            "theoretical_peak_machine": flops.get("theoretical_peak_machine")}


# ---------------------------------------------------------------------------------------------------------------
# Files the report writes, and README's results table
# ---------------------------------------------------------------------------------------------------------------
def clean_results(out: Path) -> None:
    """Delete what an earlier report wrote into `out` (its manifest, or the fixed names of earlier versions); never
    any other file."""
    manifest = out / MANIFEST
    names = json.loads(manifest.read_text()) if manifest.exists() else list(LEGACY_FILES)
    for name in names:
        path = out / name
        if Path(name).name == name and path.is_file():  # plain names inside `out` only
            path.unlink()


def readme_table(doc: dict, report_link: str = "") -> str:
    """README's results table from a metrics document: one row per script, mean ± std over seeds."""
    rows = []
    for name, r in doc["scripts"].items():
        s, n = r["summary"], len(r["seeds"])
        if r["directions"]:
            d = next((d for d in r["directions"] if not d.endswith("_cycle")), r["directions"][0])
            l1, ssim = fmt(s.get(f"{d}/l1"), ".3f", seeds=n), fmt(s.get(f"{d}/ssim"), ".3f", seeds=n)
            quality = [f"{d}: L1 {l1}, SSIM {ssim}", "–", "–", "–"]
        else:
            quality = [fmt(s.get("fid"), ".1f", seeds=n), fmt(s.get("precision"), ".2f", seeds=n),
                       fmt(s.get("recall"), ".2f", seeds=n), fmt(s.get("modes"), ".1f", seeds=n)]
        minutes = (s["wall_s"][0] / 60, s["wall_s"][1] / 60) if s.get("wall_s") else None
        rows.append([f"`{name}`", str(n), fmt(s.get("iterations"), ".0f"), fmt(minutes, ".1f", seeds=n),
                     fmt(s.get("its"), ".2f", seeds=n)] + quality)
    floor = doc["real_floor"].get("mnist_28px")
    if floor:
        rows.append([f"*real MNIST ({floor['n']} train images)*", "–", "–", "–", "–", f"*{floor['fid']:.1f}*",
                     f"*{floor['precision']:.2f}*", f"*{floor['recall']:.2f}*", f"*{floor['modes']}*"])
    clf = doc["classifiers"].get("mnist", {})
    note = (f"Preset `{doc['preset']}`, generated {doc['generated']} from `metrics.json` by `benchmarks/report.py`"
            + (f" ([full report]({report_link}))" if report_link else "") + "; mean ± std over seeds; FID against "
            "the raw 28 px MNIST test set in the committed feature classifier's space"
            + (f" (`{shown_path(clf['weights'])}`, sha256 `{clf['sha256'][:16]}…`)" if clf else "") + ".")
    return "\n".join([note, "", md_table(["script", "seeds", "iterations", "train min", "it/s", "FID ↓ (or L1, SSIM)",
                                          "precision ↑", "recall ↑", "modes ↑"], rows)])


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between README_START and README_END in `readme` with `table`; leave the file untouched and
    warn when the markers are missing (or out of order). True when the file was rewritten."""
    text = readme.read_text() if readme.exists() else ""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        print(f"[report] warning: {readme} has no {README_START} ... {README_END} markers; its results table was not "
              f"updated", file=sys.stderr)
        return False
    new = text[:start + len(README_START)] + "\n" + table.strip() + "\n" + text[end:]
    if new != text:
        readme.write_text(new)
    return True


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Args:
    runs_dir: tyro.conf.Positional[str]
    """a benchmark runs folder (holding runs/ and benchmark.json) or any folder of run folders"""
    results_dir: str = ""
    """where report.md, metrics.json and the figures go (default benchmarks/results/PRESET)"""
    data_dir: str = ""
    """real data for the metrics (default: the runner's --data-dir from benchmark.json, else `data`)"""
    classifier: str = ""
    """the feature classifier's weights (default: the committed benchmarks/classifier_mnist.pt)"""
    retrain_classifier: bool = False
    """train the feature classifier again on DATA_DIR, overwrite its weights file and print the new SHA-256"""
    readme: str = ""
    """also rewrite this README's results table (between <!-- results:start --> and <!-- results:end -->)"""


def main(args: Args, scorer: Scorer | None = None) -> dict:
    runs_dir = Path(args.runs_dir).resolve()
    if not runs_dir.is_dir():
        raise SystemExit(f"report.py: error: {runs_dir} is not a folder")
    meta_path, flops_path = runs_dir / "benchmark.json", runs_dir / "flops.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    flops = json.loads(flops_path.read_text()) if flops_path.exists() else {}
    preset = meta.get("preset", runs_dir.name)
    out = Path(args.results_dir or Path(__file__).resolve().parent / "results" / preset).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clean_results(out)
    written: list[str] = []
    data_dir = args.data_dir or meta.get("data_dir", "data")
    config = metrics.ClassifierConfig(**meta["classifier"]) if "classifier" in meta else None
    scorer = scorer or Scorer(data_dir, runs_dir, args.classifier or None, args.retrain_classifier, config)

    groups = find_runs(runs_dir)
    if not groups:
        print(f"[report] warning: no run folders in {runs_dir}", file=sys.stderr)
    results: dict[str, dict] = {}
    clocks: dict[str, dict[int, tuple]] = {}
    for name, runs in groups.items():
        seeds = {}
        clocks[name] = {}
        for seed, run in runs.items():
            load_events(run)
            print(f"[report] scoring {run.path.name} ({len(run.eval_files())} eval files)", file=sys.stderr,
                  flush=True)
            curve = scorer.curve(run)
            clocks[name][seed] = train_clock(run, curve)
            seeds[seed] = {"run": run.path.name, "commit": run.commit(), **speed(run), **scorer.score(run),
                           "curve": curve}
            if "charts/c1_test_error" in run.scalars and len(run.scalars["charts/c1_test_error"]):
                seeds[seed]["c1_test_error"] = float(run.scalars["charts/c1_test_error"][-1, 2])
        results[name] = {"dataset": next(iter(runs.values())).dataset, "seeds": seeds,
                         "batch_size": next(iter(runs.values())).hparams.get("batch_size", "?")}

    floors, classifiers = {}, {}
    for name, res in results.items():
        if any("samples" in s or any("fid" in p for p in s["curve"]) for s in res["seeds"].values()):
            try:
                clf = scorer.classifier(res["dataset"])
                classifiers[clf.dataset] = clf.info()
                sizes = {s["samples"]["size"] for s in res["seeds"].values() if "samples" in s}
                for size in sorted(sizes | {metrics.IMG_SIZE}):
                    key = f"{clf.dataset}_{size}px"
                    floors[key] = floors.get(key) or scorer.floor(clf.dataset, size)
                curve_n = next((p["n"] for s in res["seeds"].values() for p in s["curve"] if "n" in p), None)
                if curve_n and "curve" not in floors:
                    floors["curve"] = scorer.floor(clf.dataset, metrics.IMG_SIZE, curve_n)
            except (ValueError, FileNotFoundError) as e:
                print(f"[report] warning: no real-data floor for {name}: {e}", file=sys.stderr)

    # summaries over seeds
    for name, res in results.items():
        seeds = list(res["seeds"].values())
        summary = {k: mean_std([s.get(k) for s in seeds]) for k in ("iterations", "wall_s", "its", "sps",
                                                                     "c1_test_error")}
        summary.update({k: mean_std([s["samples"].get(k) for s in seeds if "samples" in s])
                        for k, _, _ in QUALITY_COLUMNS})
        directions = sorted({d for s in seeds for d in s.get("translations", {})})
        for d in directions:
            summary.update({f"{d}/{k}": mean_std([s["translations"][d][k] for s in seeds
                                                   if d in s.get("translations", {})])
                            for k, _, _ in TRANSLATION_COLUMNS})
        fl = flops.get("scripts", {}).get(name, {})
        if "flops_per_iter" in fl and summary["its"]:
            achieved = fl["flops_per_iter"] * summary["its"][0] / 1e9
            peak = flops.get("peak_gflops")
            summary["gflop_per_iter"] = (fl["flops_per_iter"] / 1e9, 0.0)
            summary["achieved_gflops"] = (achieved, 0.0)
            summary["fraction_of_peak"] = (achieved / peak, 0.0) if peak else None
        res["summary"], res["directions"] = summary, directions

    # the papers' estimates against FID
    claims: dict[str, dict] = {}
    for name, runs in groups.items():
        if name not in CLAIMS:
            continue
        per_seed, label = {}, None
        for seed, run in runs.items():
            found = claim_estimate(name, run)
            if found is None:
                continue
            label = found[0]
            its, fids, est = claim_pairs(found[1], results[name]["seeds"][seed]["curve"])
            per_seed[seed] = {"iterations": its.tolist(), "fid": fids.tolist(), "estimate": est.tolist(),
                              "spearman": spearman(fids, est)}
        if per_seed:
            rhos = [s["spearman"] for s in per_seed.values() if s["spearman"] is not None]
            claims[name] = {"label": label, "seeds": per_seed, "mean_spearman": float(np.mean(rhos)) if rhos else None}

    # figures
    def save(name: str, wrote: bool) -> None:
        if wrote:
            written.append(name)

    save("quality.png", plot_quality(results, floors, out / "quality.png"))
    save("quality_translation.png", plot_translation_quality(results, out / "quality_translation.png"))
    for kind in LOSS_KINDS:
        save(f"losses_{kind}.png", plot_losses(groups, clocks, kind, out / f"losses_{kind}.png"))
    save("claims.png", plot_claims(claims, out / "claims.png"))
    for name, runs in groups.items():
        plot_script(name, runs, out / f"curves_{name}.png")
        save(f"curves_{name}.png", (out / f"curves_{name}.png").exists())
    first_grids = {n: last_grid(next(iter(r.values()))) for n, r in groups.items()}
    noise = {n: p for n, p in first_grids.items()
             if p is not None and n not in IMAGE_TO_IMAGE and not results[n]["directions"]}
    plot_montage(noise, out / "samples_montage.png", cols=4, max_px=320)
    save("samples_montage.png", bool(noise))
    finals = {n: next(iter(r.values())).path / "translations.npz" for n, r in groups.items()}
    finals = {n: p for n, p in finals.items() if p.exists()}
    save("translations_montage.png", plot_translation_montage(finals, out / "translations_montage.png"))

    machine = machine_info(flops, meta)
    doc = {"preset": preset, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine,
           "classifiers": classifiers, "real_floor": floors, "scripts": results, "claims": claims, "flops": flops,
           "jobs": meta.get("jobs", []), "skipped": meta.get("skipped", [])}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, default=float))
    (out / "report.md").write_text(render(doc, out))
    written += ["metrics.json", "report.md"]
    (out / MANIFEST).write_text(json.dumps(sorted(set(written)), indent=1))
    size = sum((out / n).stat().st_size for n in written if n.endswith(".png"))
    print(f"[report] wrote {out / 'report.md'} ({size / 1e6:.2f} MB of figures)", flush=True)
    for info in classifiers.values():
        print(f"[report] feature classifier {info['weights']}: sha256 {info['sha256']}", flush=True)
    if args.readme:
        readme = Path(args.readme)
        link = os.path.relpath(out / "report.md", readme.resolve().parent)
        if update_readme(readme, readme_table(doc, link)):
            print(f"[report] rewrote the results table in {readme}", flush=True)
    return doc


def shown_path(path: str) -> str:
    """A path relative to the repository when inside it."""
    root = DOCS.parents[1]
    return os.path.relpath(path, root) if Path(path).resolve().is_relative_to(root) else path


def fmt_peak(m: dict) -> list[str]:
    """The measured and theoretical peak columns of the machine table."""
    size = f", {m['peak_size']}² matmul" if m.get("peak_size") else ""
    measured = (f"{m['peak_gflops']:.1f} GFLOP/s (best of {m.get('peak_repeats') or 5}{size})" if m["peak_gflops"]
                else "not measured")
    theory = m.get("theoretical_peak")
    return [measured, f"{theory['gflops']:.1f} GFLOP/s" if theory else "unknown"]


def peak_note(m: dict) -> str:
    """How the theoretical peak was estimated, and what it means when the measured rate is above it."""
    theory, whole = m["theoretical_peak"], m.get("theoretical_peak_machine")
    note = (f"Theoretical peak from `/proc/cpuinfo`: {theory['formula']} (the FMA width from the flags, the clock from "
            f"the largest `cpu MHz` line; {theory['fma_units']} FMA units per core assumed, as /proc/cpuinfo does not "
            "say)" + (f"; the whole machine: {whole['gflops']:.1f} GFLOP/s" if whole else "") + ".")
    if m["peak_gflops"] and m["peak_gflops"] > theory["gflops"]:
        note += (" The measured rate is above this estimate: the cores ran faster than the clock `/proc/cpuinfo`"
                 " reported (boost), so *of peak* below is taken against the measured rate.")
    return note


def render(doc: dict, out: Path) -> str:
    """report.md from the metrics document."""
    m, results = doc["machine"], doc["scripts"]
    lines = [f"# CleanGAN benchmark: preset `{doc['preset']}`", "",
             f"Generated {doc['generated']} by `benchmarks/report.py`; metrics and formulas: "
             f"[docs/benchmarks.md]({os.path.relpath(DOCS, out)}). Mean ± std over seeds (sample std).", ""]
    commits = sorted({s.get("commit", "unknown") for r in results.values() for s in r["seeds"].values()})
    if commits:
        lines += [f"Commit(s) the runs ran: {', '.join(f'`{c}`' for c in commits)} (`RUN_DIR/commit.txt`).", ""]

    # the first figure: quality over time
    if (out / "quality.png").exists() or (out / "quality_translation.png").exists():
        lines += ["## Quality over wall-clock time", ""]
    if (out / "quality.png").exists():
        floor = doc["real_floor"].get("curve")
        lines += ["![Sample quality against training seconds and iterations](quality.png)", "",
                  "*Every noise-to-image script's eval files (`samples_{iteration}.npz`, written every "
                  "`--eval-interval` iterations) scored like the final samples, against the training seconds "
                  "recorded in them (the time spent writing them excluded) and against iterations; line: mean over "
                  "seeds, band: min-max. These FIDs use the eval files' " + (f"{floor['n']}" if floor else "few") +
                  " samples, so they sit above the final table's 10,000-sample FIDs"
                  + (f"; dashed: real training images at the same n (FID {floor['fid']:.1f})" if floor else "")
                  + ".*", ""]
        rows = []
        for n, r in results.items():
            pts = [p for s in r["seeds"].values() for p in s.get("curve", []) if "fid" in p]
            if not pts:
                continue
            cells = []
            for horizon in (60, 120, 300):
                best = [min((p["fid"] for p in s["curve"] if "fid" in p and p["train_seconds"] <= horizon),
                            default=None) for s in r["seeds"].values()]
                best = [b for b in best if b is not None]
                cells.append(f"{np.mean(best):.1f}" if len(best) == len(r["seeds"]) else "–")
            last = mean_std([s["curve"][-1]["fid"] for s in r["seeds"].values() if s.get("curve")])
            rows.append([n] + cells + [fmt(last, ".1f", seeds=len(r["seeds"]))])
        if rows:
            lines += ["Best eval-file FID reached within 1, 2 and 5 minutes of training (mean over seeds; – where "
                      "a seed has no eval file that early), and at the last eval file:", "",
                      md_table(["script", "≤ 1 min", "≤ 2 min", "≤ 5 min", "last eval"], rows), ""]
    if (out / "quality_translation.png").exists():
        lines += ["![Translation quality against training seconds](quality_translation.png)", "",
                  "*pix2pix and CycleGAN eval files (a fixed subset of the test split) against training seconds: "
                  "L1 and SSIM of outputs against targets, per direction.*", ""]

    lines += ["## Machine", "",
              md_table(["CPU", "logical cores", "workers × threads per run", "torch", "device",
                        "peak matmul (measured)", "theoretical peak (same threads)"],
                       [[str(m["cpu"]), str(m["logical_cores"]), f"{m['workers']} × {m['threads_per_run']}",
                         m["torch"], str(m["device"]), *fmt_peak(m)]]), ""]
    if m.get("theoretical_peak"):
        lines += [peak_note(m), ""]

    failed = [j for j in doc["jobs"] if j.get("returncode") not in (0, None)]
    process = {n: mean_std([j["seconds"] for j in doc["jobs"] if j["script"] == n]) for n in results}
    lines += ["## Training", "",
              "*train time*: first to last TensorBoard event; *process*: the whole subprocess (start-up, data, final "
              "samples); *it/s*: generator updates per second between the first and last logged loss; "
              "*images/s*: the last `charts/SPS`.", "",
              md_table(["script", "dataset", "seeds", "batch", "iterations", "train time (s)", "process (s)", "it/s",
                        "images/s"],
                       [[n, r["dataset"], str(len(r["seeds"])), str(r["batch_size"]),
                         fmt(r["summary"]["iterations"], ".0f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["wall_s"], ".0f", seeds=len(r["seeds"])),
                         fmt(process[n], ".0f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["its"], ".2f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["sps"], ".3g", seeds=len(r["seeds"]))] for n, r in results.items()]), ""]
    if failed:
        lines += ["**Failed runs:** " + ", ".join(f"{j['script']} seed {j['seed']} (exit {j['returncode']}, "
                                                  f"log `{j['log']}`)" for j in failed), ""]
    if doc["skipped"]:
        lines += [f"Skipped (script not present): {', '.join(doc['skipped'])}.", ""]

    noise = {n: r for n, r in results.items() if any("samples" in s for s in r["seeds"].values())}
    if noise:
        used = [c for c in QUALITY_COLUMNS if any(r["summary"].get(c[0]) for r in noise.values())]
        rows = []
        for n, r in noise.items():
            sizes = sorted({str(s["samples"]["size"]) for s in r["seeds"].values() if "samples" in s})
            rows.append([n, "/".join(sizes), str(len(r["seeds"]))] +
                        [fmt(r["summary"].get(k), spec, SCALE.get(k, 1.0), len(r["seeds"])) for k, _, spec in used])
        for key, floor in doc["real_floor"].items():
            if key == "curve":
                continue
            dataset = key.rsplit("_", 1)[0]
            rows.append([f"*real data ({dataset}, {floor['n']} train images)*", str(floor["size"]), "–"] +
                        [f"*{floor[k] * SCALE.get(k, 1.0):{spec}}*" if k in floor else "–" for k, _, spec in used])
        lines += ["## Sample quality", "",
                  "Final samples (`samples.npz`) against the raw 28 px test set (the one reference for every "
                  "script), in the feature classifier's space; *px*: the samples' size; samples of another size are "
                  "mapped to 28 px (the inverse of the scripts' 28 -> 32 px resize) before the classifier. The "
                  "*real data* rows are the "
                  "floor: real training images scored exactly like a model's samples, at 28 px and, for the 32 px "
                  "scripts, taken to 32 px and back (what the resize alone costs).", "",
                  md_table(["script", "px", "seeds"] + [t for _, t, _ in used], rows), ""]
        final_floors = [f for k, f in doc["real_floor"].items() if k != "curve"]
        floor_fids = [f"{f['fid']:.2f} at {f['size']} px" for f in final_floors]
        if floor_fids:
            lines += [f"**Real-data floor** ({final_floors[0]['n']} real training images "
                      f"against the test set): FID {', '.join(floor_fids)}; no model can be expected to beat it.", ""]
        for dataset, info in doc["classifiers"].items():
            lines += [f"Feature space: a small CNN trained on the {dataset} training set, test accuracy "
                      f"**{info['test_accuracy']:.2%}** on this data's test set; its {info['feature_dim']}-d "
                      f"penultimate layer. Weights `{shown_path(info['weights'])}`, "
                      f"SHA-256 `{info['sha256']}`.", ""]
        infogan = {n: r for n, r in noise.items() if r["summary"].get("code_error") or r["summary"].get(
            "c1_test_error")}
        for n, r in infogan.items():
            lines += [f"{n}: *code error* (one-to-one code → class matching of its samples, Hungarian) "
                      f"{fmt(r['summary'].get('code_error'), '.3f', seeds=len(r['seeds']))}; the paper's metric, "
                      f"`c1_test_error` (Q's categorical code classifying real test digits, Section 7.2), "
                      f"{fmt(r['summary'].get('c1_test_error'), '.3f', seeds=len(r['seeds']))}.", ""]
    errors = [(n, s) for n, r in results.items() for s in r["seeds"].values() if "error" in s]
    if errors:
        lines += ["Not scored: " + "; ".join(f"{n} `{s['run']}`: {s['error']}" for n, s in errors), ""]

    i2i = {n: r for n, r in results.items() if r["directions"]}
    if i2i:
        rows = [[n, d, str(len(r["seeds"]))] + [fmt(r["summary"].get(f"{d}/{k}"), spec, seeds=len(r["seeds"]))
                                                for k, _, spec in TRANSLATION_COLUMNS]
                for n, r in i2i.items() for d in r["directions"]]
        lines += ["## Translation quality", "",
                  "Over the test split: outputs against targets; `*_cycle` rows: CycleGAN's reconstructions against "
                  "the inputs.", "",
                  md_table(["script", "direction", "seeds"] + [t for _, t, _ in TRANSLATION_COLUMNS], rows), ""]

    if doc["claims"]:
        rows = []
        for n, c in doc["claims"].items():
            per = ", ".join(f"seed {seed}: " + (f"{s['spearman']:.2f}" if s["spearman"] is not None else "–")
                            + f" ({len(s['fid'])} points)" for seed, s in c["seeds"].items())
            rows.append([n, f"`{c['label']}`", per, f"{c['mean_spearman']:.2f}" if c["mean_spearman"] is not None
                         else "–"])
        lines += ["## The papers' estimates against FID", "",
                  "WGAN (Figures 3-4) says its critic's Wasserstein estimate falls as the samples improve; BEGAN "
                  "(Section 3.4.1) says M_global (`charts/convergence`) tracks convergence. Each eval file's FID is "
                  "paired with the estimate logged at the nearest iteration; Spearman's ρ > 0 supports the claim "
                  "(estimate and FID fall together).", "",
                  md_table(["script", "estimate", "Spearman ρ per seed", "mean ρ"], rows), ""]
        if (out / "claims.png").exists():
            lines += ["![The papers' estimates against FID](claims.png)", ""]

    fl = doc["flops"]
    if fl:
        iters = next((v["iters"] for v in fl.get("scripts", {}).values() if "iters" in v), ["?", "?"])
        rows = []
        for n, r in results.items():
            s = r["summary"]
            err = fl.get("scripts", {}).get(n, {}).get("error", "–")
            peak = f"{s['fraction_of_peak'][0]:.1%}" if s.get("fraction_of_peak") else err
            rows.append([n, fmt(s.get("gflop_per_iter"), ".3f"), fmt(s["its"], ".2f"),
                         fmt(s.get("achieved_gflops"), ".2f"), peak])
        lines += ["## Speed against the machine's limit", "",
                  "FLOPs per iteration counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and "
                  f"convolutions, forward and backward): (F(n2) - F(n1)) / (n2 - n1) over runs of n1 = {iters[0]} and "
                  f"n2 = {iters[1]} iterations, so one-off work cancels; peak = best rate of a 2048² float32 matmul on "
                  f"{fl.get('device')} with {fl.get('threads')} thread(s), measured in the same benchmark.", "",
                  md_table(["script", "GFLOP / iteration", "it/s", "achieved GFLOP/s", "of peak"], rows), ""]

    lines += ["## Figures", ""]
    for png, caption in [("losses_d.png", LOSS_KINDS["d"] + " against training seconds"),
                         ("losses_g.png", LOSS_KINDS["g"] + " against training seconds"),
                         ("losses_gap.png", LOSS_KINDS["gap"] + " against training seconds"),
                         ("samples_montage.png", "Final sample grid of each script (first seed)"),
                         ("translations_montage.png", "Final translations of each image-to-image script")]:
        if (out / png).exists():
            lines += [f"![{caption}]({png})", "", f"*{caption}.*", ""]
    for n in results:
        if (out / f"curves_{n}.png").exists():
            lines += [f"![{n} curves](curves_{n}.png)", ""]

    if doc["jobs"]:
        lines += ["## Commands", "", "Run by `benchmarks/run.py` (paths inside the repository relative to it):", "",
                  "```bash"] + [f"{j['shell']}  # exit {j['returncode']}, {j['seconds']:.0f}s" for j in doc["jobs"]]
        lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
