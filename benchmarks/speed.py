# Docs: docs/benchmarks.md
"""Training speed of each script's README CPU line, measured alone: one short run per script, one at a time.

Usage: python benchmarks/speed.py --data-dir ../shared/data [--scripts gan dcgan] [--threads 1] [--out PATH]
(writes benchmarks/results/quick/speed.json; run.py --preset quick calls it after the training runs)
Flags speed.py does not know (e.g. --epochs 1000) are passed to every script, after its CPU line's flags.

Each script runs its CPU line (run.CPU_LINES) with OMP_NUM_THREADS=MKL_NUM_THREADS=THREADS, the data from --data-dir
and --no-download, --max-iters = warm-up + timed window, no eval files, no sample grid or checkpoint before the end, no
final artefact. The window: a probe run (5 + 10 iterations) gives a first it/s; the timed run then gets
--warmup iterations (WGAN: past its first 25, which take 100 critic steps each) and enough iterations for about
--window seconds, with a --log-interval of about four logged points a second. it/s = (step_b - step_a) / (wall_b -
wall_a) from the TensorBoard wall times of charts/SPS at the first logged step after the warm-up (a) and the last (b).
"Alone" is checked: the 1-minute load average before the first run, the CPU other processes use before each run (from
/proc/stat) and during it (the machine's busy time less the run's own); a busy machine makes it wait (--wait), then
refuse unless --force (which records the load). Exit status: 0; 2 refused or bad arguments; 3 some script failed.
"""
from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tyro

try:  # `python benchmarks/speed.py` puts benchmarks/ on sys.path, `python -m benchmarks.speed` the repository root
    from benchmarks import run as bench
    from benchmarks.flops import cpu_model
except ImportError:
    import run as bench
    from flops import cpu_model

ROOT, BENCH = bench.ROOT, bench.BENCH
DEFAULT_OUT = BENCH / "results" / "quick" / "speed.json"
MAX_LOAD = 0.5  # 1-minute load average (and cores' worth of other processes' CPU) above which the machine is busy
BIG = "1000000000"  # an interval no run reaches: no sample grid, checkpoint before the last iteration
PROBE = (5, 10)  # the probe run: warm-up iterations, then iterations timed for the first estimate
LOG_EVERY_S = 0.25  # seconds between logged points of the timed run (log overhead well under 1%)
MIN_TIMED = 10  # at least this many timed iterations, however slow the script
# The warm-up of a timed run is at least this: WGAN's first 25 generator iterations take 100 critic steps each
# (official code), so its window starts in the 5-critic-step regime. The probe skips them (--no-critic-warmup).
MIN_WARMUP = {"wgan": 30}
# The last iteration a timed run may reach: WGAN's 501st takes 100 critic steps again (and every 500th after it).
MAX_END = {"wgan": 500}
PROBE_FLAGS = bench.FLOP_COUNT_FLAGS
# The flag (and its value, or the script's default) that says how many real minibatches one generator iteration reads.
BATCHES_PER_ITER = {"gan": "--k-steps", "wgan": "--n-critic", "wgan_gp": "--n-critic"}


@dataclass
class Args:
    data_dir: str = "data"
    """folder holding MNIST/raw, facades/ and facades_cyclegan/ (passed to every script as --data-dir)"""
    scripts: tuple[str, ...] = bench.SCRIPTS
    """scripts to measure (file names without .py), one after the other"""
    threads: int = 1
    """OMP_NUM_THREADS and MKL_NUM_THREADS of each run (torch's intra-op threads)"""
    out: str = ""
    """the JSON written (default benchmarks/results/quick/speed.json; entries of scripts not measured now are kept
    when THREADS is the same)"""
    warmup: int = 20
    """iterations before the timed window (WGAN: at least 30)"""
    window: float = 20.0
    """seconds the timed window should last (from the probe run's it/s)"""
    iters: int = 0
    """timed iterations of every script (0 = from --window and a probe run; > 0 skips the probe, logs every
    iteration)"""
    wait: float = 180.0
    """seconds to wait for a busy machine to become quiet before refusing (0 = refuse at once)"""
    force: bool = False
    """measure even when the machine is busy (the load is recorded and a warning printed)"""
    runs_dir: str = ""
    """where the runs' folders and logs go and stay (default: a temporary folder, removed afterwards)"""


