"""Write the fuzz seeds: whole sessions as Postfix would send them, and a
filter's answers, each prefixed with the side-selector byte."""

from __future__ import annotations

import sys
from pathlib import Path

from miltrd.protocol import (
    ActionFlag,
    AddHeader,
    BodyChunk,
    ChangeHeader,
    Connect,
    Continue,
    Data,
    DefineMacros,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MacroStage,
    MailFrom,
    OptionNegotiation,
    OptionNegotiationReply,
    ProtocolFlag,
    Quit,
    RcptTo,
    ReplaceBody,
    ReplyCode,
    encode_command,
    encode_response,
)


def sessions() -> dict[str, bytes]:
    optneg = encode_command(OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)))
    message = b"".join(
        encode_command(c)
        for c in (
            DefineMacros(ord("C"), {"j": "mx.example.com", "{daemon_name}": "smtpd"}),
            Connect("client.example.net", Family.INET, 51234, "192.0.2.7"),
            Helo("client.example.net"),
            DefineMacros(ord("M"), {"{mail_addr}": "a@example.net", "{auth_authen}": "alice"}),
            MailFrom("<a@example.net>", ("SIZE=1234", "BODY=8BITMIME")),
            DefineMacros(ord("R"), {"{rcpt_addr}": "b@example.com"}),
            RcptTo("<b@example.com>"),
            DefineMacros(ord("T"), {"i": "4Bc1d2F3"}),
            Data(),
            Header("From", "a@example.net"),
            Header("Subject", "hello"),
            EndOfHeaders(),
            BodyChunk(b"Hello,\r\n\r\nthis is a test.\r\n"),
            EndOfMessage(),
            Quit(),
        )
    )
    reply = encode_response(
        OptionNegotiationReply(
            6, ActionFlag(0x13), ProtocolFlag(0x80), {MacroStage.ENVFROM: ("i",)}
        )
    )
    answers = reply + b"".join(
        encode_response(r)
        for r in (
            Continue(),
            AddHeader("X-A", "1"),
            ChangeHeader(1, "Subject", "x"),
            ReplaceBody(b"new\r\n"),
            ReplyCode(550, ("no", "never"), "5.7.1"),
        )
    )
    return {"filter-session": b"\x00" + optneg + message, "mta-answers": b"\x01" + answers}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "corpus")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in sessions().items():
        (out / name).write_bytes(data)
