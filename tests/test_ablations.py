"""benchmarks/ablations.py: the papers' ablation tables (run.py --preset ablations): every variant's flags, the job
list, and the report on fake run folders (no training, no shared data)."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers import ROOT, synthetic_digits

sys.path.insert(0, str(ROOT))
from benchmarks import ablations  # noqa: E402
from benchmarks import metrics as bench_metrics  # noqa: E402
from benchmarks import run as bench  # noqa: E402

PRESETS = ("ablations", "ablations-full")
ROWS = [(preset, table.key, row.name) for preset in PRESETS for table in ablations.TABLES for row in table.rows]


def table(key: str) -> ablations.Table:
    return next(t for t in ablations.TABLES if t.key == key)


def row_of(key: str, name: str) -> ablations.Row:
    return next(r for r in table(key).rows if r.name == name)


@pytest.mark.parametrize("preset,key,name", ROWS, ids=[f"{p}-{k}-{n}" for p, k, n in ROWS])
def test_every_row_parses_and_passes_check_args(preset, key, name):
    row = row_of(key, name)
    flags = bench.merge_flags(ablations.budget_flags(preset, row.script), ablations.row_flags(table(key), row, preset))
    assert ablations.check_variant(row.script, ["--seed", "1", "--data-dir", "data", "--no-download", *flags]) is None
    # a row with flags is a run of its own; the full method is the script's defaults
    exp = ablations.variant_name(row.script, ablations.row_flags(table(key), row, preset))
    assert exp.startswith(f"{row.script}.") and "__" not in exp
    assert (exp == f"{row.script}.default") == (not ablations.row_flags(table(key), row, preset))


def test_check_variant_reports_unknown_flags_and_check_args_failures():
    assert "rejects" in ablations.check_variant("pix2pix", ["--no-such-flag", "1"])
    assert "check_args" in ablations.check_variant("pix2pix", ["--img-size", "64", "--n-layers-d", "5"])


def test_tables_quote_the_papers_and_share_rows():
    for t in ablations.TABLES:
        assert t.rows and t.claims and t.source and t.paper_columns
        for row in t.rows:
            assert len(row.paper) == len(t.paper_columns), (t.key, row.name)
            assert len(row.rank) == len(t.claims), (t.key, row.name)
        if t.kind == "fcn":  # the standing is the paper's per-pixel accuracy, quoted with two decimals
            assert all(row.rank == (float(row.paper[0]),) and len(row.paper[0]) == 4 for row in t.rows)
    assert table("pix2pix_table1").ceiling == ("0.80", "0.26", "0.21")
    cpu, full = ablations.variants("ablations"), ablations.variants("ablations-full")
    count = {s: sum(v[0] == s for v in cpu.values()) for s in ("pix2pix", "cyclegan", "infogan", "wgan_gp")}
    assert count == {"pix2pix": 10, "cyclegan": 5, "infogan": 2, "wgan_gp": 4}  # Table 2's U-net rows = Table 1's
    assert sum(v[0] == "pix2pix" for v in full.values()) == 12  # the paper's Table 2 at batch size 10: two more
    assert "pix2pix.batch-size-10_objective-l1" in full


def test_cpu_preset_fits_well_under_an_hour():
    counts: dict[str, int] = {}
    for script, _ in ablations.variants("ablations").values():
        counts[script] = counts.get(script, 0) + len(ablations.DEFAULT_SEEDS)
    assert sum(counts.values()) == 42
    assert ablations.estimate_seconds(counts, ablations.DEFAULT_WORKERS["ablations"]) < 0.8 * 3600


@pytest.mark.parametrize("preset", PRESETS)
def test_workers_zero_prints_the_commands_only(preset, tmp_path, capsys):
    args = bench.Args(preset=preset, workers=0, data_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    assert bench.main(args, ["--no-cuda"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    n_variants = len(ablations.variants(preset))
    assert len(lines) == 2 * n_variants  # seeds 1 and 2
    assert all(line.endswith("--no-cuda") and "--exp-name" in line and "OMP_NUM_THREADS=" in line for line in lines)
    assert not (tmp_path / "runs").exists()
    first = next(line for line in lines if "--exp-name pix2pix.default " in line)
    if preset == "ablations":
        assert "--img-size 128 --ngf 8 --ndf 8 --max-iters 600" in first
    else:
        assert "--img-size" not in first and "--max-iters" not in first  # the papers' budgets: the defaults
        assert any("--batch-size 10" in line and "encoder-decoder" not in line for line in lines)


def test_slope_and_tail_mean():
    assert ablations.slope({1: 0.0, 2: -1.0, 3: -2.0}) == pytest.approx(-1.0)
    assert ablations.slope({1: 0.5}) is None
    run = bench.report.Run(Path("."), "mnist", "x", 1, 0)
    run.scalars = {"t": np.array([[i, 0.0, float(i)] for i in range(1, 21)])}
    assert ablations.tail_mean(run, "t") == pytest.approx(19.5)  # the last tenth: 19 and 20
    run.scalars = {"t": np.array([[1, 0.0, 100.0], [2, 0.0, 0.01]])}
    assert ablations.tail_mean(run, "t", log10=True) == pytest.approx(-2.0)


def test_ordering_sentences_name_the_seeds():
    t = table("pix2pix_table3")  # paper: 70x70 (0.66) > 16x16 (0.65) > 286x286 (0.42) > 1x1 (0.39)
    ours = {"1×1": (0.30, 0.32), "16×16": (0.60, 0.62), "70×70": (0.50, 0.70), "286×286": (0.55, 0.40)}
    results = {name: {"seeds": {1: {"per_pixel_acc": a}, 2: {"per_pixel_acc": b}}} for name, (a, b) in ours.items()}
    text = " ".join(ablations.ordering_sentences(t, results, (1, 2)))
    assert "our ordering differs from the paper's" in text
    # means: 70x70 0.60 = 16x16 0.61 > ... : 16x16 above 70x70 in the mean, in seed 1 only
    assert "The paper puts 70×70 above 16×16; ours puts 16×16 above 70×70 in seed 1 (" in text
    assert "seed 1: 0.500 vs 0.600; seed 2: 0.700 vs 0.620" in text
    assert "1×1 above" not in text and "above 1×1" not in text
    results["70×70"]["seeds"][1]["per_pixel_acc"] = 0.65
    assert "agrees with the paper's" in " ".join(ablations.ordering_sentences(t, results, (1, 2)))


# ---------------------------------------------------------------------------------------------------------------
# The report on fake run folders
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A feature classifier's weights file with a seeded, untrained network (no data needed, milliseconds)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "classifier_mnist.pt"
    bench_metrics.save_weights(path, bench_metrics.FeatureNet(), "mnist", 0.1, 0.0,
                               bench_metrics.ClassifierConfig(max_steps=1))
    return path


def fake_fcn_module():
    """Stands in for benchmarks/fcn_score.py: a translations.npz's FCN-scores are the `fake_scores` it holds."""
    fake = types.SimpleNamespace()

    def load():
        return "segmenter"

    def score_translations(npz, model):
        assert model == "segmenter"
        with np.load(npz) as f:
            ppa, pca, iou = f["fake_scores"]
        return {"per_pixel_acc": float(ppa), "per_class_acc": float(pca), "class_iou": float(iou), "n": 2}

    def score(photos, classes, model):
        return {"per_pixel_acc": 0.9, "per_class_acc": 0.5, "class_iou": 0.4}

    def find_labels_to_photo(arrays):
        if "b2a_inputs" in arrays:
            return "b2a_inputs", "b2a_outputs"
        return "inputs", "outputs"

    def classes_from_label_maps(maps):
        return np.zeros((len(maps), *maps.shape[2:]), np.int64)

    fake.load = load
    fake.score_translations = score_translations
    fake.score = score
    fake.find_labels_to_photo = find_labels_to_photo
    fake.classes_from_label_maps = classes_from_label_maps
    return fake


