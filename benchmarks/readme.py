# Docs: docs/benchmarks.md
"""README.md's generated CPU table, between <!-- cpu-table:start --> and <!-- cpu-table:end -->: each script's CPU
line (run.CPU_LINES, exactly what `run.py --preset quick` runs), its minutes alone (speed.json), FID (pix2pix and
CycleGAN: L1), classes found and what its grid shows, from the quick report's metrics.json.

report.py writes it after the quick report (`--readme README.md`); alone, from the published report:
Usage: python benchmarks/readme.py [--results-dir benchmarks/results/quick] [--readme README.md]
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

try:  # `python benchmarks/readme.py` puts benchmarks/ on sys.path, `python -m benchmarks.readme` the repo root
    from benchmarks import figures, report
except ImportError:
    import figures
    import report

START, END = "<!-- cpu-table:start -->", "<!-- cpu-table:end -->"


def cpu_table(doc: dict, alone: dict, report_link: str = "") -> str:
    """The table and its notes from a quick report's metrics document and speed.json. A script whose recorded runs
    were made with other flags than its CPU line gets no numbers."""
    runner, speed, rows, counts = report.sibling("run"), report.sibling("speed"), [], set()
    for name, line in runner.CPU_LINES.items():
        ran = all(shlex.join(line.flags) in j.get("shell", "") for j in doc.get("jobs", []) if j["script"] == name)
        s = doc.get("scripts", {}).get(name, {}).get("summary", {}) if ran else {}
        i2i, iters = name in figures.LABELS_TO_PHOTO, runner.flag_value(line.flags, "--max-iters")
        quality = s.get(f"{figures.LABELS_TO_PHOTO[name]}/l1" if i2i else "fid")  # [mean, std, seeds scored]
        counts |= {quality[2]} if quality and len(quality) > 2 else set()  # older reports: [mean, std]
        minutes = speed.minutes(name, int(iters), alone) if name in alone.get("scripts", {}) and iters else None
        rows.append([name, f"`python {name}.py {shlex.join(line.flags)}`", report.fmt(minutes and [minutes], ".0f"),
                     ("L1 " if i2i and quality else "") + report.fmt(quality, ".3f" if i2i else ".0f"),
                     report.fmt(s.get("modes"), ".1f", seeds=1), line.shows or "–"])
    sha = doc.get("classifiers", {}).get("mnist", {}).get("sha256", "")
    minutes = (f"of {report.threads(alone)} alone (the it/s `benchmarks/speed.py` measured with nothing else "
               "running), training only" + (" (but measured on a busy machine: speed.py --force)" if alone.get(
                   "forced") else "") if alone.get("scripts") else "not measured yet (no speed.json)")
    seeds = (f"mean ± std over the {'/'.join(map(str, sorted(counts)))} seeds scored in the `quick` report" if counts
             else "none scored yet with these lines")
    return report.md_table(["script", "CPU command", "minutes", "FID ↓", "classes", "what the grid shows"], rows) + (
        f"\n\n*minutes*: {minutes}. *FID*: {seeds}" + (f" ([full report]({report_link}))" if report_link else "") +
        ", 10,000 samples against the MNIST test set in the committed classifier's feature space" +
        (f" (sha256 `{sha[:12]}…`)" if sha else "") + "; pix2pix and CycleGAN: the test split's L1, labels → photo. "
        "*classes*: digit classes with at least 1% of the samples (of 10), mean over seeds. –: not measured.")


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between START and END in `readme` with `table`; leave the file untouched and warn when the
    markers are missing (or out of order). True when the markers were found."""
    text = readme.read_text() if readme.exists() else ""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        print(f"[readme] warning: {readme} has no {START} ... {END} markers; its CPU table was not updated",
              file=sys.stderr)
        return False
    if (new := text[:start + len(START)] + "\n" + table.strip() + "\n" + text[end:]) != text:
        readme.write_text(new)
    return True


def write(readme: str | Path, doc: dict, alone: dict, results_dir: Path) -> bool:
    """README's CPU table from a report's metrics document and speed.json; True when written."""
    path = Path(readme)
    wrote = update_readme(path, cpu_table(doc, alone, os.path.relpath(Path(results_dir) / "report.md",
                                                                      path.resolve().parent)))
    if wrote:
        print(f"[readme] rewrote the CPU table in {path}", flush=True)
    return wrote


@dataclass
class Args:
    results_dir: str = ""
    """the quick report's folder: its metrics.json and speed.json (default benchmarks/results/quick)"""
    readme: str = ""
    """the README whose CPU table is rewritten (default: the repository's README.md)"""


def main(args: Args) -> int:
    results = Path(args.results_dir or report.ROOT / "benchmarks" / "results" / "quick")
    if not (results / "metrics.json").exists():
        print(f"readme.py: error: no {results / 'metrics.json'} (write the report first)", file=sys.stderr)
        return 2
    doc, alone = report.read_json(results / "metrics.json"), report.read_json(results / "speed.json")
    return 0 if write(args.readme or report.ROOT / "README.md", doc, alone, results) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
