"""Byte vectors written by hand from the protocol facts (shared/PROTOCOL.md).

Each vector is: 4-byte big-endian length (= 1 + data), the code byte, data.
None of them is produced by the encoder under test.
"""

from __future__ import annotations

import pytest

from miltrd.protocol import (
    Abort,
    Accept,
    ActionFlag,
    AddHeader,
    AddRecipient,
    AddRecipientPar,
    BodyChunk,
    ChangeHeader,
    ChangeSender,
    Connect,
    ConnectionFail,
    Continue,
    Data,
    DefineMacros,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    InsertHeader,
    LocalProtocolError,
    MacroStage,
    MailFrom,
    OptionNegotiation,
    OptionNegotiationReply,
    Progress,
    ProtocolFlag,
    Quarantine,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reject,
    RemoteProtocolError,
    ReplaceBody,
    ReplyCode,
    Shutdown,
    Skip,
    TempFail,
    Unknown,
    decode_command,
    decode_response,
    encode_command,
    encode_response,
)


def pkt(code: bytes, data: bytes = b"") -> bytes:
    """A packet by the framing rule: uint32 length = 1 + len(data), code, data."""
    return (len(data) + 1).to_bytes(4, "big") + code + data


COMMAND_VECTORS = [
    pytest.param(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff",
        OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)),
        id="optneg-v6",
    ),
    pytest.param(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x3f\x00\x00\x00\x7f",
        OptionNegotiation(2, ActionFlag(0x3F), ProtocolFlag(0x7F)),
        id="optneg-v2",
    ),
    pytest.param(
        pkt(b"D", b"Cj\x00mx.example\x00{daemon_name}\x00smtpd\x00"),
        DefineMacros(ord("C"), {"j": "mx.example", "{daemon_name}": "smtpd"}),
        id="macro-connect",
    ),
    pytest.param(b"\x00\x00\x00\x02DM", DefineMacros(ord("M"), {}), id="macro-empty"),
    pytest.param(
        pkt(b"C", b"mail.example\x004\x00\x19192.0.2.1\x00"),
        Connect("mail.example", Family.INET, 25, "192.0.2.1"),
        id="connect-inet",
    ),
    pytest.param(
        pkt(b"C", b"[2001:db8::1]\x006\xc3\x502001:db8::1\x00"),
        Connect("[2001:db8::1]", Family.INET6, 50000, "2001:db8::1"),
        id="connect-inet6",
    ),
    pytest.param(
        pkt(b"C", b"localhost\x00L\x00\x00/tmp/s\x00"),
        Connect("localhost", Family.UNIX, 0, "/tmp/s"),
        id="connect-unix",
    ),
    pytest.param(
        b"\x00\x00\x00\x0cClocalhost\x00U",
        Connect("localhost", Family.UNKNOWN),
        id="connect-unknown",
    ),
    pytest.param(b"\x00\x00\x00\x0dHclient.test\x00", Helo("client.test"), id="helo"),
    pytest.param(
        pkt(b"M", b"<a@example.com>\x00SIZE=10\x00"),
        MailFrom("<a@example.com>", ("SIZE=10",)),
        id="mail-args",
    ),
    pytest.param(b"\x00\x00\x00\x04M<>\x00", MailFrom("<>"), id="mail-null"),
    pytest.param(
        pkt(b"R", b"<b@example.org>\x00NOTIFY=NEVER\x00ORCPT=x\x00"),
        RcptTo("<b@example.org>", ("NOTIFY=NEVER", "ORCPT=x")),
        id="rcpt-args",
    ),
    pytest.param(b"\x00\x00\x00\x01T", Data(), id="data"),
    pytest.param(
        b"\x00\x00\x00\x10LSubject\x00 Hello\x00",
        Header("Subject", " Hello"),
        id="header",
    ),
    pytest.param(b"\x00\x00\x00\x01N", EndOfHeaders(), id="eoh"),
    pytest.param(b"\x00\x00\x00\x06Bab\r\n\x00", BodyChunk(b"ab\r\n\x00"), id="body-binary"),
    pytest.param(b"\x00\x00\x00\x01E", EndOfMessage(), id="eom"),
    pytest.param(b"\x00\x00\x00\x03Exy", EndOfMessage(b"xy"), id="eom-with-chunk"),
    pytest.param(b"\x00\x00\x00\x01A", Abort(), id="abort"),
    pytest.param(b"\x00\x00\x00\x01Q", Quit(), id="quit"),
    pytest.param(b"\x00\x00\x00\x01K", QuitNewConnection(), id="quit-nc"),
    pytest.param(b"\x00\x00\x00\x06UVRFY\x00", Unknown("VRFY"), id="unknown"),
]


