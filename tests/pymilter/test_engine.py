"""A pymilter program served by ``miltrd pymilter``, against the C pymilter.

The same unchanged program file runs on both engines; miltrd's MTA side
(the one ``miltrd replay --connect`` uses) drives each over TCP as Postfix
would, and what the MTA is told must be the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import (
    AddHeader,
    ChangeSender,
    Continue,
    ReplaceBody,
    ReplyCode,
)

from ..tools import free_port
from .runner import ENGINES, PROGRAMS, Program

MESSAGE = b"From: alice@example.org\r\nSubject: hello there\r\n\r\noriginal body\r\n"


def drive(port: int, recipients: list[str], raw: bytes = MESSAGE) -> dict[str, object]:
    async def go() -> dict[str, object]:
        reader, writer = await open_milter(f"inet:{port}@127.0.0.1")
        client = MilterClient(reader, writer)
        try:
            env = Envelope(sender="alice@example.org", recipients=recipients)
            result = await replay(client, raw, env)
        finally:
            await client.close()
        body = b"".join(c.data for c in result.changes if isinstance(c, ReplaceBody))
        others = [c for c in result.changes if not isinstance(c, ReplaceBody)]
        return {
            "rejected": dict(result.rejected_recipients),
            "changes": others,
            "body": body,
            "final": result.final,
            "action": result.action,
        }

    return asyncio.run(go())


@pytest.fixture(params=ENGINES)
def modifier(request) -> Iterator[tuple[str, int]]:
    port = free_port()
    prog = Program(
        PROGRAMS / "modifier.py", f"inet:{port}@127.0.0.1", engine=request.param, port=port
    )
    try:
        yield request.param, port
    finally:
        prog.stop()


def test_modifier_outcome(modifier) -> None:
    engine, port = modifier
    out = drive(port, ["bob@example.com", "blocked@example.com"])
    assert out["rejected"] == {
        "blocked@example.com": ReplyCode(
            550,
            ("Recipient refused by the modifier", "See postmaster@example.org", "100% sure"),
            "5.7.1",
        )
    }, engine
    assert out["changes"] == [
        AddHeader("X-Pymilter", "seen <alice@example.org> (hello there)"),
        ChangeSender("<bounces@example.net>"),
    ], engine
    assert out["body"] == b"Replaced by the modifier.\r\nSecond chunk.\r\n", engine
    assert isinstance(out["final"], Continue), engine


def test_only_blocked_recipient_is_refused(modifier) -> None:
    _engine, port = modifier
    out = drive(port, ["blocked@example.com"])
    assert out["action"] == "reject"
    assert isinstance(out["final"], ReplyCode) and out["final"].code == 550


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, ReplyCode(451, ("pymilter: untrapped exception in faulty",), "4.3.0")),
        ("reject", ReplyCode(554, ("pymilter: untrapped exception in faulty",), "5.3.0")),
    ],
)
def test_exception_policy(engine: str, policy: str | None, expected: ReplyCode) -> None:
    port = free_port()
    args = [f"inet:{port}@127.0.0.1"] + ([policy] if policy else [])
    prog = Program(PROGRAMS / "faulty.py", *args, engine=engine, port=port)
    try:
        out = drive(port, ["ok@example.com", "crash@example.com"])
    finally:
        prog.stop()
    assert out["rejected"] == {"crash@example.com": expected}
    assert out["action"] == "accept"
    assert "the filter fell over" in prog.log()


def test_continue_policy_passes_the_recipient() -> None:
    port = free_port()
    prog = Program(PROGRAMS / "faulty.py", f"inet:{port}@127.0.0.1", "continue", port=port)
    try:
        out = drive(port, ["crash@example.com"])
    finally:
        prog.stop()
    assert out["rejected"] == {}
    assert out["action"] == "accept"


def test_sigterm_stops_and_program_continues_after_runmilter(tmp_path) -> None:
    prog_file = tmp_path / "after.py"
    prog_file.write_text(
        "import sys, Milter\n"
        "Milter.factory = Milter.Base\n"
        "Milter.runmilter('after', sys.argv[1], 10)\n"
        "print('runmilter returned')\n"
    )
    port = free_port()
    prog = Program(prog_file, f"inet:{port}@127.0.0.1", port=port)
    assert prog.stop() == 0
    assert "runmilter returned" in prog.log()
