"""Small-message reply latency while other connections send large bodies.

    python3 -m bench.run --mixed                       # both chains, 3 runs each
    python3 -m bench.run --mixed --compare-tree DIR    # and another checkout, same run

Issue 17: "p99 reply latency of small messages while other connections
send 256 KiB and 10 MiB bodies stays within 2x of the unloaded p99 (no
connection monopolises the loop)".

One miltrd daemon (``workers = 1``) per chain:

- ``shipped``: etc/miltrd.toml's chain (zombie, spf, bcc) with the client
  inside [internal], as the default table's ``miltrd-sample``. It observes
  no body, so miltrd negotiates the body away and large messages cost it
  little;
- ``observe-all``: bench/benchplugin.py ``Observer``, which hooks every
  phase, keeps the body (spooled past 1 MiB, as dkim and defang keep it)
  and decides nothing: every phase is no-reply and a large body streams in
  without a round trip, the worst case for the loop.

The small load is this process: ``--small-conns`` clients, each sending
4 KiB messages one at a time over a new milter connection per message
(bench/postfixgen.py's Postfix-shaped session: macros, OPTNEG, CONNECT,
HELO, ..., QUIT), 10 ms apart. A *reply latency* is the time from writing
the commands up to one that owes a reply to reading that reply; a message
latency runs from connecting to the end-of-message reply.

The large load is a separate process (so that its own CPU does not delay
the small clients' reads): 2 connections sending 256 KiB messages and 2
sending 10 MiB messages, back to back, a new milter connection per message,
through the same Postfix-shaped generator. Its rate (messages of either
size per second) is reported so one can see that it really loaded the
daemon; the shipped chain's bodies are not sent at all (negotiated away).
``daemon CPU`` is the daemon's CPU seconds per second of the cell: when it
is well below 1, the daemon's loop was mostly idle and the latency was
spent waiting for a CPU on the machine, not behind other connections.
The daemons run under bench/loopwatch.py, which times every event-loop
callback in CPU time: the 99.9th percentile and the longest are the
stretches during which one connection held the loop. It can time only
asyncio's own loop, so the daemons run with ``event_loop = "asyncio"``
(uvloop, the default where installed, only makes each turn cheaper).

Each condition (alone, beside the large senders) runs ``--seconds`` seconds.
All daemons (both chains, and ``--compare-tree``'s) are started at once, and
every run goes round all of them before the next run starts, so that the
machine's changing load falls on each alike; the median of ``--runs`` runs
is reported, with the spread. ``--large-nice N`` runs the large senders at
nice N: if the small messages' p99 then stays near its unloaded value, what
delayed them was the senders' own CPU on a crowded machine, not the daemon.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miltrd.protocol import (
    ActionFlag,
    BodyChunk,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Family,
    MacroStage,
    MailFrom,
    OptionNegotiation,
    ProtocolFlag,
    Quit,
    RcptTo,
    decode_response,
    encode_command,
)
from miltrd.protocol import Helo as HeloCmd

from . import cgen, loopwatch
from .cgen import run_sessions
from .postfixgen import (
    CLIENT_ADDR,
    CLIENT_NAME,
    POSTFIX_MACROS,
    RECIPIENT,
    SENDER,
    _batch,
    _Negotiated,
    _read_final,
    make_message,
)
from .run import REPO, SAMPLE_CHAIN, SAMPLE_INTERNAL, Filter, cpu_seconds, miltrd_filter

KiB = 1024
MiB = 1024 * KiB
_LEN = struct.Struct("!I")

CHAINS = {
    "shipped": SAMPLE_INTERNAL + "[chain]" + SAMPLE_CHAIN,
    "observe-all": '[chain]\nplugins = ["obs"]\n[plugins.obs]\nuse = "bench.benchplugin:Observer"\n',
}


@dataclass
class Small:
    replies: list[float] = field(default_factory=list)  # seconds
    messages: list[float] = field(default_factory=list)
    errors: int = 0


async def _small_session(
    port: int, chunks: list[BodyChunk], headers: list[Any], out: Small
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock: socket.socket = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        t0 = loop.time()
        writer.write(
            encode_command(OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)))
        )
        head = await reader.readexactly(5)
        reply = decode_response(head[4], await reader.readexactly(_LEN.unpack_from(head)[0] - 1))
        out.replies.append(loop.time() - t0)
        lists: Mapping[MacroStage, tuple[str, ...]] = {
            **POSTFIX_MACROS,
            **getattr(reply, "macros", {}),
        }
        neg = _Negotiated(ProtocolFlag(getattr(reply, "protocol", 0)), lists)
        qid = f"4Q{os.getpid():X}{int(t0 * 1e6) & 0xFFFFFF:X}"
        steps = [
            neg.step(
                Connect(CLIENT_NAME, Family.INET, 40000, CLIENT_ADDR), "C", MacroStage.CONNECT, None
            ),
            neg.step(HeloCmd(CLIENT_NAME), "H", MacroStage.HELO, None),
            neg.step(MailFrom(f"<{SENDER}>", ("SIZE=4096",)), "M", MacroStage.ENVFROM, None),
            neg.step(RcptTo(f"<{RECIPIENT}>"), "R", MacroStage.ENVRCPT, None),
            neg.step(Data(), "T", MacroStage.DATA, qid),
            *(neg.step(h, "L", None, qid) for h in headers),
            neg.step(EndOfHeaders(), "N", MacroStage.EOH, qid),
            *(neg.step(c, "B", None, qid) for c in chunks),
            neg.step(EndOfMessage(), "E", MacroStage.EOM, qid),
        ]
        for data, owed in _batch(steps):
            t0 = loop.time()
            writer.write(data)
            if owed:
                code = await _read_final(reader, sock)
                out.replies.append(loop.time() - t0)
                if code not in b"cs":  # the message ended early: no more to measure
                    break
        out.messages.append(loop.time() - began)
        writer.write(encode_command(Quit()))
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def small_load(port: int, conns: int, seconds: float) -> Small:
    """``conns`` clients, a 4 KiB message each 10 ms apart, for ``seconds``."""
    headers, body = make_message(4 * KiB)
    chunks = [BodyChunk(body)]
    out = Small()

    async def client() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await _small_session(port, chunks, headers, out)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(client() for _ in range(conns)))
    return out


def _large_sender(
    port: int, size: int, conns: int, seconds: float, result: Any, nice: int = 0, c: bool = False
) -> None:
    os.nice(nice)  # the C client, a child process, inherits it
    out, wall = run_sessions(
        port, c=c, connections=conns, size=size, per_connection=1, seconds=seconds
    )
    result.value = out.messages / wall


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Cell:
    p50: float
    p99: float
    msg_p99: float
    count: int
    big_rate: float  # large messages per second
    cpu: float  # the daemon's CPU seconds per second of the cell
    turn_p999: float  # CPU ms of the daemon's loop callbacks (bench/loopwatch.py)
    turn_max: float


def _watched(name: str, chain: str, tmp: Path, tree: Path) -> tuple[Filter, str]:
    """A miltrd daemon run under bench/loopwatch.py, and its figures' file.

    loopwatch times asyncio's own callbacks; uvloop's are C, out of its
    reach, so a checkout that can choose its loop is given asyncio's."""
    if (tree / "miltrd" / "server" / "eventloop.py").exists():
        chain = 'event_loop = "asyncio"\n' + chain
    f = miltrd_filter(name, chain, tmp, tree=tree)
    out = str(tmp / f"{name}.loop.json")
    f.argv[1:3] = ["-m", "bench.loopwatch"]
    f.env = dict(f.env or os.environ, LOOPWATCH_OUT=out)
    return f, out


