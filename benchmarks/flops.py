# Docs: docs/benchmarks.md ("Speed against the machine's limit")
"""FLOPs of one training iteration of each script, and the machine's peak float32 matmul rate.

Each script runs in this process with runpy under torch.utils.flop_counter.FlopCounterMode, twice, for N1 and N2
iterations; (F(N2) - F(N1)) / (N2 - N1) cancels what happens once per run (model setup, the final sample grid).
Usage (run.py calls it): python benchmarks/flops.py SPEC.json --out flops.json
SPEC.json: [{"script": "/abs/gan.py", "args": ["--data-dir", "...", ...]}, ...]
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import runpy
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from torch.utils.flop_counter import FlopCounterMode

# Flags appended after the preset's: few iterations, no eval samples, no periodic logging, on the CPU.
QUIET = ["--num-eval-samples", "0", "--log-interval", "1000000", "--sample-interval", "1000000",
         "--checkpoint-interval", "1000000", "--no-cuda", "--seed", "1", "--exp-name", "flops"]


class _NoModuleTracker:
    """Stands in for FlopCounterMode's ModuleTracker: everything counts under 'Global', no module hooks."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


class GlobalFlopCounter(FlopCounterMode):
    """FlopCounterMode without per-module tracking, whose backward hooks break torch.autograd.grad (WGAN-GP)."""

    def __init__(self):
        super().__init__(display=False)
        self.mod_tracker = _NoModuleTracker()


def run_counted(script: str, args: list[str], iters: int) -> int:
    """Total FLOPs (matmul/conv forward and backward) of `script` run in-process for `iters` iterations."""
    old_argv, old_cwd, old_handler = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = [script, *args, *QUIET, "--max-iters", str(iters)]
        os.chdir(tmp)  # the run folder goes to a throwaway runs/
        out = io.StringIO()
        try:
            with GlobalFlopCounter() as counter, contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(out):
                runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                raise RuntimeError(f"{Path(script).name} exited {e.code}: {out.getvalue().strip()[-300:]}") from None
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
            signal.signal(signal.SIGINT, old_handler)
    return counter.get_total_flops()


def flops_per_iter(script: str, args: list[str], n1: int = 1, n2: int = 3) -> dict:
    f1, f2 = run_counted(script, args, n1), run_counted(script, args, n2)
    return {"flops_per_iter": (f2 - f1) / (n2 - n1), "iters": [n1, n2], "total_flops": [f1, f2]}


PEAK_REPEATS = 20  # timings of the peak matmul; the best one counts


def peak_gflops(device: str = "cpu", n: int = 2048, repeats: int = PEAK_REPEATS, warmup: int = 3) -> float:
    """Best rate of an n x n float32 matmul (2 n^3 FLOPs) over `repeats` timings after `warmup` products, in GFLOP/s."""
    dev = torch.device(device)
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


# float32 lanes of one FMA instruction for the widest vector extension in /proc/cpuinfo's flags
FMA_LANES = (("avx512f", 16), ("fma", 8))


def theoretical_peak(cores: int, cpuinfo: str | None = None, fma_units: int = 2) -> dict | None:
    """The CPU's float32 peak from /proc/cpuinfo: cores x FMA units x FMA width (float32 lanes) x 2 FLOPs x clock.

    The widest FMA width is read from the flags (avx512f: 16 lanes, fma: 8); without FMA, one multiply and one add
    per lane and cycle (SSE, 4 lanes). The clock is the largest `cpu MHz` line (the current clock, which turbo and
    power saving move). The number of FMA units per core is not in /proc/cpuinfo: assumed `fma_units` (2 on recent
    x86 cores). None when /proc/cpuinfo is unreadable or has no flags or MHz."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags, mhz = set(), []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
        elif key.strip() == "cpu MHz":
            mhz.append(float(value))
    if not flags or not mhz:
        return None
    ext, lanes = next(((f, w) for f, w in FMA_LANES if f in flags), ("sse (no fma)", 4))
    per_cycle = fma_units * lanes * 2  # an FMA is 2 FLOPs; without FMA, a multiply and an add
    gflops = cores * per_cycle * max(mhz) / 1e3
    return {"gflops": gflops, "cores": cores, "fma_units": fma_units, "lanes": lanes, "extension": ext,
            "mhz": max(mhz), "formula": f"{cores} cores x {fma_units} FMA units x {lanes} float32 lanes ({ext}) x 2 "
                                        f"FLOPs x {max(mhz):.0f} MHz = {gflops:.1f} GFLOP/s"}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@dataclass
class Args:
    spec: tyro.conf.Positional[str]
    """JSON list of {"script": path, "args": [...]}"""
    out: str = "flops.json"
    """where the result goes"""
    device: str = ""
    """device of the peak measurement (default: cuda if available and no script gets --no-cuda, else cpu)"""
    peak_size: int = 2048
    """side of the square matmul timed for the peak rate (the smoke preset uses a small one: a plumbing check)"""


def main(args: Args) -> dict:
    spec = json.loads(Path(args.spec).read_text())
    wants_cpu = any("--no-cuda" in s["args"] for s in spec)
    device = args.device or ("cuda" if torch.cuda.is_available() and not wants_cpu else "cpu")
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_model(),
              "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})", "scripts": {}}
    for item in spec:
        name = Path(item["script"]).stem
        start = time.time()
        try:
            result["scripts"][name] = flops_per_iter(item["script"], item["args"])
            print(f"[flops] {name}: {result['scripts'][name]['flops_per_iter'] / 1e9:.3f} GFLOP/iter "
                  f"({time.time() - start:.0f}s)", flush=True)
        except Exception as e:  # one script's failure must not hide the others'
            result["scripts"][name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"[flops] {name}: failed: {e}", file=sys.stderr, flush=True)
    result["peak_gflops"] = peak_gflops(device, n=args.peak_size)
    result["peak_size"] = args.peak_size
    result["peak_repeats"] = PEAK_REPEATS
    print(f"[flops] peak float32 matmul on {result['device']}: {result['peak_gflops']:.1f} GFLOP/s", flush=True)
    if device == "cpu":
        result["theoretical_peak"] = theoretical_peak(torch.get_num_threads())
        result["theoretical_peak_machine"] = theoretical_peak(os.cpu_count() or 1)
        if result["theoretical_peak"]:
            print(f"[flops] theoretical peak: {result['theoretical_peak']['formula']}", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
