"""benchmarks/report.py on fake run folders (no training): tables, curves, claims, figures, speed alone, what it
deletes; README's generated CPU table against run.CPU_LINES."""
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import scipy.stats
import torch
from helpers import ROOT, synthetic_digits

sys.path.insert(0, str(ROOT))
from benchmarks import figures as bench_figures  # noqa: E402
from benchmarks import metrics as bench_metrics  # noqa: E402
from benchmarks import readme as bench_readme  # noqa: E402
from benchmarks import report as bench_report  # noqa: E402
from benchmarks import run as bench  # noqa: E402


@pytest.fixture(scope="module", name="tiny_weights")
def tiny_weights_fixture(tmp_path_factory):
    """A feature classifier's weights file with a seeded, untrained network (no data needed, milliseconds)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "classifier_mnist.pt"
    bench_metrics.save_weights(path, bench_metrics.FeatureNet(), "mnist", 0.1, 0.0,
                               bench_metrics.ClassifierConfig(max_steps=1))
    return path


@pytest.fixture
def no_render(monkeypatch):
    """Every figure is built but not rendered (a second each on this CPU); the smoke test renders them for real."""
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"png"))


def fake_run(root, script: str, seed: int, iters: int = 40, eval_every: int = 10, size: int = 28,
             estimate=None, extra_scalars=None, dataset: str = "mnist", final: bool = True):
    """A run folder as a script leaves it: TensorBoard scalars every 2 iterations, eval files every `eval_every`
    (images noisier early on), the final samples.npz (or translations.npz for dataset 'facades') unless not `final`,
    commit.txt."""
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
    if final:
        np.savez(run / ("translations.npz" if dataset == "facades" else "samples.npz"), **arrays)
    (run / "commit.txt").write_text(f"abc{seed}\n")
    return run


def md_rows(text: str, *header: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in `text` whose header has every column in `header`, as dicts."""
    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("|") and set(header) <= set(cells(line)))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(cells(lines[i]), cells(line), strict=True)))
    return rows


def cpu_commands(text: str) -> dict[str, list[str]]:
    """{script: flags} of the `python NAME.py FLAGS` cells between README's CPU-table markers."""
    assert bench_readme.START in text and bench_readme.END in text, (
        f"no generated CPU table: README.md needs {bench_readme.START} ... {bench_readme.END} "
        "(python benchmarks/readme.py writes it from benchmarks/results/quick/)")
    table = text[text.index(bench_readme.START):text.index(bench_readme.END)]
    return {m[1]: shlex.split(m[2]) for m in re.finditer(r"`python (\w+)\.py([^`]*)`", table)}


def test_readme_cpu_table_is_the_cpu_lines():
    """README's CPU table has each script's command with exactly its CPU line's flags (what --preset quick runs)."""
    commands = cpu_commands((ROOT / "README.md").read_text())
    assert commands == {name: list(line.flags) for name, line in bench.CPU_LINES.items()}


