"""Run built-in plugins through the real chain, without an MTA."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from miltrd.api import Change, Connection, Verdict
from miltrd.chain import ChainSession, build_runtime
from miltrd.config import load_text
from miltrd.mta import split_message


def session(
    toml: str,
    *,
    ip: str = "203.0.113.9",
    helo: str = "client.example.net",
    macros: dict[str, str] | None = None,
) -> ChainSession:
    config = load_text(toml)
    runtime = build_runtime(config)
    conn = Connection(
        id="t",
        internal_rules=config.internal,
        hostname=helo,
        address=ip,
        port=25,
        family="inet",
        macros=dict(macros or {}, j="mx.example.com"),
    )
    conn.helo = helo
    return ChainSession(runtime, conn)


@dataclass
class Outcome:
    mail: Verdict
    rcpts: list[Verdict]
    final: Verdict | None
    changes: list[Change]


def run_message(s: ChainSession, sender: str, rcpts: list[str], raw: bytes = b"") -> Outcome:
    async def go() -> Outcome:
        mail = await s.mail(f"<{sender}>", ())
        if mail.ends_message:
            return Outcome(mail, [], None, [])
        verdicts = [await s.rcpt(f"<{r}>", ()) for r in rcpts]
        if raw:
            headers, body = split_message(raw)  # as an MTA sends them
            for name, value in headers:
                await s.header(name, value)
            for i in range(0, len(body), 65535):
                await s.body(body[i : i + 65535])
        result = await s.eom()
        return Outcome(mail, verdicts, result.verdict, result.changes)

    return asyncio.run(go())


def delivered(raw: bytes, changes: list[Change]) -> bytes:
    """The message after the chain's changes, as an MTA applies them."""
    from miltrd import api
    from miltrd import protocol as wire
    from miltrd.mta import apply_changes, render, split_message

    out: list = []
    for c in changes:
        if isinstance(c, api.HeaderAddition):
            out.append(wire.AddHeader(c.name, c.value))
        elif isinstance(c, api.HeaderInsertion):
            out.append(wire.InsertHeader(c.index, c.name, c.value))
        elif isinstance(c, api.HeaderChange):
            out.append(wire.ChangeHeader(c.index, c.name, c.value))
        elif isinstance(c, api.BodyReplacement):
            out.append(wire.ReplaceBody(c.data))
    headers, body = split_message(raw)
    headers, body = apply_changes(headers, body, out)
    return render(headers, body)
