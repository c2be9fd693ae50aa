"""Log lines: control characters from SMTP input are escaped, ids are present."""

from __future__ import annotations

import logging

from miltrd.logs import ContextFilter, SafeFormatter, conn_id, queue_id


def test_peer_text_cannot_forge_a_log_line() -> None:
    formatter = SafeFormatter("[%(conn)s] %(qid)s%(message)s")
    record = logging.LogRecord(
        "miltrd.x", logging.INFO, __file__, 1, "helo=%s", ("evil\r\nINFO forged line\x1b[0m",), None
    )
    token_c, token_q = conn_id.set("c7"), queue_id.set("ABC123")
    try:
        ContextFilter().filter(record)
    finally:
        conn_id.reset(token_c)
        queue_id.reset(token_q)
    line = formatter.format(record)
    assert line == "[c7] ABC123: helo=evil\\r\\nINFO forged line\\x1b[0m"
    assert "\n" not in line
