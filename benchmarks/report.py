# Docs: docs/benchmarks.md
"""Benchmark report from a runs folder: every script's final samples, quality over time, losses side by side, final
quality, the WGAN/BEGAN estimates against FID, speed against the machine's peak; README's CPU table (readme.py).

Reads the contract's artefacts (TensorBoard events, samples/*.png, samples_*.npz, samples.npz, translations.npz),
run.py's benchmark.json (commands) and flops.json (FLOPs per iteration, peak rate), RUN_DIR/commit.txt, and
RESULTS_DIR/speed.json (speed.py: each script's speed alone). One pandas row per run; tables: mean ± std per script.
Usage: python benchmarks/report.py benchmarks/runs/quick [--results-dir benchmarks/results/quick] [--data-dir data]
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import tyro
from scipy.stats import spearmanr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

try:  # `python benchmarks/report.py` puts benchmarks/ on sys.path, `python -m benchmarks.report` the repo root
    from benchmarks import figures, metrics
except ImportError:
    import figures
    import metrics

SCRIPT_ORDER, LOSS_KINDS, plot_montage = figures.SCRIPT_ORDER, figures.LOSS_KINDS, figures.plot_montage
# (key in metrics, column title, format); arrows say which way is better (density: real data scores about 1)
QUALITY_COLUMNS = [("fid", "FID ↓", ".2f"), ("kid", "KID ↓", ".3f"), ("precision", "precision ↑", ".3f"),
                   ("recall", "recall ↑", ".3f"), ("density", "density →1", ".3f"), ("coverage", "coverage ↑", ".3f"),
                   ("modes", "modes ≥1% ↑", ".1f"), ("kl_uniform", "KL(p‖U) ↓", ".3f"),
                   ("label_accuracy", "label acc ↑", ".3f"), ("class_spread", "class spread →1", ".2f"),
                   ("code_error", "code error ↓", ".3f")]
TRANSLATION_COLUMNS = [("l1", "L1 ↓", ".4f"), ("psnr", "PSNR (dB) ↑", ".2f"), ("ssim", "SSIM ↑", ".4f")]
# The estimate each paper says tracks sample quality (WGAN Figures 3-4: the critic's Wasserstein estimate falls as
# samples improve; BEGAN 3.4.1: M_global tracks convergence); (tag, sign), -d_loss where no estimate was logged
CLAIMS = {"wgan": [("losses/wasserstein_estimate", 1.0), ("losses/d_loss", -1.0)],
          "wgan_gp": [("losses/wasserstein_estimate", 1.0), ("losses/d_loss", -1.0)],
          "began": [("charts/convergence", 1.0)]}
HORIZONS = (2, 5, 10)  # minutes: the best eval-file FID reached within each
MANIFEST = ".report_files.json"  # what report.py wrote into the results folder (the only files it deletes)
LEGACY_FILES = ("wallclock.png",)  # written by earlier versions of report.py (without a manifest)
ROOT = Path(__file__).resolve().parents[1]


# --- Reading runs -----------------------------------------------------------------------------------------------
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

    def eval_files(self) -> list[Path]:  # the --eval-interval files, samples_{iteration:07d}.npz
        return sorted(self.path.glob("samples_[0-9]*.npz"))

    def commit(self) -> str:
        return (self.path / "commit.txt").read_text().strip() if (self.path / "commit.txt").exists() else "unknown"


def parse_run_name(name: str) -> tuple[str, str, int, int] | None:
    """(dataset, exp_name, seed, unix_time) of a run folder name, None if it is not one."""
    parts = name.split("__")
    if len(parts) < 4 or not (parts[-1].isdigit() and parts[-2].lstrip("-").isdigit()):
        return None
    return parts[0], "__".join(parts[1:-2]), int(parts[-2]), int(parts[-1])


def find_runs(runs_dir: Path) -> dict[str, dict[int, Run]]:
    """{exp_name: {seed: Run}} of RUNS_DIR/runs/* (or RUNS_DIR/* itself), the latest run of each (name, seed)."""
    found: dict[str, dict[int, Run]] = defaultdict(dict)
    for p in [p for base in (runs_dir / "runs", runs_dir) if base.is_dir() for p in base.iterdir() if p.is_dir()]:
        parsed = parse_run_name(p.name)
        if parsed and (parsed[2] not in found[parsed[1]] or found[parsed[1]][parsed[2]].started < parsed[3]):
            found[parsed[1]][parsed[2]] = Run(p, *parsed)
    return {k: dict(sorted(v.items())) for k, v in sorted(found.items(), key=lambda kv: rank(kv[0]))}


def rank(name: str) -> tuple[int, str]:
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
    wall = max(a[:, 1].max() for a in run.scalars.values()) - run.first_wall if run.first_wall else float("nan")
    g = run.scalars.get("losses/g_loss", run.scalars[loss_tags[0]])
    its = ((g[-1, 0] - g[0, 0]) / (g[-1, 1] - g[0, 1]) if len(g) >= 2 and g[-1, 1] > g[0, 1]
           else iterations / wall if wall > 0 else float("nan"))
    sps = float(run.scalars["charts/SPS"][-1, 2]) if "charts/SPS" in run.scalars else float("nan")
    return {"iterations": iterations, "wall_s": float(wall), "its": float(its), "sps": sps}


def last_grid(run: Run) -> Path | None:
    """The last `samples/{iteration:07d}.png` (InfoGAN/BEGAN's suffixed extra grids only if there is no plain one)."""
    pngs = sorted((run.path / "samples").glob("*.png"))
    return ([p for p in pngs if p.stem.isdigit()] or pngs or [None])[-1]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def shown(path: str) -> str:
    """A path relative to the repository when inside it."""
    return os.path.relpath(path, ROOT) if Path(path).resolve().is_relative_to(ROOT) else path


def sibling(name: str):
    """benchmarks/NAME.py, imported when needed (run.py and speed.py import this module)."""
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ImportError:
        return importlib.import_module(name)


# --- Quality metrics (cached per run in RUNS_DIR/metrics_cache/) --------------------------------------------------
class Scorer:
    """Scores artefacts with one feature classifier per dataset (the committed weights unless `retrain`), caching
    each file's numbers under its size, mtime and the classifier's SHA-256."""

    def __init__(self, data_dir: str, runs_dir: Path, weights: str | None = None, retrain: bool = False,
                 config: metrics.ClassifierConfig | None = None):
        self.data_dir, self.weights, self.retrain, self.config = data_dir, weights, retrain, config
        self.classifiers: dict[str, metrics.Classifier] = {}
        self.store = Path(runs_dir) / "metrics_cache"

    def classifier(self, dataset: str) -> metrics.Classifier:
        key = metrics.dataset_key(dataset)
        if key not in self.classifiers:
            clf = self.classifiers[key] = metrics.get_classifier(key, self.data_dir, self.weights, self.retrain,
                                                                 self.config)
            print(f"[report] {key} feature classifier {clf.weights_path}: sha256 {clf.sha256}", file=sys.stderr)
        return self.classifiers[key]

    def cached(self, name: str, key: str, compute) -> dict:
        path = self.store / f"{name}.json"
        if (saved := read_json(path)).get("key") == key:
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
            if "images" not in f.files:
                key = f"{stat.st_size}:{stat.st_mtime_ns}"
                return {"translations": self.cached(name, key, lambda: metrics.score_translations(npz))}
        clf = self.classifier(dataset)
        key = f"{stat.st_size}:{stat.st_mtime_ns}:{clf.sha256}:{json.dumps(kwargs, sort_keys=True)}"
        return {"samples": self.cached(name, key, lambda: metrics.score_samples(npz, clf, **kwargs))}

    def score(self, run: Run) -> dict:
        """The final artefact's metrics ({'samples': ...} or {'translations': {direction: ...}}), or {'error': ...}."""
        try:
            for name in ("samples.npz", "translations.npz"):
                if (run.path / name).exists():
                    return self.score_file(run.path.name, run.path / name, run.dataset)
            return {"error": "no samples.npz or translations.npz (failed run, or --num-eval-samples 0)"}
        except Exception as e:  # one bad artefact must not sink the report
            return {"error": f"{type(e).__name__}: {e}"}

    def curve(self, run: Run) -> list[dict]:
        """One point per eval file: iteration, train_seconds and its metrics (KID skipped; the mode histogram and
        code map dropped) or {'translations': ...}. Files that fail to score are left out."""
        points = []
        for npz in run.eval_files():
            try:
                with np.load(npz) as f:
                    head = {"iteration": int(f["iteration"]), "train_seconds": float(f["train_seconds"])}
                scored = self.score_file(f"{run.path.name}__{npz.stem}", npz, run.dataset, kid_subsets=0)
            except Exception as e:
                print(f"[report] warning: {npz}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            s = {k: v for k, v in scored.get("samples", {}).items() if k not in ("histogram", "code_to_class")}
            points.append({**head, **(s or scored)})
        return sorted(points, key=lambda p: p["iteration"])

    def floor(self, dataset: str, size: int, n: int = 10000) -> dict:
        clf = self.classifier(dataset)
        return self.cached(f"floor_{clf.dataset}_{size}px_{n}", clf.sha256, lambda: metrics.real_floor(clf, size, n))


# --- Clocks; the papers' estimates against FID --------------------------------------------------------------------
def train_clock(run: Run, curve: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, training seconds) knots of a run's own clock: its eval files' `train_seconds` from (0, 0); without
    eval files, the wall time of the logged losses since the first event."""
    if curve:
        return np.array([0.0] + [p["iteration"] for p in curve]), np.array([0.0] + [p["train_seconds"] for p in curve])
    loss = run.scalars.get("losses/g_loss", np.zeros((0, 3)))
    return (loss[:, 0], loss[:, 1] - run.first_wall) if run.first_wall else (np.zeros(0), np.zeros(0))


def to_seconds(steps: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Training seconds at `steps`, linear between the knots, extrapolated at the last knots' rate beyond them."""
    its, secs = knots
    if len(its) < 2:
        return np.full(len(steps), np.nan)
    out, beyond = np.interp(steps, its, secs), steps > its[-1]
    out[beyond] = secs[-1] + (steps[beyond] - its[-1]) * (secs[-1] - secs[-2]) / max(its[-1] - its[-2], 1e-9)
    return out


def to_minutes(name: str, steps, knots: tuple[np.ndarray, np.ndarray], alone: dict) -> np.ndarray:
    """Minutes at `steps`: of the script alone (speed.py's `minutes` from speed.json's it/s) when it was measured
    alone, so that contention during the quality runs cannot distort the comparison; else the run's own clock."""
    steps = np.asarray(steps, dtype=np.float64)
    if name not in alone.get("scripts", {}):
        return to_seconds(steps, knots) / 60
    return np.array([sibling("speed").minutes(name, int(s), alone) for s in steps])


def threads(alone: dict) -> str:
    return "one core" if alone.get("threads") == 1 else f"{alone.get('threads', '?')} threads"


def claim_estimate(name: str, run: Run) -> tuple[str, np.ndarray] | None:
    """(label, (K, 2) array of step, estimate) of the paper's quality estimate in the run, None if not logged."""
    for tag, sign in CLAIMS.get(name, []):
        if len(a := run.scalars.get(tag, [])):
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
    return None if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 else float(spearmanr(x, y).statistic)


# --- Tables: one row per run in a DataFrame, mean ± std per script ------------------------------------------------
def flat(d: dict) -> dict:
    """The numbers of a scored run or eval point, translations as `{direction}/{metric}` columns."""
    out = {f"{k2}/{k}" if k2 else k: v for k2, m in [("", d), *d.get("translations", {}).items()] for k, v in m.items()}
    return {k: v for k, v in out.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def summarise(frame: pd.DataFrame) -> dict[str, dict[str, list | None]]:
    """{script: {column: [mean, sample std, n]}} of a frame of runs; n counts the runs with a finite value (the seeds
    actually scored); None where none has one."""
    values = frame.set_index("script").drop(columns="seed").select_dtypes("number").replace([np.inf, -np.inf], np.nan)
    agg = values.groupby(level=0, sort=False).agg(["mean", "std", "count"])
    return {name: {k: [float(row[k, "mean"]), float(np.nan_to_num(row[k, "std"])), int(row[k, "count"])]
                   if row[k, "count"] else None for k in values.columns} for name, row in agg.iterrows()}


def mean_std(values: list[float]) -> tuple[float, float] | None:
    """Mean and sample std of the finite values (None when there are none)."""
    v = pd.Series(values, dtype="float64").replace([np.inf, -np.inf], np.nan).dropna()
    return None if v.empty else (float(v.mean()), float(v.std()) if len(v) > 1 else 0.0)


def fmt(stat, spec: str, seeds: int | None = None) -> str:
    """`mean ± std` (the mean alone for one seed), `–` for None; `seeds` defaults to a summary's n."""
    if stat is None or pd.isna(stat[0]):
        return "–"
    n = seeds if seeds is not None else (stat[2] if len(stat) > 2 else 1)
    return f"{stat[0]:{spec}} ± {stat[1]:{spec}}" if n > 1 else f"{stat[0]:{spec}}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table by DataFrame.to_markdown, its cells unpadded."""
    lines = pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True).splitlines()
    lines[1] = "|" + " --- |" * len(header)
    return "\n".join(re.sub(r" +\|", " |", line) for line in lines)


def early_table(curves: pd.DataFrame) -> str:
    """Best eval-file FID within each of HORIZONS minutes (mean over seeds; – unless every seed got there), and the
    last eval file's."""
    fid = curves.dropna(subset=["fid"]).sort_values("iteration")
    seeds, cols = fid.groupby("script", sort=False)["seed"].nunique(), {}
    for h in HORIZONS:
        best = fid[fid["minutes"] <= h].groupby(["script", "seed"])["fid"].min()
        best = best.groupby("script").agg(["mean", "count"])
        cols[f"≤ {h} min"] = {n: f"{b['mean']:.1f}" if b["count"] == seeds[n] else "–" for n, b in best.iterrows()}
    last = fid.groupby(["script", "seed"])["fid"].last().groupby("script").agg(["mean", "std", "count"])
    cols["last eval"] = {n: fmt(r.tolist(), ".1f") for n, r in last.iterrows()}
    return md_table(["script", *cols], [[n, *(c.get(n, "–") for c in cols.values())] for n in seeds.index])


# --- Machine, README's CPU table, the files the report writes -----------------------------------------------------
def machine_info(flops: dict, meta: dict) -> dict:
    return {"cpu": flops.get("cpu") or sibling("flops").cpu_model(), "logical_cores": os.cpu_count(),
            "threads_per_run": meta.get("threads_per_run"), "workers": meta.get("workers"), "torch": torch.__version__,
            "python": platform.python_version(), "device": flops.get("device", "cpu"), **{k: flops.get(k) for k in (
                "peak_gflops", "peak_repeats", "peak_size", "theoretical_peak", "theoretical_peak_machine")}}


def speed_sessions(alone: dict) -> str:
    """When and at which commit each script's speed was measured (speed.json keeps earlier entries of scripts not
    measured again), one group per commit and day."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, entry in alone.get("scripts", {}).items():
        when = str(entry.get("measured", alone.get("measured", "?")))[:10]
        groups.setdefault((str(entry.get("commit", alone.get("commit", "?"))), when), []).append(name)
    return "; ".join(f"{', '.join(names)}: {when}, commit `{commit}`" for (commit, when), names in groups.items())


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


def clean_results(out: Path) -> None:
    """Delete what an earlier report wrote into `out` (its manifest, else LEGACY_FILES); never any other file."""
    manifest = out / MANIFEST
    for name in json.loads(manifest.read_text()) if manifest.exists() else list(LEGACY_FILES):
        if Path(name).name == name and (out / name).is_file():  # plain names inside `out` only
            (out / name).unlink()


# --- The report -------------------------------------------------------------------------------------------------
@dataclass
class Args:
    runs_dir: tyro.conf.Positional[str]
    """a benchmark runs folder (holding runs/ and benchmark.json) or any folder of run folders"""
    results_dir: str = ""
    """where report.md, metrics.json and the figures go, and speed.json is read (default benchmarks/results/PRESET)"""
    data_dir: str = ""
    """real data for the metrics (default: the runner's --data-dir from benchmark.json, else `data`)"""
    classifier: str = ""
    """the feature classifier's weights (default: the committed benchmarks/classifier_mnist.pt)"""
    retrain_classifier: bool = False
    """train the feature classifier again on DATA_DIR, overwrite its weights file and print the new SHA-256"""
    readme: str = ""
    """also rewrite this README's CPU table (benchmarks/readme.py: between its cpu-table start and end markers)"""


def main(args: Args, scorer: Scorer | None = None) -> dict:
    runs_dir = Path(args.runs_dir).resolve()
    if not runs_dir.is_dir():
        raise SystemExit(f"report.py: error: {runs_dir} is not a folder")
    meta, flops = read_json(runs_dir / "benchmark.json"), read_json(runs_dir / "flops.json")
    preset = meta.get("preset", runs_dir.name)
    out = Path(args.results_dir or ROOT / "benchmarks" / "results" / preset).resolve()
    alone = read_json(out / "speed.json")
    out.mkdir(parents=True, exist_ok=True)
    clean_results(out)
    config = metrics.ClassifierConfig(**meta["classifier"]) if "classifier" in meta else None
    scorer = scorer or Scorer(args.data_dir or meta.get("data_dir", "data"), runs_dir, args.classifier or None,
                              args.retrain_classifier, config)

    # each run: its scores (a row of `rows`), eval files (rows of `points`), scalars, the paper's estimate against FID
    groups, process = find_runs(runs_dir), {(j["script"], j["seed"]): j["seconds"] for j in meta.get("jobs", [])}
    results, rows, points, scalars, claims = {}, [], [], [], {}
    for name, seed, run in [(n, seed, run) for n, runs in groups.items() for seed, run in runs.items()]:
        print(f"[report] scoring {run.path.name} ({len(run.eval_files())} eval files)", file=sys.stderr, flush=True)
        load_events(run)
        curve, c1 = scorer.curve(run), run.scalars.get("charts/c1_test_error", [])
        knots = train_clock(run, curve)
        for p, minutes in zip(curve, to_minutes(name, [p["iteration"] for p in curve], knots, alone), strict=True):
            p["minutes"] = float(minutes)
        s = {"run": run.path.name, "commit": run.commit(), **speed(run), **scorer.score(run), "curve": curve,
             **({"c1_test_error": float(c1[-1, 2])} if len(c1) else {})}
        results.setdefault(name, {"dataset": run.dataset, "batch_size": run.hparams.get("batch_size", "?"),
                                  "seeds": {}})["seeds"][seed] = s
        rows.append({"script": name, "seed": seed, "process_s": process.get((name, seed), np.nan),
                     **flat({**s, **s.get("samples", {})})})
        points += [{"script": name, "seed": seed, **flat(p)} for p in curve]
        scalars += [pd.DataFrame({"script": name, "seed": seed, "tag": tag, "step": a[:, 0], "value": a[:, 2],
                                  "minutes": to_minutes(name, a[:, 0], knots, alone)})
                    for tag, a in run.scalars.items()]
        if found := claim_estimate(name, run):
            its, fids, est = claim_pairs(found[1], curve)
            claims.setdefault(name, {"label": found[0], "seeds": {}})["seeds"][seed] = {
                "iterations": its.tolist(), "fid": fids.tolist(), "estimate": est.tolist(),
                "spearman": spearman(fids, est)}
    for c in claims.values():
        rhos = [s["spearman"] for s in c["seeds"].values() if s["spearman"] is not None]
        c["mean_spearman"] = float(np.mean(rhos)) if rhos else None

    # each script: mean ± std over the seeds that have each number, FLOP/s at its speed alone, the real-data floors
    summaries, floors, classifiers = summarise(pd.DataFrame.from_records(rows)) if rows else {}, {}, {}
    for name, r in results.items():
        s, fast = summaries[name], alone.get("scripts", {}).get(name, {})
        r["summary"], r["directions"] = s, sorted({d for x in r["seeds"].values() for d in x.get("translations", {})})
        if fast:
            s.update(its_alone=[fast["it_per_s"], 0.0, 1], sps_alone=[fast.get("images_per_s") or np.nan, 0.0, 1])
        per_iter, peak = flops.get("scripts", {}).get(name, {}).get("flops_per_iter"), flops.get("peak_gflops")
        if per_iter and (its := (s.get("its_alone" if alone else "its") or [None])[0]):  # alone when measured
            s.update(gflop_per_iter=[per_iter / 1e9, 0.0, 1], achieved_gflops=[per_iter * its / 1e9, 0.0, 1],
                     fraction_of_peak=[per_iter * its / 1e9 / peak, 0.0, 1] if peak else None)
        sizes = {x["samples"]["size"] for x in r["seeds"].values() if "samples" in x}
        curve_n = next((p["n"] for x in r["seeds"].values() for p in x["curve"] if "n" in p), None)
        try:
            if sizes or curve_n:
                clf = scorer.classifier(r["dataset"])
                classifiers[clf.dataset] = clf.info()
                wanted = {f"{clf.dataset}_{z}px": (z, 10000) for z in sorted(sizes | {metrics.IMG_SIZE})}
                wanted.update({"curve": (metrics.IMG_SIZE, curve_n)} if curve_n else {})
                floors.update({k: scorer.floor(clf.dataset, *v) for k, v in wanted.items() if k not in floors})
        except (ValueError, FileNotFoundError) as e:
            print(f"[report] warning: no real-data floor for {name}: {e}", file=sys.stderr)

    # the figures, then metrics.json, report.md, the manifest of what was written and README's CPU table
    curves = pd.DataFrame.from_records(points) if points else pd.DataFrame(columns=["script", "seed", "iteration"])
    scalars = pd.concat(scalars, ignore_index=True) if scalars else pd.DataFrame(columns=["script", "seed", "tag"])
    own = [n for n in results if n not in alone.get("scripts", {})]
    clock = (f"estimated minutes of {threads(alone)} alone (speed.py's it/s, one run at a time)" + "".join(
        f"; {n}: its own clock" for n in own) if len(own) < len(results) else "minutes of training by the quality "
        "runs' own clock (side by side with other work on the machine: not measured alone, no speed.json)")
    f, first = figures, {n: next(iter(r.values())) for n, r in groups.items()}
    grids = {n: g for n, run in first.items() if not results[n]["directions"] and (g := last_grid(run))}
    plots = {"samples_all.png": lambda p: f.plot_pictures([x for n, run in first.items() if (
                 x := f.final_picture(n, run.path, last_grid(run)))], p, 5, 2.6),
             "quality.png": lambda p: f.plot_quality(curves, floors, clock, p),
             "quality_translation.png": lambda p: f.plot_translation_quality(curves, clock, p),
             **{f"losses_{k}.png": lambda p, k=k: f.plot_losses(scalars, k, clock, p) for k in LOSS_KINDS},
             "claims.png": lambda p: f.plot_claims(claims, p),
             "samples_montage.png": lambda p: plot_montage(grids, p, 4, 320),
             **{f"curves_{n}.png": lambda p, n=n: f.plot_script(n, scalars[scalars["script"] == n], p) for n in groups}}
    written = [name for name, plot in plots.items() if plot(out / name)]
    doc = {"preset": preset, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(flops, meta),
           "classifiers": classifiers, "real_floor": floors, "scripts": results, "claims": claims, "flops": flops,
           "speed_alone": alone, "clock": clock, "jobs": meta.get("jobs", []), "skipped": meta.get("skipped", [])}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, default=float))
    (out / "report.md").write_text(render(doc, out, curves))
    (out / MANIFEST).write_text(json.dumps(sorted({*written, "metrics.json", "report.md"}), indent=1))
    print(f"[report] wrote {out / 'report.md'} ({sum((out / n).stat().st_size for n in written) / 1e6:.2f} MB of "
          "figures)", flush=True)
    if args.readme:
        sibling("readme").write(args.readme, doc, alone, out)
    return doc


def render(doc: dict, out: Path, curves: pd.DataFrame) -> str:
    """report.md from the metrics document (and the eval files' frame, for the early-FID table)."""
    m, res, fl, alone, floors = doc["machine"], doc["scripts"], doc["flops"], doc["speed_alone"], doc["real_floor"]
    pngs, sm = {p.name for p in out.glob("*.png")}, {n: r["summary"] for n, r in res.items()}

    def seeds(name: str, key: str) -> str:  # how many seeds have the number
        return str((sm[name].get(key) or [0, 0, 0])[2])

    def figure(png: str, alt: str, caption: str = "") -> list[str]:
        return [f"![{alt}]({png})", "", f"*{caption or alt}*", ""] if png in pngs else []

    commits = sorted({s.get("commit", "unknown") for r in res.values() for s in r["seeds"].values()})
    L = [f"# CleanGAN benchmark: preset `{doc['preset']}`", "",
         f"Generated {doc['generated']} by `benchmarks/report.py`; metrics and formulas: [docs/benchmarks.md]("
         f"{os.path.relpath(ROOT / 'docs' / 'benchmarks.md', out)}). Mean ± sample std over the seeds that have the "
         f"number (*seeds*: how many). Commit(s) the runs ran: {', '.join(f'`{c}`' for c in commits)}.", ""]
    L += figure("samples_all.png", "Every script's final samples", "Final samples of the first seed: 64 of each "
                "noise-to-image script's samples.npz (cGAN's sorted by label); pix2pix and CycleGAN: input | output "
                "| target of three test images, labels → photo.")
    c = floors.get("curve")
    L += ["## Quality over time", ""] + figure(
        "quality.png", "Sample quality during training", f"Every eval file (`samples_{{iteration}}.npz`) scored like "
        f"the final samples, against {doc['clock']}, and against iterations. Its {c['n'] if c else 'few'} samples put "
        "its FIDs above the final table's" + (f"; dashed: real training images at the same n (FID {c['fid']:.1f})."
                                              if c else ".")) + [
        f"Best eval-file FID within {', '.join(map(str, HORIZONS))} of those minutes (mean over seeds; – unless every "
        "seed got there), and the last:", "", early_table(curves), ""] if "quality.png" in pngs else []
    L += figure("quality_translation.png", "Translation quality during training", "pix2pix and CycleGAN eval files "
                "(a fixed test subset): L1 and SSIM against the targets, per direction, against the same minutes.")

    theory = m.get("theoretical_peak")
    peak = (f"{m['peak_gflops']:.1f} GFLOP/s (best of {m.get('peak_repeats') or 5}" + (
        f", {m['peak_size']}² matmul)" if m.get("peak_size") else ")") if m["peak_gflops"] else "not measured")
    L += ["## Machine", "", md_table(
        ["CPU", "logical cores", "workers × threads per run", "torch", "device", "peak matmul (measured)",
         "theoretical peak (same threads)"],
        [[str(m["cpu"]), str(m["logical_cores"]), f"{m['workers']} × {m['threads_per_run']}", m["torch"],
          str(m["device"]), peak, f"{theory['gflops']:.1f} GFLOP/s" if theory else "unknown"]]), ""]
    L += [peak_note(m), ""] if theory else []
    L += [f"Speed alone (`benchmarks/speed.py`; {speed_sessions(alone)}): "
          f"{alone.get('cpu', '?')}, {alone.get('cores', '?')} cores, {threads(alone)} per run, one run at a time, "
          f"torch {alone.get('torch', '?')}; load average before: {alone.get('load_before', '?')}."
          + "".join(f" Warning: {w}." for w in alone.get("warnings", [])), ""] if alone else []

    failed = [f"{j['script']} seed {j['seed']} (exit {j['returncode']}, log `{j['log']}`)" for j in doc["jobs"]
              if j.get("returncode") not in (0, None)]
    columns = [("iterations", ".0f"), ("wall_s", ".0f"), ("process_s", ".0f"), ("its", ".2f"), ("sps", ".3g")]
    L += ["## Training", "", "*seeds*: runs with events; *train time*: first to last TensorBoard event; *process*: the "
          "whole subprocess; *it/s*: generator updates per second between the first and last logged loss, in these "
          "runs (beside other work; the speed alone is below); *images/s*: the last `charts/SPS`.", "",
          md_table(["script", "dataset", "seeds", "batch", "iterations", "train time (s)", "process (s)", "it/s",
                    "images/s"], [[n, r["dataset"], seeds(n, "iterations"), r["batch_size"]] +
                                  [fmt(sm[n].get(k), spec) for k, spec in columns] for n, r in res.items()]), ""]
    L += [f"**Failed runs:** {', '.join(failed)}", ""] if failed else []
    L += [f"Skipped (script not present): {', '.join(doc['skipped'])}.", ""] if doc["skipped"] else []

    noise = [n for n, s in sm.items() if s.get("fid")]
    used = [col for col in QUALITY_COLUMNS if any(sm[n].get(col[0]) for n in noise)]
    rows = [[n, "/".join(sorted({str(x["samples"]["size"]) for x in res[n]["seeds"].values() if "samples" in x})),
             seeds(n, "fid")] + [fmt(sm[n].get(k), spec) for k, _, spec in used] for n in noise]
    rows += [[f"*real data ({k.rsplit('_', 1)[0]}, {f['n']} train images)*", str(f["size"]), "–"] +
             [f"*{f[k]:{spec}}*" if k in f else "–" for k, _, spec in used] for k, f in floors.items() if k != "curve"]
    L += ["## Sample quality", "", "Final samples (`samples.npz`) against the test set in the feature classifier's "
          "space (how each size gets there: docs/benchmarks.md); *px*: the samples' size; *seeds*: seeds scored. "
          "*Real data*: the floor, real training images scored exactly like samples of that size.", "",
          md_table(["script", "px", "seeds"] + [t for _, t, _ in used], rows), ""] if noise else []
    L += [f"Feature space: a small CNN trained on the {d} training set, test accuracy **{i['test_accuracy']:.2%}**, "
          f"its {i['feature_dim']}-d penultimate layer" + (f"; reference: {i['reference']}" if "reference" in i else "")
          + f". Weights `{shown(i['weights'])}`, SHA-256 `{i['sha256']}`.\n" for d, i in doc["classifiers"].items()]
    L += [f"{n}: *code error* (one-to-one code → class matching of its samples, Hungarian) "
          f"{fmt(sm[n].get('code_error'), '.3f')}; the paper's metric, `c1_test_error` (Q's categorical code "
          f"classifying real test digits, Section 7.2), {fmt(sm[n].get('c1_test_error'), '.3f')}.\n"
          for n in noise if sm[n].get("code_error") or sm[n].get("c1_test_error")]
    errors = [f"{n} `{s['run']}`: {s['error']}" for n, r in res.items() for s in r["seeds"].values() if "error" in s]
    L += ["Not scored: " + "; ".join(errors), ""] if errors else []

    rows = [[n, d, seeds(n, f"{d}/l1")] + [fmt(sm[n].get(f"{d}/{k}"), spec) for k, _, spec in TRANSLATION_COLUMNS]
            for n, r in res.items() for d in r["directions"]]
    L += ["## Translation quality", "", "Over the test split: outputs against targets; `*_cycle` rows: CycleGAN's "
          "reconstructions against the inputs.", "",
          md_table(["script", "direction", "seeds"] + [t for _, t, _ in TRANSLATION_COLUMNS], rows), ""] if rows else []

    rows = [[n, f"`{c['label']}`", ", ".join(f"seed {seed}: {fmt(s['spearman'] and [s['spearman']], '.2f')} "
                                             f"({len(s['fid'])} points)" for seed, s in c["seeds"].items()),
             fmt(c["mean_spearman"] and [c["mean_spearman"]], ".2f")] for n, c in doc["claims"].items()]
    L += ["## The papers' estimates against FID", "", "WGAN (Figures 3-4) says its critic's Wasserstein estimate falls "
          "as the samples improve; BEGAN (Section 3.4.1) says M_global (`charts/convergence`) tracks convergence. Each "
          "eval file's FID is paired with the estimate logged at the nearest iteration; Spearman's ρ > 0 supports the "
          "claim (estimate and FID fall together).", "",
          md_table(["script", "estimate", "Spearman ρ per seed", "mean ρ"], rows), ""] if rows else []
    L += figure("claims.png", "The papers' estimates against FID over training")

    iters = next((v["iters"] for v in fl.get("scripts", {}).values() if "iters" in v), ["?", "?"])
    speed_of = (f"*it/s*, *images/s*: measured alone, one run at a time, {alone.get('threads', '?')} thread(s), by "
                "`benchmarks/speed.py` (a warm-up, then a timed window; commands below)" if alone else "*it/s*, "
                "*images/s*: of the quality runs above, beside other work (no speed.json: not measured alone, so "
                "*of peak* is understated)")
    L += ["## Speed against the machine's limit", "", speed_of + ". FLOPs per iteration counted by "
          "`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, forward and backward): (F(n2) - "
          f"F(n1)) / (n2 - n1) over runs of n1 = {iters[0]} and n2 = {iters[1]} iterations, so one-off work cancels; "
          f"peak: the best rate of a {fl.get('peak_size', 2048)}² float32 matmul on {fl.get('device', '?')}, "
          f"{fl.get('threads', '?')} thread(s).", "", md_table(
              ["script", "GFLOP / iteration", "it/s", "images/s", "achieved GFLOP/s", "of peak"],
              [[n, fmt(s.get("gflop_per_iter"), ".3f"), fmt(s.get("its_alone" if alone else "its"), ".2f"),
                fmt(s.get("sps_alone" if alone else "sps"), ".3g"), fmt(s.get("achieved_gflops"), ".2f"),
                fmt(s.get("fraction_of_peak") and [100 * s["fraction_of_peak"][0]], ".1f") + "%" if s.get(
                    "fraction_of_peak") else fl.get("scripts", {}).get(n, {}).get("error", "–")]
               for n, s in sm.items()]), ""] if fl or alone else []

    L += ["## Figures", ""]
    for png, caption in [*[(f"losses_{k}.png", f"{v} against minutes.") for k, v in LOSS_KINDS.items()],
                         ("samples_montage.png", "The last sample grid each noise-to-image script wrote (first seed)."),
                         *[(f"curves_{n}.png", f"{n}: every logged loss against iterations.") for n in res]]:
        L += figure(png, caption)
    commands = [f"{j['shell']}  # exit {j['returncode']}, {j['seconds']:.0f}s" for j in doc["jobs"]]
    commands += [f"{e['command']}  # alone: {e['it_per_s']:.2f} it/s" for e in alone.get("scripts", {}).values()]
    L += ["## Commands", "", "Run by `benchmarks/run.py` (paths inside the repository relative to it) and, for the "
          "speed alone, `benchmarks/speed.py`:", "", "```bash", *commands, "```", ""] if commands else []
    return "\n".join(L)


if __name__ == "__main__":
    main(tyro.cli(Args))