def test_report_on_fake_runs(mnist_root, tmp_path, tiny_weights, no_render):
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
    readme.write_text(f"intro\n{bench_readme.START}\nold table\n{bench_readme.END}\noutro\n")

    doc = bench_report.main(bench_report.Args(str(runs), results_dir=str(results), data_dir=str(mnist_root),
                                              classifier=str(tiny_weights), readme=str(readme)))
    gan = doc["scripts"]["gan"]
    assert [p["iteration"] for p in gan["seeds"][1]["curve"]] == [10, 20, 30, 40]
    assert [p["train_seconds"] for p in gan["seeds"][2]["curve"]] == [10.0, 20.0, 30.0, 40.0]
    assert [p["minutes"] for p in gan["seeds"][2]["curve"]] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6])
    assert gan["seeds"][1]["commit"] == "abc1" and gan["summary"]["sps"][0] == pytest.approx(0.47)  # not int()-ed
    assert all(p["n"] == 60 and "kid" not in p for p in gan["seeds"][1]["curve"])
    for key in ("fid", "precision", "recall", "density", "coverage"):  # per run and per script, n = seeds scored
        assert key in gan["seeds"][1]["samples"] and gan["summary"][key][2] == 2, key
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
    assert report.index("(samples_all.png)") < report.index("(quality.png)") < report.index("## Machine")
    assert "## The papers' estimates against FID" in report and "c1_test_error" in report
    assert bench_metrics.sha256_file(tiny_weights) in report and "`abc1`, `abc2`" in report
    assert "own clock" in report and "not measured alone" in report  # no speed.json
    quality = {r["script"]: r for r in md_rows(report, "script", "px", "seeds")}
    assert quality["gan"]["seeds"] == "2" and quality["wgan"]["px"] == "32"
    assert {"density →1", "coverage ↑", "precision ↑", "recall ↑"} <= set(quality["gan"])
    assert quality["gan"]["FID ↓"] == bench_report.fmt(gan["summary"]["fid"], ".2f") and " ± " in quality["gan"][
        "FID ↓"]
    wrote = {"samples_all.png", "quality.png", "quality_translation.png", "losses_d.png",
             "losses_g.png", "losses_gap.png", "claims.png", "curves_gan.png", "metrics.json", "report.md"}
    assert wrote <= {p.name for p in results.iterdir()}
    assert (results / "notes.png").exists() and not (results / "wallclock.png").exists()
    manifest = set(json.loads((results / bench_report.MANIFEST).read_text()))
    assert wrote <= manifest and "notes.png" not in manifest
    # README: the CPU table between the markers, every CPU line, gan's FID from this report (no jobs recorded)
    text = readme.read_text()
    assert text.startswith(f"intro\n{bench_readme.START}\n") and text.endswith(f"{bench_readme.END}"
                                                                                    "\noutro\n")
    assert "old table" not in text and "results/report.md" in text
    assert cpu_commands(text) == {name: list(line.flags) for name, line in bench.CPU_LINES.items()}
    row = {r["script"]: r for r in md_rows(text, "script", "CPU command")}
    assert row["gan"]["FID ↓"] == bench_report.fmt(gan["summary"]["fid"], ".0f") and row["gan"]["minutes"] == "–"
    assert row["pix2pix"]["FID ↓"].startswith("L1 ") and row["dcgan"]["FID ↓"] == "–"

    # a second report after a script's runs are gone deletes that script's old figure, nothing else
    shutil.rmtree(runs / "runs" / "mnist__infogan__1__1700000001")
    shutil.rmtree(runs / "runs" / "mnist__infogan__2__1700000002")
    bench_report.main(bench_report.Args(str(runs), results_dir=str(results), data_dir=str(mnist_root),
                                        classifier=str(tiny_weights)))
    assert not (results / "curves_infogan.png").exists() and (results / "curves_gan.png").exists()
    assert (results / "notes.png").exists()


