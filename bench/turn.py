"""What one loop turn costs while a connection streams a large body, without sockets.

    python3 -m bench.turn                        # this checkout
    python3 -m bench.turn --compare-tree DIR     # and another checkout, interleaved

The daemon serves a connection by reading at most 256 KiB (the connection's
READ_SIZE, and asyncio's own most per recv) and handling every command in
it before it waits again: that is one turn of the event loop spent on that
connection, and every other connection waits for it. This measures the
CPU time of such turns for a 10 MiB message: the bytes of a Postfix-shaped
session (bench/postfixgen.py) are fed to a real ``MilterHandler`` (engine,
chain, translation) in 256 KiB pieces, exactly as its read loop does, with
a writer that only counts bytes. Per piece: CPU microseconds (thread time).

Chains as in bench/mixed.py: ``observe-all`` (every phase hooked, the body
kept and spooled past 1 MiB; every phase no-reply) and the shipped chain
(which negotiates the body away: only set-up and end of message remain).

Reported, per chain: the median and the worst piece, and the CPU per MiB of
body, best of ``--repeat`` messages (the best: on a shared machine
everything else only adds time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PIECE = 256 * 1024
MiB = 1 << 20


class _Writer:
    """Enough of a StreamWriter for the handler: counts what it writes."""

    def __init__(self) -> None:
        self.written = 0
        self.transport = self

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    async def drain(self) -> None:
        return None


def _stream(protocol: int, lists: Any, size: int) -> bytes:
    from miltrd.protocol import (
        BodyChunk,
        Connect,
        Data,
        EndOfHeaders,
        EndOfMessage,
        Family,
        Helo,
        MacroStage,
        MailFrom,
        ProtocolFlag,
        Quit,
        RcptTo,
        encode_command,
    )

    from .postfixgen import CLIENT_ADDR, CLIENT_NAME, _Negotiated, make_message

    neg = _Negotiated(ProtocolFlag(protocol), lists)
    headers, body = make_message(size)
    qid = "4QTURN"
    steps = [
        neg.step(
            Connect(CLIENT_NAME, Family.INET, 40000, CLIENT_ADDR), "C", MacroStage.CONNECT, None
        ),
        neg.step(Helo(CLIENT_NAME), "H", MacroStage.HELO, None),
        neg.step(MailFrom("<sender@example.com>"), "M", MacroStage.ENVFROM, None),
        neg.step(RcptTo("<rcpt@example.com>"), "R", MacroStage.ENVRCPT, None),
        neg.step(Data(), "T", MacroStage.DATA, qid),
        *(neg.step(h, "L", None, qid) for h in headers),
        neg.step(EndOfHeaders(), "N", MacroStage.EOH, qid),
        *(
            neg.step(BodyChunk(body[i : i + 65535]), "B", None, qid)
            for i in range(0, len(body), 65535)
        ),
        neg.step(EndOfMessage(), "E", MacroStage.EOM, qid),
    ]
    return b"".join(s.data for s in steps) + encode_command(Quit())


async def _one_message(chain: str, size: int) -> list[float]:
    from miltrd.chain import build_runtime
    from miltrd.config import load_text
    from miltrd.protocol import ActionFlag, OptionNegotiation, ProtocolFlag, encode_command
    from miltrd.server import MilterHandler

    from .mixed import CHAINS
    from .postfixgen import POSTFIX_MACROS

    runtime = build_runtime(load_text('[daemon]\nlog_level = "warning"\n' + CHAINS[chain]))
    handler = MilterHandler(runtime, "turn")
    writer = _Writer()
    # What the read loop (or the inline read callback) runs per read; its
    # name before the inline server was private.
    drain = getattr(handler, "drain_events", None) or handler._drain_events
    handler.fc.receive_data(
        encode_command(OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)))
    )
    await drain(writer)  # type: ignore[arg-type]
    agreed = handler.fc.negotiated
    assert agreed is not None
    lists = dict(POSTFIX_MACROS)
    stream = _stream(int(agreed.protocol), lists, size)
    times = []
    clock = time.thread_time
    for i in range(0, len(stream), PIECE):
        piece = stream[i : i + PIECE]
        t0 = clock()
        handler.fc.receive_data(piece)
        await drain(writer)  # type: ignore[arg-type]
        times.append(clock() - t0)
    await handler.chain.close()
    return times


def measure(chain: str, size: int, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` messages: median and worst piece (µs), CPU per MiB (ms)."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        times = asyncio.run(_one_message(chain, size))
        got = {
            "median_us": statistics.median(times) * 1e6,
            "worst_us": max(times) * 1e6,
            "ms_per_mib": sum(times) / (size / MiB) * 1e3,
            "pieces": float(len(times)),
        }
        for key, value in got.items():
            best[key] = min(best.get(key, value), value)
    return best


def _child(tree: Path, chain: str, size: int, repeat: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{REPO}")
    code = (
        "import json, logging; logging.disable(logging.WARNING); from bench.turn import measure; "
        f"print(json.dumps(measure({chain!r}, {size}, {repeat})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10 * MiB, help="body bytes")
    parser.add_argument("--repeat", type=int, default=5, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-tree", type=Path, help="another checkout of miltrd")
    parser.add_argument("--compare-label", default="other")
    args = parser.parse_args(argv)
    trees = [("this checkout", REPO)]
    if args.compare_tree:
        trees.append((args.compare_label, args.compare_tree.resolve()))
    chains = ("observe-all", "shipped")
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(args.rounds):
        for chain in chains:
            for label, tree in trees:
                got = _child(tree, chain, args.size, args.repeat)
                prev = best.setdefault((label, chain), got)
                for key, value in got.items():
                    prev[key] = min(prev[key], value)
    print(
        f"# CPU per 256 KiB read (one loop turn) while a {args.size / MiB:g} MiB message streams "
        f"in; best of {args.rounds}x{args.repeat} messages, load average {os.getloadavg()[0]:.1f}"
    )
    print("| code | chain | reads | median µs | worst µs | CPU ms per MiB |")
    print("|---|---|---|---|---|---|")
    for chain in chains:
        for label, _ in trees:
            b = best[(label, chain)]
            print(
                f"| {label} | {chain} | {b['pieces']:.0f} | {b['median_us']:.0f} "
                f"| {b['worst_us']:.0f} | {b['ms_per_mib']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
