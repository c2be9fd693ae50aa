"""The protocol engine's own cost for whole Postfix-shaped sessions, without sockets.

    python3 -m bench.engine                      # µs per session, timeit, best of many
    python3 -m bench.engine --instructions       # instructions per session, callgrind
    python3 -m bench.engine --run N --size S --mode M --piece P
                                                 # N sessions, nothing printed
                                                 # (what callgrind runs)

One session is what bench/postfixgen.py sends on one milter connection for
one message: OPTNEG, then CONNECT, HELO, MAIL, RCPT, DATA, ten headers,
EOH, the body in 64 KiB chunks and EOM, each with the macros Postfix 3.7
sends, and QUIT. It reaches a ``FilterConnection`` in the writes Postfix
makes (each write ends where a reply is owed). The filter answers as the
daemon does: ``negotiate`` for OPTNEG, ``macros()`` after each macro
packet, ``Continue`` for every reply owed and, at EOM, ``AddHeader`` then
``Continue``.

Modes: ``reference`` negotiates what miltrd's ``Reference`` chain asks
(a reply per step), ``declared`` what ``Declared`` asks (no-reply for
every step but end of message).

``--instructions`` runs this module under ``valgrind --tool=callgrind``
twice, with ``--sessions`` and with twice as many, and reports the
difference divided by the extra sessions: interpreter start-up and imports
cancel out, and the count does not move with the machine's load.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from miltrd.protocol import (
    NEED_DATA,
    ActionFlag,
    AddHeader,
    BodyChunk,
    Connect,
    Continue,
    Data,
    DefineMacros,
    EndOfHeaders,
    EndOfMessage,
    Family,
    FilterConnection,
    Helo,
    MacroStage,
    MailFrom,
    OptionNegotiation,
    ProtocolFlag,
    Quit,
    RcptTo,
    encode_command,
)

from . import postfixgen as pg

REPO = Path(__file__).resolve().parents[1]

_REFERENCE = ProtocolFlag.NOUNKNOWN | ProtocolFlag.NR_UNKN | ProtocolFlag.SKIP
_NO_REPLY = (
    ProtocolFlag.NR_CONN
    | ProtocolFlag.NR_HELO
    | ProtocolFlag.NR_MAIL
    | ProtocolFlag.NR_RCPT
    | ProtocolFlag.NR_DATA
    | ProtocolFlag.NR_HDR
    | ProtocolFlag.NR_EOH
    | ProtocolFlag.NR_BODY
)
MODES = {"reference": _REFERENCE, "declared": _REFERENCE | _NO_REPLY}
_MACROS = {MacroStage.CONNECT: ("{client_addr}",), MacroStage.ENVFROM: ("{mail_addr}",)}
_OFFER = OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))


def session_writes(size: int, mode: str, piece: int = 0) -> list[bytes]:
    """The MTA's writes for one session of one ``size``-byte message, each
    cut into reads of ``piece`` bytes (0: as written)."""
    protocol = MODES[mode]
    lists = {**pg.POSTFIX_MACROS, **_MACROS}
    neg = pg._Negotiated(protocol, lists)
    headers, body = pg.make_message(size)
    qid = "4QABCDEF"
    steps = [
        neg.step(
            Connect(pg.CLIENT_NAME, Family.INET, 40000, pg.CLIENT_ADDR),
            "C",
            MacroStage.CONNECT,
            None,
        ),
        neg.step(Helo(pg.CLIENT_NAME), "H", MacroStage.HELO, None),
        neg.step(MailFrom(f"<{pg.SENDER}>", ("SIZE=4096",)), "M", MacroStage.ENVFROM, None),
        neg.step(RcptTo(f"<{pg.RECIPIENT}>"), "R", MacroStage.ENVRCPT, None),
        neg.step(Data(), "T", MacroStage.DATA, qid),
        *(neg.step(h, "L", None, qid) for h in headers),
        neg.step(EndOfHeaders(), "N", MacroStage.EOH, qid),
        *(neg.step(BodyChunk(body[i : i + 65535]), "B", None, qid) for i in range(0, size, 65535)),
        neg.step(EndOfMessage(), "E", MacroStage.EOM, qid),
    ]
    writes = [encode_command(_OFFER)]
    writes += [data for data, _ in pg._batch(steps)]
    writes.append(encode_command(Quit()))
    if piece:
        writes = [w[i : i + piece] for w in writes for i in range(0, len(w), piece)]
    return writes


def run_session(writes: list[bytes], protocol: ProtocolFlag) -> int:
    """Drive one FilterConnection through ``writes``; the bytes it answered."""
    fc = FilterConnection()
    added = AddHeader("X-Bench", "yes")
    out = 0
    for data in writes:
        fc.receive_data(data)
        while (event := fc.next_event()) is not NEED_DATA:
            if isinstance(event, OptionNegotiation):
                out += len(
                    fc.negotiate(actions=ActionFlag.ADDHDRS, protocol=protocol, macros=_MACROS)
                )
            elif isinstance(event, DefineMacros):
                fc.macros()
            elif fc.reply_owed:
                if isinstance(event, EndOfMessage):
                    out += len(fc.send(added))
                out += len(fc.send(Continue()))
            elif isinstance(event, Quit):
                break
    return out


def callgrind_total(args: list[str], cwd: Path = REPO) -> int:
    """Instructions callgrind counts for ``python3 ARGS`` run in ``cwd``
    (the whole run, start-up included: callers take differences)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        subprocess.run([*argv, *args], cwd=cwd, check=True, capture_output=True)
        text = Path(out).read_text()
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    assert m is not None
    return int(m.group(1))