def fake_run(root: Path, exp: str, seed: int, scalars: dict[str, list[float]], arrays: dict | None = None,
             dataset: str = "mnist", evals: int = 0) -> Path:
    """A run folder as a script leaves it: TensorBoard scalars (one value per logged iteration), a final grid PNG,
    samples.npz (MNIST) or `arrays` as translations.npz, and `evals` eval files."""
    from torch.utils.tensorboard import SummaryWriter

    run = root / "runs" / f"{dataset}__{exp}__{seed}__{1700000000 + seed}"
    (run / "samples").mkdir(parents=True)
    writer = SummaryWriter(str(run))
    for tag, values in scalars.items():
        for i, v in enumerate(values, 1):
            writer.add_scalar(tag, v, 10 * i)
    writer.close()
    torchvision.io.write_png(torch.full((3, 8, 8), 40 * seed, dtype=torch.uint8), str(run / "samples" / "0000040.png"))
    if arrays is not None:
        np.savez(run / "translations.npz", **arrays)
    else:
        digits, _ = synthetic_digits(60, seed=seed)
        np.savez(run / "samples.npz", images=digits[:, None])
        for it in range(1, evals + 1):
            noisy = np.clip(digits + np.random.default_rng(it).normal(0, 100 / it, digits.shape), 0, 255)
            np.savez(run / f"samples_{10 * it:07d}.npz", iteration=10 * it, train_seconds=float(it),
                     images=noisy.astype(np.uint8)[:, None])
    (run / "commit.txt").write_text(f"abc{seed}\n")
    return run


