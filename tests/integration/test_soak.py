"""A short soak in the suite (the long one: python3 -m bench.soak, see README).

Messages through the full sample chain over many connections; after warm-up
the daemon's memory and file descriptors must not grow.
"""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = pytest.mark.integration


def test_no_growth_in_memory_or_descriptors() -> None:
    samples = soak(messages=15000, connections=16, slices=6)
    assert samples[-1][0] >= 15000
    warm = samples[2]
    last = samples[-1]
    assert last[2] <= warm[2], samples  # file descriptors
    assert last[1] <= warm[1] * 1.05, samples  # RSS within 5 % of the warmed-up value
