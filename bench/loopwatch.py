"""Run miltrd with the CPU time of every event-loop callback recorded.

    LOOPWATCH_OUT=/tmp/watch.json python3 -m bench.loopwatch run -c miltrd.toml

Whether one connection monopolises the loop is a question about the
longest stretches of CPU the loop spends in one callback (a task's step:
for a connection, one read and every command in it) while the others wait.
Wall time alone cannot tell that on a busy machine, where the process is
also descheduled in the middle of a callback; so each callback is timed
both ways, wall (perf_counter) and CPU (thread_time).

The arguments are miltrd's. On SIGUSR2 the figures since the last SIGUSR2
are written to ``$LOOPWATCH_OUT`` as JSON (``seq`` counts the dumps) and
the count starts again: bench/mixed.py sends one before and one after each
cell. Timing costs about a microsecond per callback.
"""

from __future__ import annotations

import asyncio.events
import gc
import json
import os
import runpy
import signal
import sys
import time
from typing import Any

_cpu: list[float] = []
_wall: list[float] = []
_seq = 0
# The longest callback (CPU) since the last dump, and what it was.
_longest = 0.0
_longest_what = ""
# The garbage collector's longest pause (CPU) since the last dump, by generation.
_gc_max = [0.0, 0.0, 0.0]
_gc_started = 0.0


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0


def _dump(*_: Any) -> None:
    global _cpu, _wall, _seq, _longest, _longest_what
    cpu, wall = sorted(_cpu), sorted(_wall)
    _cpu, _wall = [], []
    what, _longest, _longest_what = _longest_what, 0.0, ""
    gc_max = [round(t * 1000, 2) for t in _gc_max]
    _gc_max[:] = [0.0, 0.0, 0.0]
    _seq += 1
    figures = {
        "seq": _seq,
        "callbacks": len(cpu),
        "cpu_ms": {"p50": _pct(cpu, 0.5), "p99": _pct(cpu, 0.99), "p999": _pct(cpu, 0.999)},
        "cpu_max_ms": cpu[-1] * 1000 if cpu else 0.0,
        "cpu_max_what": what,
        "gc_max_ms": gc_max,
        "wall_ms": {"p99": _pct(wall, 0.99), "p999": _pct(wall, 0.999)},
        "wall_max_ms": wall[-1] * 1000 if wall else 0.0,
        "cpu_total_s": sum(cpu),
    }
    out = os.environ["LOOPWATCH_OUT"]
    with open(out + ".tmp", "w") as f:
        json.dump(figures, f)
    os.replace(out + ".tmp", out)


def _install() -> None:
    original = asyncio.events.Handle._run
    wall, cpu = time.perf_counter, time.thread_time

    def timed(self: asyncio.events.Handle) -> None:
        global _longest, _longest_what
        w, c = wall(), cpu()
        try:
            original(self)
        finally:
            spent = cpu() - c
            _cpu.append(spent)
            _wall.append(wall() - w)
            if spent > _longest:
                _longest = spent
                _longest_what = repr(self)[:300]

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def collecting(phase: str, info: dict[str, int]) -> None:
        global _gc_started
        if phase == "start":
            _gc_started = cpu()
        else:
            gen = info["generation"]
            _gc_max[gen] = max(_gc_max[gen], cpu() - _gc_started)

    gc.callbacks.append(collecting)
    signal.signal(signal.SIGUSR2, _dump)


def main() -> None:
    _install()
    # As "python -m miltrd" would have it: the working directory first.
    sys.path.insert(0, os.getcwd())
    sys.argv = ["miltrd", *sys.argv[1:]]
    runpy.run_module("miltrd", run_name="__main__", alter_sys=True)


def read(path: str, seq: int, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for dump number ``seq`` in ``path`` and return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                got: dict[str, Any] = json.load(f)
            if got["seq"] >= seq:
                return got
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no loop figures from the daemon in {path}")
        time.sleep(0.02)


if __name__ == "__main__":
    main()
