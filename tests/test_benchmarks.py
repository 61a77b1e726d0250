"""benchmarks/: the preset tables against the scripts' flags, and the smoke preset end to end on tiny data."""
import functools
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
import torch
import torchvision
import tyro
from helpers import ROOT, load_script

sys.path.insert(0, str(ROOT))
from benchmarks import run as bench  # noqa: E402

PRESENT = [s for s in bench.SCRIPTS if (ROOT / f"{s}.py").exists()]
# The end-to-end test runs a subset (each script costs ~7 s of CPU just to import torch); CLEANGAN_BENCH_ALL=1: all.
SMOKE = [s for s in (bench.SCRIPTS if os.environ.get("CLEANGAN_BENCH_ALL") else ("gan", "cgan", "pix2pix"))
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
def test_smoke_preset_end_to_end(mnist_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(mnist_root / "MNIST", data / "MNIST")
    bench_write_facades(data)
    results = tmp_path / "results"
    args = bench.Args(preset="smoke", scripts=tuple(SMOKE), workers=2, data_dir=str(data),
                      runs_dir=str(tmp_path / "bench"), results_dir=str(results), cache_dir=str(tmp_path / "cache"))
    code = bench.main(args, [])
    logs = {p.name: p.read_text()[-1500:] for p in (tmp_path / "bench" / "logs").glob("*.log")}
    assert code == 0, f"some smoke runs failed: {logs}"

    report = (results / "report.md").read_text()
    for section in ("## Machine", "## Training", "## Speed against the machine's limit", "## Figures", "## Commands"):
        assert section in report
    doc = json.loads((results / "metrics.json").read_text())
    assert set(doc["scripts"]) == set(SMOKE)
    assert doc["machine"]["peak_gflops"] > 0 and doc["machine"]["threads_per_run"] >= 1
    for name in MNIST_SMOKE:
        scored = doc["scripts"][name]["seeds"]["1"]
        assert scored["iterations"] == 4, scored
        assert math.isfinite(scored["samples"]["fid"]) and 0 <= scored["samples"]["precision"] <= 1
        assert doc["scripts"][name]["summary"]["gflop_per_iter"][0] > 0
        assert (results / f"curves_{name}.png").exists()
    if MNIST_SMOKE:
        assert "## Sample quality" in report and "real data (mnist" in report
        assert 0 <= doc["classifiers"]["mnist"]["test_accuracy"] <= 1
        sizes = {doc["scripts"][n]["seeds"]["1"]["samples"]["size"] for n in MNIST_SMOKE}
        assert {f"mnist_{size}px" for size in sizes} == set(doc["real_floor"])
        assert all(floor["modes"] >= 1 for floor in doc["real_floor"].values())
        assert (results / "samples_montage.png").exists()
    if "cgan" in SMOKE:
        assert "label_accuracy" in doc["scripts"]["cgan"]["seeds"]["1"]["samples"]
    if "infogan" in SMOKE:
        assert "code_error" in doc["scripts"]["infogan"]["seeds"]["1"]["samples"]
    for name in set(SMOKE) & set(bench.IMAGE_TO_IMAGE):
        translations = doc["scripts"][name]["seeds"]["1"]["translations"]
        assert all(0 <= t["l1"] <= 1 and -1 <= t["ssim"] <= 1 for t in translations.values()), translations
        assert "## Translation quality" in report and (results / "translations_montage.png").exists()
    assert (results / "wallclock.png").exists()
    assert sum(p.stat().st_size for p in results.glob("*.png")) < 3e6

    # the report alone, from the runs folder, reuses the cached metrics and writes the same tables
    from benchmarks import report as bench_report

    again = bench_report.main(bench_report.Args(str(tmp_path / "bench"), results_dir=str(tmp_path / "again"),
                                                cache_dir=str(tmp_path / "cache")))
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
    assert flops.peak_gflops("cpu", n=128, repeats=2) > 0
