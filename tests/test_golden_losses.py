"""Every logged value of a short seeded tiny run equals the pinned one (tests/golden.py; regenerate only on purpose).

The run is the first TEST_ITERS iterations of the pinned run (all of it for most scripts): every value it logs is
compared with the pinned value at the same iteration, and every pinned tag must be among them (`python
tests/golden.py --check` compares whole pinned runs). Where torch or the CPU differ from the machine that wrote the
file, float results may differ in the last bits, so values are then compared to a relative 1e-4 instead of exactly (a
moved loss moves far more than that). A new tag may be added (it moves no pinned number); a pinned one may not
disappear."""
import json
import math

import pytest
from golden import CONFIGS, GOLDEN, ITERS, TEST_ITERS, environment, logged_values

PINNED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logged_values_equal_the_golden_ones(name):
    n = TEST_ITERS.get(name, ITERS)
    now, pinned = logged_values(name, n), PINNED["scripts"][name]
    assert set(pinned) <= set(now), f"pinned tags no longer logged: {sorted(set(pinned) - set(now))}"
    exact = PINNED["environment"] == environment()
    for tag, values in pinned.items():
        values = [[s, v] for s, v in values if s <= n]  # the pinned run's first n iterations
        assert values, f"{tag}: pinned at iterations past {n} only; the test must run longer"
        assert [s for s, _ in now[tag]] == [s for s, _ in values], f"{tag}: logged at other iterations"
        for (step, v), (_, w) in zip(values, now[tag], strict=True):
            same = v == w if exact else math.isclose(v, w, rel_tol=1e-4, abs_tol=1e-7)
            assert same, f"{name} {tag} at iteration {step}: golden {v!r}, now {w!r}"
