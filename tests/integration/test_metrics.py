"""The Prometheus endpoint counts what was sent."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from miltrd.config import ConfigError, load_text
from miltrd.mta import Envelope, MilterClient, open_milter, replay

from ..tools import free_port
from .mta import Miltrd
from .test_workers import children

pytestmark = pytest.mark.integration

MESSAGE = b"Subject: m\r\n\r\nbody\r\n"


async def _send(spec: str, sender: str, rcpts: list[str]) -> str:
    reader, writer = await open_milter(spec)
    client = MilterClient(reader, writer)
    try:
        result = await replay(client, MESSAGE, Envelope(sender=sender, recipients=rcpts))
    finally:
        await client.close()
    return result.action


def metric(text: str, name: str, **labels: str) -> float:
    label = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        re.escape(name) + (r"\{" + re.escape(label) + r"\}" if label else "") + r" ([0-9.e+]+)"
    )
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def test_metrics_match_what_was_sent(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nmetrics_listen = "127.0.0.1:{mport}"\n'
        '[chain]\nplugins = ["watch", "rcpt", "grey", "crash"]\n'
        '[plugins.rcpt]\nuse = "tests.testplugins:RejectRecipient"\n'
        'recipients = ["bad@example.com"]\n'
        '[plugins.grey]\nuse = "tests.testplugins:TempfailSender"\nsenders = ["grey@example.org"]\n'
        '[plugins.crash]\nuse = "tests.testplugins:Raiser"\nphase = "eom"\n'
        'only_sender = "crash@example.org"\n'
        '[plugins.watch]\nuse = "tests.testplugins:RejectRecipient"\nmode = "observe"\n'
        'recipients = ["bad@example.com"]\n'
    )
    daemon = Miltrd(cfg, port=port)
    try:

        async def traffic() -> list[str]:
            return [
                await _send(spec, "a@example.org", ["ok@example.com"]),
                await _send(spec, "a@example.org", ["ok@example.com", "bad@example.com"]),
                await _send(spec, "grey@example.org", ["ok@example.com"]),
                await _send(spec, "crash@example.org", ["ok@example.com"]),
            ]

        assert asyncio.run(traffic()) == ["accept", "accept", "tempfail", "tempfail"]
        # The daemon sees the last client's close a moment after the client
        # returns (longer on a busy machine): scrape until it has.
        deadline = time.monotonic() + 10
        while True:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10)
                .read()
                .decode()
            )
            if "miltrd_connections_open 0.0" in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        daemon.stop()
    assert metric(text, "miltrd_connections_total") == 4 + 1  # + the harness's readiness probe
    assert metric(text, "miltrd_messages_total", action="accept") == 2
    assert metric(text, "miltrd_messages_total", action="tempfail") == 2
    assert metric(text, "miltrd_plugin_verdicts_total", plugin="rcpt", verdict="reject") == 1
    assert metric(text, "miltrd_plugin_verdicts_total", plugin="grey", verdict="tempfail") == 1
    # In observe mode a refusal is counted as the summary line says it: the
    # MTA was never told.
    assert metric(text, "miltrd_plugin_verdicts_total", plugin="watch", verdict="reject") == 0
    assert metric(text, "miltrd_plugin_verdicts_total", plugin="watch", verdict="would-reject") == 1
    assert metric(text, "miltrd_plugin_errors_total", plugin="crash") == 1
    # Four recipients reached the rcpt plugin (the greylisted message ended at MAIL).
    assert metric(text, "miltrd_hook_seconds_count", plugin="rcpt", phase="rcpt") == 4
    assert "miltrd_connections_open 0.0" in text


def test_metrics_refuse_a_public_address_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_text('[daemon]\nmetrics_listen = "0.0.0.0:9187"\n')
    load_text('[daemon]\nmetrics_listen = "0.0.0.0:9187"\nmetrics_public = true\n')


def test_stats_reports_on_the_daemons_own_log(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\n'
        '[chain]\nplugins = ["rcpt", "grey"]\n'
        '[plugins.rcpt]\nuse = "tests.testplugins:RejectRecipient"\n'
        'recipients = ["bad@example.com"]\n'
        '[plugins.grey]\nuse = "tests.testplugins:TempfailSender"\nsenders = ["grey@example.org"]\n'
    )
    daemon = Miltrd(cfg, port=port)
    try:

        async def traffic() -> None:
            for _ in range(3):
                await _send(spec, "a@example.org", ["ok@example.com", "bad@example.com"])
            for _ in range(2):
                await _send(spec, "grey@example.org", ["ok@example.com"])

        asyncio.run(traffic())
        daemon.wait_log("summary client=", count=5)
    finally:
        daemon.stop()
    out = subprocess.run(
        [sys.executable, "-m", "miltrd", "stats", str(daemon.log_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "miltrd stats: 5 messages" in out
    assert re.search(r"accept\s+3\s+60\.0%", out)
    assert re.search(r"tempfail\s+2\s+40\.0%", out)
    assert "recipients refused one by one: 3" in out
    assert re.search(r"rcpt\s+3", out) and re.search(r"grey\s+2", out)
    assert "grey: 451 4.7.1 greylisted, try again later" in out
    assert re.search(r"grey@example.org\s+2", out)
    assert re.search(r"127\.0\.0\.1\s+2", out)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:00\s+5", out)


def _scrape(mport: int) -> str:
    url = f"http://127.0.0.1:{mport}/metrics"
    return str(urllib.request.urlopen(url, timeout=10).read().decode())


def test_metrics_sum_every_worker_including_retired_ones(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nmetrics_listen = "127.0.0.1:{mport}"\n'
        "workers = 2\nmax_messages = 5\n"
        '[chain]\nplugins = ["rcpt"]\n'
        '[plugins.rcpt]\nuse = "tests.testplugins:RejectRecipient"\n'
        'recipients = ["bad@example.com"]\n'
    )
    daemon = Miltrd(cfg, port=port)
    try:
        daemon.wait_log("started 2 workers")
        # Which worker accepts a connection is the kernel's choice: send
        # until two workers have served and one has retired at its limit.
        sent = 0
        served: dict[str, int] = {}
        while sent < 60 and (len(served) < 2 or "retired after" not in daemon.log()):
            assert asyncio.run(_send(spec, "a@example.org", ["ok@example.com", "bad@example.com"]))
            sent += 1
            log = daemon.wait_log(" summary client=", count=sent)
            served = {}
            for worker in re.findall(r"\[(w\d+)\.c\d+\] \w+: summary client=", log):
                served[worker] = served.get(worker, 0) + 1
        assert len(served) >= 2, served
        daemon.wait_log("retired after its message limit")
        assert sum(served.values()) == sent
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload passed to 2 workers")
        deadline = time.monotonic() + 10
        while True:
            text = _scrape(mport)
            if "miltrd_connections_open 0.0" in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        assert daemon.stop() == 0
    # The sums over every worker, the retired ones' counts included.
    assert metric(text, "miltrd_messages_total", action="accept") == sent, served
    assert metric(text, "miltrd_plugin_verdicts_total", plugin="rcpt", verdict="reject") == sent
    assert metric(text, "miltrd_hook_seconds_count", plugin="rcpt", phase="rcpt") == 2 * sent
    assert metric(text, "miltrd_connections_total") == sent + 1  # + the readiness probe
    # One gauge line, the live workers' sum (a retired worker's share dropped).
    assert len(re.findall(r"^miltrd_connections_open", text, re.M)) == 1
    assert "miltrd_connections_open 0.0" in text
    # A reload is counted once (by the supervisor), not once per worker.
    assert metric(text, "miltrd_reloads_total", outcome="ok") == 1
    # The directory the workers wrote to was made for this start and is gone.
    (where,) = re.findall(r"summing the workers' metrics in (\S+)", daemon.log())
    assert not Path(where).exists()


def test_a_killed_workers_open_connections_leave_the_gauge(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nmetrics_listen = "127.0.0.1:{mport}"\nworkers = 2\n'
    )
    daemon = Miltrd(cfg, port=port)

    async def hold(n: int) -> list[MilterClient]:
        clients = []
        for _ in range(n):
            client = MilterClient(*await open_milter(spec))
            await client.negotiate()
            clients.append(client)
        return clients

    def gauge(expected: float) -> float:
        deadline = time.monotonic() + 10
        while (value := metric(_scrape(mport), "miltrd_connections_open")) != expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return value

    loop = asyncio.new_event_loop()
    try:
        daemon.wait_log("started 2 workers")
        clients = loop.run_until_complete(hold(6))
        assert gauge(6) == 6  # both workers' open connections, summed
        # Killed, a worker cannot count its connections closed: the
        # supervisor drops its share when it reaps it.
        for pid in children(daemon.proc.pid):
            os.kill(pid, signal.SIGKILL)
        daemon.wait_log("exited with -9; starting a new one", count=2)
        assert gauge(0) == 0
        for client in clients:
            loop.run_until_complete(client.close())
    finally:
        loop.close()
        assert daemon.stop() == 0
