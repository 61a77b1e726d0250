"""Every `python SCRIPT.py ...` command in README.md, docs/ and the experiment log parses and passes the script's own
argument checks (a renamed or removed flag, a value out of range, a bad combination), without running anything; and
each docs page explains exactly the metrics its script logs."""
import contextlib
import functools
import io
import re
import shlex
import sys

import pytest
import tyro
from common_block import SCRIPTS
from helpers import ROOT, load_script

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "results" / "experiments.md"]
INLINE = re.compile(r"`(?:[A-Z_]+=\S+ )*python (\w+)\.py([^`]*)`")  # may wrap over a line break in prose
BLOCK_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S+ )*python (\w+)\.py(.*)$", re.M)


def commands(text: str) -> list:
    """(script, flags) of each command: inline code, and lines of fenced code blocks (shell comments, pipes and
    redirections dropped)."""
    found = [(m.group(1), " ".join(m.group(2).split())) for m in INLINE.finditer(text)]
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        block = block.replace("\\\n", " ")  # continued lines
        found += [(m.group(1), m.group(2)) for m in BLOCK_LINE.finditer(block)]
    cleaned = []
    for name, rest in found:
        placeholder = "..." in rest or "<" in rest or re.search(r"(^|\s)[A-Z][A-Z_]*(\s|$)", rest)  # CKPT, M, <run>
        rest = re.split(r"\s#|&&|\||;|>", rest)[0].strip()
        if name in SCRIPTS and not placeholder:
            cleaned.append((name, shlex.split(rest)))
    return cleaned


@functools.cache
def script(name: str):
    """The script as a module, registered under its own name (tyro reads Args' field docstrings from its source)."""
    module = load_script(name)
    sys.modules[module.__name__] = module
    return module


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_on_the_page_parses_and_passes_the_scripts_checks(page):
    bad = []
    for name, flags in commands(page.read_text()):
        module = script(name)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                args = tyro.cli(module.Args, args=flags)
                if "--resume" not in flags:  # the checkpoint file would have to exist
                    module.check_args(args)
        except SystemExit as e:
            if e.code:
                bad.append(f"python {name}.py {' '.join(flags)}: {err.getvalue().strip()[-300:]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_logged_tag_is_explained_on_the_scripts_page(name):
    """Each literal losses/* and charts/* tag the script logs is in its page's "Explanation of the logged metrics",
    and each tag that section explains is logged (CycleGAN builds its per-domain tags: its section is checked
    against the names they are built from)."""
    source = (ROOT / f"{name}.py").read_text()
    page = (ROOT / "docs" / f"{name}.md").read_text()
    section = page.split("## Explanation of the logged metrics")[1].split("\n## ")[0]
    logged = set(re.findall(r'"((?:losses|charts)/\w+)"', source))
    explained = set(re.findall(r"(?:losses|charts)/\w+", section))
    assert logged <= explained, f"logged but not explained: {sorted(logged - explained)}"
    built = set()
    if name == "cyclegan":  # f"losses/{k}_{d}" for each term k and domain d, and f"losses/{k}" for their sums
        built = {tag for tag in explained - logged if f'"{re.sub(r"_[ab]$", "", tag.split("/")[1])}"' in source}
    assert explained - logged - built == set(), f"explained but never logged: {sorted(explained - logged - built)}"