@pytest.mark.parametrize("wire, command", COMMAND_VECTORS)
def test_command_vectors(wire: bytes, command: object) -> None:
    assert decode_command(wire[4], wire[5:]) == command
    assert encode_command(command) == wire  # type: ignore[arg-type]
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4


RESPONSE_VECTORS = [
    pytest.param(b"\x00\x00\x00\x01c", Continue(), id="continue"),
    pytest.param(b"\x00\x00\x00\x01a", Accept(), id="accept"),
    pytest.param(b"\x00\x00\x00\x01r", Reject(), id="reject"),
    pytest.param(b"\x00\x00\x00\x01t", TempFail(), id="tempfail"),
    pytest.param(b"\x00\x00\x00\x01d", Discard(), id="discard"),
    pytest.param(b"\x00\x00\x00\x01p", Progress(), id="progress"),
    pytest.param(b"\x00\x00\x00\x01s", Skip(), id="skip"),
    pytest.param(b"\x00\x00\x00\x01f", ConnectionFail(), id="conn-fail"),
    pytest.param(b"\x00\x00\x00\x014", Shutdown(), id="shutdown"),
    pytest.param(
        pkt(b"y", b"550 5.7.1 No such user\x00"),
        ReplyCode(550, ("No such user",), "5.7.1"),
        id="replycode",
    ),
    pytest.param(
        pkt(b"y", b"451-4.4.3 one\r\n451 4.4.3 two\x00"),
        ReplyCode(451, ("one", "two"), "4.4.3"),
        id="replycode-multiline",
    ),
    pytest.param(
        b"\x00\x00\x00\x10y550 100%% spam\x00",
        ReplyCode(550, ("100% spam",)),
        id="replycode-percent",
    ),
    pytest.param(b"\x00\x00\x00\x05+<x>\x00", AddRecipient("<x>"), id="addrcpt"),
    pytest.param(
        b"\x00\x00\x00\x122<x>\x00NOTIFY=NEVER\x00",
        AddRecipientPar("<x>", "NOTIFY=NEVER"),
        id="addrcpt-par",
    ),
    pytest.param(b"\x00\x00\x00\x05-<x>\x00", DeleteRecipient("<x>"), id="delrcpt"),
    pytest.param(b"\x00\x00\x00\x04bnew", ReplaceBody(b"new"), id="replbody"),
    pytest.param(b"\x00\x00\x00\x07hX-A\x001\x00", AddHeader("X-A", "1"), id="addheader"),
    pytest.param(
        b"\x00\x00\x00\x0bi\x00\x00\x00\x00X-A\x001\x00",
        InsertHeader(0, "X-A", "1"),
        id="insheader",
    ),
    pytest.param(
        b"\x00\x00\x00\x0am\x00\x00\x00\x02X-A\x00\x00",
        ChangeHeader(2, "X-A", ""),
        id="chgheader-delete",
    ),
    pytest.param(b"\x00\x00\x00\x05e<s>\x00", ChangeSender("<s>"), id="chgfrom"),
    pytest.param(
        b"\x00\x00\x00\x0fe<s>\x00BODY=8BIT\x00",
        ChangeSender("<s>", "BODY=8BIT"),
        id="chgfrom-args",
    ),
    pytest.param(b"\x00\x00\x00\x06qspam\x00", Quarantine("spam"), id="quarantine"),
    pytest.param(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x80",
        OptionNegotiationReply(6, ActionFlag.ADDHDRS, ProtocolFlag.NR_HDR),
        id="optneg-reply",
    ),
    pytest.param(
        pkt(
            b"O",
            b"\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00j {client_addr}\x00"
            b"\x00\x00\x00\x02{mail_addr}\x00",
        ),
        OptionNegotiationReply(
            6,
            ActionFlag.SETSYMLIST,
            ProtocolFlag.NONE,
            {MacroStage.CONNECT: ("j", "{client_addr}"), MacroStage.ENVFROM: ("{mail_addr}",)},
        ),
        id="optneg-reply-symlist",
    ),
]


