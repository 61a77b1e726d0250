"""The README's CPU commands are commands each script accepts: a renamed or mistyped flag fails here."""
import re
import shlex

import pytest
import tyro
from common_block import block
from helpers import ROOT, load_script

SCRIPTS = ["gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan"]


def cpu_commands() -> dict:
    """{script: argv} from the `python X.py ...` cells of the README's "On a CPU, in minutes" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## On a CPU, in minutes", 1)[1].split("\n## ", 1)[0]
    commands = {}
    for line in section.splitlines():
        match = re.match(r"\| [^|]+ \| `python (\w+)\.py([^`]*)` \|", line)
        if match:
            commands[match.group(1)] = shlex.split(match.group(2))
    return commands


def test_every_script_has_one_cpu_line():
    assert sorted(cpu_commands()) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_cpu_line_parses_and_passes_the_scripts_checks(name):
    argv = cpu_commands()[name]
    assert "--max-iters" in argv, f"{name}: a CPU line names its budget"
    module = load_script(name)
    args = tyro.cli(module.Args, args=argv)
    module.check_args(args)  # exits with one line (SystemExit) on a bad combination
    assert args.max_iters > 0


def test_scripts_table_gives_each_files_lines():
    """The README's "lines" cells (its own + its data block (image-data or image-to-image) + common block) are the
    files' current counts."""
    text = (ROOT / "README.md").read_text()
    for name in SCRIPTS:
        cell = re.search(rf"\[{name}\.py\]\({name}\.py\) \(\[docs\]\(docs/{name}\.md\)\) \| ([\d +]+) \|", text)
        assert cell, f"{name}: no row in the README's scripts table"
        total = len((ROOT / f"{name}.py").read_text().splitlines())
        blocks = [len(b.splitlines()) for b in (block(name, "image"), block(name, "i2i"), block(name)) if b]
        expected = " + ".join(str(n) for n in [total - sum(blocks), *blocks])
        assert cell.group(1).strip() == expected, f"{name}: README {cell.group(1).strip()}, the file {expected}"
