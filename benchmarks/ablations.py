# Docs: docs/benchmarks.md ("Reproducing the papers' ablations")
"""The papers' ablation tables and figures, run with the scripts' ablation flags and reported beside the papers'.

pix2pix Tables 1-3 and the CycleGAN ablation table (FCN-scores), InfoGAN Figure 1 (the lower bound L_I with and
without the information term) and WGAN-GP Figure 1b (gradient norms through the critic under weight clipping and
under the gradient penalty). One `Table` below per paper table or figure: its rows in the paper's words, the flags
that make each row, and the paper's numbers quoted exactly; a row shared by several tables runs once.

Usage: python benchmarks/run.py --preset ablations --data-dir DATA       (CPU budgets below, seeds 1 2)
       python benchmarks/run.py --preset ablations-full --data-dir DATA  (the papers' budgets, for a GPU)
       python benchmarks/run.py --preset ablations --workers 0           (print the commands only)
       python benchmarks/run.py --preset ablations --skip-training       (the report from the runs already there)
Runs go to benchmarks/runs/PRESET/runs/, the report to benchmarks/results/PRESET/report.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from matplotlib.figure import Figure

try:  # `python benchmarks/run.py` puts benchmarks/ on sys.path, `python -m benchmarks.run` the repository root
    from benchmarks import report
    from benchmarks import run as runner
except ImportError:
    import report
    import run as runner

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
DPI = 80


# ---------------------------------------------------------------------------------------------------------------
# The papers' tables
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """An ordering a paper states: rows with a higher `Row.rank` come out better on `metric`."""

    metric: str
    higher_is_better: bool
    label: str  # the metric in words, for the ordering sentence
    source: str  # where the paper says it


@dataclass(frozen=True)
class Row:
    name: str  # the paper's row (or legend) name
    script: str
    flags: tuple[str, ...] = ()  # the flags that make this row (none: the full method, the script's defaults)
    paper: tuple[str, ...] = ()  # the paper's cells, quoted exactly, in Table.paper_columns' order
    rank: tuple[float | None, ...] = ()  # the paper's standing on each of Table.claims (higher = better; None: not)


@dataclass(frozen=True)
class Table:
    key: str  # file names of its figures
    title: str
    source: str  # the paper, its table or figure, the paper's dataset
    kind: Literal["fcn", "infogan", "wgan_gp"]  # what we measure (OURS)
    paper_columns: tuple[str, ...]
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...]
    note: str = ""
    full_flags: tuple[str, ...] = ()  # flags every row gets under the papers' budgets only (the paper's setup)
    ceiling: tuple[str, ...] = ()  # FCN tables: the paper's "Ground truth" row, if it has one


FCN_COLUMNS = ("per-pixel acc.", "per-class acc.", "class IOU")
FCN_CLAIM = Claim("per_pixel_acc", True, "per-pixel accuracy", "the paper's per-pixel accuracies")


def fcn_row(name: str, script: str, flags: tuple[str, ...], *cells: str) -> Row:
    """A row of an FCN-score table: the paper's three cells; its per-pixel accuracy is its standing."""
    return Row(name, script, flags, cells, (float(cells[0]),))


PIX2PIX = "Isola et al. 2017, arXiv:1611.07004v3"
CYCLEGAN = "Zhu et al. 2017, arXiv:1703.10593"
OUR_FCN = ("Ours: facades labels→photo (the 106 test pairs), the FCN-score of translations.npz by "
           "benchmarks/fcn_score.py, whose segmenter is a small U-Net trained on the facades training photos: the "
           "paper's numbers and ours are on different scales, compare the orderings.")
