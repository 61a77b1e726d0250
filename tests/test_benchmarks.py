"""benchmarks/: the preset tables against the scripts' flags, and the smoke preset end to end on tiny data."""
import functools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch
import torchvision
import tyro
from helpers import ROOT, load_script

sys.path.insert(0, str(ROOT))
from test_report import tiny_weights_fixture  # noqa: E402, F401  (the smoke test's feature classifier)

from benchmarks import flops as bench_flops  # noqa: E402
from benchmarks import metrics as bench_metrics  # noqa: E402
from benchmarks import report as bench_report  # noqa: E402
from benchmarks import run as bench  # noqa: E402

PRESENT = [s for s in bench.SCRIPTS if (ROOT / f"{s}.py").exists()]
# The end-to-end test runs a subset (each script costs ~7 s of CPU just to import torch); CLEANGAN_BENCH_ALL=1: all.
SMOKE = [s for s in (bench.SCRIPTS if os.environ.get("CLEANGAN_BENCH_ALL") else ("gan", "pix2pix"))
         if s in PRESENT]
MNIST_SMOKE = [s for s in SMOKE if s not in bench.IMAGE_TO_IMAGE]


def bench_write_facades(root, n_train: int = 3, n_test: int = 2, size: int = 32):
    """Tiny facades in both layouts: facades/{train,test} (A|B side by side) and facades_cyclegan/{trainA,...}."""
    rng = np.random.default_rng(0)
    for split, n in [("train", n_train), ("test", n_test)]:
        for d in (root / "facades" / split, root / "facades_cyclegan" / f"{split}A", root / "facades_cyclegan" /
                  f"{split}B"):
            d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = torch.from_numpy(np.repeat(rng.integers(0, 256, (3, size // 4, size // 4), dtype=np.uint8), 4, 1)
                                 .repeat(4, 2))
            b = 255 - a
            torchvision.io.write_jpeg(torch.cat([a, b], dim=2), str(root / "facades" / split / f"{i}.jpg"))
            torchvision.io.write_jpeg(a, str(root / "facades_cyclegan" / f"{split}A" / f"{i}.jpg"))
            torchvision.io.write_jpeg(b, str(root / "facades_cyclegan" / f"{split}B" / f"{i}.jpg"))
    return root


@functools.cache
def script_module(name: str):
    return load_script(name)


def test_presets_cover_every_script():
    for preset in ("smoke", "quick", "long", "full"):
        assert set(bench.PRESETS[preset]) == set(bench.SCRIPTS), preset
        assert preset in bench.COMMON and preset in bench.CLASSIFIER and preset in bench.DEFAULT_SEEDS
    assert bench.DEFAULT_SEEDS["quick"] == (1, 2, 3)


@pytest.mark.parametrize("preset", ["quick", "long"])
def test_presets_give_enough_curve_points(preset):
    flags = {name: bench.script_args(preset, name) for name in bench.SCRIPTS}
    value = bench.flag_value
    for name in bench.SCRIPTS:
        iters = int(value(flags[name], "--max-iters"))
        assert iters // int(value(flags[name], "--log-interval")) >= 50, name  # >= 50 logged points
        assert iters // int(value(flags[name], "--eval-interval")) >= 8, name  # >= 8 eval files
    # a flag given on the command line still wins over the derived intervals and over the script's own flags
    assert value(bench.script_args(preset, "gan", ["--eval-interval", "7"]), "--eval-interval") == "7"
    assert value(bench.script_args(preset, "gan", ["--max-iters", "9"]), "--max-iters") == "9"


def test_quick_preset_is_the_cpu_lines():
    """One table: the quick preset gives each script exactly its CPU line's flags (first, in the line's order) and
    only eval/logging flags besides."""
    assert set(bench.CPU_LINES) == set(bench.SCRIPTS)
    allowed = {"--num-eval-samples", "--sample-interval", "--checkpoint-interval", "--log-interval", "--eval-interval"}
    for name, line in bench.CPU_LINES.items():
        flags = bench.script_args("quick", name)
        assert tuple(flags[:len(line.flags)]) == line.flags, name
        added = {t for t in flags[len(line.flags):] if t.startswith("--")}
        assert added <= allowed, (name, added - allowed)
        assert not set(line.flags) & added, name
        assert len(line.shows.split()) <= 15, name  # the README's phrase: at most 15 words


def test_long_preset_pins_the_widths_of_its_report():
    flags = {name: bench.script_args("long", name) for name in bench.SCRIPTS}
    value = bench.flag_value
    # lsgan is dcgan's network with the least-squares loss: the same widths, and dcgan's budget in images (lsgan's
    # batch is its paper's 64, dcgan's 128): twice the iterations, and no recipe flags
    for flag in ("--ngf", "--ndf"):
        assert value(flags["lsgan"], flag) == value(flags["dcgan"], flag) == "32"
    assert int(value(flags["lsgan"], "--max-iters")) == 2 * int(value(flags["dcgan"], "--max-iters"))
    assert value(flags["wgan"], "--ngf") == value(flags["wgan"], "--ndf") == "16"
    assert value(flags["wgan_gp"], "--dim") == "16" and value(flags["began"], "--num-filters") == "16"
    assert not {"--gamma", "--lambda-k", "--g-carry-steps"} & set(flags["began"])  # began's defaults: MNIST's recipe


@pytest.mark.parametrize("preset", ["smoke", "quick", "long", "full"])
@pytest.mark.parametrize("name", PRESENT)
def test_preset_flags_are_accepted_by_the_script(name, preset):
    flags = ["--seed", "1", "--exp-name", name, "--data-dir", "data", "--no-download", *bench.script_args(preset, name)]
    try:
        tyro.cli(script_module(name).Args, args=flags)
    except SystemExit as e:
        pytest.fail(f"{name}.py rejects the {preset} preset's flags {flags} (exit {e.code})")


def test_workers_zero_prints_the_commands_only(tmp_path, capsys):
    args = bench.Args(preset="quick", scripts=tuple(PRESENT), seeds=(1, 2), workers=0, data_dir=str(tmp_path),
                      runs_dir=str(tmp_path / "runs"))
    assert bench.main(args, ["--no-cuda"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * len(PRESENT)
    assert all("--max-iters" in line and line.endswith("--no-cuda") and "--exp-name" in line for line in lines)
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif("gan" not in PRESENT, reason="gan.py not written yet")
def test_smoke_preset_end_to_end(mnist_root, tmp_path, tiny_weights, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(mnist_root / "MNIST", data / "MNIST")
    bench_write_facades(data)
    results = tmp_path / "results"
    args = bench.Args(preset="smoke", scripts=tuple(SMOKE), workers=2, data_dir=str(data),
                      runs_dir=str(tmp_path / "bench"), results_dir=str(results), classifier=str(tiny_weights))
    code = bench.main(args, [])
    logs = {p.name: p.read_text()[-1500:] for p in (tmp_path / "bench" / "logs").glob("*.log")}
    assert code == 0, f"some smoke runs failed: {logs}"
    out = capsys.readouterr().out
    for name in SMOKE:  # one started and one finished line per run
        assert sum(line.startswith("[") and f"] {name} seed 1 started" in line for line in out.splitlines()) == 1
        assert sum(f"] {name} seed 1 finished (" in line for line in out.splitlines()) == 1, out

    report = (results / "report.md").read_text()
    for section in ("## Machine", "## Training", "## Speed against the machine's limit", "## Figures", "## Commands"):
        assert section in report
    doc = json.loads((results / "metrics.json").read_text())
    assert set(doc["scripts"]) == set(SMOKE)
    flops = json.loads((tmp_path / "bench" / "flops.json").read_text())
    assert doc["machine"]["peak_gflops"] == flops["peak_gflops"] and f"{flops['peak_gflops']:.1f} GFLOP/s" in report
    assert flops["peak_size"] == bench.PEAK_SIZE["smoke"] and f"{flops['peak_size']}² matmul" in report
    for name in MNIST_SMOKE:
        scored = doc["scripts"][name]["seeds"]["1"]
        job = next(j for j in doc["jobs"] if j["script"] == name)
        assert scored["iterations"] == 4 and scored["commit"] == job["commit"] != "", scored
        assert [p["iteration"] for p in scored["curve"]] == [2, 4]  # the smoke preset's --eval-interval 2
        assert all(0 < p["train_seconds"] for p in scored["curve"])
        assert math.isfinite(scored["samples"]["fid"])
        assert doc["scripts"][name]["summary"]["gflop_per_iter"][0] > 0
        assert (results / f"curves_{name}.png").exists()
    if MNIST_SMOKE:
        assert "## Sample quality" in report and "real data (mnist" in report
        assert doc["classifiers"]["mnist"]["sha256"] == bench_metrics.sha256_file(tiny_weights)
        assert doc["classifiers"]["mnist"]["sha256"] in report
        assert "mnist_28px" in doc["real_floor"] and "curve" in doc["real_floor"]
        assert (results / "samples_montage.png").exists() and (results / "quality.png").exists()
        assert report.index("samples_all.png") < report.index("quality.png") < report.index("## Machine")
    if "cgan" in SMOKE:
        assert "label_accuracy" in doc["scripts"]["cgan"]["seeds"]["1"]["samples"]
    for name in set(SMOKE) & set(bench.IMAGE_TO_IMAGE):
        translations = doc["scripts"][name]["seeds"]["1"]["translations"]
        assert all(0 <= t["l1"] <= 1 and -1 <= t["ssim"] <= 1 for t in translations.values()), translations
        assert "## Translation quality" in report and (results / "samples_all.png").exists()
    for kind in bench_report.LOSS_KINDS:
        assert (results / f"losses_{kind}.png").exists()
    assert sum(p.stat().st_size for p in results.glob("*.png")) < 3e6

    # the report alone, from the runs folder, reuses the cached metrics and writes the same tables (figures built,
    # not rendered again)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"png"))
    again = bench_report.main(bench_report.Args(str(tmp_path / "bench"), results_dir=str(tmp_path / "again"),
                                                classifier=str(tiny_weights)))
    assert again["scripts"].keys() == doc["scripts"].keys()
    assert (tmp_path / "again" / "report.md").exists()


def test_partial_flop_count_keeps_the_other_scripts_counts(tmp_path, monkeypatch):
    """--scripts X recounts X only; the counts of the other scripts stay in flops.json (the report's FLOP table)."""
    (tmp_path / "flops.json").write_text(json.dumps({"peak_gflops": 1.0, "scripts": {
        "gan": {"flops_per_iter": 1.0}, "cgan": {"flops_per_iter": 2.0}}}))

    def fake_flops_subprocess(cmd, **kwargs):
        out = cmd[cmd.index("--out") + 1]
        (tmp_path / out).write_text(json.dumps({"peak_gflops": 5.0, "scripts": {"gan": {"flops_per_iter": 3.0}}}))
        return bench.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench.subprocess, "run", fake_flops_subprocess)
    bench.count_flops(bench.Args(preset="quick", data_dir=str(tmp_path)), ["gan"], [], tmp_path, 1)
    counted = json.loads((tmp_path / "flops.json").read_text())
    assert counted["peak_gflops"] == 5.0
    assert counted["scripts"] == {"gan": {"flops_per_iter": 3.0}, "cgan": {"flops_per_iter": 2.0}}


TOY_SCRIPT = '''
import sys
import torch
n = int(sys.argv[sys.argv.index("--max-iters") + 1])
torch.randn(32, 32) @ torch.randn(32, 32)  # one-off work: 2 * 32^3 FLOPs
x, w = torch.randn(8, 16, requires_grad=True), torch.randn(16, 4, requires_grad=True)
for _ in range(n):  # a gradient penalty: autograd.grad with create_graph, then backward through it
    (g,) = torch.autograd.grad((x @ w).pow(2).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
'''


def test_flop_count_cancels_one_off_work_and_survives_autograd_grad(tmp_path):
    from benchmarks import flops

    script = tmp_path / "toy.py"
    script.write_text(TOY_SCRIPT)
    once, thrice = flops.run_counted(str(script), [], 1), flops.run_counted(str(script), [], 3)
    per_iter = flops.flops_per_iter(str(script), [])["flops_per_iter"]
    assert per_iter == (thrice - once) / 2 and once - per_iter == 2 * 32 ** 3
    assert per_iter >= 2 * 8 * 16 * 4  # at least the forward matmul


def test_peak_is_the_best_of_the_repeats(monkeypatch):
    ticks = iter([0.0, 4.0, 10.0, 12.0, 20.0, 23.0])  # three timed products: 4 s, 2 s, 3 s
    monkeypatch.setattr(bench_flops.time, "perf_counter", lambda: next(ticks))
    assert bench_flops.peak_gflops("cpu", n=64, repeats=3, warmup=1) == pytest.approx(2 * 64 ** 3 / 2.0 / 1e9)


def test_theoretical_peak_from_cpuinfo():
    info = "processor: 0\nflags\t: fpu sse avx fma avx2\ncpu MHz\t: 2400.000\nprocessor: 1\ncpu MHz\t: 2500.000\n"
    peak = bench_flops.theoretical_peak(2, info)
    assert peak["gflops"] == pytest.approx(2 * 2 * 8 * 2 * 2.5) and peak["lanes"] == 8 and "2500 MHz" in \
        peak["formula"]
    assert bench_flops.theoretical_peak(1, info.replace("fma avx2", "avx2 avx512f fma"))["lanes"] == 16
    assert bench_flops.theoretical_peak(1, "flags: fpu sse\ncpu MHz: 1000\n")["gflops"] == pytest.approx(16.0)
    assert bench_flops.theoretical_peak(1, "no cpuinfo here") is None


def test_report_says_when_the_measured_peak_beats_the_cpuinfo_estimate():
    info = "flags\t: fpu avx fma avx2\ncpu MHz\t: 2000.000\n"
    m = {"theoretical_peak": bench_flops.theoretical_peak(1, info), "theoretical_peak_machine": None}
    assert m["theoretical_peak"]["gflops"] == pytest.approx(64.0)
    below = bench_report.peak_note({**m, "peak_gflops": 60.0})
    above = bench_report.peak_note({**m, "peak_gflops": 70.0})
    assert "2000 MHz" in below and "above this estimate" not in below
    assert above.startswith(below) and "above this estimate" in above


# --- the runner's progress lines and the commit of each run -------------------------------------------------------
def test_progress_lines_and_eta(tmp_path, capsys):
    cmd = [sys.executable, "gan.py", "--max-iters", "100"]
    jobs = [bench.Job("gan", s, cmd, str(tmp_path), 1, "log") for s in (1, 2, 3)]
    progress = bench.Progress(jobs, workers=2, heartbeat=0)
    assert progress.estimate() is None and "ETA unknown" in progress.line()
    for job in jobs[:2]:
        progress.start(job)
    assert capsys.readouterr().out.splitlines() == ["[1/3] gan seed 1 started", "[2/3] gan seed 2 started"]
    now = jobs[1].started + 50
    jobs[0].returncode, jobs[0].seconds = 0, 100.0
    progress.finish(jobs[0], fid=123.45)
    assert capsys.readouterr().out.strip() == "[1/3] gan seed 1 finished (1m40s, FID 123.5)"
    run = tmp_path / "runs" / f"mnist__gan__2__{int(jobs[1].started)}"
    run.mkdir(parents=True)
    (run / "samples_0000050.npz").write_bytes(b"")  # half way: 50 s so far, 50 s to go
    # left: 50 s of seed 2, 100 s of the queued seed 3, over 2 workers
    assert progress.estimate(now) == pytest.approx(75.0)
    assert progress.line(now).endswith("ETA 1m15s") and "1/3 done, 1 running (gan seed 2 50s)" in progress.line(now)


def test_heartbeat_prints_while_runs_go(tmp_path, capsys):
    jobs = [bench.Job("gan", 1, [sys.executable, "-c", "pass"], str(tmp_path), 1, "log")]
    with bench.Progress(jobs, workers=1, heartbeat=0.05):
        time.sleep(0.3)
    beats = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[benchmark] 0/1 done")]
    assert len(beats) >= 2


def test_run_job_writes_the_commit_into_the_run_folder(tmp_path):
    make_run = ("import os, time; os.makedirs(f'runs/mnist__gan__1__{int(time.time())}')")
    job = bench.Job("gan", 1, [sys.executable, "-c", make_run], str(tmp_path), 1, str(tmp_path / "logs" / "g.log"),
                    commit="0123abc+dirty")
    progress = bench.Progress([job], workers=1, heartbeat=0)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mnist__gan__1__1000").mkdir()  # an older run of the same script and seed
    bench.run_job(job, 0, progress)
    assert job.returncode == 0 and Path(job.run_dir).name != "mnist__gan__1__1000"
    assert (Path(job.run_dir) / "commit.txt").read_text() == "0123abc+dirty\n"
    assert not (tmp_path / "runs" / "mnist__gan__1__1000" / "commit.txt").exists()
    commit = bench.git_commit()
    assert commit == "unknown" or len(commit.split("+")[0]) == 40
