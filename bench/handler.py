"""miltrd's cost above the socket: a whole Postfix-shaped session through a
``MilterHandler`` (engine, handler, chain, the bench plugin), in process.

    python3 -m bench.handler                       # instructions per session, callgrind
    python3 -m bench.handler --compare-tree DIR    # also from another checkout
    python3 -m bench.handler --run N --cls C       # N sessions, nothing printed
                                                   # (what callgrind runs)

A session is bench/engine.py's (OPTNEG, CONNECT, HELO, MAIL, RCPT, DATA,
ten headers, EOH, the body, EOM, each with Postfix's macros, then QUIT),
fed as Postfix writes it to a new ``MilterHandler`` (a new milter connection
per message, as Postfix opens one per SMTP session), whose replies go to a
writer that keeps nothing. ``Reference`` gets the session a reply-per-step
negotiation brings, ``Declared`` the no-reply one.

What this leaves out, beside the kernel: the event loop, the connection's
task and its set-up and tear-down (bench/instructions.py counts those, on
a live daemon). What it gives is the figure a change to the engine, the
handler or the chain moves, without a daemon or the machine's load in it:
valgrind runs this module twice, with ``--sessions`` and with twice as
many, and the difference divided by the extra sessions is the count per
session (start-up and imports cancel out).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Reference", "Declared")


class _Writer:
    """What a handler writes to: counts nothing, keeps nothing."""

    def __init__(self) -> None:
        self.transport = self
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def run(sessions: int, cls: str) -> None:
    """``sessions`` one-message sessions through new handlers of a chain of
    bench/benchplugin.py's ``cls``."""
    from bench.engine import session_writes
    from miltrd.chain import build_runtime
    from miltrd.config import load_text
    from miltrd.server import MilterHandler

    writes = session_writes(4096, "reference" if cls == "Reference" else "declared")
    chain = f'[chain]\nplugins = ["ref"]\n[plugins.ref]\nuse = "bench.benchplugin:{cls}"\n'
    runtime = build_runtime(load_text(chain))
    for _ in range(sessions):
        handler = MilterHandler(runtime, "bench")
        writer = _Writer()
        for data in writes:
            handler.fc.receive_data(data)
            handler.drain_now(writer)  # type: ignore[arg-type]


def _callgrind(sessions: int, cls: str, tree: Path) -> int:
    # Imported here: the run under valgrind executes this file by path, as
    # a script, where a relative import cannot work.
    from .engine import callgrind_total

    # Run from the tree, so that miltrd, bench/benchplugin.py and the
    # session (bench/engine.py) are the tree's; this file is run by path.
    script = (
        "import runpy, sys; "
        f"sys.argv = ['handler', '--run', '{sessions}', '--cls', '{cls}']; "
        f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    )
    return callgrind_total(["-c", script], cwd=tree)


def count(cls: str, sessions: int, tree: Path = REPO) -> float:
    """Instructions per session for ``cls`` with miltrd from ``tree``."""
    _callgrind(2, cls, tree)  # compiles the tree's bytecode first: not counted
    base = _callgrind(sessions, cls, tree)
    return (_callgrind(2 * sessions, cls, tree) - base) / sessions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.handler",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--cls", choices=CLASSES, action="append")
    parser.add_argument("--sessions", type=int, default=500, help="base count (default: 500)")
    parser.add_argument("--compare-tree", type=Path, help="another checkout's miltrd as well")
    parser.add_argument("--compare-label", default="before")
    parser.add_argument("--run", type=int, help="run N sessions and exit (under callgrind)")
    args = parser.parse_args(argv)
    classes = args.cls or list(CLASSES)
    if args.run is not None:
        run(args.run, classes[0])
        return 0
    trees = [("", REPO)]
    if args.compare_tree:
        trees.append((f" @{args.compare_label}", args.compare_tree.resolve()))
    print("| miltrd chain | instructions per session (one message) |")
    print("|---|---|")
    for cls in classes:
        for label, tree in trees:
            print(f"| {cls}{label} | {count(cls, args.sessions, tree):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
