"""The MTA side over asyncio streams: send one message to any milter.

Used by ``miltrd replay`` (in-process through a socket pair, or
``--connect`` to any running milter), by the tests and by the benchmark.
It behaves like Postfix: it offers protocol version 6 with everything,
leaves out what the filter switched off, stops a message at the first
message-ending reply and skips the rest of the body when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .protocol import (
    NEED_DATA,
    Abort,
    Accept,
    AddHeader,
    AddRecipient,
    AddRecipientPar,
    ChangeHeader,
    ChangeSender,
    Command,
    Connect,
    ConnectionClosed,
    Continue,
    Data,
    DefineMacros,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Family,
    FilterResponse,
    Header,
    Helo,
    InsertHeader,
    MailFrom,
    MtaCommand,
    MtaConnection,
    Progress,
    Quarantine,
    Quit,
    RcptTo,
    Reject,
    RemoteProtocolError,
    ReplaceBody,
    ReplyCode,
    Skip,
    TempFail,
)

__all__ = [
    "Envelope",
    "ReplayResult",
    "MilterClient",
    "replay",
    "split_message",
    "apply_changes",
    "open_milter",
    "render",
    "describe",
]

FINAL_MESSAGE_ENDING = (Accept, Reject, TempFail, Discard, ReplyCode)


@dataclass
class Envelope:
    sender: str = ""
    recipients: list[str] = field(default_factory=lambda: ["postmaster@localhost"])
    client_ip: str = "127.0.0.1"
    client_name: str = "localhost"
    helo: str = "localhost"
    auth: str = ""
    queue_id: str = field(default_factory=lambda: secrets.token_hex(5).upper())


@dataclass
class ReplayResult:
    """What the filter answered, step by step."""

    steps: list[tuple[str, FilterResponse]] = field(default_factory=list)
    rejected_recipients: dict[str, FilterResponse] = field(default_factory=dict)
    changes: list[FilterResponse] = field(default_factory=list)
    final: FilterResponse | None = None
    ended_at: str = ""

    @property
    def action(self) -> str:
        """accept, reject, tempfail, discard (what the MTA would do)."""
        final = self.final
        if final is None or isinstance(final, (Continue, Accept, Skip, Progress)):
            return "accept"
        if isinstance(final, Discard):
            return "discard"
        if isinstance(final, ReplyCode):
            return "reject" if final.is_reject else "tempfail"
        if isinstance(final, Reject):
            return "reject"
        return "tempfail"


def split_message(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Headers as the MTA sends them (name, value without the leading space;
    folded lines joined by LF) and the body with CRLF line ends."""
    data = raw.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    if not sep and not head.startswith((b" ", b"\t")) and b":" not in head.split(b"\n", 1)[0]:
        head, body = b"", data
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\n") if head else []:
        text = line.decode("utf-8", "surrogateescape")
        if text[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + text)
        elif ":" in text:
            name, _, value = text.partition(":")
            headers.append((name.strip(), value.lstrip(" ")))
    return headers, body.replace(b"\n", b"\r\n")


def apply_changes(
    headers: list[tuple[str, str]], body: bytes, changes: Sequence[FilterResponse]
) -> tuple[list[tuple[str, str]], bytes]:
    """The message after the filter's header and body changes, as an MTA applies them."""
    headers = list(headers)
    new_body: bytearray | None = None
    for change in changes:
        match change:
            case AddHeader():
                headers.append((change.name, change.value))
            case InsertHeader():
                headers.insert(min(change.index, len(headers)), (change.name, change.value))
            case ChangeHeader():
                seen = 0
                for i, (name, _value) in enumerate(headers):
                    if name.lower() == change.name.lower():
                        seen += 1
                        if seen == change.index:
                            if change.value:
                                headers[i] = (name, change.value)
                            else:
                                del headers[i]
                            break
                else:
                    if change.value:
                        headers.append((change.name, change.value))
            case ReplaceBody():
                new_body = (new_body or bytearray()) + change.data
    return headers, bytes(new_body) if new_body is not None else body