def _callgrind(sessions: int, size: int, mode: str, piece: int) -> int:
    args = ["-m", "bench.engine", "--run", str(sessions), "--size", str(size)]
    return callgrind_total([*args, "--mode", mode, "--piece", str(piece)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", type=int, action="append", help="bytes (4096, 262144)")
    parser.add_argument("--mode", choices=sorted(MODES), action="append")
    parser.add_argument(
        "--piece", type=int, action="append", help="bytes per read, 0: as written (0, 16384)"
    )
    parser.add_argument("--run", type=int, help="run N sessions and exit (under callgrind)")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--sessions", type=int, default=100, help="--instructions: base count")
    args = parser.parse_args(argv)
    sizes = args.size or [4096, 262144]
    modes = args.mode or ["reference", "declared"]
    pieces = args.piece or [0, 16384]
    if args.run is not None:
        writes = session_writes(sizes[0], modes[0], pieces[0])
        for _ in range(args.run):
            run_session(writes, MODES[modes[0]])
        return 0
    unit = "instructions" if args.instructions else "µs"
    print(f"| mode | size | bytes per read | {unit} per session | packets | {unit} per packet |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        for size in sizes:
            for piece in pieces:
                if piece and piece >= size:
                    continue  # the same as whole writes
                writes = session_writes(size, mode, piece)
                packets = _count_packets(b"".join(writes))
                if args.instructions:
                    n = args.sessions
                    base = _callgrind(n, size, mode, piece)
                    per = (_callgrind(2 * n, size, mode, piece) - base) / n
                    figures = f"{per:,.0f} | {packets} | {per / packets:,.0f}"
                else:
                    best = min(
                        timeit.repeat(
                            functools.partial(run_session, writes, MODES[mode]),
                            number=50,
                            repeat=40,
                        )
                    )
                    per = best / 50 * 1e6
                    figures = f"{per:.1f} | {packets} | {per / packets:.2f}"
                print(f"| {mode} | {size} | {piece or 'whole writes'} | {figures} |")
    return 0


def _count_packets(data: bytes) -> int:
    n = pos = 0
    while pos < len(data):
        pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
        n += 1
    return n


if __name__ == "__main__":
    raise SystemExit(main())