TABLES: tuple[Table, ...] = (
    Table("pix2pix_table1", "pix2pix Table 1: FCN-scores for different losses",
          f"{PIX2PIX}, Table 1: \"FCN-scores for different losses, evaluated on Cityscapes labels↔photos\"",
          "fcn", FCN_COLUMNS, (
              fcn_row("L1", "pix2pix", ("--objective", "l1"), "0.42", "0.15", "0.11"),
              fcn_row("GAN", "pix2pix", ("--objective", "gan"), "0.22", "0.05", "0.01"),
              fcn_row("cGAN", "pix2pix", ("--objective", "cgan"), "0.57", "0.22", "0.16"),
              fcn_row("L1+GAN", "pix2pix", ("--objective", "l1+gan"), "0.64", "0.20", "0.15"),
              fcn_row("L1+cGAN", "pix2pix", (), "0.66", "0.23", "0.17"),
          ), (FCN_CLAIM,), ceiling=("0.80", "0.26", "0.21")),
    Table("pix2pix_table2", "pix2pix Table 2: FCN-scores for different generator architectures (and objectives)",
          f"{PIX2PIX}, Table 2: \"FCN-scores for different generator architectures (and objectives), evaluated on "
          "Cityscapes labels↔photos\"",
          "fcn", FCN_COLUMNS, (
              fcn_row("Encoder-decoder (L1)", "pix2pix", ("--generator", "encoder-decoder", "--objective", "l1"),
                      "0.35", "0.12", "0.08"),
              fcn_row("Encoder-decoder (L1+cGAN)", "pix2pix", ("--generator", "encoder-decoder"),
                      "0.29", "0.09", "0.05"),
              fcn_row("U-net (L1)", "pix2pix", ("--objective", "l1"), "0.48", "0.18", "0.13"),
              fcn_row("U-net (L1+cGAN)", "pix2pix", (), "0.55", "0.20", "0.14"),
          ), (FCN_CLAIM,),
          note="The paper ran this table at batch size 10 (\"1 for other tables\"): the papers' budgets "
               "(ablations-full) do too; the CPU budget keeps batch 1 and shares the U-net rows with Table 1.",
          full_flags=("--batch-size", "10")),
    Table("pix2pix_table3", "pix2pix Table 3: FCN-scores for different receptive field sizes of the discriminator",
          f"{PIX2PIX}, Table 3: \"FCN-scores for different receptive field sizes of the discriminator, evaluated on "
          "Cityscapes labels→photos\" (256 × 256 inputs; all rows L1+cGAN)",
          "fcn", FCN_COLUMNS, (
              fcn_row("1×1", "pix2pix", ("--netd", "pixel"), "0.39", "0.15", "0.10"),
              # 4x4 convs, stride 2 for the first n layers, then two stride-1 layers: n = 1 -> 16 px, 5 -> 286 px
              fcn_row("16×16", "pix2pix", ("--n-layers-d", "1"), "0.65", "0.21", "0.17"),
              fcn_row("70×70", "pix2pix", (), "0.66", "0.23", "0.17"),
              fcn_row("286×286", "pix2pix", ("--n-layers-d", "5"), "0.42", "0.16", "0.11"),
          ), (FCN_CLAIM,),
          note="The receptive fields are the paper's; at the CPU budget's 128 px images the 286×286 ImageGAN (as "
               "the paper's at 256 px) sees past the image's border."),
    Table("cyclegan_table4", "CycleGAN Table 4: ablation study, FCN-scores for different variants of our method",
          f"{CYCLEGAN}, Table 4: \"Ablation study: FCN-scores for different variants of our method, evaluated on "
          "Cityscapes labels→photo\"",
          "fcn", FCN_COLUMNS, (
              fcn_row("Cycle alone", "cyclegan", ("--objective", "cycle-alone"), "0.22", "0.07", "0.02"),
              fcn_row("GAN alone", "cyclegan", ("--objective", "gan-alone"), "0.51", "0.11", "0.08"),
              # the paper's X is the label maps; our facades' A is the photos, so its forward cycle (labels -> photo
              # -> labels) is our backward one, G(F(b)) ~ b with b the label maps, and the other way round
              fcn_row("GAN + forward cycle", "cyclegan", ("--objective", "gan+backward"), "0.55", "0.18", "0.12"),
              fcn_row("GAN + backward cycle", "cyclegan", ("--objective", "gan+forward"), "0.39", "0.14", "0.06"),
              fcn_row("CycleGAN (ours)", "cyclegan", (), "0.52", "0.17", "0.11"),
          ), (FCN_CLAIM,),
          note="No row has the identity loss (the paper's Table 4 has none; the full method runs at "
               "cyclegan.py's defaults, where it is off). The paper's forward cycle starts from the label maps, "
               "our facades' B, so it is cyclegan.py's --objective gan+backward. The GAN + backward cycle row is "
               "quoted from the paper "
               "without a second copy to check it against; the other rows were checked."),
    Table("infogan_figure1", "InfoGAN Figure 1: lower bound L_I over training iterations",
          "Chen et al. 2016, arXiv:1606.03657, Section 7.1 and Figure 1, MNIST with c1 ~ Cat(K = 10, p = 0.1); "
          "Section 7.2 for the c1 error",
          "infogan", ("L_I", "c1 error"), (
              Row("InfoGAN", "infogan", (), ("\"quickly maximized to H(c) ≈ 2.30\"", "\"5% error rate\""), (1.0,)),
              Row("GAN", "infogan", ("--lambda-info", "0"),
                  ("\"little mutual information\" (Q trained, G not encouraged)", "–"), (0.0,)),
          ), (Claim("mi_lower_bound", True, "the final L_I", "Section 7.1: InfoGAN's L_I reaches H(c), the GAN's "
                    "does not"),),
          note="Ours: MNIST; L_I = H(c1) − E[−log Q(c1|x)] (charts/mi_lower_bound), the mean of the last tenth of "
               "its logged values; c1 test error: Q's c1 on the real test digits, codes matched one-to-one to labels."),
    Table("wgan_gp_figure1", "WGAN-GP Figure 1b: gradient norms of deep WGAN critics, weight clipping against the "
          "gradient penalty",
          "Gulrajani et al. 2017, arXiv:1704.00028, Section 3.2 and Figure 1b (Swiss Roll, 12-layer ReLU MLPs "
          "without batch normalization); Section 5.3 and Figure 3 (CIFAR-10 Inception score) for sample quality",
          "wgan_gp", ("gradient norms through the critic",), (
              Row("Weight clipping (c = 0.001)", "wgan_gp",
                  ("--constraint", "weight-clipping", "--clip-value", "0.001"),
                  ("\"either grows or decays exponentially\"",), (0.0, 0.0)),
              Row("Weight clipping (c = 0.01)", "wgan_gp", ("--constraint", "weight-clipping", "--clip-value", "0.01"),
                  ("\"either grows or decays exponentially\"",), (0.0, 0.0)),
              Row("Weight clipping (c = 0.1)", "wgan_gp", ("--constraint", "weight-clipping", "--clip-value", "0.1"),
                  ("\"either grows or decays exponentially\"",), (0.0, 0.0)),
              Row("Gradient penalty", "wgan_gp", (), ("\"neither vanish nor explode\"",), (1.0, 1.0)),
          ), (Claim("grad_slope", False, "how fast the critic's gradient norms grow or decay over its layers "
                    "(|slope|)", "Figure 1b"),
              Claim("fid", False, "the final FID", "Figure 3: the penalty \"converges faster and to a better score\" "
                    "than weight clipping")),
          note="Ours: MNIST with wgan_gp.py's critic (gan_mnist.py's: 3 convolutions and a linear layer); "
               "charts/critic_grad_norm/layer{i} is ‖∂L/∂h‖ of the activation h entering layer i (1 = the images; "
               "the paper's 'successive layers of activations'), the mean "
               "of log10 over the last tenth of its logged values; slope: the least-squares slope of log10 norm "
               "against the layer (decades per layer, + = growing towards the output); the paper's claim is on "
               "|slope|."),
)

