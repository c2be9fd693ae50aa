"""Soak: many messages through the full sample chain, watching memory and fds.

    python3 -m bench.soak --messages 100000 --connections 32

Runs the shipped chain (zombie, spf, bcc) as an internal client sending
outgoing mail, in slices, and prints the daemon's RSS and open file
descriptors after each slice. After warm-up neither may grow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .loadgen import run_load
from .run import REPO, SAMPLE_CHAIN, free_port, wait_port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, quiet: float = 0.3, limit: float = 5.0) -> int:
    """Open fds once the daemon has closed the slice's connections.

    The load generator's sockets are closed when it returns; the daemon
    sees the EOFs a moment later (longer on a busy machine), so an
    immediate count includes connections that are already over.
    """
    deadline = time.monotonic() + limit
    last, since = fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = fds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def soak(messages: int, connections: int, slices: int = 10) -> list[tuple[int, int, int]]:
    """Returns [(messages so far, RSS KiB, fds)] after each slice."""
    tmp = Path(tempfile.mkdtemp(prefix="miltrd-soak-"))
    port = free_port()
    cfg = tmp / "soak.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\nlog_level = "warning"\n'
        '[internal]\nnetworks = ["127.0.0.0/8"]\ndomains = ["example.com"]\n[chain]' + SAMPLE_CHAIN
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stderr=subprocess.DEVNULL,
    )
    samples = []
    try:
        wait_port(port, proc)
        done = 0
        per_slice = max(1, messages // slices)
        rate = 3000.0  # a first guess; each slice corrects it
        while done < messages:
            seconds = max(0.5, per_slice / rate)
            result, wall, _ = asyncio.run(
                run_load(
                    "127.0.0.1",
                    port,
                    connections=connections,
                    size=4096,
                    quickack=False,
                    seconds=seconds,
                )
            )
            if result.errors:
                raise RuntimeError(f"{result.errors} connection errors")
            done += result.messages
            rate = max(100.0, result.messages / wall)
            samples.append((done, rss_kib(proc.pid), settled_fds(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    samples = soak(args.messages, args.connections)
    print("| messages | RSS KiB | open fds |\n|---|---|---|")
    for done, rss, nfd in samples:
        print(f"| {done} | {rss} | {nfd} |")
    warm = samples[len(samples) // 3]
    last = samples[-1]
    print(f"after warm-up: RSS {warm[1]} -> {last[1]} KiB, fds {warm[2]} -> {last[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
