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
    assert last[1] <= warm[1] * 1.10, samples  # RSS within 10 % of the warmed-up value


def test_bursts_of_idle_connections_do_not_grow_memory(tmp_path) -> None:
    import asyncio
    import time

    from bench.memory import _idle, _start, _status

    proc, port = _start(
        tmp_path, '[chain]\nplugins = ["ref"]\n[plugins.ref]\nuse = "bench.benchplugin:Declared"\n'
    )
    try:
        after = []
        for _ in range(5):

            async def burst() -> None:
                held = await _idle(port, 500)
                for writer in held:
                    writer.close()  # type: ignore[attr-defined]

            asyncio.run(burst())
            time.sleep(0.5)
            after.append(_status(proc.pid, "VmRSS"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The first burst warms the allocator; later bursts reuse that memory.
    assert after[-1] - after[1] < 3 * 1024 * 1024, after
