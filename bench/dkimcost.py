"""What DKIM costs per message, and what enabling the dkim plugin costs every message.

    python3 -m bench.dkimcost                  # both tables (about a minute)
    python3 -m bench.dkimcost --seconds 1      # shorter

Table 1, dkimpy per message, in this process: signing and verifying a
message of 4 KiB and of 256 KiB with an RSA-2048 and an Ed25519 key, with
the dkim plugin's own parameters (relaxed/relaxed, its default header list
with From over-signed, through ``Dkim._sign_all``) and verification as the
plugin calls it (``dkimpy.DKIM(...).verify`` with the key record handed over
in memory: no DNS in the figure). Each cell repeats the operation for
``--seconds`` and reports the median wall time per message and the CPU
time per message (process time / count).

Table 2, the daemon with and without the dkim plugin: a miltrd daemon on
loopback gets unsigned messages (4 KiB, 256 KiB) one after another, each
on a new milter connection, as miltrd replay sends them. The baseline
chain is one plugin of the spf/dmarc shape (``bench.dkimcost:HeaderAuth``:
decides at end of message from the headers, publishes an
Authentication-Results entry); the other adds ``dkim`` (verify only, no
keys). Reported: the body bytes the MTA side had to send (the negotiated
steps decide it), messages/s, and the daemon's CPU ms per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dkim as dkimpy
from miltrd.plugins._dkimkeys import LoadedKey, generate_key
from miltrd.plugins.dkim import DEFAULT_SIGN_HEADERS, Dkim, SigningKey

from miltrd.api import Action, Message, Phase, Plugin, Verdict
from miltrd.chain import build_runtime
from miltrd.config import load_text
from miltrd.mta import Envelope, MilterClient, replay
from miltrd.protocol import BodyChunk

from .run import REPO, cpu_seconds, free_port, wait_port

SIZES = (4096, 262144)
HEADERS = (
    "From: Alice Example <alice@example.com>\r\n"
    "To: Bob <bob@example.net>\r\n"
    "Subject: a message of {size} bytes\r\n"
    "Date: Tue, 01 Dec 2026 01:00:00 +0000\r\n"
    "Message-ID: <{size}.bench@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
)


def message(size: int) -> bytes:
    """A plain-text message of about ``size`` bytes, 72-character lines."""
    head = HEADERS.format(size=size).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again, 0123456789\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def per_message(op: object, seconds: float) -> tuple[float, float, float]:
    """(CPU ms per call, fastest wall ms, median wall ms) of ``op()`` repeated
    for ``seconds``. On a shared machine the CPU figure is the cost; the
    fastest call is what it takes uncontended, the median what it took here."""
    assert callable(op)
    op()  # warm-up
    walls: list[float] = []
    cpu0 = time.process_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(walls) < 5:
        t = time.perf_counter()
        op()
        walls.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - cpu0) * 1000 / len(walls)
    return cpu, min(walls), statistics.median(walls)


def dkimpy_table(tmp: Path, seconds: float) -> None:
    print("## dkimpy per message (in process, no DNS)\n")
    print(f"dkimpy {dkimpy_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(
        "| key | size | sign CPU ms | sign wall ms fastest / median "
        "| verify CPU ms | verify wall ms fastest / median |"
    )
    print("|---|---|---|---|---|---|")
    for algorithm, label in (("rsa-sha256", "RSA-2048"), ("ed25519-sha256", "Ed25519")):
        pem, loaded = generate_key(algorithm)
        path = tmp / f"{algorithm}.private"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        runtime = build_runtime(
            load_text(
                '[chain]\nplugins = ["dkim"]\n[[plugins.dkim.keys]]\ndomain = "example.com"\n'
                f'selector = "sel"\nkey_file = "{path}"\nalgorithm = "{algorithm}"\n'
            )
        )
        (plugin,) = [p.plugin for p in runtime.plugins if p.name == "dkim"]
        assert isinstance(plugin, Dkim)
        (key,) = plugin.options.keys
        record = loaded.public_record.encode()
        for size in SIZES:
            raw = message(size)
            present = [
                h.split(b":", 1)[0].lower().decode()
                for h in raw.split(b"\r\n\r\n")[0].split(b"\r\n")
            ]
            include = [h for h in DEFAULT_SIGN_HEADERS if h in present] + ["from"]

            def sign(
                raw: bytes = raw,
                include: list[str] = include,
                plugin: Dkim = plugin,
                keys: list[tuple[SigningKey, LoadedKey]] = [(key, loaded)],  # noqa: B006
            ) -> bytes:
                ((_, value),) = plugin._sign_all(
                    raw, "example.com", keys, include, ("relaxed", "relaxed")
                )
                return b"DKIM-Signature: " + value.encode() + b"\r\n" + raw

            signed = sign()

            def verify(signed: bytes = signed, record: bytes = record) -> None:
                ok = dkimpy.DKIM(signed, minkey=1024).verify(
                    0, dnsfunc=lambda name, timeout=5: record
                )
                assert ok, "the signed message does not verify"

            s_cpu, s_min, s_med = per_message(sign, seconds)
            v_cpu, v_min, v_med = per_message(verify, seconds)
            print(
                f"| {label} | {size // 1024} KiB | {s_cpu:.2f} | {s_min:.2f} / {s_med:.2f} "
                f"| {v_cpu:.2f} | {v_min:.2f} / {v_med:.2f} |",
                flush=True,
            )
    print()


def dkimpy_version() -> str:
    from importlib.metadata import version

    return version("dkimpy")


class HeaderAuth(Plugin):
    """The spf/dmarc shape: reads headers only, publishes one result at end of message."""

    actions = Action.AUTH_RESULTS
    needs = Phase.HEADER

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.publish_auth_result("x-bench", "none")
        return None


async def _send(port: int, raw: bytes) -> int:
    """One message on a new milter connection; the body bytes sent before the filter said SKIP."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = MilterClient(reader, writer)
    result = await replay(client, raw, Envelope(sender="a@example.net", client_ip="192.0.2.7"))
    await client.close()
    assert result.action == "accept", result
    body = raw.split(b"\r\n\r\n", 1)[1]
    if client.mta.skips(BodyChunk):
        return 0  # body negotiated away: the MTA sends none
    chunks = list(client.mta.body_chunks(body))
    replies = [type(reply).__name__ for name, reply in result.steps if name == "body"]
    if "Skip" in replies:  # the MTA stops sending the body after the chunk answered SKIP
        return sum(len(c.data) for c in chunks[: replies.index("Skip") + 1])
    return len(body)


