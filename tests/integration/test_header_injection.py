"""SMTP input with CR, LF and control characters never reaches an added header.

The MTA side of the protocol engine sends a HELO name, a sender and
macros full of line breaks (NUL-terminated strings may carry them); the
spf plugin copies the HELO name and the sender into Received-SPF and
Authentication-Results.
"""

from __future__ import annotations

import asyncio

from miltrd.chain import build_runtime
from miltrd.cli.replay import replay_in_process
from miltrd.config import load_text
from miltrd.mta import Envelope
from miltrd.protocol import AddHeader, InsertHeader

from ..dnsserver import dns_server

EVIL_HELO = "evil.example\r\nX-Injected: helo\x07\x1b[31m"
EVIL_SENDER = "a\r\nX-Injected: sender@example.org"


def test_control_characters_from_smtp_input_never_reach_added_headers() -> None:
    with dns_server() as port:
        config = load_text(
            '[chain]\nplugins = ["spf"]\n[internal]\nnetworks = []\nauthserv_id = "mx.example.com"\n'
            f'[plugins.spf]\nnameservers = ["127.0.0.1:{port}"]\n'
            "dns_timeout = 3.0\n"
        )
        runtime = build_runtime(config)
        env = Envelope(
            sender=EVIL_SENDER,
            recipients=["b@example.com"],
            client_ip="192.0.2.9",
            client_name="name\r\nX-Injected: name",
            helo=EVIL_HELO,
        )
        result, _history = asyncio.run(
            replay_in_process(runtime, b"Subject: x\r\n\r\nbody\r\n", env)
        )
    added = [c for c in result.changes if isinstance(c, AddHeader | InsertHeader)]
    assert {a.name for a in added} == {"Received-SPF", "Authentication-Results"}
    for header in added:
        # The only line breaks are folds (LF then white space): no line of
        # its own can start, so no header can be injected.
        first, *continued = header.value.split("\n")
        assert all(line[:1] in (" ", "\t") for line in continued), header
        for line in (first, *continued):
            assert not any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in line), header
        assert "X-Injected" in header.value.replace("\n", "")  # the text is kept