# What we measure: (key, column title, format) per kind
OURS: dict[str, list[tuple[str, str, str]]] = {
    "fcn": [("per_pixel_acc", "per-pixel acc.", ".3f"), ("per_class_acc", "per-class acc.", ".3f"),
            ("class_iou", "class IOU", ".3f")],
    "infogan": [("mi_lower_bound", "final L_I (nats)", ".3f"), ("c1_test_error", "c1 test error", ".3f"),
                ("fid", "FID", ".2f")],
    "wgan_gp": [("grad_slope", "slope (decades / layer)", ".2f"), ("fid", "final FID", ".2f")],
}

# ---------------------------------------------------------------------------------------------------------------
# Budgets: flags every run gets, then each script's. "ablations": CPU widths and lengths (CPU_ESTIMATE below);
# "ablations-full": the scripts' defaults, the papers' budgets, for a GPU. Later flags win (run.merge_flags).
# ---------------------------------------------------------------------------------------------------------------
BUDGETS: dict[str, dict[str, list[str]]] = {
    "ablations": {
        "common": ["--num-eval-samples", "10000", "--sample-interval", "1000000", "--checkpoint-interval",
                   "1000000"],
        # 128 px: the FCN segmenter's input size (fcn_score.py) and the smallest that holds the 286x286 PatchGAN
        "pix2pix": ["--img-size", "128", "--ngf", "8", "--ndf", "8", "--max-iters", "600", "--log-interval", "10",
                    "--eval-interval", "0"],
        "cyclegan": ["--img-size", "64", "--ngf", "8", "--ndf", "8", "--max-iters", "200", "--log-interval", "4",
                     "--eval-interval", "0"],
        "infogan": ["--num-filters", "16", "--fc-dim", "256", "--q-dim", "64", "--max-iters", "300",
                    "--log-interval", "5", "--eval-interval", "0"],
        "wgan_gp": ["--dim", "8", "--max-iters", "150", "--log-interval", "3", "--eval-interval", "15"],
    },
    "ablations-full": {
        "common": ["--num-eval-samples", "10000", "--eval-interval", "1000"],
        "pix2pix": [], "cyclegan": [], "infogan": [], "wgan_gp": [],
    },
}
# Wall seconds of one run of each script at the CPU budget on one free core of this 2-core machine (start-up and final
# artefacts included): its measured CPU time (user + sys, one thread: pix2pix 52-54 s, CycleGAN 56, InfoGAN 61,
# WGAN-GP 49-59) plus 10%. 10 pix2pix, 5 CycleGAN, 2 InfoGAN and 4 WGAN-GP variants x 2 seeds = 42 runs, 2 at a time:
# about 22 minutes (estimate_seconds), plus a few for the report's FCN-scores and FIDs. Measured with other jobs
# sharing the cores (load average 6.5), the runs took 3x their CPU time (150-220 s wall each): about an hour.
CPU_ESTIMATE = {"pix2pix": 60.0, "cyclegan": 62.0, "infogan": 67.0, "wgan_gp": 62.0}
DEFAULT_SEEDS = (1, 2)
DEFAULT_WORKERS = {"ablations": 2, "ablations-full": 1}


