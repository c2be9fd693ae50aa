"""``miltrd pymilter`` serves each connection in a thread of its own, as
libmilter does: a callback that blocks holds up only its connection, and
progress() reaches the MTA at once."""

from __future__ import annotations

import asyncio
import time

from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import (
    AddHeader,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MailFrom,
    Progress,
    RcptTo,
)

from ..tools import free_port
from .runner import PROGRAMS, Program

MESSAGE = b"From: a@example.org\r\nSubject: t\r\n\r\nbody\r\n"


def test_a_blocked_callback_holds_up_only_its_connection() -> None:
    port = free_port()
    prog = Program(PROGRAMS / "blocking.py", f"inet:{port}@127.0.0.1", port=port)
    spec = f"inet:{port}@127.0.0.1"

    async def one(rcpt: str) -> float:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        try:
            started = time.monotonic()
            result = await replay(
                client, MESSAGE, Envelope(sender="a@example.org", recipients=[rcpt])
            )
            assert AddHeader("X-Blocking", "done") in result.changes
            return time.monotonic() - started
        finally:
            await client.close()

    async def both() -> tuple[float, float]:
        slow = asyncio.ensure_future(one("slow@example.com"))
        await asyncio.sleep(0.3)  # the slow one is now inside its sleep
        fast = await one("fast@example.com")
        return await slow, fast

    try:
        slow, fast = asyncio.run(both())
    finally:
        prog.stop()
    assert slow >= 3.0
    assert fast < 2.5, "the fast connection waited for the blocked one"


def test_progress_reaches_the_mta_during_eom() -> None:
    port = free_port()
    prog = Program(PROGRAMS / "blocking.py", f"inet:{port}@127.0.0.1", port=port)

    async def go() -> list[object]:
        reader, writer = await open_milter(f"inet:{port}@127.0.0.1")
        client = MilterClient(reader, writer)
        mta = client.mta
        try:
            await client.negotiate()
            for cmd in (
                Connect("client.example", Family.INET, 25, "192.0.2.1"),
                Helo("client.example"),
                MailFrom("<a@example.org>"),
                RcptTo("<b@example.com>"),
                Data(),
                Header("Subject", "t"),
                EndOfHeaders(),
                *mta.body_chunks(b"body\r\n"),
            ):
                if not mta.skips(type(cmd)):
                    await client.command(cmd)
            return await client.command(EndOfMessage())
        finally:
            await client.close()

    try:
        responses = asyncio.run(go())
    finally:
        prog.stop()
    assert isinstance(responses[0], Progress)
    assert AddHeader("X-Blocking", "done") in responses