@pytest.mark.parametrize("wire, response", RESPONSE_VECTORS)
def test_response_vectors(wire: bytes, response: object) -> None:
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4
    assert decode_response(wire[4], wire[5:]) == response
    assert encode_response(response) == wire  # type: ignore[arg-type]


# Only what leaves the conversation without a way on closes the connection:
# a command whose code is unknown (does it owe a reply?) and an option
# negotiation that cannot be read (nothing can be agreed).
MALFORMED_COMMANDS = [
    pytest.param(b"Z", b"", id="unknown-code"),
    pytest.param(b"O", b"\x00\x00\x00\x06\x00\x00", id="optneg-short"),
    pytest.param(b"O", b"\x00\x00\x00\x01" + b"\x00" * 8, id="optneg-version-1"),
]


@pytest.mark.parametrize("code, data", MALFORMED_COMMANDS)
def test_malformed_commands_raise_remote_error(code: bytes, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_command(code[0], data)


# Everything else inside a sound packet is read as far as it goes: a string
# ends at its NUL or at the end of the packet, missing strings are empty,
# extra ones are ignored (libmilter reads values as C strings).
TOLERATED_COMMANDS = [
    pytest.param(b"L", b"X-A\x00abc\x00def\x00", Header("X-A", "abc"), id="header-nul-in-value"),
    pytest.param(b"L", b"Subject\x00", Header("Subject", ""), id="header-no-value"),
    pytest.param(b"L", b"Subject\x00abc", Header("Subject", "abc"), id="header-unterminated"),
    pytest.param(b"L", b"", Header("", ""), id="header-empty"),
    pytest.param(b"H", b"name", Helo("name"), id="helo-unterminated"),
    pytest.param(b"H", b"a\x00b\x00", Helo("a"), id="helo-two-strings"),
    pytest.param(b"H", b"", Helo(""), id="helo-empty"),
    pytest.param(b"M", b"", MailFrom(""), id="mail-empty"),
    pytest.param(b"M", b"<a@b>", MailFrom("<a@b>"), id="mail-unterminated"),
    pytest.param(b"R", b"", RcptTo(""), id="rcpt-empty"),
    pytest.param(b"D", b"", DefineMacros(0), id="macro-no-code"),
    pytest.param(b"D", b"Cj\x00", DefineMacros(ord("C")), id="macro-name-without-value"),
    pytest.param(b"D", b"Cj\x00v", DefineMacros(ord("C"), {"j": "v"}), id="macro-unterminated"),
    pytest.param(
        b"D", b"Cj\x00v\x00k\x00", DefineMacros(ord("C"), {"j": "v"}), id="macro-odd-count"
    ),
    pytest.param(b"D", b"C\x00v\x00", DefineMacros(ord("C")), id="macro-empty-name"),
    pytest.param(b"C", b"host", Connect("host"), id="connect-no-nul"),
    pytest.param(b"C", b"host\x00", Connect("host"), id="connect-no-family"),
    pytest.param(b"C", b"host\x00X", Connect("host"), id="connect-bad-family"),
    pytest.param(b"C", b"host\x004\x00", Connect("host"), id="connect-short-port"),
    pytest.param(
        b"C", b"host\x004\x00\x19", Connect("host", Family.INET, 25, ""), id="connect-no-address"
    ),
    pytest.param(
        b"C",
        b"host\x004\x00\x191.2.3.4",
        Connect("host", Family.INET, 25, "1.2.3.4"),
        id="connect-address-unterminated",
    ),
    pytest.param(b"C", b"host\x00Uextra", Connect("host"), id="connect-u-trailing"),
    pytest.param(b"U", b"", Unknown(""), id="unknown-empty"),
    pytest.param(b"U", b"VRFY x\x00y\x00", Unknown("VRFY x"), id="unknown-two-strings"),
]


@pytest.mark.parametrize("code, data, event", TOLERATED_COMMANDS)
def test_content_that_libmilter_reads_is_read(code: bytes, data: bytes, event: object) -> None:
    assert decode_command(code[0], data) == event


MALFORMED_RESPONSES = [
    pytest.param(b"l", b"", id="setsymlist-packet"),
    pytest.param(b"y", b"250 ok\x00", id="replycode-2xx"),
    pytest.param(b"y", b"550-a\r\n451 b\x00", id="replycode-mixed-codes"),
    pytest.param(b"y", b"550 a\r\n550 b\x00", id="replycode-missing-dash"),
    pytest.param(b"y", b"55x nope\x00", id="replycode-not-digits"),
    pytest.param(b"h", b"X\x00", id="addheader-one-string"),
    pytest.param(b"m", b"\x00\x00", id="chgheader-short-index"),
    pytest.param(b"O", b"\x00\x00\x00\x06", id="optneg-short"),
    pytest.param(
        b"O", b"\x00\x00\x00\x06" + b"\x00" * 8 + b"\x00\x00\x00\x09j\x00", id="optneg-bad-stage"
    ),
    pytest.param(
        b"O", b"\x00\x00\x00\x06" + b"\x00" * 8 + b"\x00\x00", id="optneg-truncated-stage"
    ),
    pytest.param(
        b"O", b"\x00\x00\x00\x06" + b"\x00" * 8 + b"\x00\x00\x00\x00j", id="optneg-list-no-nul"
    ),
]


@pytest.mark.parametrize("code, data", MALFORMED_RESPONSES)
def test_malformed_responses_raise_remote_error(code: bytes, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_response(code[0], data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReplyCode(250, ("ok",)),
        lambda: ReplyCode(550, ("x",), "4.7.1"),
        lambda: ReplyCode(550, ("x",), "5.7"),
        lambda: ReplyCode(550, ()),
        lambda: ReplyCode(550, tuple("x" for _ in range(33))),
        lambda: ReplyCode(550, ("a\r\nb",)),
        lambda: ReplyCode(550, ("x" * 981,)),
        lambda: AddHeader("Bad Name", "v"),
        lambda: AddHeader("X-A:", "v"),
        lambda: AddHeader("X-A", "v\x00"),
        lambda: Helo("a\x00b"),
        lambda: InsertHeader(-1, "X", "v"),
        lambda: Connect("h", Family.INET, 70000, "1.2.3.4"),
        lambda: Connect("h", Family.UNKNOWN, 25, None),
    ],
)
def test_invalid_construction_is_local_error(build) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_replycode_32_lines_is_the_limit() -> None:
    reply = ReplyCode(550, tuple(f"line {i}" for i in range(32)), "5.7.1")
    text = reply.to_text()
    lines = text.split("\r\n")
    assert len(lines) == 32
    assert all(line.startswith("550-5.7.1 ") for line in lines[:-1])
    assert lines[-1] == "550 5.7.1 line 31"


def test_eight_bit_text_survives_byte_for_byte() -> None:
    data = b"<\xe9t\xe9@x\xff>\x00SMTPUTF8\x00"
    cmd = decode_command(ord("M"), data)
    assert isinstance(cmd, MailFrom)
    assert cmd.args == ("SMTPUTF8",)
    assert encode_command(cmd)[5:] == data
