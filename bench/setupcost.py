"""What one MTA connection costs miltrd beyond its messages: user-space
instructions (callgrind) and system calls (strace) per connection.

    python3 -m bench.setupcost                          # this checkout
    python3 -m bench.setupcost --tree DIR --tree DIR2   # several, interleaved

For each checkout, miltrd ``Declared`` (bench/benchplugin.py) is counted
as bench/instructions.py counts it, with a new milter connection per
message and with ten messages per connection; the runs of the checkouts
alternate, ``--repeat`` times, so that a change of load on a shared
machine (which moves how the generator's packets batch into reads, and so
the counts a little) falls on all of them alike. Per connection =
(per message at 1 - per message at 10) * 10 / 9.

``--syscalls`` also runs each checkout under ``strace -c -f`` (attached
after a warm-up) for the same sessions and prints system calls per
connection by name: kernel work callgrind does not see.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from .instructions import _sessions, _wait, count
from .run import REFERENCE_CHAIN, REPO, Filter, miltrd_filter

__all__ = ["per_connection", "syscalls"]


def _declared(tree: Path, tmp: Path) -> Filter:
    return miltrd_filter("miltrd Declared", REFERENCE_CHAIN.format(cls="Declared"), tmp, tree=tree)


def per_connection(at1: float, at10: float) -> float:
    """Instructions per connection from per-message counts at 1 and 10 messages per connection."""
    return (at1 - at10) * 10 / 9


def syscalls(f: Filter, connections: int) -> dict[str, float]:
    """System calls per connection by name, ``connections`` one-message sessions."""
    proc = subprocess.Popen(
        f.argv, env=f.env, cwd=f.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    out = Path(tempfile.mkstemp(prefix="miltrd-strace-")[1])
    try:
        _wait(f.port, proc)
        asyncio.run(_sessions(f.port, 20, 1))
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-o", str(out), "-p", str(proc.pid)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # strace attaches to every thread
        asyncio.run(_sessions(f.port, connections, 1))
        time.sleep(0.3)
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    calls: dict[str, float] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3]) / connections
    out.unlink()
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, action="append", help="a checkout (default: this one)")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--syscalls", action="store_true")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    trees = [t.resolve() for t in args.tree or [REPO]]
    tmp = Path(tempfile.mkdtemp(prefix="miltrd-setupcost-"))
    counts: dict[tuple[Path, int], list[float]] = {}
    for _ in range(args.repeat):
        for per in (1, 10):
            for tree in trees:
                ipm, errors = count(_declared(tree, tmp), args.messages, per, tmp)
                if errors:
                    print(f"# {tree}: {errors} errors at {per} per connection", file=sys.stderr)
                counts.setdefault((tree, per), []).append(ipm)
    print(
        f"# miltrd Declared, callgrind, 4 KiB Postfix-shaped sessions one after another,"
        f" {args.messages} messages per run, medians of {args.repeat} interleaved runs;"
        f" python {sys.version.split()[0]}"
    )
    print("| checkout | instr/msg at 1 msg/conn | at 10 | per connection |")
    print("|---|---|---|---|")
    for tree in trees:
        at1, at10 = median(counts[(tree, 1)]), median(counts[(tree, 10)])
        print(
            f"| {tree} | {at1 / 1e6:.3f} M | {at10 / 1e6:.3f} M"
            f" | {per_connection(at1, at10) / 1e3:.0f} K |"
        )
    if args.syscalls:
        if not shutil.which("strace"):
            print("needs strace for --syscalls", file=sys.stderr)
            return 2
        print("\n| checkout | system calls per connection (1 msg/conn) |")
        print("|---|---|")
        for tree in trees:
            calls = syscalls(_declared(tree, tmp), args.messages)
            detail = ", ".join(f"{name} {n:.2f}" for name, n in sorted(calls.items()))
            print(f"| {tree} | {sum(calls.values()):.1f}: {detail} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