_dumps: dict[str, int] = {}


def _loop_figures(f: Filter, out: str) -> dict[str, Any]:
    assert f.proc is not None
    _dumps[out] = _dumps.get(out, 0) + 1
    os.kill(f.proc.pid, signal.SIGUSR2)
    return loopwatch.read(out, _dumps[out])


def _cell(
    f: Filter,
    watch: str,
    seconds: float,
    small_conns: int,
    loaded: bool,
    nice: int = 0,
    c: bool = False,
) -> Cell:
    assert f.proc is not None
    ctx = multiprocessing.get_context("spawn")
    senders = []
    if loaded:
        # Big senders start first and get a head start, so the small load
        # meets them in full flow.
        for size in (256 * KiB, 10 * MiB):
            rate = ctx.Value("d", 0.0)
            args = (f.port, size, 2, seconds + 1.5, rate, nice, c)
            p = ctx.Process(target=_large_sender, args=args)
            p.start()
            senders.append((p, rate))
        time.sleep(1.5)
    _loop_figures(f, watch)  # start counting
    cpu0, t0 = cpu_seconds(f.proc.pid), time.monotonic()
    small = asyncio.run(small_load(f.port, small_conns, seconds))
    cpu = (cpu_seconds(f.proc.pid) - cpu0) / (time.monotonic() - t0)
    turns = _loop_figures(f, watch)
    if turns.get("cpu_max_what"):
        print(
            f"# {f.name}: longest callback {turns['cpu_max_ms']:.1f} ms CPU: "
            f"{turns['cpu_max_what']}; longest garbage collection by generation, "
            f"ms CPU: {turns.get('gc_max_ms')}"
        )
    big = 0.0
    for p, rate in senders:
        p.join(timeout=seconds + 120)
        big += rate.value
    return Cell(
        _pct(small.replies, 0.5),
        _pct(small.replies, 0.99),
        _pct(small.messages, 0.99),
        len(small.messages),
        big,
        cpu,
        turns["cpu_ms"]["p999"],
        turns["cpu_max_ms"],
    )