def daemon_table(tmp: Path, seconds: float) -> None:
    print("## The daemon with and without dkim (unsigned mail, a connection per message)\n")
    print("| chain | size | body bytes the MTA sends | msgs/s | daemon CPU ms/msg |")
    print("|---|---|---|---|---|")
    chains = {
        "HeaderAuth": '["auth"]',
        "HeaderAuth + dkim (verify)": '["auth", "dkim"]',
    }
    for label, chain in chains.items():
        port = free_port()
        cfg = tmp / f"daemon-{port}.toml"
        cfg.write_text(
            f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\nlog_level = "warning"\n'
            f'[internal]\nnetworks = []\nauthserv_id = "mx.example.com"\n'
            f"[chain]\nplugins = {chain}\n"
            '[plugins.auth]\nuse = "bench.dkimcost:HeaderAuth"\n'
            + (
                '[plugins.dkim]\nnameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
                if "dkim" in chain
                else ""
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, proc)
            for size in SIZES:
                raw = message(size)
                sent = asyncio.run(_send(port, raw))  # warm-up, and the body figure
                cpu0 = cpu_seconds(proc.pid)
                count = 0
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    asyncio.run(_send(port, raw))
                    count += 1
                elapsed = time.perf_counter() - start
                cpu = (cpu_seconds(proc.pid) - cpu0) * 1000 / count
                body = len(raw.split(b"\r\n\r\n", 1)[1])
                print(
                    f"| {label} | {size // 1024} KiB | {sent} of {body} "
                    f"| {count / elapsed:.0f} | {cpu:.2f} |",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="miltrd-bench-dkim-") as tmp:
        dkimpy_table(Path(tmp), args.seconds)
        daemon_table(Path(tmp), args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
