"""Every logged value of a short seeded tiny run equals the pinned one (tests/golden.py; regenerate only on purpose).

Where torch or the CPU differ from the machine that wrote the file, float results may differ in the last bits, so
values are then compared to a relative 1e-4 instead of exactly (a moved loss moves far more than that). A new tag may
be added (it moves no pinned number); a pinned one may not disappear."""
import json
import math

import pytest
from golden import CONFIGS, GOLDEN, environment, logged_values

PINNED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logged_values_equal_the_golden_ones(name):
    now, pinned = logged_values(name), PINNED["scripts"][name]
    assert set(pinned) <= set(now), f"pinned tags no longer logged: {sorted(set(pinned) - set(now))}"
    exact = PINNED["environment"] == environment()
    for tag, values in pinned.items():
        assert [s for s, _ in now[tag]] == [s for s, _ in values], f"{tag}: logged at other iterations"
        for (step, v), (_, w) in zip(values, now[tag], strict=True):
            same = v == w if exact else math.isclose(v, w, rel_tol=1e-4, abs_tol=1e-7)
            assert same, f"{name} {tag} at iteration {step}: golden {v!r}, now {w!r}"
