"""Plugin threads give the event loop the GIL back quickly (issue 15): the
daemon runs with a 1 ms switch interval instead of CPython's 5 ms, so a
small message's round trips do not each wait 5 ms while another
connection's defang walk runs in a thread. The latency itself is measured
in bench/looplag.py and bench/bigmail.py (--stall), not here."""

from __future__ import annotations

import asyncio
from pathlib import Path

from miltrd.mta import Envelope, MilterClient, open_milter, replay

from ..integration.mta import Miltrd
from ..tools import free_port


def test_the_daemon_serves_with_a_1_ms_switch_interval(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\n'
        '[chain]\nplugins = ["gil"]\n[plugins.gil]\nuse = "tests.testplugins:SwitchInterval"\n'
    )

    async def send():
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        try:
            return await replay(
                client, b"Subject: t\r\n\r\nbody\r\n", Envelope(sender="a@example.org")
            )
        finally:
            await client.close()

    daemon = Miltrd(cfg, port=port)
    try:
        result = asyncio.run(send())
    finally:
        daemon.stop()
    seen = [c.value for c in result.changes if getattr(c, "name", "") == "X-Switch-Interval"]
    assert seen == ["0.001"]