# ---------------------------------------------------------------------------------------------------------------
# Variants: the distinct runs behind the tables
# ---------------------------------------------------------------------------------------------------------------
@functools.cache
def script_module(script: str):
    """Import a model script as a module (nothing under `__main__` runs)."""
    spec = importlib.util.spec_from_file_location(f"cleangan_ablation_{script}", ROOT / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # tyro's error messages look the Args class up by its module
    spec.loader.exec_module(module)
    return module


def parse_flags(script: str, flags: list[str]):
    """The script's Args from `flags` (tyro), or a one-line error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return tyro.cli(script_module(script).Args, args=list(flags))
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip(" │╭╰─")]
        return f"{script}.py rejects {' '.join(flags)}: " + " ".join(line.strip(" │") for line in lines[-3:])


def check_variant(script: str, flags: list[str]) -> str | None:
    """None when the script's tyro Args parse `flags` and its check_args accepts them; else the error."""
    parsed = parse_flags(script, flags)
    if isinstance(parsed, str):
        return parsed
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            script_module(script).check_args(parsed)
    except SystemExit:
        return f"{script}.py check_args: {err.getvalue().strip()}"
    return None


def variant_name(script: str, flags: list[str]) -> str:
    """The run's --exp-name: the script and the fields `flags` change from its defaults, e.g.
    `pix2pix.generator-encoder-decoder_objective-l1`; `pix2pix.default` for the full method. Flags that change
    nothing (the defaults spelled out) give the same name, so a row shared by tables runs once."""
    parsed = parse_flags(script, flags)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    default = script_module(script).Args()
    parts = [f"{f.name.replace('_', '-')}-{getattr(parsed, f.name)}" for f in dataclasses.fields(parsed)
             if getattr(parsed, f.name) != getattr(default, f.name)]
    return f"{script}.{'_'.join(parts) or 'default'}"


def row_flags(table: Table, row: Row, preset: str) -> list[str]:
    """The flags that make a row under a preset: the table's papers'-budget flags (ablations-full only), the row's."""
    return [*(table.full_flags if preset == "ablations-full" else ()), *row.flags]


def budget_flags(preset: str, script: str, extra: list[str] = ()) -> list[str]:
    return runner.merge_flags(BUDGETS[preset]["common"], BUDGETS[preset][script], extra)


def variants(preset: str, scripts: tuple[str, ...] | None = None) -> dict[str, tuple[str, list[str]]]:
    """{exp_name: (script, row flags)} of every row of every table (of `scripts`), each distinct run once."""
    out: dict[str, tuple[str, list[str]]] = {}
    for table in TABLES:
        for row in table.rows:
            if scripts is None or row.script in scripts:
                flags = row_flags(table, row, preset)
                out.setdefault(variant_name(row.script, flags), (row.script, flags))
    return out


def estimate_seconds(n_runs: dict[str, int], workers: int) -> float:
    """Wall-clock seconds of `n_runs` {script: runs} at the CPU budget spread over `workers` (CPU_ESTIMATE)."""
    return sum(CPU_ESTIMATE[s] * n for s, n in n_runs.items()) / max(1, workers)


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------
def build_jobs(args, seeds: tuple[int, ...], extra: list[str], runs_dir: Path, threads: int
               ) -> tuple[list[runner.Job], list[str]]:
    """One Job per (variant, seed), the slowest scripts first; and the variants left out, with why."""
    data_dir = str(Path(args.data_dir).resolve())
    scripts = tuple(s for s in args.scripts if (ROOT / f"{s}.py").exists())
    jobs, rejected = [], []
    for exp, (script, flags) in variants(args.preset, scripts).items():
        cmd_flags = runner.merge_flags(budget_flags(args.preset, script), flags, extra)
        error = check_variant(script, cmd_flags)
        if error:
            rejected.append(f"{exp}: {error}")
            continue
        for seed in seeds:
            cmd = [sys.executable, str(ROOT / f"{script}.py"), "--seed", str(seed), "--exp-name", exp, "--data-dir",
                   data_dir, "--no-download", *cmd_flags]
            log = runs_dir / "logs" / f"{exp}__{seed}.log"
            jobs.append(runner.Job(exp, seed, cmd, str(runs_dir), threads, str(log)))
    jobs.sort(key=lambda j: -CPU_ESTIMATE.get(j.script.split(".")[0], 0.0))  # stable: variants stay together
    return jobs, rejected


def record(runs_dir: Path, args, jobs: list[runner.Job], rejected: list[str]) -> None:
    """Merge this invocation's jobs into RUNS_DIR/ablations.json (the commands, exit codes and seconds)."""
    path = runs_dir / "ablations.json"
    meta = json.loads(path.read_text()) if path.exists() else {"jobs": []}
    done = {(j.script, j.seed) for j in jobs}
    meta["jobs"] = [j for j in meta["jobs"] if (j["script"], j["seed"]) not in done]
    meta["jobs"] += [{**dataclasses.asdict(j), "shell": j.shell()} for j in jobs]
    meta.update(preset=args.preset, data_dir=str(Path(args.data_dir).resolve()), rejected=rejected,
                updated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path.write_text(json.dumps(meta, indent=1))


def main(args, extra: list[str]) -> int:
    """`run.py --preset ablations[-full]`: run every (variant, seed), then write the report."""
    workers = DEFAULT_WORKERS[args.preset] if args.workers is None else args.workers
    if workers < 0:
        runner.fail("--workers must be >= 0 (0 prints the commands only)")
    seeds = args.seeds or DEFAULT_SEEDS
    runs_dir, results_dir = runner.resolve_dirs(args)
    threads = args.threads or max(1, runner.available_cores() // (workers or DEFAULT_WORKERS[args.preset]))
    jobs, rejected = build_jobs(args, seeds, extra, runs_dir, threads)
    for line in rejected:
        print(f"[ablations] warning: left out {line}", file=sys.stderr)
    if workers == 0:
        print("\n".join(j.shell() for j in jobs))
        return 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.skip_training:
        commit = runner.git_commit()
        for j in jobs:
            j.commit = commit
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.script.split(".")[0]] = counts.get(j.script.split(".")[0], 0) + 1
        guess = ""
        if args.preset == "ablations":
            guess = f", about {runner.fmt_seconds(estimate_seconds(counts, workers))} at CPU_ESTIMATE's speeds"
        print(f"[ablations] preset {args.preset}: {len(jobs)} runs, {workers} at a time, {threads} threads each"
              f"{guess}; commit {commit}; runs in {runs_dir}", flush=True)
        with runner.Progress(jobs, workers, args.heartbeat) as progress, \
                ThreadPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(runner.run_job, j, args.timeout, progress) for j in jobs]):
                job = future.result()
                progress.finish(job)
                record(runs_dir, args, [job], rejected)
    elif not (runs_dir / "ablations.json").exists():
        record(runs_dir, args, [], rejected)
    if args.report:
        torch.set_num_threads(threads)
        write_report(runs_dir, results_dir, args.data_dir, seeds, args.preset, classifier=args.classifier or None,
                     retrain=args.retrain_classifier)
    failed = [j for j in jobs if j.returncode not in (0, None)]
    if failed:
        print(f"[ablations] {len(failed)} run(s) failed: " + ", ".join(f"{j.script} seed {j.seed}" for j in failed))
    return 3 if failed else 0


