"""defang on 50 MiB messages: the daemon's peak memory, and whether other
connections wait while it works.

    python3 -m bench.run --memory   # includes the defang memory figures
    python3 -m bench.run --stall    # small-message reply latency beside 50 MiB defangs
    python3 -m bench.run --stall --repo CHECKOUT --python python3   # other code

(``--python``: an interpreter that does not have miltrd installed, so that
``PYTHONPATH=CHECKOUT`` decides which code runs; an editable install would
win over it. The checkout needs ``miltrd/plugins`` linked to ``plugins``.)

Memory: a daemon whose chain is ``["defang"]`` (replace mode, bodies
spooled above 1 MiB) gets one 50 MiB message, in two shapes: (a) one
banned ~50 MiB attachment, replaced by a notice; (b) a ~45 MiB attachment
that stays, byte for byte, beside a ~5 MiB banned one that is replaced
(the new body is ~45 MiB). The figure is the growth of VmHWM (peak RSS)
over the daemon's peak before the message.

Latency: while a separate process sends 50 MiB messages (shape a) through
defang back to back, ``--small-conns`` clients each send 4 KiB messages in
a loop, a new milter connection per message (as Postfix opens one per SMTP
session); each small message's time from connecting to the end-of-message
reply is recorded. The same small load alone gives the
baseline. Reported: p50, p99 and max in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from miltrd.mta import Envelope, MilterClient, replay

from .run import REPO, free_port, wait_port

MiB = 1 << 20
PE = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _attachment(name: str, content: bytes) -> bytes:
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    return (
        b'--B\r\nContent-Type: application/octet-stream; name="'
        + name.encode()
        + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + encoded
    )


def big_message(kept: int, replaced: int) -> bytes:
    """A multipart message: a text part, ``kept`` bytes of data that stay
    and ``replaced`` bytes of a banned program (sizes before base64)."""
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nThe files.\r\n"]
    if kept:
        parts.append(_attachment("data.bin", os.urandom(kept)))
    parts.append(_attachment("setup.exe", PE + os.urandom(max(0, replaced - len(PE)))))
    return (
        b"From: a@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n' + b"".join(parts) + b"--B--\r\n"
    )


def _start(tmp: Path, repo: Path, python: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = tmp / "defang.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\nlog_level = "error"\n'
        f"spool_threshold = 1048576\ntimeout = 600.0\nshutdown_timeout = 1.0\n"
        f'[chain]\nplugins = ["defang"]\n[plugins.defang]\nsave_dir = "{tmp / "saved"}"\n'
    )
    proc = subprocess.Popen(
        [python, "-m", "miltrd", "run", "-c", str(cfg)],
        env=dict(os.environ, PYTHONPATH=str(repo)),
        cwd=repo,  # "-m" puts the working directory first on the path
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc, port


async def _send(port: int, raw: bytes) -> tuple[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = MilterClient(reader, writer)
    result = await replay(client, raw, Envelope(sender="a@example.com"))
    await client.close()
    replaced = sum(len(c.data) for c in result.changes if type(c).__name__ == "ReplaceBody")
    return result.action, replaced


def defang_memory(tmp: Path, repo: Path = REPO, python: str = sys.executable) -> None:
    """Print the peak-RSS growth of a daemon defanging one 50 MiB message."""
    shapes = [
        ("one ~50 MiB attachment replaced", 0, 37 * MiB),
        ("~45 MiB attachment kept, ~5 MiB one replaced", 33 * MiB, 4 * MiB),
    ]
    for label, kept, replaced in shapes:
        raw = big_message(kept, replaced)
        proc, port = _start(tmp, repo, python)
        try:
            time.sleep(0.5)
            asyncio.run(_send(port, big_message(0, 1000)))  # warm up: imports, first walk
            before = _status(proc.pid, "VmHWM")
            action, new_size = asyncio.run(_send(port, raw))
            after = _status(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(
            f"defang, {len(raw) / MiB:.1f} MiB message ({label}; {action}, new body "
            f"{new_size / MiB:.1f} MiB): peak RSS {before / MiB:.1f} -> {after / MiB:.1f} MiB, "
            f"growth {(after - before) / MiB:.1f} MiB"
        )


def _big_sender(port: int, stop_after: float, counter: Any) -> None:
    raw = big_message(0, 37 * MiB)

    async def loop() -> None:
        end = time.monotonic() + stop_after
        while time.monotonic() < end:
            await _send(port, raw)
            with counter.get_lock():
                counter.value += 1

    asyncio.run(loop())


async def _small_load(port: int, conns: int, seconds: float) -> list[float]:
    raw = (
        b"From: a@example.com\r\nSubject: small\r\n\r\n" + (b"0123456789abcdef" * 4 + b"\r\n") * 62
    )
    times: list[float] = []

    async def one() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # A new milter connection per message, as Postfix opens one per
            # SMTP session; the time runs from connecting to the last reply.
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = MilterClient(reader, writer)
            await replay(client, raw, Envelope(sender="a@example.com"))
            times.append((time.perf_counter() - t0) * 1000)
            await client.close()
            await asyncio.sleep(0.01)  # a steady trickle, not a flood

    await asyncio.gather(*(one() for _ in range(conns)))
    return times


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def stall_report(tmp: Path, repo: Path, python: str, seconds: float, conns: int) -> int:
    proc, port = _start(tmp, repo, python)
    try:
        time.sleep(0.5)
        base = asyncio.run(_small_load(port, conns, seconds))
        counter = multiprocessing.Value("i", 0)
        big = multiprocessing.Process(target=_big_sender, args=(port, seconds, counter))
        big.start()
        time.sleep(2.0)  # the first big message is on its way
        busy = asyncio.run(_small_load(port, conns, seconds))
        big.join(timeout=600)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"code: {repo}")
    print("| small-message load | messages | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for label, times in (("alone", base), ("beside 50 MiB defangs", busy)):
        print(
            f"| {label} | {len(times)} | {statistics.median(times):.1f} | "
            f"{_pct(times, 0.99):.1f} | {max(times):.1f} |"
        )
    print(f"50 MiB messages defanged meanwhile: {counter.value}")
    return 0
