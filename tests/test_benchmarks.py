"""benchmarks/: the preset tables against the scripts' flags, and the smoke preset end to end on tiny data."""
import functools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
import torchvision
import tyro
from helpers import ROOT, load_script, synthetic_digits

sys.path.insert(0, str(ROOT))
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
        assert report.index("quality.png") < report.index("## Machine")  # the first figure
    if "cgan" in SMOKE:
        assert "label_accuracy" in doc["scripts"]["cgan"]["seeds"]["1"]["samples"]
    for name in set(SMOKE) & set(bench.IMAGE_TO_IMAGE):
        translations = doc["scripts"][name]["seeds"]["1"]["translations"]
        assert all(0 <= t["l1"] <= 1 and -1 <= t["ssim"] <= 1 for t in translations.values()), translations
        assert "## Translation quality" in report and (results / "translations_montage.png").exists()
    for kind in bench_report.LOSS_KINDS:
        assert (results / f"losses_{kind}.png").exists()
    assert sum(p.stat().st_size for p in results.glob("*.png")) < 3e6

    # the report alone, from the runs folder, reuses the cached metrics and writes the same tables (figures built,
    # not rendered again)
    monkeypatch.setattr(bench_report.Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"png"))
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


# --- the report on fake run folders (no training): curves, claims, montages, README, what it deletes -------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A feature classifier's weights file with a seeded, untrained network (no data needed, milliseconds)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "classifier_mnist.pt"
    bench_metrics.save_weights(path, bench_metrics.FeatureNet(), "mnist", 0.1, 0.0,
                               bench_metrics.ClassifierConfig(max_steps=1))
    return path


def fake_run(root, script: str, seed: int, iters: int = 40, eval_every: int = 10, size: int = 28,
             estimate=None, extra_scalars=None, dataset: str = "mnist"):
    """A run folder as a script leaves it: TensorBoard scalars every 2 iterations, eval files every `eval_every`
    (images noisier early on), the final samples.npz (or translations.npz for dataset 'facades'), commit.txt."""
    from torch.utils.tensorboard import SummaryWriter

    run = root / "runs" / f"{dataset}__{script}__{seed}__{1700000000 + seed}"
    run.mkdir(parents=True)
    writer = SummaryWriter(str(run))
    for it in range(2, iters + 1, 2):
        values = {"losses/d_loss": 1.0 - it / iters + 0.1 * seed, "losses/g_loss": it / iters,
                  "charts/d_real": 0.8, "charts/d_fake": 0.2 + 0.001 * it, "charts/SPS": 0.47,
                  **({"losses/wasserstein_estimate": estimate(it)} if estimate else {})}
        for tag, v in values.items():
            writer.add_scalar(tag, v, it)
    for tag, v in (extra_scalars or {}).items():
        writer.add_scalar(tag, v, iters)
    writer.close()
    rng = np.random.default_rng(seed)
    digits, _ = synthetic_digits(60, seed=seed)
    for it in range(eval_every, iters + 1, eval_every):
        if dataset == "facades":
            x = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
            arrays = {"inputs": x, "outputs": (x // (1 + iters // it)).astype(np.uint8), "targets": x}
        else:
            noise = rng.normal(0, 200 * (1 - it / iters) + 5, digits.shape)
            images = np.clip(digits + noise, 0, 255).astype(np.uint8)[:, None]
            arrays = {"images": images if size == 28 else bench_metrics.resize_uint8(images, size)}
        np.savez(run / f"samples_{it:07d}.npz", iteration=it, train_seconds=it * 0.5 * seed, **arrays)
    np.savez(run / ("translations.npz" if dataset == "facades" else "samples.npz"), **arrays)
    (run / "commit.txt").write_text(f"abc{seed}\n")
    return run


def test_report_on_fake_runs(mnist_root, tmp_path, tiny_weights, monkeypatch):
    # every figure is built but not rendered (a second each on this CPU); the smoke test renders them for real
    monkeypatch.setattr(bench_report.Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"png"))
    runs = tmp_path / "bench"
    for seed in (1, 2):
        fake_run(runs, "gan", seed)
        fake_run(runs, "wgan", seed, size=32, estimate=lambda it: 5.0 - it / 10)  # falls as samples improve
        fake_run(runs, "infogan", seed, extra_scalars={"charts/c1_test_error": 0.1 * seed})
    fake_run(runs, "pix2pix", 1, dataset="facades")
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.png").write_bytes(b"not the report's")  # a file report.py did not write: must survive
    (results / "wallclock.png").write_bytes(b"an earlier version's")  # an earlier report's: deleted
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_report.README_START}\nold table\n{bench_report.README_END}\noutro\n")

    doc = bench_report.main(bench_report.Args(str(runs), results_dir=str(results), data_dir=str(mnist_root),
                                              classifier=str(tiny_weights), readme=str(readme)))
    gan = doc["scripts"]["gan"]
    assert [p["iteration"] for p in gan["seeds"][1]["curve"]] == [10, 20, 30, 40]
    assert [p["train_seconds"] for p in gan["seeds"][2]["curve"]] == [10.0, 20.0, 30.0, 40.0]
    assert gan["seeds"][1]["commit"] == "abc1" and gan["summary"]["sps"][0] == pytest.approx(0.47)  # not int()-ed
    assert all(p["n"] == 60 and "kid" not in p for p in gan["seeds"][1]["curve"])
    assert doc["real_floor"]["curve"]["n"] == 60 and {"mnist_28px", "mnist_32px"} <= set(doc["real_floor"])
    assert doc["scripts"]["infogan"]["summary"]["c1_test_error"][0] == pytest.approx(0.15)
    assert [p["iteration"] for p in doc["scripts"]["pix2pix"]["seeds"][1]["curve"]] == [10, 20, 30, 40]
    # WGAN's estimate against FID: the pairs and Spearman's rho recomputed here
    claim = doc["claims"]["wgan"]
    for seed in (1, 2):
        fids = [p["fid"] for p in doc["scripts"]["wgan"]["seeds"][seed]["curve"]]
        assert claim["seeds"][seed]["fid"] == fids and claim["seeds"][seed]["estimate"] == [4.0, 3.0, 2.0, 1.0]
        assert claim["seeds"][seed]["spearman"] == pytest.approx(scipy.stats.spearmanr(fids, [4, 3, 2, 1]).statistic)
    assert claim["mean_spearman"] == pytest.approx(np.mean([claim["seeds"][s]["spearman"] for s in (1, 2)]))
    assert claim["label"] == "losses/wasserstein_estimate"

    report = (results / "report.md").read_text()
    assert report.index("![Sample quality") < report.index("## Machine")  # the quality figure comes first
    assert "## The papers' estimates against FID" in report and "c1_test_error" in report
    assert bench_metrics.sha256_file(tiny_weights) in report and "`abc1`, `abc2`" in report
    wrote = {"quality.png", "quality_translation.png", "losses_d.png", "losses_g.png", "losses_gap.png",
             "claims.png", "translations_montage.png", "metrics.json", "report.md"}
    assert wrote <= {p.name for p in results.iterdir()}
    assert (results / "notes.png").exists() and not (results / "wallclock.png").exists()
    manifest = set(json.loads((results / bench_report.MANIFEST).read_text()))
    assert wrote <= manifest and "notes.png" not in manifest
    text = readme.read_text()
    assert text.startswith(f"intro\n{bench_report.README_START}\n")
    assert text.endswith(f"{bench_report.README_END}\noutro\n")
    assert "old table" not in text and "| `gan` | 2 |" in text and "results/report.md" in text

    # a second report after a script's runs are gone deletes that script's old figure, nothing else
    shutil.rmtree(runs / "runs" / "mnist__infogan__1__1700000001")
    shutil.rmtree(runs / "runs" / "mnist__infogan__2__1700000002")
    bench_report.main(bench_report.Args(str(runs), results_dir=str(results), data_dir=str(mnist_root),
                                        classifier=str(tiny_weights)))
    assert not (results / "curves_infogan.png").exists() and (results / "curves_gan.png").exists()
    assert (results / "notes.png").exists()