# ---------------------------------------------------------------------------------------------------------------
# Is the machine quiet?
# ---------------------------------------------------------------------------------------------------------------
def cpu_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (/proc/stat), None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait; guest time is inside user already
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 2.0) -> float | None:
    """Cores' worth of CPU the machine uses over `seconds` while this process sleeps (the others' use)."""
    before, t0 = cpu_busy_seconds(), time.time()
    time.sleep(seconds)
    after = cpu_busy_seconds()
    return None if before is None or after is None else max(0.0, after - before) / (time.time() - t0)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (and theirs: DataLoader workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def wait_quiet(args: Args, first: bool) -> dict:
    """Wait up to --wait seconds until the machine is quiet: (first run only) the 1-minute load average and (every run)
    the CPU other processes use <= MAX_LOAD. Our own earlier runs keep the load average up for minutes, so later runs
    check the instantaneous use only. Returns what was seen, `quiet` False when it never became quiet."""
    deadline = time.time() + args.wait
    while True:
        load = load_average()
        busy = busy_cores()
        reasons = []
        if first and load is not None and load[0] > MAX_LOAD:
            reasons.append(f"1-minute load average {load[0]:.2f} > {MAX_LOAD}")
        if busy is not None and busy > MAX_LOAD:
            reasons.append(f"other processes use {busy:.2f} cores > {MAX_LOAD}")
        seen = {"load": load, "busy_cores": None if busy is None else round(busy, 3), "quiet": not reasons,
                "why": "; ".join(reasons)}
        if not reasons or time.time() >= deadline:
            return seen
        print(f"[speed] machine busy ({seen['why']}); waiting (up to {max(0, deadline - time.time()):.0f}s more)",
              flush=True)
        time.sleep(min(10.0, max(0.0, deadline - time.time())))


# ---------------------------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------------------------
def script_default(script: str, flag: str):
    """The default of a script's `--flag` from its Args dataclass (read, not imported), None if absent."""
    field = flag.lstrip("-").replace("-", "_")
    for node in ast.walk(ast.parse((ROOT / f"{script}.py").read_text())):
        if isinstance(node, ast.ClassDef) and node.name == "Args":
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == field:
                    with contextlib.suppress(ValueError):
                        return ast.literal_eval(stmt.value)
    return None


def flag_or_default(script: str, flags: Sequence[str], flag: str):
    value = bench.flag_value(flags, flag)
    return script_default(script, flag) if value is None else value


def images_per_iter(script: str, flags: Sequence[str]) -> int | None:
    """Real training images one generator iteration reads: --batch-size x minibatches per iteration (WGAN/WGAN-GP's
    critic steps each read one, GAN's k D-steps too; CycleGAN's A and B batches count once, as charts/SPS does)."""
    batch = flag_or_default(script, flags, "--batch-size")
    per = flag_or_default(script, flags, BATCHES_PER_ITER[script]) if script in BATCHES_PER_ITER else 1
    return None if batch is None or per is None else int(batch) * int(per)


def run_flags(script: str, extra: Sequence[str], data_dir: str, total: int, log_interval: int,
              probe: bool = False) -> list[str]:
    """The script's CPU line (its --max-iters replaced), `extra`, then what the measurement needs."""
    timing = ["--max-iters", str(total), "--log-interval", str(log_interval), "--eval-interval", "0",
              "--num-eval-samples", "0", "--sample-interval", BIG, "--checkpoint-interval", BIG, "--no-cuda",
              "--seed", "1", "--exp-name", script, "--data-dir", str(Path(data_dir).resolve()), "--no-download"]
    return bench.merge_flags(bench.CPU_LINES[script].flags, extra, PROBE_FLAGS.get(script, []) if probe else [],
                             timing)


def shell(script: str, flags: Sequence[str], threads: int) -> str:
    """The command as one shell line, run from the repository root."""
    return f"OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python {script}.py {shlex.join(flags)}"


def read_window(run_dir: Path, warmup: int) -> dict:
    """it/s between the first logged step >= `warmup` and the last one, from the TensorBoard wall times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars("charts/SPS"), key=lambda e: e.step)
    timed = [e for e in events if e.step >= warmup]
    if len(timed) < 2 or timed[-1].wall_time <= timed[0].wall_time:
        raise RuntimeError(f"fewer than two logged steps after the warm-up ({[e.step for e in events]})")
    a, b = timed[0], timed[-1]
    return {"it_per_s": (b.step - a.step) / (b.wall_time - a.wall_time), "warmup_iters": a.step,
            "timed_iters": b.step - a.step, "seconds": b.wall_time - a.wall_time, "logged_points": len(timed)}


def measure(script: str, flags: list[str], warmup: int, threads: int, work: Path, tag: str) -> dict:
    """Run `script` once in its own folder under `work`; the window's it/s, the run's start and end (unix time) and
    the CPU seconds other processes used meanwhile. Raises RuntimeError when the run fails."""
    folder = work / f"{script}_{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    log_path = folder / "log.txt"
    busy0, own0 = cpu_busy_seconds(), children_cpu_seconds()
    started = time.time()
    with open(log_path, "w") as log:
        log.write(shell(script, flags, threads) + "\n")
        log.flush()
        code = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), *flags], cwd=folder, env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    finished = time.time()
    busy1, own1 = cpu_busy_seconds(), children_cpu_seconds()
    if code != 0:
        tail = log_path.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"{script}.py exited {code}: " + " | ".join(tail))
    runs = sorted((folder / "runs").glob(f"*__{script}__*"))
    if not runs:
        raise RuntimeError(f"{script}.py wrote no run folder in {folder}")
    result = read_window(runs[-1], warmup)
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0))
    return {**result, "started": started, "finished": finished,
            "other_cpu_s": None if other is None else round(other, 2)}


def plan(script: str, probe_its: float | None, args: Args) -> tuple[int, int, int]:
    """(warm-up, timed iterations, log interval) of the timed run: about --window seconds at the probe's it/s (or
    --iters), logging about every LOG_EVERY_S seconds; the warm-up and the window are whole log intervals, so the
    first logged step after the warm-up is the warm-up's last iteration. WGAN's window ends by iteration 500."""
    warmup = max(args.warmup, MIN_WARMUP.get(script, 0))
    if not probe_its:
        return warmup, max(1, args.iters), 1
    log = max(1, int(probe_its * LOG_EVERY_S))
    warmup = math.ceil(warmup / log) * log
    timed = math.ceil(max(MIN_TIMED, math.ceil(args.window * probe_its)) / log) * log
    if script in MAX_END and warmup + timed > MAX_END[script]:
        timed = max(log, (MAX_END[script] - warmup) // log * log)
    return warmup, timed, log


def measure_script(script: str, args: Args, extra: Sequence[str], work: Path) -> dict:
    """The probe run (unless --iters), then the timed run: the JSON entry of `script`."""
    probe = None
    if args.iters <= 0:
        probe = measure(script, run_flags(script, extra, args.data_dir, sum(PROBE), 1, probe=True), PROBE[0],
                        args.threads, work, "probe")
    warmup, timed, log = plan(script, probe and probe["it_per_s"], args)
    flags = run_flags(script, extra, args.data_dir, warmup + timed, log)
    print(f"[speed] {script}: " + (f"probe {probe['it_per_s']:.2f} it/s -> " if probe else "")
          + f"{warmup} warm-up + {timed} timed iterations, logged every {log}", flush=True)
    result = measure(script, flags, warmup, args.threads, work, "timed")
    per_iter = images_per_iter(script, flags)
    started = (probe or result)["started"]
    other = [r["other_cpu_s"] for r in (probe, result) if r and r["other_cpu_s"] is not None]
    return {"it_per_s": result["it_per_s"], "images_per_s": result["it_per_s"] * per_iter if per_iter else None,
            "images_per_iter": per_iter, "warmup_iters": result["warmup_iters"], "timed_iters": result["timed_iters"],
            "seconds": result["seconds"], "command": shell(script, flags, args.threads), "log_interval": log,
            "logged_points": result["logged_points"], "probe_it_per_s": probe["it_per_s"] if probe else None,
            "started": started, "finished": result["finished"], "run_seconds": result["finished"] - started,
            "other_cpu_s": sum(other) if other else None}


# ---------------------------------------------------------------------------------------------------------------
# The estimate the README's minutes column uses
# ---------------------------------------------------------------------------------------------------------------
def effective_iters(name: str, iters: int, entry: dict) -> float:
    """`iters` in units of the measured (steady) iteration. WGAN (unless --no-critic-warmup): its first 25 and every
    500th generator iteration take 100 critic steps, not n_critic; an iteration's cost is taken as proportional to
    its critic steps + 1 (a critic step costs about what a generator step does)."""
    if name != "wgan" or "--no-critic-warmup" in entry.get("command", ""):
        return float(iters)
    n_critic = int(bench.flag_value(shlex.split(entry.get("command", "")), "--n-critic") or 5)
    heavy = min(iters, 25) + len(range(500, iters, 500))  # iteration i is heavy when i - 1 < 25 or (i - 1) % 500 == 0
    return iters + heavy * (100 - n_critic) / (n_critic + 1)


def minutes(name: str, iters: int, speed_json: str | Path | dict = DEFAULT_OUT) -> float:
    """Estimated training minutes of `iters` iterations of script `name`: iters / it_per_s / 60 at the measured speed
    (speed_json: speed.py's JSON, a path or the loaded dict), WGAN's 100-critic-step iterations counted as
    effective_iters says."""
    data = speed_json if isinstance(speed_json, dict) else json.loads(Path(speed_json).read_text())
    entry = data["scripts"][name]
    return effective_iters(name, iters, entry) / entry["it_per_s"] / 60


# ---------------------------------------------------------------------------------------------------------------
def torch_version() -> str:
    import torch

    return torch.__version__


def write(path: Path, result: dict) -> None:
    """Write `result`, keeping the earlier entries (each with its commit and date) of scripts not measured now when the
    thread count is the same; a script that failed now loses its earlier entry (`failed` says why)."""
    earlier = {}
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(path.read_text())
            if old.get("threads") == result["threads"]:
                earlier = {k: v for k, v in old.get("scripts", {}).items()
                           if k not in result["scripts"] and k not in result["failed"]}
    scripts = {**earlier, **result["scripts"]}
    ordered = {s: scripts[s] for s in sorted(scripts, key=lambda s: bench.SCRIPTS.index(s) if s in bench.SCRIPTS
                                             else 99)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "scripts": ordered}, indent=1))


def fail(msg: str) -> int:
    print(f"speed.py: error: {msg}", file=sys.stderr, flush=True)
    return 2


def main(args: Args, extra: Sequence[str] = ()) -> int:
    unknown = [s for s in args.scripts if s not in bench.SCRIPTS]
    if unknown:
        return fail(f"--scripts: unknown {', '.join(unknown)}; choose from {', '.join(bench.SCRIPTS)}")
    if args.threads < 1 or args.warmup < 1 or args.window <= 0 or args.iters < 0 or args.wait < 0:
        return fail("--threads and --warmup must be >= 1, --window > 0, --iters and --wait >= 0")
    scripts = [s for s in args.scripts if (ROOT / f"{s}.py").exists()]
    out = Path(args.out or DEFAULT_OUT)
    result = {"threads": args.threads, "cpu": cpu_model(), "cores": bench.available_cores(), "device": "cpu",
              "torch": torch_version(), "commit": bench.git_commit(), "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
              "load_before": None, "forced": False, "window_s": args.window, "warnings": [], "failed": {},
              "scripts": {}}
    for s in args.scripts:
        if s not in scripts:
            print(f"[speed] warning: {s}.py does not exist; skipped", file=sys.stderr)
    work = Path(args.runs_dir).resolve() if args.runs_dir else Path(tempfile.mkdtemp(prefix="cleangan_speed_"))
    print(f"[speed] {len(scripts)} script(s) one at a time, {args.threads} thread(s) each; runs in {work}", flush=True)
    try:
        for i, script in enumerate(scripts):
            seen = wait_quiet(args, first=i == 0)
            if i == 0:
                result["load_before"] = seen["load"]
                print(f"[speed] load average {seen['load']}, other processes {seen['busy_cores']} cores", flush=True)
            if not seen["quiet"]:
                if not args.force:
                    if result["scripts"] or result["failed"]:
                        write(out, result)
                    return fail(f"the machine is not quiet before {script} ({seen['why']}): a speed measured now "
                                "would not be the speed alone. Wait, or pass --force to measure anyway (recorded)")
                warning = f"{script}: measured on a busy machine (--force): {seen['why']}"
                print(f"[speed] WARNING: {warning}", file=sys.stderr, flush=True)
                result["forced"] = True
                result["warnings"].append(warning)
            try:
                entry = measure_script(script, args, extra, work)
            except RuntimeError as e:
                result["failed"][script] = str(e)
                print(f"[speed] {script}: FAILED: {e}", file=sys.stderr, flush=True)
                continue
            entry.update(load_before=seen["load"], busy_cores_before=seen["busy_cores"], commit=result["commit"],
                         measured=time.strftime("%Y-%m-%d %H:%M:%S"))
            result["scripts"][script] = entry
            if entry["other_cpu_s"] is not None and entry["other_cpu_s"] > 0.1 * entry["run_seconds"]:
                warning = (f"{script}: other processes used {entry['other_cpu_s']:.1f} CPU seconds during its "
                           f"{entry['run_seconds']:.0f}s: not alone")
                print(f"[speed] WARNING: {warning}", file=sys.stderr, flush=True)
                result["warnings"].append(warning)
            rate = entry["images_per_s"]
            images = f", {rate:.0f} images/s" if rate and rate >= 100 else f", {rate:.2f} images/s" if rate else ""
            print(f"[speed] {script}: {entry['it_per_s']:.2f} it/s{images} ({entry['timed_iters']} iterations in "
                  f"{entry['seconds']:.1f}s)", flush=True)
            write(out, result)  # kept up to date if interrupted
    finally:
        if not args.runs_dir:
            shutil.rmtree(work, ignore_errors=True)
    write(out, result)
    print(f"[speed] wrote {out}", flush=True)
    if result["failed"]:
        print(f"[speed] {len(result['failed'])} script(s) failed: {', '.join(result['failed'])}", file=sys.stderr)
    return 3 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(*tyro.cli(Args, return_unknown_args=True)))
