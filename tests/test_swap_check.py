"""tests/swap_check.py (the mutation check of the learning-signal tests, run by hand) still finds what it swaps: a
refactor that rewrites one of its lines must update the tool, or the tool stops at that script."""
import pytest
from helpers import ROOT
from swap_check import SWAPS

SCRIPTS = ["gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan"]


def test_every_script_has_a_forward_and_a_loss_swap():
    assert sorted(SWAPS) == sorted(SCRIPTS) and all(len(pair) == 2 for pair in SWAPS.values())


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_swap_matches_its_script_once_and_changes_it(name):
    text = (ROOT / f"{name}.py").read_text()
    for old, new in SWAPS[name]:
        assert text.count(old) == 1, f"{name}: swap_check.py's line is not in the script once: {old!r}"
        assert new != old
