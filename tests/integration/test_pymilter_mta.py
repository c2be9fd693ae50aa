"""One pymilter program file behind real MTAs: on miltrd's layer and on C pymilter.

tests/pymilter/programs/modifier.py adds a header, refuses one recipient
with a three-line reply, changes the sender and replaces the body (in two
replacebody() calls). It runs unchanged under ``miltrd pymilter`` and, where
the C pymilter is importable, under plain python on C libmilter; the
private Postfix and Sendmail and OpenDKIM's miltertest must see the same
outcome from both.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ..pymilter.runner import PROGRAMS, Program, c_pymilter_available
from ..tools import free_port, require
from .mta import (
    POSTFIX,
    SENDMAIL_BIN,
    SMTP_SINK,
    Postfix,
    Sendmail,
    Sink,
    running,
    world_readable_tmpdir,
)

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\r\noriginal body\r\n"
)


def engines() -> list[str]:
    return ["miltrd", "c"] if c_pymilter_available() else ["miltrd"]


def deliver(smtp_port: int, sink: Sink, subject: str) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("alice@example.org")[0] == 250
        refused = smtp.rcpt("blocked@example.com")
        assert smtp.rcpt("bob@example.com")[0] == 250
        code, _ = smtp.data(MESSAGE.replace(b"{subject}", subject.encode()))
        assert code == 250
    raw = sink.delivered(subject).replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    added = re.search(rb"^X-Pymilter: (.*)$", head, re.M)
    return {
        "refused": refused,
        "header": added.group(1).strip() if added else None,
        "body": body.rstrip(b"\n"),  # smtp-sink ends its file with a line of its own
        "sender": re.search(rb"^X-Mail-Args: (\S*)", head, re.M).group(1),  # type: ignore[union-attr]
    }


def expected(subject: str) -> dict[str, object]:
    return {
        "header": f"seen <alice@example.org> ({subject})".encode(),
        "body": b"Replaced by the modifier.\nSecond chunk.",
        "sender": b"<bounces@example.net>",
    }


def run_everywhere(start_mta: Callable[[Path, int], tuple[object, Sink, int]], subject: str):
    outcomes = {}
    for engine in engines():
        port = free_port()
        prog = Program(PROGRAMS / "modifier.py", f"inet:{port}@127.0.0.1", engine=engine, port=port)
        with world_readable_tmpdir() as base:
            mta, sink, smtp_port = start_mta(base, port)
            with running(prog, sink, mta):
                outcomes[engine] = deliver(smtp_port, sink, subject)
    return outcomes


def check(outcomes: dict[str, dict[str, object]], subject: str, first: bytes) -> None:
    ours = outcomes["miltrd"]
    for key, value in expected(subject).items():
        assert ours[key] == value, (key, ours)
    code, text = ours["refused"]  # type: ignore[misc]
    assert code == 550
    assert text.splitlines() == [
        first,
        b"5.7.1 See postmaster@example.org",
        b"5.7.1 100% sure",
    ], text
    if "c" in outcomes:
        assert outcomes["c"] == ours


def test_postfix_same_outcome_as_c_pymilter() -> None:
    require(POSTFIX, SMTP_SINK, "script")

    def start(base: Path, port: int) -> tuple[object, Sink, int]:
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        return postfix, sink, postfix.smtp_port

    first = b"5.7.1 Recipient refused by the modifier"
    check(run_everywhere(start, "through postfix"), "through postfix", first)


def test_sendmail_same_outcome_as_c_pymilter() -> None:
    require(str(SENDMAIL_BIN), "m4", "unshare", SMTP_SINK)

    def start(base: Path, port: int) -> tuple[object, Sink, int]:
        sink = Sink(base / "sink")
        sendmail = Sendmail(base / "sm", f"inet:{port}@127.0.0.1", sink.port)
        return sendmail, sink, sendmail.smtp_port

    # Sendmail names the recipient in the first line of the reply.
    first = b"5.7.1 <blocked@example.com>... Recipient refused by the modifier"
    check(run_everywhere(start, "through sendmail"), "through sendmail", first)


@pytest.mark.parametrize("engine", ["miltrd", "c"])
def test_miltertest(engine: str) -> None:
    require("miltertest")
    port = free_port()
    prog = Program(PROGRAMS / "modifier.py", f"inet:{port}@127.0.0.1", engine=engine, port=port)
    try:
        result = subprocess.run(
            ["miltertest", "-D", f"sock=inet:{port}@127.0.0.1", "-D", f"engine={engine}",
             "-s", str(HERE / "pymilter_modifier.lua")],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    finally:
        prog.stop()
    assert result.returncode == 0, result.stdout + result.stderr + prog.log()
    assert "all checks passed" in result.stdout
