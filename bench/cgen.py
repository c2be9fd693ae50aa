"""bench/postfixgen.py's sessions, replayed by a client written in C.

    from bench.cgen import run_c_generator
    result, seconds, cpu = run_c_generator(port, connections=8, size=4096,
                                           per_connection=1, seconds=2.0)

The Python generator spends as much CPU per message as the filter it
drives, or more (bench/RESULTS-2026-12-02-cgen.md): on a 2-core machine
it is then the generator, not the filter, that runs out of CPU first, and
a filter's ``workers = 2`` cannot show what it scales to. bench/cgen.c
sends the same bytes: this module negotiates once with the filter (as
postfixgen.py does at the start of every session), builds each write of
a session from postfixgen.py's own step builder (``_Negotiated``, ``_batch``:
Postfix 3.7's macros at each stage, a write ending where a reply is owed),
writes them to a script file and runs the C client on it. Each message
carries its own queue id (``i``), as postfixgen.py's do; the client uses
``MESSAGES`` of them in turn. Like postfixgen.py it assumes the filter
negotiates the same way on every connection and answers continue.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from miltrd.protocol import (
    ActionFlag,
    BodyChunk,
    MacroStage,
    OptionNegotiation,
    ProtocolFlag,
    Quit,
    decode_response,
    encode_command,
)

from . import postfixgen as pg

__all__ = ["available", "chosen", "run_c_generator", "run_sessions", "session_script"]

HERE = Path(__file__).resolve().parent
MESSAGES = 16  # queue ids used in turn
_U32 = struct.Struct("!I")
_OFFER = OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))
# A write's flag in the script (see bench/cgen.c).
_NO_REPLY, _REPLY, _BODY_REPLY, _ONE_REPLY = 0, 1, 2, 3


def available() -> bool:
    """True where gcc can build the client."""
    return _executable() is not None


def chosen(generator: str) -> bool:
    """Whether ``--generator`` (``"c"`` or ``"python"``) means the C client
    here: ``"c"`` where gcc builds it; where it does not, one line says so
    and bench/postfixgen.py drives instead."""
    if generator != "c":
        return False
    if available():
        return True
    print("# bench/cgen.c cannot be built here (gcc): bench/postfixgen.py instead")
    return False


_built: list[Path] = []  # the client this process built, if it did
_failed: list[str] = []  # why it could not be built, once it could not


def _executable() -> Path | None:
    # Built once per process, and again if its directory was removed under
    # it (a long test run shares /tmp with whatever cleans it).
    if _built and _built[0].exists():
        return _built[0]
    if _failed or shutil.which("gcc") is None:
        return None
    where = tempfile.mkdtemp(prefix="miltrd-cgen-")
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    exe = Path(where) / "cgen"
    built = subprocess.run(
        ["gcc", "-O2", "-o", str(exe), str(HERE / "cgen.c"), "-lpthread"],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        _failed.append(built.stderr.strip())
        print(f"# bench/cgen.c did not build: {_failed[0]}")
        return None
    _built[:] = [exe]
    return exe


async def _negotiate(
    host: str, port: int
) -> tuple[ProtocolFlag, Mapping[MacroStage, tuple[str, ...]]]:
    """The filter's answer to Postfix's offer: its protocol and macro lists."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_command(_OFFER))
        head = await reader.readexactly(5)
        length = _U32.unpack_from(head)[0]
        reply = decode_response(head[4], await reader.readexactly(length - 1))
        writer.write(encode_command(Quit()))
    finally:
        writer.close()
    lists = {**pg.POSTFIX_MACROS, **getattr(reply, "macros", {})}
    return ProtocolFlag(getattr(reply, "protocol", 0)), lists


def _sequence(writes: list[tuple[bytes, int]]) -> bytes:
    out = [_U32.pack(len(writes))]
    for data, flag in writes:
        out += [bytes([flag]), _U32.pack(len(data)), data]
    return b"".join(out)


