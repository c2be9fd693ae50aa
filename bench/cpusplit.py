"""Filter CPU per message split into user and system time, at one connection.

    python3 -m bench.cpusplit                              # 4 KiB, this checkout
    python3 -m bench.cpusplit --size 262144 --compare-tree DIR

At one connection every milter round trip wakes the filter once, so what a
filter pays per wake-up (the kernel's loopback TCP, the scheduler, cold
caches) weighs most there, and a single run moves with the machine's load.
This runs each filter in turn for ``--seconds`` with the Postfix-shaped
generator (bench/postfixgen.py's sessions, replayed by bench/cgen.c unless
``--generator python``: one connection, a new milter connection per
message by default), ``--repeat`` rounds in which the filters alternate, so
that a change of load falls on all of them alike, and prints each round and
the medians: user and system milliseconds of the filter process per message
served (from /proc/PID/stat, utime and stime, in clock ticks of 10 ms: give
each cell a few seconds), and the ratios of miltrd's two rows to pymilter's
(``Reference`` to a reply per callback, ``Declared`` to ``@Milter.noreply``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from statistics import median

from . import cgen
from .cgen import run_sessions
from .run import FILTERS_HELP, FLOORS, Filter, compare_filters, make_filters, user_system

__all__ = ["cell"]

# Each row's pymilter peer: the same replies owed.
_PEERS = {
    "miltrd Reference": "pymilter",
    "miltrd Declared": "pymilter-noreply",
    **{
        label: "pymilter-noreply" if "--noreply" in options else "pymilter"
        for _name, options, label in FLOORS
    },
}


def cell(
    f: Filter, size: int, per_connection: int, seconds: float, c: bool = False
) -> tuple[float, float]:
    """(user ms, system ms) per message for one run of filter ``f``; with
    ``c``, driven by bench/cgen.c instead of bench/postfixgen.py."""
    assert f.proc is not None
    u0, s0 = user_system(f.proc.pid)
    result, _wall = run_sessions(
        f.port, c=c, connections=1, size=size, per_connection=per_connection, seconds=seconds
    )
    u1, s1 = user_system(f.proc.pid)
    served = max(result.total, 1)
    if result.errors:
        print(f"# {f.name}: {result.errors} errors")
    return (u1 - u0) / served * 1000, (s1 - s0) / served * 1000


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.cpusplit",
        description=__doc__,
        formatter_class=_Help,
    )
    ap.add_argument("--size", type=int, default=4096, help="message size in bytes")
    ap.add_argument("--per-connection", type=int, default=1, help="messages per milter connection")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per cell")
    ap.add_argument("--repeat", type=int, default=5, help="rounds, the filters alternating")
    ap.add_argument(
        "--filters",
        default="pymilter,pymilter-nr,miltrd",
        help=FILTERS_HELP,
    )
    ap.add_argument(
        "--generator",
        choices=("c", "python"),
        default="c",
        help="the Postfix-shaped client: bench/cgen.c (where gcc builds it) or "
        "bench/postfixgen.py (the same bytes)",
    )
    ap.add_argument("--compare-tree", type=Path, help="another checkout's miltrd rows too")
    ap.add_argument("--compare-label", default="before", help="their label")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cpusplit-"))
    filters = make_filters(tmp, set(args.filters.split(",")))
    if args.compare_tree:
        filters += compare_filters(tmp, args.compare_tree, args.compare_label)
    runs: dict[str, list[tuple[float, float]]] = {f.name: [] for f in filters}
    c = cgen.chosen(args.generator)
    print(
        f"# {args.size // 1024} KiB, 1 connection, {args.per_connection} msgs per milter "
        f"connection, {args.seconds:g} s per cell, {args.repeat} alternating rounds, "
        f"generator {'bench/cgen.c' if c else 'bench/postfixgen.py'}"
    )
    try:
        for f in filters:
            f.start()
        for n in range(args.repeat):
            for f in filters:
                user, system = cell(f, args.size, args.per_connection, args.seconds, c)
                runs[f.name].append((user, system))
                print(f"# round {n + 1} {f.name}: user {user:.3f} sys {system:.3f} ms/msg")
    finally:
        for f in filters:
            f.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    totals: dict[str, float] = {}
    print("| filter | user ms/msg | system ms/msg | total ms/msg (median of totals) |")
    print("|---|---|---|---|")
    for name, values in runs.items():
        totals[name] = median(u + s for u, s in values)
        user = median(u for u, _ in values)
        system = median(s for _, s in values)
        print(f"| {name} | {user:.3f} | {system:.3f} | {totals[name]:.3f} |")
    for name, total in totals.items():
        peer = _PEERS.get(name.split(" @")[0])
        if peer in totals:
            print(f"# {name} / {peer}: {total / totals[peer]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
