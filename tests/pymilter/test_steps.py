"""Optional protocol steps, the same on the layer as on C pymilter:
header_leading_space, rejected_recipients, unknown, SKIP."""

from __future__ import annotations

import asyncio

import pytest

from miltrd.api.wiretext import fold_header
from miltrd.mta import MilterClient, open_milter
from miltrd.protocol import (
    AddHeader,
    Connect,
    Continue,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MailFrom,
    ProtocolFlag,
    RcptTo,
    ReplyCode,
    Skip,
    Unknown,
)

from ..tools import free_port
from .runner import ENGINES, PROGRAMS, Program


def conversation(spec: str) -> dict[str, object]:
    async def go() -> dict[str, object]:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        mta = client.mta
        out: dict[str, object] = {}
        try:
            await client.negotiate()
            assert mta.negotiated is not None
            out["protocol"] = mta.negotiated.protocol & (
                ProtocolFlag.HDR_LEADSPC | ProtocolFlag.RCPT_REJ | ProtocolFlag.NOUNKNOWN
            )
            for cmd in (
                Connect("client.example", Family.INET, 25, "192.0.2.1"),
                Helo("client.example"),
                MailFrom("<a@example.org>"),
            ):
                if not mta.skips(type(cmd)):
                    await client.command(cmd)
            # An MTA passes an unknown SMTP command where it meets one: here
            # between MAIL and RCPT (libmilter takes a RCPT after it).
            out["unknown"] = await client.command(Unknown("XFOO bar"))
            await client.command(RcptTo("<b@example.com>"))
            for cmd in (Data(), Header("Subject", " folded\r\n\tvalue"), EndOfHeaders()):
                if not mta.skips(type(cmd)):
                    await client.command(cmd)
            body = list(mta.body_chunks(b"x" * 70000))
            out["body"] = await client.command(body[0])
            out["eom"] = await client.command(EndOfMessage())
        finally:
            await client.close()
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("engine", ENGINES)
def test_optional_steps(engine: str) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    prog = Program(PROGRAMS / "steps.py", spec, engine=engine, port=port)
    try:
        out = conversation(spec)
    finally:
        prog.stop()
    assert out["protocol"] == ProtocolFlag.HDR_LEADSPC | ProtocolFlag.RCPT_REJ, engine
    assert out["unknown"] == [ReplyCode(502, ("not here: XFOO bar",), "5.5.2")], engine
    assert out["body"] == [Skip()], engine
    # The value arrives with its leading space and folding on both; a
    # header miltrd adds is made valid as every plugin's is (README).
    sent = " folded\r\n\tvalue"
    added = sent if engine == "c" else fold_header("X-Values", sent)
    assert "\r" not in fold_header("X-Values", sent)
    assert out["eom"] == [AddHeader("X-Values", added), Continue()], engine