def render(headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [
        f"{n}: {v}".replace("\n", "\r\n").encode("utf-8", "surrogateescape") for n, v in headers
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class MilterClient:
    """One milter connection from the MTA side, over asyncio streams."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mta: MtaConnection | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.mta = mta or MtaConnection()

    async def command(self, cmd: MtaCommand) -> list[FilterResponse]:
        """Send ``cmd``; return every response up to and including the final one."""
        self.writer.write(self.mta.send(cmd))
        got: list[FilterResponse] = []
        while self.mta.awaiting is not None:
            event = self.mta.next_event()
            if event is NEED_DATA:
                data = await self.reader.read(262144)
                if not data:
                    self.mta.receive_data(b"")
                    raise RemoteProtocolError(
                        f"the filter closed the connection after {type(cmd).__name__}"
                    )
                self.mta.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                raise RemoteProtocolError("the filter closed the connection")
            got.append(event)
        return got

    async def macros(self, command: Command, values: dict[str, str]) -> None:
        self.writer.write(self.mta.send(DefineMacros(command, values)))

    async def negotiate(self) -> None:
        await self.command(self.mta.option_negotiation())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(self.mta.send(Quit()))
            await self.writer.drain()
        self.writer.close()


async def replay(client: MilterClient, raw: bytes, env: Envelope) -> ReplayResult:
    """Send one message through the filter as Postfix would."""
    result = ReplayResult()
    mta = client.mta
    if mta.negotiated is None:
        await client.negotiate()

    async def step(name: str, cmd: MtaCommand) -> FilterResponse | None:
        if mta.skips(type(cmd)):
            return None
        responses = await client.command(cmd)
        final = None
        for r in responses:
            if isinstance(r, Progress):
                continue
            if name == "eom" and not isinstance(r, (*FINAL_MESSAGE_ENDING, Continue)):
                result.changes.append(r)
                continue
            final = r
        if final is not None:
            result.steps.append((name, final))
        return final

    def ends(reply: FilterResponse | None) -> bool:
        return isinstance(reply, FINAL_MESSAGE_ENDING)

    family = Family.INET
    try:
        if ipaddress.ip_address(env.client_ip).version == 6:
            family = Family.INET6
    except ValueError:
        family = Family.UNKNOWN
    await client.macros(
        Command.CONNECT,
        {
            "j": "miltrd-replay.localhost",
            "{daemon_name}": "miltrd-replay",
            "{client_addr}": env.client_ip,
            "{client_name}": env.client_name,
        },
    )
    if family is Family.UNKNOWN:
        connect = Connect(env.client_name)
    else:
        connect = Connect(env.client_name, family, 25, env.client_ip)
    reply = await step("connect", connect)
    if ends(reply):
        result.final, result.ended_at = reply, "connect"
        return result
    reply = await step("helo", Helo(env.helo))
    if ends(reply):
        result.final, result.ended_at = reply, "helo"
        return result
    mail_macros = {"{mail_addr}": env.sender}
    if env.auth:
        mail_macros |= {"{auth_authen}": env.auth, "{auth_type}": "PLAIN"}
    await client.macros(Command.MAIL, mail_macros)
    reply = await step("mail", MailFrom(f"<{env.sender}>"))
    if ends(reply):
        result.final, result.ended_at = reply, "mail"
        return result
    accepted = 0
    for rcpt in env.recipients:
        await client.macros(Command.RCPT, {"{rcpt_addr}": rcpt})
        reply = await step("rcpt", RcptTo(f"<{rcpt}>"))
        if isinstance(reply, (Reject, TempFail, ReplyCode)):
            result.rejected_recipients[rcpt] = reply
            continue
        if isinstance(reply, (Accept, Discard)):
            result.final, result.ended_at = reply, "rcpt"
            return result
        accepted += 1
    if not accepted:
        client.writer.write(mta.send(Abort()))
        result.ended_at = "rcpt"
        result.final = next(iter(result.rejected_recipients.values()), None)
        return result
    qid = {"i": env.queue_id}
    headers, body = split_message(raw)
    await client.macros(Command.DATA, qid)
    reply = await step("data", Data())
    if ends(reply):
        result.final, result.ended_at = reply, "data"
        return result
    for name, value in headers:
        reply = await step("header", Header(name, value))
        if ends(reply):
            result.final, result.ended_at = reply, "header"
            return result
        if isinstance(reply, Skip):
            break
    await client.macros(Command.EOH, qid)
    reply = await step("eoh", EndOfHeaders())
    if ends(reply):
        result.final, result.ended_at = reply, "eoh"
        return result
    for chunk in mta.body_chunks(body):
        reply = await step("body", chunk)
        if ends(reply):
            result.final, result.ended_at = reply, "body"
            return result
        if isinstance(reply, Skip):
            break
    await client.macros(Command.BODYEOB, qid)
    result.final = await step("eom", EndOfMessage())
    result.ended_at = "eom"
    return result


async def open_milter(spec: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a milter socket given in Sendmail syntax (or a plain path)."""
    from .config import parse_listen

    if spec.startswith("/"):
        spec = "unix:" + spec
    target = parse_listen(spec)
    if target.kind == "unix":
        return await asyncio.open_unix_connection(target.path)
    reader, writer = await asyncio.open_connection(target.host or "127.0.0.1", target.port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


def describe(response: FilterResponse) -> str:
    """One line for a response, as an administrator wants to read it."""
    match response:
        case ReplyCode():
            return ("reject " if response.is_reject else "tempfail ") + response.to_text().replace(
                "\r\n", " / "
            ).replace("%%", "%")
        case AddHeader():
            return f"add header {response.name}: {response.value}"
        case InsertHeader():
            return f"insert header at {response.index} {response.name}: {response.value}"
        case ChangeHeader():
            if not response.value:
                return f"delete header {response.name} #{response.index}"
            return f"change header {response.name} #{response.index}: {response.value}"
        case AddRecipient():
            return f"add recipient {response.recipient}"
        case AddRecipientPar():
            return f"add recipient {response.recipient} {response.args}"
        case DeleteRecipient():
            return f"delete recipient {response.recipient}"
        case ChangeSender():
            return f"change sender to {response.sender} {response.args or ''}".rstrip()
        case ReplaceBody():
            return f"replace body ({len(response.data)} bytes)"
        case Quarantine():
            return f"quarantine: {response.reason}"
    return type(response).__name__.lower()