def session_script(
    protocol: ProtocolFlag, lists: Mapping[MacroStage, tuple[str, ...]], size: int
) -> bytes:
    """The script bench/cgen.c replays: the opening (OPTNEG, CONNECT, HELO),
    ``MESSAGES`` messages of ``size`` bytes, the closing (QUIT), each as the
    writes postfixgen.py makes for ``protocol`` and macro ``lists``."""
    neg = pg._Negotiated(protocol, lists)
    opening = [(encode_command(_OFFER), _ONE_REPLY)]
    opening += [(d, _REPLY if owed else _NO_REPLY) for d, owed in pg._batch(pg.opening_steps(neg))]
    headers, body = pg.make_message(size)
    chunks = [BodyChunk(body[i : i + 65535]) for i in range(0, len(body), 65535)]
    script = [_sequence(opening), _U32.pack(MESSAGES)]
    for n in range(MESSAGES):
        steps, body_steps, eom = pg.message_steps(neg, headers, chunks, f"4Q{0x10000 + n:X}")
        writes = [(data, _REPLY if owed else _NO_REPLY) for data, owed in pg._batch(steps)]
        writes += [(d, _BODY_REPLY if owed else _NO_REPLY) for d, owed in pg._batch(body_steps)]
        writes.append((eom.data, _REPLY))  # last: SKIP jumps to it
        script.append(_sequence(writes))
    script.append(_sequence([(encode_command(Quit()), _NO_REPLY)]))
    return b"".join(script)


def run_c_generator(
    port: int,
    *,
    connections: int,
    size: int,
    per_connection: int,
    seconds: float,
    host: str = "127.0.0.1",
) -> tuple[pg.Result, float, float]:
    """``connections`` concurrent Postfix-shaped SMTP sessions through the C
    client, back to back, for ``seconds`` after a warm-up: (result, measured
    seconds, the client's CPU seconds over the whole run, warm-up included).
    The result's latencies are in seconds, as postfixgen.py's.

    Raises RuntimeError where the client cannot be built or fails."""
    exe = _executable()
    if exe is None:
        raise RuntimeError("bench/cgen.c cannot be built here (gcc)")
    protocol, lists = asyncio.run(_negotiate(host, port))
    warmup = min(0.5, seconds / 4)
    with tempfile.TemporaryDirectory(prefix="cgen-") as work:
        script = Path(work) / "script"
        script.write_bytes(session_script(protocol, lists, size))
        latencies = Path(work) / "latencies"
        argv = [str(exe), str(script), host, str(port), str(connections), str(per_connection)]
        argv += [str(seconds), str(warmup), str(latencies)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        measured = latencies.read_text().split() if latencies.exists() else []
    if done.returncode != 0:
        raise RuntimeError(f"bench/cgen.c failed: {done.stderr.strip()}")
    fields = dict(item.split("=", 1) for item in done.stdout.split())
    result = pg.Result()
    result.messages = int(fields["messages"])
    result.total = int(fields["total"])
    result.errors = int(fields["errors"])
    result.connections = int(fields["connections"])
    result.latencies = [float(x) for x in measured]
    return result, float(fields["seconds"]), float(fields["cpu"])


def run_sessions(
    port: int, *, c: bool, connections: int, size: int, per_connection: int, seconds: float
) -> tuple[pg.Result, float]:
    """The same Postfix-shaped sessions from either generator: the C client
    with ``c``, else bench/postfixgen.py in this process. Returns (result,
    measured seconds)."""
    if c:
        result, wall, _ = run_c_generator(
            port, connections=connections, size=size, per_connection=per_connection, seconds=seconds
        )
    else:
        result, wall, _ = asyncio.run(
            pg.run_postfix_like(
                "127.0.0.1",
                port,
                connections=connections,
                size=size,
                per_connection=per_connection,
                seconds=seconds,
            )
        )
    return result, wall
