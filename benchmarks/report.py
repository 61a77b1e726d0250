# Docs: docs/benchmarks.md
"""Benchmark report from a runs folder: loss curves, speed, sample quality, speed against the machine's peak.

Reads only the contract's artefacts (TensorBoard events, samples/*.png, samples.npz, translations.npz) plus what
run.py leaves beside them (benchmark.json: the commands; flops.json: FLOPs per iteration and the peak rate).
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
                   ("label_accuracy", "label acc ↑", ".3f"), ("code_error", "code error ↓", ".3f")]
TRANSLATION_COLUMNS = [("l1", "L1 ↓", ".4f"), ("psnr", "PSNR (dB) ↑", ".2f"), ("ssim", "SSIM ↑", ".4f")]
SCALE: dict[str, float] = {}  # e.g. {"kid": 1e3} to show KID x 10^3
OWN_PANEL = ("losses/wasserstein_estimate", "charts/convergence", "charts/k_t")  # plotted beside the losses
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
    sps = run.scalars["charts/SPS"][-1, 2] if "charts/SPS" in run.scalars else float("nan")
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
    """Scores artefacts, with one feature classifier per dataset and a cache keyed by file and classifier."""

    def __init__(self, data_dir: str, cache_dir: str, config: metrics.ClassifierConfig, runs_dir: Path):
        self.data_dir, self.cache_dir, self.config = data_dir, cache_dir, config
        self.classifiers: dict[str, metrics.Classifier] = {}
        self.store = runs_dir / "metrics_cache"

    def classifier(self, dataset: str) -> metrics.Classifier:
        key = metrics.dataset_key(dataset)
        if key not in self.classifiers:
            self.classifiers[key] = metrics.get_classifier(key, self.data_dir, self.cache_dir, self.config)
        return self.classifiers[key]

    def cached(self, name: str, key: str, compute) -> dict:
        path = self.store / f"{name}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return saved["value"]
        value = compute()
        self.store.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "value": value}))
        return value

    def score(self, run: Run) -> dict:
        """{'samples': {...}} or {'translations': {direction: {...}}}, or {'error': ...}."""
        try:
            for name in ("samples.npz", "translations.npz"):
                npz = run.path / name
                if not npz.exists():
                    continue
                stat = npz.stat()
                if name == "translations.npz":
                    key = f"{stat.st_size}:{stat.st_mtime_ns}"
                    value = self.cached(run.path.name, key, lambda p=npz: metrics.score_translations(p))
                    return {"translations": value}
                clf = self.classifier(run.dataset)
                key = f"{stat.st_size}:{stat.st_mtime_ns}:{clf.cache_path}"
                return {"samples": self.cached(run.path.name, key, lambda p=npz, c=clf: metrics.score_samples(p, c))}
            return {"error": "no samples.npz or translations.npz (failed run, or --num-eval-samples 0)"}
        except Exception as e:  # one bad artefact must not sink the report
            return {"error": f"{type(e).__name__}: {e}"}

    def floor(self, dataset: str, size: int) -> dict:
        clf = self.classifier(dataset)
        return self.cached(f"floor_{clf.dataset}_{size}px", clf.cache_path, lambda: metrics.real_floor(clf, size))


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


def plot_wallclock(groups: dict[str, dict[int, Run]], out: Path) -> None:
    """Every script side by side: its losses against wall-clock seconds since the run started (each seed)."""
    names = [n for n, runs in groups.items() if any(r.scalars for r in runs.values())]
    if not names:
        return
    cols = min(5, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(max(5.0, 3.2 * cols), 2.5 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        tags = [t for t in ("losses/d_loss", "losses/g_loss") if any(t in r.scalars for r in groups[name].values())]
        for i, tag in enumerate(tags):
            for j, run in enumerate(groups[name].values()):
                if tag in run.scalars:
                    a = run.scalars[tag]
                    ax.plot(a[:, 1] - run.first_wall, a[:, 2], lw=1, color=f"C{i}", alpha=1.0 if j == 0 else 0.4,
                            label=tag.split("/")[-1] if j == 0 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle("losses against wall-clock time (faint lines: other seeds)", fontsize=10)
    fig.savefig(out)


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
            "device": flops.get("device", "cpu"), "peak_gflops": flops.get("peak_gflops")}


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
    cache_dir: str = str(metrics.CACHE_DIR)
    """where the feature classifier is cached"""


def main(args: Args) -> dict:
    runs_dir = Path(args.runs_dir).resolve()
    if not runs_dir.is_dir():
        raise SystemExit(f"report.py: error: {runs_dir} is not a folder")
    meta_path, flops_path = runs_dir / "benchmark.json", runs_dir / "flops.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    flops = json.loads(flops_path.read_text()) if flops_path.exists() else {}
    preset = meta.get("preset", runs_dir.name)
    out = Path(args.results_dir or Path(__file__).resolve().parent / "results" / preset)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    data_dir = args.data_dir or meta.get("data_dir", "data")
    config = metrics.ClassifierConfig(**meta["classifier"]) if "classifier" in meta else metrics.ClassifierConfig()
    scorer = Scorer(data_dir, args.cache_dir, config, runs_dir)

    groups = find_runs(runs_dir)
    if not groups:
        print(f"[report] warning: no run folders in {runs_dir}", file=sys.stderr)
    results: dict[str, dict] = {}
    for name, runs in groups.items():
        seeds = {}
        for seed, run in runs.items():
            load_events(run)
            print(f"[report] scoring {run.path.name}", file=sys.stderr, flush=True)
            seeds[seed] = {"run": run.path.name, **speed(run), **scorer.score(run)}
        results[name] = {"dataset": next(iter(runs.values())).dataset, "seeds": seeds,
                         "batch_size": next(iter(runs.values())).hparams.get("batch_size", "?")}

    floors, classifiers = {}, {}
    for name, res in results.items():
        if any("samples" in s for s in res["seeds"].values()):
            try:
                clf = scorer.classifier(res["dataset"])
                classifiers[clf.dataset] = clf.info()
                for size in sorted({s["samples"]["size"] for s in res["seeds"].values() if "samples" in s}):
                    key = f"{clf.dataset}_{size}px"
                    floors[key] = floors.get(key) or scorer.floor(clf.dataset, size)
            except (ValueError, FileNotFoundError) as e:
                print(f"[report] warning: no real-data floor for {name}: {e}", file=sys.stderr)

    # summaries over seeds
    for name, res in results.items():
        seeds = list(res["seeds"].values())
        summary = {k: mean_std([s.get(k) for s in seeds]) for k in ("iterations", "wall_s", "its", "sps")}
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

    # figures
    for name, runs in groups.items():
        plot_script(name, runs, out / f"curves_{name}.png")
    plot_wallclock(groups, out / "wallclock.png")
    first_grids = {n: last_grid(next(iter(r.values()))) for n, r in groups.items()}
    i2i = {n: p for n, p in first_grids.items() if p is not None and (n in IMAGE_TO_IMAGE or results[n]["directions"])}
    noise = {n: p for n, p in first_grids.items() if p is not None and n not in i2i}
    plot_montage(noise, out / "samples_montage.png", cols=4, max_px=320)
    plot_montage(i2i, out / "translations_montage.png", cols=1, max_px=720)

    machine = machine_info(flops, meta)
    doc = {"preset": preset, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine,
           "classifiers": classifiers, "real_floor": floors, "scripts": results, "flops": flops,
           "jobs": meta.get("jobs", []), "skipped": meta.get("skipped", [])}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, default=float))
    (out / "report.md").write_text(render(doc, out))
    size = sum(p.stat().st_size for p in out.glob("*.png"))
    print(f"[report] wrote {out / 'report.md'} ({size / 1e6:.2f} MB of figures)", flush=True)
    return doc


def render(doc: dict, out: Path) -> str:
    """report.md from the metrics document."""
    m, results = doc["machine"], doc["scripts"]
    lines = [f"# CleanGAN benchmark: preset `{doc['preset']}`", "",
             f"Generated {doc['generated']} by `benchmarks/report.py`; metrics and formulas: "
             f"[docs/benchmarks.md]({os.path.relpath(DOCS, out)}). Mean ± std over seeds (sample std).", "",
             "## Machine", "",
             md_table(["CPU", "logical cores", "workers × threads per run", "torch", "device", "peak matmul"],
                      [[str(m["cpu"]), str(m["logical_cores"]), f"{m['workers']} × {m['threads_per_run']}",
                        m["torch"], str(m["device"]),
                        f"{m['peak_gflops']:.1f} GFLOP/s" if m["peak_gflops"] else "not measured"]]), ""]

    failed = [j for j in doc["jobs"] if j.get("returncode") not in (0, None)]
    process = {n: mean_std([j["seconds"] for j in doc["jobs"] if j["script"] == n]) for n in results}
    lines += ["## Training", "",
              "*train time*: first to last TensorBoard event; *process*: the whole subprocess (start-up, data, final "
              "samples); *it/s*: generator updates per second between the first and last logged loss.", "",
              md_table(["script", "dataset", "seeds", "batch", "iterations", "train time (s)", "process (s)", "it/s",
                        "images/s"],
                       [[n, r["dataset"], str(len(r["seeds"])), str(r["batch_size"]),
                         fmt(r["summary"]["iterations"], ".0f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["wall_s"], ".0f", seeds=len(r["seeds"])),
                         fmt(process[n], ".0f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["its"], ".2f", seeds=len(r["seeds"])),
                         fmt(r["summary"]["sps"], ".0f", seeds=len(r["seeds"]))] for n, r in results.items()]), ""]
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
            dataset = key.rsplit("_", 1)[0]
            rows.append([f"*real data ({dataset}, {floor['n']} train vs test)*", str(floor["size"]), "–"] +
                        [f"*{floor[k] * SCALE.get(k, 1.0):{spec}}*" if k in floor else "–" for k, _, spec in used])
        lines += ["## Sample quality", "",
                  "Generated samples (`samples.npz`) against the real test set, in the feature classifier's space; "
                  "*px*: the samples' size (the test set is taken to the same size, as the scripts take their "
                  "training data, before both are resized to 28 px for the classifier). The *real data* rows are the "
                  "floor: real training images scored exactly like a model's samples.", "",
                  md_table(["script", "px", "seeds"] + [t for _, t, _ in used], rows), ""]
        for dataset, info in doc["classifiers"].items():
            lines += [f"Feature space: a small CNN trained on the {dataset} training set, test accuracy "
                      f"**{info['test_accuracy']:.2%}** (trained in {info['train_seconds']:.0f} s, cached); features "
                      f"are its {info['feature_dim']}-d penultimate layer; generated vs the {dataset} test set.", ""]
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
    for png, caption in [("samples_montage.png", "Final sample grid of each script (first seed)"),
                         ("translations_montage.png", "Final translation grid of each image-to-image script"),
                         ("wallclock.png", "Losses against wall-clock time")]:
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
