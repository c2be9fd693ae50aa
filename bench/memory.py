"""Memory: per idle connection, and peak growth for a 50 MiB message."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from miltrd.mta import Envelope, MilterClient, replay

from .run import REPO, free_port, wait_port


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _start(tmp: Path, chain: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = tmp / "mem.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\nmax_connections = 5000\n'
        f'log_level = "warning"\nspool_threshold = 1048576\n{chain}'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc, port


async def _idle(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = MilterClient(reader, writer)
        await client.negotiate()
        held.append(writer)
    return held  # type: ignore[return-value]


def memory_report(tmp: Path) -> int:
    chain = '[chain]\nplugins = ["ref"]\n[plugins.ref]\nuse = "bench.benchplugin:Declared"\n'
    proc, port = _start(tmp, chain)
    try:
        time.sleep(0.5)
        base = _status(proc.pid, "VmRSS")
        count = 1000

        async def hold() -> int:
            held = await _idle(port, count)
            await asyncio.sleep(0.5)
            rss = _status(proc.pid, "VmRSS")
            for w in held:
                w.close()  # type: ignore[attr-defined]
            return rss

        rss = asyncio.run(hold())
        time.sleep(1.0)  # let the daemon see the closes
        after = _status(proc.pid, "VmRSS")
        per = (rss - base) / count
        print(
            f"idle connections: {count} held, RSS {base >> 20} MiB -> {rss >> 20} MiB, "
            f"{per / 1024:.1f} KiB per connection; after closing them "
            f"{(after - base) / 1024:.0f} KiB above the baseline"
        )

        body = (b"0123456789abcdef" * 4 + b"\r\n") * (50 * 1024 * 1024 // 66)
        raw = b"From: a@example.com\r\nSubject: big\r\n\r\n" + body
        peak_before = _status(proc.pid, "VmHWM")

        async def big() -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = MilterClient(reader, writer)
            result = await replay(client, raw, Envelope(sender="a@example.com"))
            await client.close()
            return result.action

        action = asyncio.run(big())
        peak_after = _status(proc.pid, "VmHWM")
        print(
            f"50 MiB message ({action}): peak RSS {peak_before >> 20} MiB"
            f" -> {peak_after >> 20} MiB, "
            f"growth {(peak_after - peak_before) / 2**20:.1f} MiB (body spooled above 1 MiB)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    from .bigmail import defang_memory

    defang_memory(tmp)
    return 0