# our fake per-pixel accuracies (seed 1, seed 2): Table 1 swaps L1 and GAN in both seeds, and L1+GAN and L1+cGAN in
# seed 1 only (mean swapped too); the other tables agree with the paper
FAKE_FCN = {
    "pix2pix.objective-l1": (0.30, 0.31), "pix2pix.objective-gan": (0.35, 0.36), "pix2pix.objective-cgan": (0.50, 0.52),
    "pix2pix.objective-l1+gan": (0.70, 0.60), "pix2pix.default": (0.50, 0.62),
    "pix2pix.objective-l1_generator-encoder-decoder": (0.20, 0.21), "pix2pix.generator-encoder-decoder": (0.10, 0.11),
    "pix2pix.netd-pixel": (0.05, 0.06), "pix2pix.n-layers-d-1": (0.45, 0.46), "pix2pix.n-layers-d-5": (0.15, 0.16),
    "cyclegan.objective-cycle-alone": (0.10, 0.11), "cyclegan.objective-gan-alone": (0.40, 0.41),
    "cyclegan.objective-gan+forward": (0.20, 0.21), "cyclegan.objective-gan+backward": (0.60, 0.61),
    "cyclegan.default": (0.50, 0.51),
}


@pytest.fixture(scope="module")
def fake_report(mnist_root, tiny_weights, tmp_path_factory):
    monkey = pytest.MonkeyPatch()
    # figures are built but not rendered (seconds each on this CPU); the preset's own runs render them for real
    monkey.setattr(ablations.Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"png"))
    monkey.setattr(ablations, "fcn_module", fake_fcn_module)
    root = tmp_path_factory.mktemp("ablations")
    labels = np.zeros((2, 3, 8, 8), np.uint8)
    for exp, (script, _) in ablations.variants("ablations").items():
        for seed in (1, 2):
            if script in ("pix2pix", "cyclegan"):
                ppa = FAKE_FCN[exp][seed - 1]
                scores = np.array([ppa, ppa / 2, ppa / 3])
                prefix = "b2a_" if script == "cyclegan" else ""
                arrays = {f"{prefix}inputs": labels, f"{prefix}outputs": labels, f"{prefix}targets": labels,
                          "fake_scores": scores}
                fake_run(root, exp, seed, {"losses/g_loss": [1.0, 0.5]}, arrays, dataset="facades")
            elif script == "infogan":
                top = 2.2 if exp == "infogan.default" else 0.1  # L_I reaches H(c) only with the information term
                fake_run(root, exp, seed, {"losses/g_loss": [1.0] * 20, "charts/mi_lower_bound":
                                           list(np.linspace(0.0, top, 20)), "charts/c1_test_error": [0.1 * seed]})
            else:
                gp = exp == "wgan_gp.default"  # flat gradient norms under the penalty, decaying ones under clipping
                norms = {f"charts/critic_grad_norm/layer{i}": [1.0 if gp else 10.0 ** (-2 * i)] * 10
                         for i in range(1, 5)}
                fake_run(root, exp, seed, {"losses/g_loss": [1.0] * 10, **norms}, evals=3)
    results = root / "results"
    doc = ablations.write_report(root, results, str(mnist_root), (1, 2), "ablations", classifier=str(tiny_weights))
    yield doc, (results / "report.md").read_text(), results
    monkey.undo()