def mixed_report(
    tmp: Path,
    seconds: float,
    runs: int,
    small_conns: int,
    trees: list[tuple[str, Path]],
    nice: int = 0,
    generator: str = "c",
) -> int:
    c = cgen.chosen(generator)
    print(
        f"# small-message latency beside large senders: {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the start, {seconds:g} s per cell, "
        f"medians of {runs} runs (min-max)"
        + (f", large senders at nice {nice}" if nice else "")
        + (", large senders: the C client (bench/cgen.c)" if c else ", large senders: Python")
    )
    daemons = [
        (label, name, *_watched(f"mixed-{name}-{label}", chain, tmp, tree))
        for label, tree in trees
        for name, chain in CHAINS.items()
    ]
    cells: dict[tuple[str, str, bool], list[Cell]] = {}
    try:
        for _, _, f, _ in daemons:
            f.start()
        # Every run goes round all daemons and both conditions before the
        # next starts, so that the machine's changing load falls on all.
        for _ in range(runs):
            for label, name, f, watch in daemons:
                for loaded in (False, True):
                    cell = _cell(f, watch, seconds, small_conns, loaded, nice, c)
                    cells.setdefault((label, name, loaded), []).append(cell)
    finally:
        for _, _, f, _ in daemons:
            f.stop()
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print(
        "| code | chain | small load | reply p50 ms | reply p99 ms | p99 / alone "
        "| message p99 ms | small msgs | large msgs/s | daemon CPU "
        "| loop callback CPU p99.9 ms | longest callback CPU ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, name, _, _ in daemons:
        alone = statistics.median(c.p99 for c in cells[(label, name, False)])
        for loaded in (False, True):
            cs = cells[(label, name, loaded)]

            def med(attr: str, cs: list[Cell] = cs) -> str:
                values = [getattr(c, attr) for c in cs]
                return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

            ratio = statistics.median(c.p99 for c in cs) / alone
            print(
                f"| {label} | {name} | {'beside 2x256 KiB + 2x10 MiB' if loaded else 'alone'} "
                f"| {med('p50')} | {med('p99')} | {ratio:.2f} | {med('msg_p99')} "
                f"| {statistics.median(c.count for c in cs):.0f} "
                f"| {statistics.median(c.big_rate for c in cs):.1f} "
                f"| {statistics.median(c.cpu for c in cs):.2f} "
                f"| {med('turn_p999')} | {med('turn_max')} |",
                flush=True,
            )
    return 0


__all__ = ["mixed_report", "small_load", "CHAINS", "REPO"]
