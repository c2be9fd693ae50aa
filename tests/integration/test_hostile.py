"""Hostile input that is still valid protocol: it passes, bounded, or is
refused deliberately; and the shipped config stays on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from miltrd.chain import build_runtime
from miltrd.cli.replay import replay_in_process
from miltrd.config import load, load_text
from miltrd.mta import Envelope
from miltrd.protocol import AddHeader

REPO = Path(__file__).resolve().parents[2]


def through_handler(config_text: str, raw: bytes, env: Envelope):
    runtime = build_runtime(load_text(config_text))
    result, _history = asyncio.run(replay_in_process(runtime, raw, env))
    return result


def test_huge_header_line_and_nul_bytes_pass_through() -> None:
    cfg = '[chain]\nplugins = ["len"]\n[plugins.len]\nuse = "tests.testplugins:BodyLength"\n'
    raw = (
        # (A NUL cannot travel in a milter header string; the MTA deals with those.)
        b"Subject: " + b"x" * 200_000 + b"\r\n\r\n" + b"body with \x00 NUL bytes\r\n" * 1000
    )
    result = through_handler(cfg, raw, Envelope(sender="a@example.org"))
    assert result.action == "accept"
    lengths = [
        c.value for c in result.changes if isinstance(c, AddHeader) and c.name == "X-Body-Length"
    ]
    assert lengths == [str(len(b"body with \x00 NUL bytes\r\n") * 1000)]


def test_sample_config_listens_only_on_loopback_or_unix_sockets() -> None:
    config = load(REPO / "etc" / "miltrd.toml")
    for spec in config.daemon.listen:
        assert spec.kind == "unix" or spec.host in ("127.0.0.1", "::1"), spec
    assert not config.daemon.metrics_listen or config.daemon.metrics_listen.startswith("127.")