def test_seeds_count_the_seeds_scored_and_speed_alone_sets_the_clock(mnist_root, tmp_path, tiny_weights, no_render):
    """A seed without final samples is not counted in the quality table; with speed.json the minutes are the
    estimated minutes alone (iteration / it/s), the speed table and the README's minutes use it."""
    runs, results = tmp_path / "bench", tmp_path / "results"
    fake_run(runs, "gan", 1)
    fake_run(runs, "gan", 2, final=False)  # failed before its samples.npz
    results.mkdir()
    its = 4.0
    (results / "speed.json").write_text(json.dumps({
        "threads": 1, "cpu": "Test CPU", "cores": 2, "torch": "x", "commit": "abc", "measured": "today",
        "load_before": 0.1, "scripts": {"gan": {"it_per_s": its, "images_per_s": 400.0, "warmup_iters": 5,
                                                "timed_iters": 50, "seconds": 12.5, "command": "python gan.py x"}}}))
    (runs / "benchmark.json").write_text(json.dumps({"preset": "quick", "jobs": [
        {"script": "gan", "seed": s, "returncode": 0, "seconds": 30.0, "log": "l",
         "shell": f"cd x && python gan.py {shlex.join(bench.CPU_LINES['gan'].flags)} --seed {s}"} for s in (1, 2)]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"{bench_readme.START}\n{bench_readme.END}\n")
    doc = bench_report.main(bench_report.Args(str(runs), results_dir=str(results), data_dir=str(mnist_root),
                                              classifier=str(tiny_weights), readme=str(readme)))
    summary = doc["scripts"]["gan"]["summary"]
    assert summary["fid"][2] == 1 and summary["iterations"][2] == 2 and summary["fid"][1] == 0.0
    report = (results / "report.md").read_text()
    assert md_rows(report, "script", "px", "seeds")[0]["seeds"] == "1"  # scored, not asked for
    assert md_rows(report, "script", "batch", "seeds")[0]["seeds"] == "2"  # trained
    curve = doc["scripts"]["gan"]["seeds"][1]["curve"]
    assert [p["minutes"] for p in curve] == pytest.approx([it / its / 60 for it in (10, 20, 30, 40)])
    assert "measured alone, one run at a time, 1 thread(s)" in report and "own clock" not in report
    assert md_rows(report, "script", "of peak")[0]["it/s"] == "4.00" and "python gan.py x" in report
    row = md_rows(readme.read_text(), "script", "CPU command")[0]
    iters = int(bench.flag_value(bench.CPU_LINES["gan"].flags, "--max-iters"))
    assert row["minutes"] == f"{iters / its / 60:.0f}" and row["FID ↓"] == f"{summary['fid'][0]:.0f}"
    assert "over the 1 seeds scored" in readme.read_text()
    # readme.py alone, from metrics.json: the same table; a CPU line run with other flags gets no numbers
    table = readme.read_text()
    readme.write_text(f"{bench_readme.START}\n{bench_readme.END}\n")
    assert bench_readme.main(bench_readme.Args(results_dir=str(results), readme=str(readme))) == 0
    assert readme.read_text() == table
    doc = json.loads((results / "metrics.json").read_text())
    doc["jobs"][0]["shell"] = "python gan.py --hidden-dim 10"
    (results / "metrics.json").write_text(json.dumps(doc))
    assert bench_readme.main(bench_readme.Args(results_dir=str(results), readme=str(readme))) == 0
    assert md_rows(readme.read_text(), "script", "CPU command")[0]["FID ↓"] == "–"


def test_final_picture_is_an_8x8_grid_or_triplets(tmp_path):
    run = tmp_path / "mnist__cgan__1__1"
    run.mkdir()
    labels = np.arange(100) % 10
    np.savez(run / "samples.npz", images=np.repeat(labels[:, None, None, None], 28, 2).repeat(28, 3).astype(np.uint8),
             labels=labels)
    caption, picture = bench_figures.final_picture("cgan", run)
    assert caption == "cgan" and picture.shape == (8 * 30 + 2, 8 * 30 + 2, 3)
    assert picture[2, 2, 0] == 0 and picture[-3, -3, 0] == 9  # sorted by label
    x = np.zeros((4, 3, 16, 16), np.uint8)
    np.savez(run / "translations.npz", **{f"{d}_{k}": x for d in ("a2b", "b2a") for k in ("inputs", "outputs",
                                                                                          "cycle", "targets")})
    (run / "samples.npz").unlink()
    caption, picture = bench_figures.final_picture("cyclegan", run)
    assert caption == "cyclegan: input | output | target" and picture.shape == (3 * 18 + 2, 3 * 18 + 2, 3)


def test_readme_without_markers_is_left_alone(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert not bench_readme.update_readme(readme, "| table |")
    assert readme.read_text() == "no markers here\n" and "markers" in capsys.readouterr().err
    readme.write_text(f"a {bench_readme.END} b {bench_readme.START}\n")  # out of order
    assert not bench_readme.update_readme(readme, "| table |")


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


def test_tables_count_finite_values_only():
    assert bench_report.mean_std([1.0, None, float("nan"), 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert bench_report.fmt([2.0, 0.5, 2], ".1f") == "2.0 ± 0.5" and bench_report.fmt([2.0, 0.5, 1], ".1f") == "2.0"
    assert bench_report.fmt(None, ".1f") == "–"
    assert bench_report.md_table(["a", "bb"], [["1", "2"]]) == "| a | bb |\n| --- | --- |\n| 1 | 2 |"


def test_speed_line_names_each_scripts_measurement_commit_and_day():
    """speed.json keeps the entries of scripts not measured again: the report names each group's commit and day, not
    only the newest measurement's."""
    alone = {"commit": "new", "measured": "2026-12-08 02:51:04",
             "scripts": {"gan": {"commit": "old", "measured": "2026-12-07 17:42:06"},
                         "cgan": {"commit": "old", "measured": "2026-12-07 17:42:50"},
                         "began": {"commit": "new", "measured": "2026-12-08 02:52:57"}}}
    assert bench_report.speed_sessions(alone) == "gan, cgan: 2026-12-07, commit `old`; began: 2026-12-08, commit `new`"
