# Docs: docs/benchmarks.md
"""Benchmark runner: every (script, seed) of a preset as a subprocess, then the FLOP count and the report.

Usage: python benchmarks/run.py --preset quick --seeds 1 2 3 --workers 2 --data-dir /path/to/data [extra script flags]
Flags the runner does not know (e.g. --no-cuda, --batch-size 32) are passed to every script.
Exit status: 0, or 3 when some run failed (the report is written either way).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, NoReturn

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
# Presets: flags every script of a preset gets, then each script's own (budgets, image sizes, dataset flags).
# Edit budgets here; later flags win, so a per-script flag overrides a common one.
# ---------------------------------------------------------------------------------------------------------------
COMMON: dict[str, list[str]] = {
    # seconds per script on tiny data (tests/test_benchmarks.py)
    "smoke": ["--max-iters", "4", "--batch-size", "16", "--num-eval-samples", "200", "--log-interval", "1",
              "--sample-interval", "2", "--checkpoint-interval", "1000"],
    # about five minutes of one core per MNIST run (one seed of the suite: ~35 min with 2 workers)
    "quick": ["--num-eval-samples", "10000", "--log-interval", "50", "--sample-interval", "500",
              "--checkpoint-interval", "100000"],
    # the papers' budgets (the scripts' defaults), for a GPU
    "full": ["--num-eval-samples", "10000"],
}
COMMON["long"] = COMMON["quick"]  # the same flags at three times quick's budgets (PRESETS below)
BEGAN_MNIST = ["--gamma", "1.0", "--lambda-k", "0.01", "--g-carry-steps", "500"]
PRESETS: dict[str, dict[str, list[str]]] = {
    "smoke": {
        **{name: [] for name in SCRIPTS[:8]},
        "pix2pix": ["--img-size", "32", "--ngf", "8", "--ndf", "8", "--batch-size", "1", "--num-eval-samples", "4"],
        "cyclegan": ["--img-size", "32", "--ngf", "8", "--ndf", "8", "--batch-size", "1", "--num-eval-samples", "4",
                     "--dataset-mode", "unaligned"],
    },
    # Sized so that each run takes about 5-9 minutes of one core of the 2-core CPU (1-thread speeds measured there,
    # it/s, with the box partly loaded: gan 5-6, cgan 6-8, dcgan at --ngf/--ndf 32 1.1, lsgan at 32 0.7,
    # infogan 0.4-0.8, wgan ~1.4-3.5 after its warm-up (25 iterations of 100 critic steps), wgan_gp 1.1-2.1,
    # began 2.1-5.2, pix2pix@128 0.9, cyclegan@64 0.46): one seed took 35 min with 2 workers (results/quick).
    # dcgan and lsgan run at half the papers' width (--ngf/--ndf 32): at 64 one iteration costs 52 / 83 GFLOP.
    # began runs with MNIST's settings, gamma 1, lambda_k 0.01 and G's residuals vanishing over 500 iterations
    # (docs/began.md, item 10): at the paper's 0.5, 0.001 and 16000 its G draws faint shapes and "1"s on MNIST.
    "quick": {
        "gan": ["--max-iters", "2500"],
        "cgan": ["--max-iters", "2500"],
        "dcgan": ["--max-iters", "700", "--ngf", "32", "--ndf", "32"],
        "lsgan": ["--max-iters", "350", "--ngf", "32", "--ndf", "32"],
        "infogan": ["--max-iters", "250"],
        "wgan": ["--max-iters", "700"],
        "wgan_gp": ["--max-iters", "600"],
        "began": ["--max-iters", "1500", *BEGAN_MNIST],
        "pix2pix": ["--max-iters", "400", "--img-size", "128", "--sample-interval", "100"],
        "cyclegan": ["--max-iters", "250", "--img-size", "64", "--dataset-mode", "unaligned", "--sample-interval",
                     "50"],
    },
    # About 15 minutes of one core per run (the quick preset's speeds), two runs side by side.
    "long": {
        "gan": ["--max-iters", "6000"],
        "cgan": ["--max-iters", "7000"],
        "dcgan": ["--max-iters", "2100", "--ngf", "32", "--ndf", "32"],
        "lsgan": ["--max-iters", "1500", "--ngf", "32", "--ndf", "32"],
        "infogan": ["--max-iters", "800"],
        "wgan": ["--max-iters", "3000"],
        "wgan_gp": ["--max-iters", "2200"],
        "began": ["--max-iters", "4500", *BEGAN_MNIST],
        "pix2pix": ["--max-iters", "1200", "--img-size", "128", "--sample-interval", "400"],
        "cyclegan": ["--max-iters", "750", "--img-size", "64", "--dataset-mode", "unaligned", "--sample-interval",
                     "250"],
    },
    "full": {name: [] for name in SCRIPTS},
}
# Extra flags of the FLOP count only (1 and 3 iterations): WGAN's first 25 iterations run 100 critic steps (official
# code), but its it/s is measured from the first logged loss on, in the 5-critic-step regime; count that regime.
FLOP_COUNT_FLAGS: dict[str, list[str]] = {"wgan": ["--no-critic-warmup"]}
# The feature classifier of the quality metrics; the smoke preset trains a throwaway one in a second.
CLASSIFIER: dict[str, ClassifierConfig] = {
    "smoke": ClassifierConfig(epochs=1, max_steps=20),
    "quick": ClassifierConfig(),
    "long": ClassifierConfig(),
    "full": ClassifierConfig(),
}
DEFAULT_SEEDS = {"smoke": (1,), "quick": (1,), "long": (1,), "full": (1, 2, 3)}
# small nets use 2 one-thread runs better than 1 two-thread run
DEFAULT_WORKERS = {"smoke": 2, "quick": 2, "long": 2, "full": 1}


@dataclass
class Args:
    preset: Literal["smoke", "quick", "long", "full"] = "quick"
    """budget table to use (see PRESETS in this file)"""
    scripts: tuple[str, ...] = SCRIPTS
    """scripts to run (file names without .py); missing ones are skipped with a warning"""
    seeds: tuple[int, ...] = ()
    """seeds to run each script with (default: smoke 1; quick 1; long 1; full 1 2 3)"""
    data_dir: str = "data"
    """folder holding MNIST/raw, facades/ and facades_cyclegan/ (passed to every script as --data-dir)"""
    workers: int | None = None
    """parallel subprocesses (0 = print the commands only; default: 2 for smoke, quick and long, 1 for full); each gets
    max(1, cores // workers) threads"""
    runs_dir: str = ""
    """working directory of the subprocesses; run folders go to RUNS_DIR/runs/ (default benchmarks/runs/PRESET)"""
    results_dir: str = ""
    """where the report goes (default benchmarks/results/PRESET)"""
    cache_dir: str = str(BENCH / "cache")
    """where the feature classifier is cached"""
    threads: int = 0
    """threads per run, OMP_NUM_THREADS and MKL_NUM_THREADS (0 = max(1, cores // workers))"""
    timeout: int = 0
    """seconds before a run is killed (0 = no limit)"""
    skip_training: bool = False
    """only (re)write the FLOP count and the report from the runs already in RUNS_DIR"""
    flops: bool = True
    """count FLOPs per iteration and measure the peak matmul rate (a few seconds per script)"""
    report: bool = True
    """write the report at the end"""


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


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def script_args(preset: str, script: str, extra: Sequence[str] = ()) -> list[str]:
    """The flags a preset gives one script: common ones, the script's own, then `extra` (later ones win)."""
    return merge_flags(COMMON[preset], PRESETS[preset].get(script, []), extra)


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


def run_job(job: Job, timeout: int) -> Job:
    """Run one job with its thread budget; a failure is recorded, never raised."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads), PYTHONUNBUFFERED="1")
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(job.log, "w") as log:
        log.write(job.shell() + "\n")
        log.flush()
        try:
            job.returncode = subprocess.run(job.cmd, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, timeout=timeout or None).returncode
        except subprocess.TimeoutExpired:
            job.returncode = 124
            log.write(f"\n[benchmark] killed after {timeout}s\n")
    job.seconds = time.time() - start
    status = "ok" if job.returncode == 0 else f"FAILED (exit {job.returncode}, log {job.log})"
    print(f"[benchmark] {job.script} seed {job.seed}: {status} in {job.seconds:.0f}s", flush=True)
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
                      *script_args(args.preset, s, [*extra, *FLOP_COUNT_FLAGS.get(s, [])])]}
            for s in scripts]
    spec_path, out = runs_dir / "flops_spec.json", runs_dir / "flops.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    earlier = json.loads(out.read_text()).get("scripts", {}) if out.exists() else {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print(f"[benchmark] counting FLOPs of {', '.join(scripts)} ({threads} threads)", flush=True)
    proc = subprocess.run([sys.executable, str(BENCH / "flops.py"), str(spec_path), "--out", str(out)], env=env,
                          cwd=runs_dir, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        print(f"[benchmark] FLOP count failed (exit {proc.returncode}); the report goes on without it", flush=True)
        return
    counted = json.loads(out.read_text())
    counted["scripts"] = {**{n: c for n, c in earlier.items() if n not in counted["scripts"]}, **counted["scripts"]}
    out.write_text(json.dumps(counted, indent=1))


def main(args: Args, extra: list[str]) -> int:
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
    threads = args.threads or max(1, available_cores() // (args.workers or DEFAULT_WORKERS[args.preset]))
    jobs = build_jobs(args, scripts, seeds, extra, runs_dir, threads)
    if args.workers == 0:
        print("\n".join(j.shell() for j in jobs))
        return 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.skip_training:
        print(f"[benchmark] preset {args.preset}: {len(jobs)} runs, {args.workers} at a time, {threads} threads each; "
              f"runs in {runs_dir}", flush=True)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            for future in as_completed([pool.submit(run_job, j, args.timeout) for j in jobs]):
                record(runs_dir, args, [future.result()], skipped, threads)  # kept up to date if interrupted
    elif not (runs_dir / "benchmark.json").exists():
        record(runs_dir, args, [], skipped, threads)
    if args.flops and scripts:
        count_flops(args, scripts, extra, runs_dir, threads)
    if args.report:
        report.main(report.Args(runs_dir=str(runs_dir), results_dir=str(results_dir), data_dir=args.data_dir,
                                cache_dir=args.cache_dir))
    failed = [j for j in jobs if j.returncode not in (0, None)]
    if failed:
        print(f"[benchmark] {len(failed)} run(s) failed: " + ", ".join(f"{j.script} seed {j.seed}" for j in failed))
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*tyro.cli(Args, return_unknown_args=True)))
