"""User-space instructions per message, counted by callgrind: a CPU measure
that does not move with the load of a shared machine.

    python3 -m bench.instructions                       # every filter, 1 and 10 msgs/conn
    python3 -m bench.instructions --compare-tree DIR    # also miltrd from another checkout

Each filter runs under ``valgrind --tool=callgrind`` with instrumentation
off; after a warm-up the count is switched on (``callgrind_control -i
on``), the Postfix-shaped generator (bench/postfixgen.py: Postfix's macros,
a new milter connection per SMTP session, 4 KiB messages) sends its
sessions one after another, and the count is dumped. Instructions per
message = the dump's total / messages. Kernel work (system calls, TCP on
loopback) is not counted, and the kernel's share is larger for a filter
written in C: read the figures beside ``bench.run``'s CPU per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import postfixgen as pg
from .run import FILTERS_HELP, Filter, compare_filters, make_filters

__all__ = ["count"]


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300  # start-up under valgrind is slow
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"filter on port {port} did not start") from None
            time.sleep(0.3)


async def _sessions(port: int, sessions: int, per_connection: int) -> pg.Result:
    headers, body = pg.make_message(4096)
    chunks = [pg.BodyChunk(body[i : i + 65535]) for i in range(0, len(body), 65535)]
    out = pg.Result()
    for _ in range(sessions):
        await pg._session("127.0.0.1", port, headers, chunks, per_connection, 1e18, 0, out)
    return out


def count(f: Filter, messages: int, per_connection: int, tmp: Path) -> tuple[float, int]:
    """(instructions per message, errors) for filter ``f``."""
    out = tmp / f"cg-{f.port}"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc = subprocess.Popen(
        argv + f.argv, env=f.env, cwd=f.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(f.port, proc)
        asyncio.run(_sessions(f.port, max(2, 20 // per_connection), per_connection))
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True)
        result = asyncio.run(_sessions(f.port, messages // per_connection, per_connection))
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    total = 0
    for dump in tmp.glob(f"cg-{f.port}*"):
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total / max(result.total, 1), result.errors


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.instructions", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--filters", default="c,pymilter,pymilter-nr,miltrd", help=FILTERS_HELP)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--per-connection", default="1,10")
    ap.add_argument("--compare-tree", type=Path)
    ap.add_argument("--compare-label", default="before")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="miltrd-instr-"))
    filters = make_filters(tmp, set(args.filters.split(",")))
    if args.compare_tree:
        filters += compare_filters(tmp, args.compare_tree, args.compare_label)
    print(
        "# user-space instructions per message (callgrind), 4 KiB, Postfix-shaped sessions"
        f" one after another, {args.messages} messages after a warm-up; python {sys.version.split()[0]}"
    )
    print("| filter | msgs per conn | instructions per msg | errors |")
    print("|---|---|---|---|")
    for per in (int(x) for x in args.per_connection.split(",")):
        for f in filters:
            ipm, errors = count(f, args.messages, per, tmp)
            print(f"| {f.name} | {per} | {ipm / 1e6:.2f} M | {errors} |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
