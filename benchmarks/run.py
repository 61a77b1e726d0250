# Docs: docs/benchmarks.md
"""Benchmark runner: every (script, seed) of a preset as a subprocess, then the FLOP count and the report.

Usage: python benchmarks/run.py --preset quick --data-dir /path/to/data [extra script flags]
(seeds 1 2 3, two runs at a time; writes benchmarks/results/quick/ and README.md's CPU table, benchmarks/readme.py)
--preset ablations (or ablations-full) runs the papers' ablation tables instead: benchmarks/ablations.py.
Flags the runner does not know (e.g. --no-cuda, --batch-size 32) are passed to every script.
After the quick preset's runs, benchmarks/speed.py measures each script's speed alone (--no-speed: not; --speed-only:
only that).
Exit status: 0, or 3 when some run failed (the report is written either way).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import torch
import tyro

try:  # `python benchmarks/run.py` puts benchmarks/ on sys.path, `python -m benchmarks.run` the repository root
    from benchmarks import report
    from benchmarks.metrics import ClassifierConfig
except ImportError:
    import report
    from metrics import ClassifierConfig

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SCRIPTS = ("gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan")
IMAGE_TO_IMAGE = ("pix2pix", "cyclegan")

# ---------------------------------------------------------------------------------------------------------------
# Presets: flags every script of a preset gets, then each script's own (budgets, widths, image sizes, dataset flags).
# Edit budgets here; later flags win, so a per-script flag overrides a common one. The scripts' defaults are the
# papers' full-width configurations for a GPU; quick and long pin today's CPU widths explicitly so that their reports
# stay comparable across versions.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuLine:
    """One script's README CPU line: the flags that size it for a 2-core CPU (the `quick` preset runs exactly these)
    and what its final grid shows (at most 15 words; README.md's CPU table is generated from this table)."""

    flags: tuple[str, ...]
    shows: str


# The README's CPU lines: each sized for about 5-15 minutes of one core (widths below the papers' where a full-width
# iteration costs too much on a CPU; the budgets are the iterations that fit). ONE table: README.md's CPU table and the
# `quick` preset are both made from it (tests/test_benchmarks.py checks that they agree).
CPU_LINES: dict[str, CpuLine] = {
    "gan": CpuLine(("--hidden-dim", "600", "--maxout-units", "120", "--max-iters", "6000"),
                   "varied digits of all ten classes, most recognisable, speckled strokes"),
    "cgan": CpuLine(("--batch-size", "50", "--max-iters", "5000"),
                    "each row its label's digit in varied styles; about one in eight wrong"),
    "dcgan": CpuLine(("--ngf", "16", "--ndf", "16", "--max-iters", "2000"),
                     "varied digits of all ten classes, about half recognisable (seed 1 more), the rest malformed"),
    "lsgan": CpuLine(("--ngf", "16", "--ndf", "16", "--max-iters", "3600"),
                     "varied digits of all ten classes, most recognisable, cleaner strokes than DCGAN's"),
    "infogan": CpuLine(("--num-filters", "32", "--fc-dim", "512", "--max-iters", "840"),
                       "digits of all ten classes; along c2 a row sometimes turns into another digit"),
    "wgan": CpuLine(("--ngf", "16", "--ndf", "16", "--max-iters", "2000"),
                    "digit-like strokes, few recognisable, most malformed"),
    "wgan_gp": CpuLine(("--dim", "8", "--max-iters", "3000"),
                       "varied digit shapes, some recognisable, speckled and broken strokes"),
    "began": CpuLine(("--num-filters", "32", "--max-iters", "1500"),
                     "blurry, varied digit shapes of all ten classes, some recognisable, many malformed"),
    "pix2pix": CpuLine(("--img-size", "128", "--max-iters", "400"),
                       "facades with windows and floors in the right places, blurry and grey"),
    "cyclegan": CpuLine(("--img-size", "64", "--dataset-mode", "unaligned", "--max-iters", "250"),
                        "labels to photo: speckled facade textures with faint window rows"),
}
# What the benchmark adds to a script's preset flags besides COMMON: a sample grid every quarter of the run for the two
# translation scripts (their 400 and 250 iterations would otherwise write one grid only).
EVAL_FLAGS: dict[str, dict[str, list[str]]] = {"quick": {"pix2pix": ["--sample-interval", "100"],
                                                         "cyclegan": ["--sample-interval", "50"]}}

COMMON: dict[str, list[str]] = {
    # seconds per script on tiny data (tests/test_benchmarks.py)
    "smoke": ["--max-iters", "4", "--batch-size", "16", "--num-eval-samples", "200", "--log-interval", "1",
              "--sample-interval", "2", "--checkpoint-interval", "1000", "--eval-interval", "2"],
    # the README's CPU lines (CPU_LINES), two runs side by side; --log-interval and --eval-interval are
    # derived from each script's --max-iters (CURVE_POINTS below)
    "quick": ["--num-eval-samples", "10000", "--sample-interval", "500", "--checkpoint-interval", "100000"],
    # the papers' budgets (the scripts' defaults), for a GPU; the iteration count is unknown here, so a fixed interval
    "full": ["--num-eval-samples", "10000", "--eval-interval", "1000"],
}
COMMON["long"] = COMMON["quick"]  # the same flags at about three times quick's budgets (PRESETS below)
# (logged points, eval files) per run: --log-interval max(1, max_iters // 60), --eval-interval max(1, max_iters // 10)
CURVE_POINTS: dict[str, tuple[int, int]] = {"quick": (60, 10), "long": (60, 10)}
PRESETS: dict[str, dict[str, list[str]]] = {
    "smoke": {
        **{name: [] for name in SCRIPTS[:8]},
        "pix2pix": ["--img-size", "32", "--ngf", "8", "--ndf", "8", "--batch-size", "1", "--num-eval-samples", "4"],
        "cyclegan": ["--img-size", "32", "--ngf", "8", "--ndf", "8", "--batch-size", "1", "--num-eval-samples", "4",
                     "--dataset-mode", "unaligned"],
    },
    "quick": {name: list(line.flags) for name, line in CPU_LINES.items()},
    # About 15 minutes of one core per run, two runs side by side.
    "long": {
        "gan": ["--max-iters", "6000"],
        "cgan": ["--max-iters", "7000"],
        "dcgan": ["--max-iters", "2100", "--ngf", "32", "--ndf", "32"],
        "lsgan": ["--max-iters", "4200", "--ngf", "32", "--ndf", "32"],
        "infogan": ["--max-iters", "2400"],
        "wgan": ["--max-iters", "3000", "--ngf", "16", "--ndf", "16"],
        "wgan_gp": ["--max-iters", "2200", "--dim", "16"],
        "began": ["--max-iters", "4500", "--num-filters", "16"],
        "pix2pix": ["--max-iters", "1200", "--img-size", "128", "--sample-interval", "400"],
        "cyclegan": ["--max-iters", "750", "--img-size", "64", "--dataset-mode", "unaligned", "--sample-interval",
                     "250"],
    },
    "full": {name: [] for name in SCRIPTS},
}
# Extra flags of the FLOP count only (1 and 3 iterations): WGAN's first 25 iterations run 100 critic steps (official
# code), but its it/s is measured from the first logged loss on, in the 5-critic-step regime; count that regime.
FLOP_COUNT_FLAGS: dict[str, list[str]] = {"wgan": ["--no-critic-warmup"]}
# Side of the matmul timed for the machine's peak rate (flops.py's default 2048 unless named here). The smoke
# preset only checks the plumbing: a 512 product times in a tenth of a second where 2048 takes seconds on one thread.
PEAK_SIZE: dict[str, int] = {"smoke": 512}
# How the feature classifier is trained when --retrain-classifier asks for it (otherwise the committed weights,
# benchmarks/classifier_mnist.pt, are loaded); the smoke preset's would be a throwaway one trained in a second.
CLASSIFIER: dict[str, ClassifierConfig] = {
    "smoke": ClassifierConfig(epochs=1, max_steps=20),
    "quick": ClassifierConfig(),
    "long": ClassifierConfig(),
    "full": ClassifierConfig(),
}
DEFAULT_SEEDS = {"smoke": (1,), "quick": (1, 2, 3), "long": (1,), "full": (1, 2, 3)}
# small nets use 2 one-thread runs better than 1 two-thread run
DEFAULT_WORKERS = {"smoke": 2, "quick": 2, "long": 2, "full": 1}
HEARTBEAT_S = 50.0  # seconds between progress lines while runs are going (at least one a minute)


@dataclass
class Args:
    preset: Literal["smoke", "quick", "long", "full", "ablations", "ablations-full"] = "quick"
    """budget table to use (see PRESETS in this file); ablations, ablations-full: the papers' ablation tables at CPU
    or the papers' budgets (benchmarks/ablations.py, its own budgets, seeds 1 2, report in results/PRESET)"""
    scripts: tuple[str, ...] = SCRIPTS
    """scripts to run (file names without .py); missing ones are skipped with a warning"""
    seeds: tuple[int, ...] = ()
    """seeds to run each script with (default: smoke 1; quick 1 2 3; long 1; full 1 2 3)"""
    data_dir: str = "data"
    """folder holding MNIST/raw, facades/ and facades_cyclegan/ (passed to every script as --data-dir)"""
    workers: int | None = None
    """parallel subprocesses (0 = print the commands only; default: 2 for smoke, quick and long, 1 for full); each gets
    max(1, cores // workers) threads"""
    runs_dir: str = ""
    """working directory of the subprocesses; run folders go to RUNS_DIR/runs/ (default benchmarks/runs/PRESET)"""
    results_dir: str = ""
    """where the report goes (default benchmarks/results/PRESET)"""
    classifier: str = ""
    """the feature classifier's weights (default: the committed benchmarks/classifier_mnist.pt)"""
    retrain_classifier: bool = False
    """train the feature classifier again on DATA_DIR, overwrite its weights file and print the new SHA-256"""
    readme: str = "auto"
    """README whose CPU table (between <!-- cpu-table:start --> and <!-- cpu-table:end -->) benchmarks/readme.py
    rewrites from metrics.json and speed.json: `auto` = the repository's README.md for the quick preset with the
    default results folder, nothing otherwise; `` = never"""
    threads: int = 0
    """threads per run, OMP_NUM_THREADS and MKL_NUM_THREADS (0 = max(1, cores // workers))"""
    timeout: int = 0
    """seconds before a run is killed (0 = no limit)"""
    heartbeat: float = HEARTBEAT_S
    """seconds between progress lines (done, running, ETA) while runs are going"""
    skip_training: bool = False
    """only (re)write the FLOP count and the report from the runs already in RUNS_DIR"""
    flops: bool = True
    """count FLOPs per iteration and measure the peak matmul rate (a few seconds per script)"""
    report: bool = True
    """write the report at the end"""
    speed: bool = True
    """quick preset: after the training runs (and the FLOP count), measure each script's speed alone, one run at a
    time on one thread (benchmarks/speed.py; RESULTS_DIR/speed.json; waits for the machine to become quiet)"""
    speed_only: bool = False
    """only measure the speeds (benchmarks/speed.py): no training runs, no FLOP count, no report"""


@dataclass
class Job:
    """One (script, seed) subprocess."""

    script: str
    seed: int
    cmd: list[str]
    cwd: str
    threads: int
    log: str
    returncode: int | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    commit: str = ""
    run_dir: str = ""
    started: float = 0.0  # unix time, 0 until it starts
    index: int = 0  # k of [k/N], in start order

    def shell(self) -> str:
        """The command as one shell line; paths inside the repository relative to it (and to the cwd)."""
        inside = Path(self.cwd).is_relative_to(ROOT)
        script = os.path.relpath(self.cmd[1], self.cwd) if inside else self.cmd[1]
        cmd = [Path(self.cmd[0]).name, script, *self.cmd[2:]]
        env = f"OMP_NUM_THREADS={self.threads} MKL_NUM_THREADS={self.threads}"
        return f"cd {os.path.relpath(self.cwd, ROOT) if inside else self.cwd} && {env} {shlex.join(cmd)}"


def fail(msg: str) -> NoReturn:
    """Bad arguments: one line on stderr, exit status 2 (as the scripts do)."""
    print(f"run.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def resolve_dirs(args: Args) -> tuple[Path, Path]:
    runs = Path(args.runs_dir or BENCH / "runs" / args.preset).resolve()
    results = Path(args.results_dir or BENCH / "results" / args.preset).resolve()
    return runs, results


def readme_path(args: Args) -> Path | None:
    """The README to rewrite the results table of (see Args.readme), or None."""
    if args.readme != "auto":
        return Path(args.readme) if args.readme else None
    default_results = not args.results_dir or Path(args.results_dir).resolve() == BENCH / "results" / "quick"
    return ROOT / "README.md" if args.preset == "quick" and default_results else None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def git_commit() -> str:
    """HEAD's hash, `+dirty` when tracked files differ from it; `unknown` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def merge_flags(*groups: Sequence[str]) -> list[str]:
    """Concatenate flag lists, a later `--flag [values]` (or `--flag=value`) replacing an earlier one."""
    merged: dict[str, list[str]] = {}  # flag name -> its tokens
    for group in groups:
        key = None
        for token in group:
            if token.startswith("--"):
                key = token.split("=", 1)[0]
                merged.pop(key, None)
                merged[key] = [token]
            elif key is None:
                raise ValueError(f"value {token!r} before any --flag in {list(group)}")
            else:
                merged[key].append(token)
    return [t for tokens in merged.values() for t in tokens]


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of the last `--name VALUE` or `--name=VALUE` in `flags` (None if absent)."""
    value = None
    for i, token in enumerate(flags):
        if token == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif token.startswith(f"{name}="):
            value = token.split("=", 1)[1]
    return value


def curve_flags(preset: str, flags: Sequence[str]) -> list[str]:
    """--log-interval and --eval-interval from the script's --max-iters, so that every run logs about
    CURVE_POINTS[preset] points and writes about as many eval files (nothing for presets without CURVE_POINTS)."""
    iters = flag_value(flags, "--max-iters")
    if preset not in CURVE_POINTS or iters is None or int(iters) <= 0:
        return []
    logs, evals = CURVE_POINTS[preset]
    return ["--log-interval", str(max(1, int(iters) // logs)), "--eval-interval", str(max(1, int(iters) // evals))]


def script_args(preset: str, script: str, extra: Sequence[str] = ()) -> list[str]:
    """The flags a preset gives one script: its own (for `quick`, exactly its README CPU line) first, then what the
    benchmark adds (COMMON, the curve intervals derived from its budget, EVAL_FLAGS), then `extra`. A later flag wins:
    the script's own over the common ones, `extra` (printed last) over everything."""
    own = PRESETS[preset].get(script, [])
    added = EVAL_FLAGS.get(preset, {}).get(script, [])
    merged = merge_flags(COMMON[preset], added, own, extra)
    merged = merge_flags(COMMON[preset], curve_flags(preset, merged), added, own, extra)
    return [*without(own, extra), *without(merged, [*own, *extra]), *extra]  # the script's own flags lead


def without(flags: Sequence[str], drop: Sequence[str]) -> list[str]:
    """`flags` less every `--flag [values]` whose name is also in `drop`."""
    names = {t.split("=", 1)[0] for t in drop if t.startswith("--")}
    kept, key = [], None
    for token in flags:
        key = token.split("=", 1)[0] if token.startswith("--") else key
        if key not in names:
            kept.append(token)
    return kept


def build_jobs(args: Args, scripts: list[str], seeds: tuple[int, ...], extra: list[str], runs_dir: Path,
               threads: int) -> list[Job]:
    data_dir = str(Path(args.data_dir).resolve())
    jobs = []
    for script in scripts:
        for seed in seeds:
            cmd = [sys.executable, str(ROOT / f"{script}.py"), "--seed", str(seed), "--exp-name", script,
                   "--data-dir", data_dir, "--no-download", *script_args(args.preset, script, extra)]
            log = runs_dir / "logs" / f"{script}__{seed}.log"
            jobs.append(Job(script, seed, cmd, str(runs_dir), threads, str(log)))
    return jobs


def find_run_dir(job: Job) -> Path | None:
    """The run folder `runs/{dataset}__{script}__{seed}__{unix_time}` this job created (the newest one that started
    after the job did), None before the script has made it."""
    if not job.started:
        return None
    best = None
    for p in (Path(job.cwd) / "runs").glob(f"*__{job.script}__{job.seed}__*"):
        parsed = report.parse_run_name(p.name)
        if parsed and parsed[1] == job.script and parsed[2] == job.seed and parsed[3] >= int(job.started) - 1:
            best = p if best is None or parsed[3] > report.parse_run_name(best.name)[3] else best
    return best


class Progress:
    """`[k/N] script seed S started/finished` lines and a heartbeat with an ETA, from any thread."""

    def __init__(self, jobs: list[Job], workers: int, heartbeat: float):
        self.jobs, self.workers, self.heartbeat = jobs, workers, heartbeat
        self.lock = threading.Lock()
        self.started = 0
        self.begin = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        if self.heartbeat > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def start(self, job: Job) -> None:
        with self.lock:
            self.started += 1
            job.index, job.started = self.started, time.time()
        print(f"[{job.index}/{len(self.jobs)}] {job.script} seed {job.seed} started", flush=True)

    def finish(self, job: Job, fid: float | None = None, note: str = "") -> None:
        status = "finished" if job.returncode == 0 else f"FAILED (exit {job.returncode}, log {job.log})"
        quality = f", FID {fid:.1f}" if fid is not None else (f", {note}" if note else "")
        print(f"[{job.index}/{len(self.jobs)}] {job.script} seed {job.seed} {status} ({fmt_seconds(job.seconds)}"
              f"{quality})", flush=True)

    def estimate(self, now: float | None = None) -> float | None:
        """Seconds until every job is done: each running job's total from its progress (its newest eval file's
        iteration of --max-iters), each queued one from finished or running jobs of its script (else of any script),
        spread over the workers; None while nothing can be estimated."""
        now = now or time.time()
        totals: dict[str, list[float]] = {}
        running = []
        for j in self.jobs:
            if j.returncode is not None:
                totals.setdefault(j.script, []).append(j.seconds)
            elif j.started:
                total = running_total(j, now)
                running.append((j, total))
                if total is not None:
                    totals.setdefault(j.script, []).append(total)
        known = [t for ts in totals.values() for t in ts]
        if not known:
            return None
        fallback = float(np.mean(known))
        left = 0.0
        for j, total in running:
            left += max(0.0, (total if total is not None else np.mean(totals.get(j.script, [fallback])))
                        - (now - j.started))
        for j in self.jobs:
            if not j.started:
                left += float(np.mean(totals.get(j.script, [fallback])))
        return left / max(1, min(self.workers, len(running) + sum(not j.started for j in self.jobs)))

    def line(self, now: float | None = None) -> str:
        now = now or time.time()
        done = sum(j.returncode is not None for j in self.jobs)
        running = [j for j in self.jobs if j.started and j.returncode is None]
        eta = self.estimate(now)
        parts = ", ".join(f"{j.script} seed {j.seed} {fmt_seconds(now - j.started)}" for j in running)
        return (f"[benchmark] {done}/{len(self.jobs)} done, {len(running)} running ({parts or 'none'}); "
                f"elapsed {fmt_seconds(now - self.begin)}, ETA " + (fmt_seconds(eta) if eta is not None else "unknown"))

    def _beat(self) -> None:
        while not self.stop.wait(self.heartbeat):
            print(self.line(), flush=True)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def running_total(job: Job, now: float) -> float | None:
    """Estimated total seconds of a running job: elapsed / (newest eval file's iteration / --max-iters)."""
    iters = flag_value(job.cmd, "--max-iters")
    run_dir = find_run_dir(job)
    if run_dir is None or iters is None or int(iters) <= 0:
        return None
    done = [int(p.stem.split("_")[-1]) for p in run_dir.glob("samples_*.npz") if p.stem.split("_")[-1].isdigit()]
    if not done or max(done) <= 0:
        return None
    return (now - job.started) * int(iters) / max(done)


def run_job(job: Job, timeout: int, progress: Progress) -> Job:
    """Run one job with its thread budget; a failure is recorded, never raised. Writes the commit it ran to
    RUN_DIR/commit.txt."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads), PYTHONUNBUFFERED="1")
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    progress.start(job)
    with open(job.log, "w") as log:
        log.write(job.shell() + f"\n# commit {job.commit}\n")
        log.flush()
        try:
            job.returncode = subprocess.run(job.cmd, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, timeout=timeout or None).returncode
        except subprocess.TimeoutExpired:
            job.returncode = 124
            log.write(f"\n[benchmark] killed after {timeout}s\n")
    job.seconds = time.time() - job.started
    run_dir = find_run_dir(job)
    if run_dir is not None:
        job.run_dir = str(run_dir)
        (run_dir / "commit.txt").write_text(job.commit + "\n")
    return job


def record(runs_dir: Path, args: Args, jobs: list[Job], skipped: list[str], threads: int) -> dict:
    """Merge this invocation's jobs into RUNS_DIR/benchmark.json (what the report reads besides the runs)."""
    path = runs_dir / "benchmark.json"
    meta = json.loads(path.read_text()) if path.exists() else {"jobs": []}
    done = {(j.script, j.seed) for j in jobs}
    meta["jobs"] = [j for j in meta["jobs"] if (j["script"], j["seed"]) not in done]
    meta["jobs"] += [{**asdict(j), "shell": j.shell()} for j in jobs]
    meta["jobs"].sort(key=lambda j: (SCRIPTS.index(j["script"]) if j["script"] in SCRIPTS else 99, j["seed"]))
    meta.update(preset=args.preset, data_dir=str(Path(args.data_dir).resolve()), workers=args.workers,
                threads_per_run=threads, skipped=skipped, classifier=asdict(CLASSIFIER[args.preset]),
                updated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path.write_text(json.dumps(meta, indent=1))
    return meta


def count_flops(args: Args, scripts: list[str], extra: list[str], runs_dir: Path, threads: int) -> None:
    """FLOPs per iteration of each script and the peak matmul rate, in one subprocess (benchmarks/flops.py). A partial
    rerun (--scripts X) keeps the earlier counts of the scripts it does not count again, so the report's FLOP table
    stays whole."""
    data_dir = str(Path(args.data_dir).resolve())
    spec = [{"script": str(ROOT / f"{s}.py"),
             "args": ["--data-dir", data_dir, "--no-download",
                      *script_args(args.preset, s, [*extra, *FLOP_COUNT_FLAGS.get(s, []), "--eval-interval", "0"])]}
            for s in scripts]
    spec_path, out = runs_dir / "flops_spec.json", runs_dir / "flops.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    earlier = json.loads(out.read_text()).get("scripts", {}) if out.exists() else {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print(f"[benchmark] counting FLOPs of {', '.join(scripts)} ({threads} threads)", flush=True)
    size = ["--peak-size", str(PEAK_SIZE[args.preset])] if args.preset in PEAK_SIZE else []
    proc = subprocess.run([sys.executable, str(BENCH / "flops.py"), str(spec_path), "--out", str(out), *size],
                          env=env, cwd=runs_dir, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        print(f"[benchmark] FLOP count failed (exit {proc.returncode}); the report goes on without it", flush=True)
        return
    counted = json.loads(out.read_text())
    counted["scripts"] = {**{n: c for n, c in earlier.items() if n not in counted["scripts"]}, **counted["scripts"]}
    out.write_text(json.dumps(counted, indent=1))


def score_finished(scorer: report.Scorer | None, job: Job) -> tuple[float | None, str]:
    """The finished run's final FID (scored now and cached for the report, as are its eval files), or a note."""
    if scorer is None or job.returncode != 0 or not job.run_dir:
        return None, ""
    run = report.Run(Path(job.run_dir), *report.parse_run_name(Path(job.run_dir).name))
    scored = scorer.score(run)
    scorer.curve(run)
    if "samples" in scored:
        return scored["samples"]["fid"], ""
    if "translations" in scored:
        first = next(iter(scored["translations"].items()))
        return None, f"{first[0]} L1 {first[1]['l1']:.3f}"
    return None, scored.get("error", "")


def measure_speed(args: Args, scripts: list[str], extra: list[str], results_dir: Path) -> int:
    """Each script's speed alone (benchmarks/speed.py, in this process: it runs the scripts one at a time) into
    RESULTS_DIR/speed.json; its exit status (a failure or a machine that stays busy is reported, never raised)."""
    try:
        from benchmarks import speed
    except ImportError:
        import speed
    print(f"[benchmark] measuring the speed of {', '.join(scripts)} alone (benchmarks/speed.py)", flush=True)
    code = speed.main(speed.Args(data_dir=args.data_dir, scripts=tuple(scripts), out=str(results_dir / "speed.json")),
                      extra)
    if code != 0:
        print(f"[benchmark] speed measurement incomplete (exit {code}); rerun it with --speed-only", flush=True)
    return code


def main(args: Args, extra: list[str]) -> int:
    if args.preset.startswith("ablations"):  # the papers' ablations: their own variants and report, this job runner
        try:
            from benchmarks import ablations
        except ImportError:
            import ablations
        return ablations.main(args, extra)
    if args.workers is None:
        args = replace(args, workers=DEFAULT_WORKERS[args.preset])
    if args.workers < 0:
        fail("--workers must be >= 0 (0 prints the commands only)")
    unknown = [s for s in args.scripts if s not in SCRIPTS]
    if unknown:
        fail(f"--scripts: unknown {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    seeds = args.seeds or DEFAULT_SEEDS[args.preset]
    runs_dir, results_dir = resolve_dirs(args)
    scripts = [s for s in args.scripts if (ROOT / f"{s}.py").exists()]
    skipped = [s for s in args.scripts if s not in scripts]
    for s in skipped:
        print(f"[benchmark] warning: {s}.py does not exist yet; skipped", file=sys.stderr)
    if args.speed_only:
        if args.preset != "quick":
            fail("--speed-only measures the README CPU lines: the quick preset only")
        return measure_speed(args, scripts, extra, results_dir) if scripts else 0
    threads = args.threads or max(1, available_cores() // (args.workers or DEFAULT_WORKERS[args.preset]))
    jobs = build_jobs(args, scripts, seeds, extra, runs_dir, threads)
    if args.workers == 0:
        print("\n".join(j.shell() for j in jobs))
        return 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    scorer = None
    if args.report:
        torch.set_num_threads(threads)  # scoring in this process shares the cores with the runs
        scorer = report.Scorer(args.data_dir, runs_dir, weights=args.classifier or None,
                               retrain=args.retrain_classifier, config=CLASSIFIER[args.preset])
    if not args.skip_training:
        commit = git_commit()
        for j in jobs:
            j.commit = commit
        print(f"[benchmark] preset {args.preset}: {len(jobs)} runs, {args.workers} at a time, {threads} threads each; "
              f"commit {commit}; runs in {runs_dir}", flush=True)
        with Progress(jobs, args.workers, args.heartbeat) as progress, \
                ThreadPoolExecutor(max_workers=args.workers) as pool:
            for future in as_completed([pool.submit(run_job, j, args.timeout, progress) for j in jobs]):
                job = future.result()
                try:
                    fid, note = score_finished(scorer, job)
                except Exception as e:  # scoring problems must not stop the other runs; the report shows them
                    fid, note = None, f"not scored: {type(e).__name__}: {e}"
                progress.finish(job, fid, note)
                record(runs_dir, args, [job], skipped, threads)  # kept up to date if interrupted
    elif not (runs_dir / "benchmark.json").exists():
        record(runs_dir, args, [], skipped, threads)
    if args.flops and scripts:
        count_flops(args, scripts, extra, runs_dir, threads)
    if args.preset == "quick" and args.speed and not args.skip_training and scripts:
        measure_speed(args, scripts, extra, results_dir)
    if args.report:
        report.main(report.Args(runs_dir=str(runs_dir), results_dir=str(results_dir), data_dir=args.data_dir,
                                classifier=args.classifier, readme=str(readme_path(args) or "")), scorer=scorer)
    failed = [j for j in jobs if j.returncode not in (0, None)]
    if failed:
        print(f"[benchmark] {len(failed)} run(s) failed: " + ", ".join(f"{j.script} seed {j.seed}" for j in failed))
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*tyro.cli(Args, return_unknown_args=True)))
