"""A replacement body given as a file reaches the MTA whole, in order, as
one contiguous run of packets, and later plugins see it."""

from __future__ import annotations

import asyncio

from miltrd.chain import build_runtime
from miltrd.cli.replay import replay_in_process
from miltrd.config import load_text
from miltrd.mta import Envelope, apply_changes, split_message
from miltrd.protocol import AddHeader, ReplaceBody


def run(config_text: str, raw: bytes):
    runtime = build_runtime(load_text(config_text))
    result, _ = asyncio.run(replay_in_process(runtime, raw, Envelope(sender="a@example.org")))
    return result


def test_large_body_from_a_file_is_sent_whole_and_seen_by_later_plugins() -> None:
    lines = [b"line %07d " % i + b"x" * 60 for i in range(60_000)]  # about 4 MiB
    raw = b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    cfg = (
        '[chain]\nplugins = ["rev", "len"]\n'
        '[plugins.rev]\nuse = "tests.testplugins:ReversedLinesFromFile"\n'
        '[plugins.len]\nuse = "tests.testplugins:BodyLength"\n'
    )
    result = run(cfg, raw)
    assert result.action == "accept"
    pieces = [c for c in result.changes if isinstance(c, ReplaceBody)]
    assert len(pieces) > 1 and all(len(p.data) <= 65535 for p in pieces)
    headers, body = split_message(raw)
    _, new = apply_changes(headers, body, result.changes)
    expected = b"".join(line + b"\r\n" for line in reversed(body.split(b"\r\n")))
    assert new == expected
    (length,) = [
        c.value for c in result.changes if isinstance(c, AddHeader) and c.name == "X-Body-Length"
    ]
    assert length == str(len(expected))