def test_report_has_each_table_with_the_papers_columns_and_ours(fake_report):
    doc, text, results = fake_report
    for t in ablations.TABLES:
        section = text.split(f"## {t.title}")[1].split("\n## ")[0]
        assert t.source.split(",")[0] in section
        header = next(line for line in section.splitlines() if line.startswith("| row (the paper's words)"))
        for column in t.paper_columns:
            assert f"paper: {column}" in header
        for _, title, _ in ablations.OURS[t.kind]:
            assert f"ours: {title}" in header
        for row in t.rows:
            line = next(line for line in section.splitlines() if line.startswith(f"| {row.name} |"))
            assert all(cell in line for cell in row.paper)
            assert " ± " in line  # mean ± std over the two seeds
        assert (results / f"{t.key}_grids.png").exists()
    t1 = text.split("## pix2pix Table 1")[1].split("\n## ")[0]
    assert "| L1 | `--objective l1` | 0.42 | 0.15 | 0.11 | 0.305 ± 0.007 |" in t1
    assert "| Ground truth | real test photos | 0.80 | 0.26 | 0.21 | 0.900 | 0.500 | 0.400 |" in t1
    assert doc["pix2pix_table2"]["rows"]["U-net (L1)"]["exp"] == doc["pix2pix_table1"]["rows"]["L1"]["exp"]
    info = doc["infogan_figure1"]["rows"]
    assert info["InfoGAN"]["summary"]["mi_lower_bound"][0] == pytest.approx(2.2 - 2.2 / 19 / 2)  # last tenth
    assert info["GAN"]["summary"]["c1_test_error"] == pytest.approx((0.15, np.std([0.1, 0.2], ddof=1)))
    assert all(s["fid"] > 0 for s in info["InfoGAN"]["seeds"].values())
    wgan = doc["wgan_gp_figure1"]["rows"]
    assert wgan["Weight clipping (c = 0.1)"]["summary"]["grad_slope"][0] == pytest.approx(-2.0)
    assert [p[0] for p in wgan["Gradient penalty"]["seeds"][1]["fid_curve"]] == [10, 20, 30]
    assert (results / "infogan_figure1.png").exists() and (results / "wgan_gp_figure1.png").exists()
    assert "`abc1`, `abc2`" in text


def test_report_says_where_the_ordering_differs(fake_report):
    _, text, _ = fake_report
    t1 = text.split("## pix2pix Table 1")[1].split("\n## ")[0]
    assert "By per-pixel accuracy, our ordering differs from the paper's" in t1
    assert "The paper puts L1 above GAN; ours puts GAN above L1 in seeds 1 and 2 (" in t1
    assert "The paper puts L1+cGAN above L1+GAN; ours puts L1+GAN above L1+cGAN in seed 1 (" in t1
    for key in ("pix2pix Table 2", "pix2pix Table 3", "CycleGAN Table 4", "InfoGAN Figure 1", "WGAN-GP Figure 1b"):
        section = text.split(f"## {key}")[1].split("\n## ")[0]
        assert "differs" not in section and "agrees with the paper's" in section, key