def test_readme_without_markers_is_left_alone(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert not bench_report.update_readme(readme, "| table |")
    assert readme.read_text() == "no markers here\n" and "markers" in capsys.readouterr().err
    readme.write_text(f"a {bench_report.README_END} b {bench_report.README_START}\n")  # out of order
    assert not bench_report.update_readme(readme, "| table |")


def test_claim_pairs_take_the_nearest_logged_iteration():
    estimate = np.array([[0, 9.0], [10, 8.0], [20, 7.0], [30, 6.0]])
    curve = [{"iteration": 14, "fid": 3.0}, {"iteration": 16, "fid": 2.0}, {"iteration": 29, "fid": 1.0}]
    its, fids, est = bench_report.claim_pairs(estimate, curve)
    assert its.tolist() == [14, 16, 29] and fids.tolist() == [3, 2, 1] and est.tolist() == [8.0, 7.0, 6.0]
    assert bench_report.spearman(fids, est) == pytest.approx(1.0)
    assert bench_report.spearman(fids[:2], est[:2]) is None  # too few points


def test_train_clock_interpolates_between_eval_files():
    knots = (np.array([0.0, 10, 20]), np.array([0.0, 5, 15]))
    assert bench_report.to_seconds(np.array([5.0, 10, 15, 30]), knots).tolist() == [2.5, 5.0, 10.0, 25.0]


def test_translation_montage_rows_are_labelled():
    x = np.zeros((2, 3, 8, 8), np.uint8)
    pix2pix = bench_report.translation_rows({"inputs": x, "outputs": x, "targets": x})
    assert [label for label, _ in pix2pix] == ["input", "output", "target"]
    cyclegan = bench_report.translation_rows({f"{d}_{k}": x for d in ("a2b", "b2a")
                                              for k in ("inputs", "outputs", "cycle")})
    assert [label for label, _ in cyclegan] == ["A→B real", "A→B translated", "A→B reconstructed", "B→A real",
                                                "B→A translated", "B→A reconstructed"]


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