# ---------------------------------------------------------------------------------------------------------------
# Measuring a run
# ---------------------------------------------------------------------------------------------------------------
def tail_mean(run: report.Run, tag: str, log10: bool = False) -> float | None:
    """Mean of the last tenth (at least one) of a logged scalar's values (of their log10 with `log10`)."""
    values = run.scalars.get(tag)
    if values is None or not len(values):
        return None
    tail = values[-max(1, len(values) // 10):, 2]
    return float(np.mean(np.log10(np.maximum(tail, 1e-30)) if log10 else tail))


def grad_norms(run: report.Run) -> dict[int, float]:
    """{layer: log10 gradient norm at the end} of charts/critic_grad_norm/layer{i}."""
    prefix = "charts/critic_grad_norm/layer"
    layers = sorted(int(t[len(prefix):]) for t in run.scalars if t.startswith(prefix) and t[len(prefix):].isdigit())
    return {i: tail_mean(run, f"{prefix}{i}", log10=True) for i in layers}


def slope(norms: dict[int, float]) -> float | None:
    """Least-squares slope of log10 gradient norm against the layer index: decades per layer (Figure 1b: the norm
    "either grows or decays exponentially as we move farther back in the network" under clipping)."""
    points = [(layer, v) for layer, v in norms.items() if v is not None and np.isfinite(v)]
    if len(points) < 2:
        return None
    x, y = np.array(points, dtype=np.float64).T
    return float(np.polyfit(x, y, 1)[0])


class Measure:
    """Our numbers of one run folder, by table kind (FCN-scores cached in RUNS_DIR/metrics_cache/ as FIDs are)."""

    def __init__(self, scorer: report.Scorer):
        self.scorer = scorer
        self.fcn_model = None
        self.fcn_error = ""

    def segmenter(self):
        """fcn_score.py's segmenter, loaded once; None (and fcn_error says why) when it cannot be."""
        if self.fcn_model is None and not self.fcn_error:
            try:
                fcn = fcn_module()
                self.fcn_model = fcn.load()
            except Exception as e:  # missing or retrained weights: the FCN tables say so, the others go on
                self.fcn_error = f"{type(e).__name__}: {e}"
        return self.fcn_model

    def fcn(self, npz: Path, real: bool = False) -> dict:
        """FCN-score of a translations.npz's generated photos, or (`real`) of its real test photos (the ceiling)."""
        model = self.segmenter()
        if model is None:
            return {"error": f"FCN-score unavailable: {self.fcn_error}"}
        stat = npz.stat()
        weights = getattr(fcn_module(), "WEIGHTS_SHA256", "")  # a retrained segmenter scores again
        key = f"{stat.st_size}:{stat.st_mtime_ns}:{weights}:{'real' if real else 'generated'}"
        name = f"fcn__{npz.parent.name}__{'real' if real else 'generated'}"
        return self.scorer.cached(name, key, functools.partial(fcn_of, npz, model, real))

    def run(self, kind: str, run: report.Run) -> dict:
        """{metric: value, 'grid': last samples PNG, ...} of one run; {'error': ...} when its artefacts are missing."""
        out = {"run": run.path.name, "commit": run.commit(), "grid": str(report.last_grid(run) or "")}
        try:
            if kind == "fcn":
                npz = run.path / "translations.npz"
                if not npz.exists():
                    return {**out, "error": "no translations.npz (failed run?)"}
                return {**out, **self.fcn(npz)}
            report.load_events(run)
            samples = run.path / "samples.npz"
            if samples.exists():  # FID only (KID's 100 subsets would cost more than the rest of the report)
                out["fid"] = self.scorer.score_file(f"{run.path.name}__fid", samples, run.dataset,
                                                    kid_subsets=0)["samples"]["fid"]
            if kind == "infogan":
                mi = run.scalars.get("charts/mi_lower_bound")
                c1 = run.scalars.get("charts/c1_test_error")
                out.update(mi_lower_bound=tail_mean(run, "charts/mi_lower_bound"),
                           c1_test_error=float(c1[-1, 2]) if c1 is not None and len(c1) else None,
                           mi_curve=mi[:, [0, 2]].tolist() if mi is not None else [])
            else:
                norms = grad_norms(run)
                out.update(grad_norms=norms, grad_slope=slope(norms),
                           fid_curve=[(p["iteration"], p["fid"]) for p in self.scorer.curve(run) if "fid" in p])
            return out
        except Exception as e:  # one bad artefact must not sink the report
            return {**out, "error": f"{type(e).__name__}: {e}"}


def fcn_module():
    """benchmarks/fcn_score.py (imported here so that the other tables never need it)."""
    try:
        from benchmarks import fcn_score
    except ImportError:
        import fcn_score
    return fcn_score


def fcn_of(npz: Path, model, real: bool) -> dict:
    """FCN-score of a translations.npz; `real`: of its real test photos (targets) against the same label maps."""
    fcn = fcn_module()
    if not real:
        return fcn.score_translations(npz, model)
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    inputs, _ = fcn.find_labels_to_photo(arrays)
    targets = inputs.replace("inputs", "targets")
    if targets not in arrays:
        raise ValueError(f"{npz}: no {targets} (the test split is not paired)")
    return {**fcn.score(arrays[targets], fcn.classes_from_label_maps(arrays[inputs]), model), "n": len(arrays[targets])}


# ---------------------------------------------------------------------------------------------------------------
# Orderings
# ---------------------------------------------------------------------------------------------------------------
def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def ordering_text(names: list[str], values: list[float], higher_is_better: bool) -> str:
    """`A > B = C`: names from best to worst, ties joined by `=`."""
    order = sorted(range(len(names)), key=lambda i: -values[i] if higher_is_better else values[i])
    text = names[order[0]]
    for prev, i in zip(order, order[1:], strict=False):
        text += (" = " if values[i] == values[prev] else " > ") + names[i]
    return text


def claim_value(claim: Claim, numbers: dict) -> float:
    """The number a claim orders rows by: the metric, or its magnitude for the gradient-norm slope (Figure 1b's
    claim is that the norms neither grow nor decay, whichever the sign)."""
    value = float(numbers[claim.metric])
    return abs(value) if claim.metric == "grad_slope" else value


def metric_format(metric: str) -> str:
    return next((spec for columns in OURS.values() for key, _, spec in columns if key == metric), ".3g")


def ordering_sentences(table: Table, results: dict[str, dict], seeds: tuple[int, ...]) -> list[str]:
    """For each of the table's claims: one sentence that our ordering agrees with the paper's, or sentences naming
    each pair of rows that comes out the other way round, in the mean over seeds and in which seeds."""
    out = []
    for c, claim in enumerate(table.claims):
        ranked = [r for r in table.rows if len(r.rank) > c and r.rank[c] is not None]
        ours = {r.name: results[r.name]["seeds"] for r in ranked}
        ours = {n: {s: claim_value(claim, v) for s, v in per_seed.items() if v.get(claim.metric) is not None}
                for n, per_seed in ours.items()}
        have = [r for r in ranked if ours[r.name]]
        missing = [r.name for r in ranked if not ours[r.name]]
        if len(have) < 2:
            out.append(f"No ordering by {claim.label}: fewer than two rows have results.")
            continue
        used = sorted({s for r in have for s in ours[r.name]})
        seed_words = f"seed{'s' if len(used) > 1 else ''} {and_list([str(s) for s in used])}"
        mean = {r.name: float(np.mean(list(ours[r.name].values()))) for r in have}
        sign = 1.0 if claim.higher_is_better else -1.0
        swapped = []
        for a in have:
            for b in have:
                if a.rank[c] > b.rank[c] and sign * (mean[a.name] - mean[b.name]) < 0:  # the paper: a better than b
                    in_seeds = [s for s in used if s in ours[a.name] and s in ours[b.name]
                                and sign * (ours[a.name][s] - ours[b.name][s]) < 0]
                    swapped.append((a, b, in_seeds))
        paper_order = ordering_text([r.name for r in have], [r.rank[c] for r in have], True)
        our_order = ordering_text([r.name for r in have], [mean[r.name] for r in have], claim.higher_is_better)
        note = f" {and_list(missing)} {'have' if len(missing) > 1 else 'has'} no results yet." if missing else ""
        if not swapped:
            out.append(f"By {claim.label}, our ordering (mean over {seed_words}: {our_order}) agrees with the "
                       f"paper's ({paper_order}; {claim.source}).{note}")
            continue
        out.append(f"By {claim.label}, our ordering differs from the paper's: the paper has {paper_order} "
                   f"({claim.source}); our mean over {seed_words} has {our_order}.{note}")
        for a, b, in_seeds in swapped:
            where = (f"in seed{'s' if len(in_seeds) > 1 else ''} {and_list([str(s) for s in in_seeds])}"
                     if in_seeds else "in the mean only, in no single seed")
            spec = metric_format(claim.metric)
            per_seed = "; ".join(f"seed {s}: {ours[a.name].get(s, float('nan')):{spec}} vs "
                                 f"{ours[b.name].get(s, float('nan')):{spec}}" for s in used)
            shown = f"|{claim.metric}|" if claim.metric == "grad_slope" else claim.metric
            out.append(f"The paper puts {a.name} above {b.name}; ours puts {b.name} above {a.name} {where} "
                       f"({shown} {per_seed}).")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------
def band(curves: list[list]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, mean, min, max) of per-seed (step, value) curves, interpolated onto the first seed's steps."""
    curves = [np.asarray(c, dtype=np.float64) for c in curves if len(c)]
    if not curves:
        return None
    steps = curves[0][:, 0]
    values = np.stack([np.interp(steps, c[:, 0], c[:, 1]) for c in curves])
    return steps, values.mean(0), values.min(0), values.max(0)


def plot_infogan(table: Table, results: dict[str, dict], out: Path) -> bool:
    """L_I over iterations per row (mean over seeds, min-max band), H(c1) = ln 10 dashed: the paper's Figure 1."""
    fig = Figure(figsize=(6.0, 3.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, row in enumerate(table.rows):
        reduced = band([s.get("mi_curve", []) for s in results[row.name]["seeds"].values()])
        if reduced is None:
            continue
        steps, mean, lo, hi = reduced
        ax.plot(steps, mean, lw=1.5, color=f"C{i}", label=row.name)
        ax.fill_between(steps, lo, hi, color=f"C{i}", alpha=0.2)
        drawn = True
    if not drawn:
        return False
    ax.axhline(np.log(10), ls="--", lw=1, color="k", label="H(c1) = ln 10 ≈ 2.30")
    ax.set_xlabel("iteration", fontsize=9)
    ax.set_ylabel("L_I (nats)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("InfoGAN Figure 1, ours: L_I over training (mean over seeds; band: min-max)", fontsize=9)
    fig.savefig(out)
    return True


def plot_wgan_gp(table: Table, results: dict[str, dict], out: Path) -> bool:
    """Left: the critic's gradient norm per layer at the end, log scale (the paper's Figure 1b); right: FID over
    iterations (its Figure 3's question on MNIST). Mean over seeds, min-max bars and bands."""
    fig = Figure(figsize=(10, 3.6), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    drawn = False
    for i, row in enumerate(table.rows):
        seeds = results[row.name]["seeds"].values()
        norms = [s["grad_norms"] for s in seeds if s.get("grad_norms")]
        layers = sorted({int(k) for n in norms for k in n})
        if layers:
            per_layer = [[n[k] for n in norms for k in n if int(k) == layer and n[k] is not None] for layer in layers]
            mean = np.array([np.mean(v) if v else np.nan for v in per_layer])
            lo = np.array([np.min(v) if v else np.nan for v in per_layer])
            hi = np.array([np.max(v) if v else np.nan for v in per_layer])
            left.errorbar(layers, 10 ** mean, yerr=[10 ** mean - 10 ** lo, 10 ** hi - 10 ** mean], marker="o", ms=4,
                          lw=1.2, capsize=2, color=f"C{i}", label=row.name)
            drawn = True
        reduced = band([s.get("fid_curve", []) for s in seeds])
        if reduced is not None:
            steps, mean_fid, lo_fid, hi_fid = reduced
            right.plot(steps, mean_fid, lw=1.5, marker=".", color=f"C{i}", label=row.name)
            right.fill_between(steps, lo_fid, hi_fid, color=f"C{i}", alpha=0.15)
            drawn = True
    if not drawn:
        return False
    left.set_yscale("log")
    left.set_xticks(sorted({int(k) for r in results.values() for s in r["seeds"].values()
                            for k in s.get("grad_norms", {})}))
    left.set_xlabel("critic layer (1 = input side)", fontsize=9)
    left.set_ylabel("‖∂L/∂h‖, h a layer's input, at the end (log scale)", fontsize=9)
    right.set_yscale("log")
    right.set_xlabel("iteration", fontsize=9)
    right.set_ylabel("FID ↓ (log scale)", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("WGAN-GP Figure 1b, ours: gradient norms through the critic (left) and FID over training (right)",
                 fontsize=9)
    fig.savefig(out)
    return True


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------
def collect(runs_dir: Path, seeds: tuple[int, ...], preset: str, measure: Measure) -> dict:
    """{table key: {'rows': {row name: {'exp', 'flags', 'seeds': {seed: numbers}, 'summary'}}, 'ceiling'}}."""
    found = report.find_runs(runs_dir)
    measured: dict[tuple[str, int], dict] = {}
    doc = {}
    for table in TABLES:
        rows = {}
        for row in table.rows:
            flags = row_flags(table, row, preset)
            try:
                exp = variant_name(row.script, flags)
            except ValueError as e:  # a flag the script does not have (yet)
                rows[row.name] = {"exp": "", "flags": flags, "seeds": {}, "summary": {}, "error": str(e)}
                continue
            per_seed = {}
            for seed in seeds:
                run = found.get(exp, {}).get(seed)
                if run is None:
                    continue
                if (exp, seed) not in measured:
                    print(f"[ablations] measuring {run.path.name}", file=sys.stderr, flush=True)
                    measured[exp, seed] = measure.run(table.kind, run)
                per_seed[seed] = measured[exp, seed]
            summary = {key: report.mean_std([s.get(key) for s in per_seed.values()]) for key, _, _ in OURS[table.kind]}
            rows[row.name] = {"exp": exp, "flags": flags, "seeds": per_seed, "summary": summary}
        ceiling = None
        if table.kind == "fcn":
            first = next((found[r["exp"]][s] for r in rows.values() for s in r["seeds"]
                          if (found[r["exp"]][s].path / "translations.npz").exists()), None)
            if first is not None:
                try:
                    ceiling = measure.fcn(first.path / "translations.npz", real=True)
                except Exception as e:
                    ceiling = {"error": f"{type(e).__name__}: {e}"}
        doc[table.key] = {"rows": rows, "ceiling": ceiling}
    return doc


def cell(stat: tuple[float, float] | None, spec: str, n: int) -> str:
    return report.fmt(stat, spec, seeds=n)


def render_table(table: Table, res: dict, seeds: tuple[int, ...], out: Path) -> list[str]:
    lines = [f"## {table.title}", "", f"*Paper*: {table.source}.", ""]
    if table.kind == "fcn":
        lines += [OUR_FCN, ""]
    if table.note:
        lines += [table.note, ""]
    ours = OURS[table.kind]
    header = ["row (the paper's words)", "flags", *[f"paper: {c}" for c in table.paper_columns],
              *[f"ours: {title}" for _, title, _ in ours]]
    if table.kind == "wgan_gp":
        header.insert(len(header) - len(ours), "ours: log10 ‖∂L/∂h‖, h each layer's input (1 → last)")
    body = []
    for row in table.rows:
        r = res["rows"][row.name]
        n = len(r["seeds"])
        cells = [row.name, f"`{' '.join(r['flags'])}`" if r["flags"] else "(defaults)", *row.paper]
        if table.kind == "wgan_gp":
            norms = [s["grad_norms"] for s in r["seeds"].values() if s.get("grad_norms")]
            layers = sorted({int(k) for nrm in norms for k in nrm})
            per_layer = [report.mean_std([nrm.get(k) for nrm in norms for k in nrm if int(k) == layer])
                         for layer in layers]
            cells.append(" / ".join(f"{m[0]:.1f}" for m in per_layer if m is not None) or "–")
        cells += [cell(r["summary"].get(key), spec, n) for key, _, spec in ours]
        body.append(cells)
    if table.kind == "fcn":
        ceiling = res.get("ceiling") or {}
        paper = list(table.ceiling) if table.ceiling else ["–"] * len(table.paper_columns)
        ours_cells = [f"{ceiling[key]:.3f}" if key in ceiling else "–" for key, _, _ in ours]
        body.append(["Ground truth" if table.ceiling else "(real photos: our ceiling)", "real test photos", *paper,
                     *ours_cells])
    lines += [report.md_table(header, body), ""]
    by_error: dict[str, list[str]] = {}  # one line per distinct error, naming the rows and seeds it hit
    for row in table.rows:
        r = res["rows"][row.name]
        if "error" in r:
            by_error.setdefault(r["error"], []).append(row.name)
        for s, v in r["seeds"].items():
            if "error" in v:
                by_error.setdefault(v["error"], []).append(f"{row.name} seed {s}")
    if table.kind == "fcn" and res.get("ceiling") and "error" in res["ceiling"]:
        by_error.setdefault(res["ceiling"]["error"], []).append("the real photos")
    errors = [f"{and_list(where)}: {error}" for error, where in by_error.items()]
    missing = [row.name for row in table.rows if not res["rows"][row.name]["seeds"]
               and "error" not in res["rows"][row.name]]
    if missing:
        errors.append(f"no runs yet for {and_list(missing)} (seeds {', '.join(map(str, seeds))})")
    if errors:
        lines += ["Not measured: " + "; ".join(errors) + ".", ""]
    lines += [" ".join(ordering_sentences(table, res["rows"], seeds)), ""]
    for name in (f"{table.key}.png", f"{table.key}_grids.png"):
        if (out / name).exists():
            lines += [f"![{table.title}]({name})", ""]
    return lines


def write_report(runs_dir: Path, results_dir: Path, data_dir: str, seeds: tuple[int, ...], preset: str,
                 classifier: str | None = None, retrain: bool = False, scorer: report.Scorer | None = None) -> dict:
    """results_dir/report.md (and ablations.json, the figures, one montage of final grids per table) from the runs
    in runs_dir: each table with the paper's columns and ours, and the ordering sentences."""
    results_dir.mkdir(parents=True, exist_ok=True)
    scorer = scorer or report.Scorer(data_dir, runs_dir, weights=classifier, retrain=retrain)
    measure = Measure(scorer)
    doc = collect(runs_dir, seeds, preset, measure)
    for table in TABLES:
        res = doc[table.key]
        for stale in (f"{table.key}.png", f"{table.key}_grids.png"):
            (results_dir / stale).unlink(missing_ok=True)
        if table.kind == "infogan":
            plot_infogan(table, res["rows"], results_dir / f"{table.key}.png")
        if table.kind == "wgan_gp":
            plot_wgan_gp(table, res["rows"], results_dir / f"{table.key}.png")
        grids = {}
        for row in table.rows:
            first = next(iter(res["rows"][row.name]["seeds"].values()), {})
            if first.get("grid"):
                grids[row.name] = Path(first["grid"])
        if grids:
            report.plot_montage(grids, results_dir / f"{table.key}_grids.png", cols=min(5, len(grids)), max_px=260)
    jobs_path = runs_dir / "ablations.json"
    meta = json.loads(jobs_path.read_text()) if jobs_path.exists() else {}
    commits = sorted({s["commit"] for t in doc.values() for r in t["rows"].values() for s in r["seeds"].values()
                      if s.get("commit")})
    lines = ["# The papers' ablations beside ours", "",
             f"Preset `{preset}`; seeds {', '.join(map(str, seeds))} (mean ± sample std over the seeds that ran); "
             f"commit(s) {', '.join(f'`{c}`' for c in commits) or 'unknown'}; generated "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}.", "",
             f"Rerun: `python benchmarks/run.py --preset {preset} --data-dir DATA` (`--skip-training`: this report "
             "from the runs already there). Budget flags, then each row's flags:", ""]
    for script, flags in BUDGETS[preset].items():
        lines.append(f"- {script}: `{' '.join(flags)}`" if flags else f"- {script}: (the script's defaults)")
    if meta.get("rejected"):
        lines += ["", "Left out (the script rejects the flags): " + "; ".join(meta["rejected"]) + "."]
    lines.append("")
    for table in TABLES:
        lines += render_table(table, doc[table.key], seeds, results_dir)
    failed = [j for j in meta.get("jobs", []) if j.get("returncode") not in (0, None)]
    if failed:
        lines += ["## Failed runs", ""] + [f"- {j['script']} seed {j['seed']}: exit {j['returncode']}, log "
                                           f"`{j['log']}`" for j in failed] + [""]
    (results_dir / "report.md").write_text("\n".join(lines))
    (results_dir / "ablations.json").write_text(json.dumps({"preset": preset, "seeds": list(seeds), "tables": doc},
                                                           indent=1, default=float))
    print(f"[ablations] wrote {results_dir / 'report.md'}", flush=True)
    return doc
