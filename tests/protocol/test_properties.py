"""Hypothesis: round trips, arbitrary splits, and garbage in."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miltrd.protocol import (
    NEED_DATA,
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
    ConnectionClosed,
    ConnectionFail,
    Continue,
    Data,
    DefineMacros,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Family,
    FilterConnection,
    Header,
    Helo,
    InsertHeader,
    MacroStage,
    MailFrom,
    MtaConnection,
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

# Text without NUL; surrogates appear only as the escapes of undecodable bytes.
wire_text = (
    st.binary(max_size=40)
    .filter(lambda b: b"\0" not in b)
    .map(lambda b: b.decode("utf-8", "surrogateescape"))
)
u32 = st.integers(0, 0xFFFFFFFF)
header_name = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)
reply_line = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).filter(
    lambda s: not s[:1].isdigit()
)

commands = st.one_of(
    st.builds(
        OptionNegotiation, st.integers(2, 0xFFFFFFFF), u32.map(ActionFlag), u32.map(ProtocolFlag)
    ),
    st.builds(
        DefineMacros,
        st.integers(0, 255),
        st.dictionaries(wire_text.filter(bool), wire_text, max_size=5),
    ),
    st.builds(Connect, wire_text),
    st.builds(
        Connect,
        wire_text,
        st.sampled_from([Family.INET, Family.INET6, Family.UNIX]),
        st.integers(0, 0xFFFF),
        wire_text,
    ),
    st.builds(Helo, wire_text),
    st.builds(MailFrom, wire_text, st.lists(wire_text, max_size=3).map(tuple)),
    st.builds(RcptTo, wire_text, st.lists(wire_text, max_size=3).map(tuple)),
    st.just(Data()),
    st.builds(Header, wire_text, wire_text),
    st.just(EndOfHeaders()),
    st.builds(BodyChunk, st.binary(max_size=200)),
    st.builds(EndOfMessage, st.binary(max_size=20)),
    st.just(Abort()),
    st.just(Quit()),
    st.just(QuitNewConnection()),
    st.builds(Unknown, wire_text),
)


@st.composite
def reply_codes(draw: st.DrawFn) -> ReplyCode:
    code = draw(st.integers(400, 599))
    xcode = draw(
        st.none()
        | st.tuples(st.integers(0, 999), st.integers(0, 999)).map(
            lambda t: f"{str(code)[0]}.{t[0]}.{t[1]}"
        )
    )
    lines = draw(st.lists(reply_line, min_size=1, max_size=32).map(tuple))
    return ReplyCode(code, lines, xcode)


responses = st.one_of(
    st.sampled_from(
        [
            Continue(),
            Accept(),
            Reject(),
            TempFail(),
            Discard(),
            Progress(),
            Skip(),
            ConnectionFail(),
            Shutdown(),
        ]
    ),
    reply_codes(),
    st.builds(AddHeader, header_name, wire_text),
    st.builds(InsertHeader, u32, header_name, wire_text),
    st.builds(ChangeHeader, u32, header_name, wire_text),
    st.builds(AddRecipient, wire_text),
    st.builds(AddRecipientPar, wire_text, wire_text),
    st.builds(DeleteRecipient, wire_text),
    st.builds(ReplaceBody, st.binary(max_size=200)),
    st.builds(ChangeSender, wire_text, st.none() | wire_text),
    st.builds(Quarantine, wire_text),
    st.builds(
        OptionNegotiationReply,
        u32,
        u32.map(ActionFlag),
        u32.map(ProtocolFlag),
        st.dictionaries(
            st.sampled_from(list(MacroStage)),
            st.lists(
                st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
                max_size=4,
            ).map(tuple),
        ),
    ),
)


@given(commands)
def test_every_command_round_trips(cmd) -> None:
    wire = encode_command(cmd)
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4
    assert decode_command(wire[4], wire[5:]) == cmd


# Command codes whose data the decoder reads (OPTNEG needs 12 bytes and a
# version of at least 2, so it gets its own strategy below).
_READ_CODES = b"DCHMRTLNBEAQKU"


@given(
    st.one_of(
        st.tuples(st.sampled_from(list(_READ_CODES)), st.binary(max_size=120)),
        # NUL-separated fields, empty ones included, as most packets are.
        st.tuples(
            st.sampled_from(list(_READ_CODES)),
            st.builds(
                lambda head, parts: head + b"\0".join(parts),
                st.binary(max_size=3),
                st.lists(st.binary(max_size=6), max_size=6),
            ),
        ),
        st.tuples(
            st.just(ord("O")),
            st.builds(
                lambda v, rest: v.to_bytes(4, "big") + rest,
                st.integers(2, 0xFFFFFFFF),
                st.binary(min_size=8, max_size=16),
            ),
        ),
    )
)
def test_decoded_command_equals_the_public_constructors(packet) -> None:
    """The decoder builds commands without running their validation again;
    whatever bytes arrive, what it builds must be a command the public,
    validating constructor accepts and builds equal (same type, same
    fields, same hash, as frozen)."""
    code, data = packet
    cmd = decode_command(code, data)
    kind = type(cmd)
    rebuilt = kind(**{f.name: getattr(cmd, f.name) for f in dataclasses.fields(cmd)})
    assert rebuilt == cmd
    if kind is not DefineMacros:  # its macros are a dict: never hashable
        assert hash(rebuilt) == hash(cmd)
    assert type(rebuilt) is kind
    fields = dataclasses.fields(cmd)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cmd, fields[0].name, getattr(cmd, fields[0].name))


def test_decoded_postfix_session_equals_the_public_constructors() -> None:
    """A Postfix-shaped packet of each kind, with 8-bit content, decodes to
    exactly what the public constructors build."""
    eight_bit = "caf\udce9 \u00e9t\u00e9"  # a lone Latin-1 byte, then real UTF-8
    built = [
        DefineMacros(ord("C"), {"j": "mx.example.com", "{daemon_name}": eight_bit}),
        Connect("client.example.net", Family.INET, 40000, "192.0.2.10"),
        Connect("[unknown]"),
        Helo(eight_bit),
        MailFrom("<sender@example.com>", ("SIZE=4096", "BODY=8BITMIME")),
        RcptTo("<rcpt@example.com>"),
        Header("Subject", eight_bit),
        Unknown("VRFY postmaster"),
        OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)),
    ]
    for cmd in built:
        wire = encode_command(cmd)
        assert decode_command(wire[4], wire[5:]) == cmd


@given(responses)
def test_every_response_round_trips(resp) -> None:
    wire = encode_response(resp)
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4
    assert decode_response(wire[4], wire[5:]) == resp


SESSION = [
    DefineMacros(ord("C"), {"j": "mx.test", "{daemon_name}": "smtpd"}),
    Connect("client.test", Family.INET6, 2525, "2001:db8::5"),
    Helo("client.test"),
    DefineMacros(ord("M"), {"{mail_addr}": "a@x.test"}),
    MailFrom("<a@x.test>", ("SIZE=100",)),
    RcptTo("<b@y.test>"),
    RcptTo("<c@y.test>"),
    Data(),
    Header("From", " a@x.test"),
    Header("Subject", " hi"),
    EndOfHeaders(),
    BodyChunk(b"hello\r\n" * 20),
    BodyChunk(b"world\r\n"),
    EndOfMessage(),
    Unknown("XYZZY"),
    MailFrom("<>"),
    RcptTo("<d@y.test>"),
    Abort(),
    QuitNewConnection(),
    Connect("other", Family.UNKNOWN),
    Quit(),
]
OPTNEG = OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))
STREAM = encode_command(OPTNEG) + b"".join(encode_command(c) for c in SESSION)


def _drive_filter(chunks: list[bytes]) -> list[object]:
    """Feed chunks, answer whatever is owed; return the events seen."""
    conn = FilterConnection()
    seen: list[object] = []
    steps = 0
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            steps += 1
            assert steps < 10_000, "the engine loops"
            event = conn.next_event()
            if event is NEED_DATA:
                break
            seen.append(event)
            if isinstance(event, ConnectionClosed):
                return seen
            if isinstance(event, OptionNegotiation):
                conn.negotiate(
                    actions=ActionFlag(0x1FF), protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.NR_HDR
                )
            elif conn.reply_owed:
                conn.send(Continue())
    return seen


def test_whole_session_is_understood() -> None:
    seen = _drive_filter([STREAM])
    assert seen == [OPTNEG, *SESSION, ConnectionClosed()]


@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_any_split_gives_the_same_events(cuts) -> None:
    cuts = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    assert _drive_filter([p for p in pieces if p]) == [OPTNEG, *SESSION, ConnectionClosed()]


def test_byte_at_a_time() -> None:
    assert _drive_filter([bytes([b]) for b in STREAM]) == [OPTNEG, *SESSION, ConnectionClosed()]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_garbage_into_filter_side_raises_only_remote_error(data, cuts) -> None:
    cuts = sorted({c for c in cuts if c <= len(data)})
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    with contextlib.suppress(RemoteProtocolError):
        _drive_filter([p for p in pieces if p])


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(STREAM) - 1),
            st.sampled_from(["flip", "drop", "dup"]),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_real_session_raises_only_remote_error(mutations) -> None:
    data = bytearray(STREAM)
    for pos, kind, value in mutations:
        pos = min(pos, len(data) - 1)
        if kind == "flip":
            data[pos] = value
        elif kind == "drop":
            del data[pos]
        else:
            data.insert(pos, value)
    with contextlib.suppress(RemoteProtocolError):
        _drive_filter([bytes(data)])


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_garbage_into_mta_side_raises_only_remote_error(data) -> None:
    mta = MtaConnection()
    mta.send(mta.option_negotiation())
    mta.receive_data(data)
    mta.receive_data(b"")
    try:
        for _ in range(1000):
            event = mta.next_event()
            if isinstance(event, ConnectionClosed) or event is NEED_DATA:
                break
            if mta.awaiting is None and mta.negotiated is not None:
                mta.send(Helo("x")) if not mta.skips(Helo) else None
        else:
            raise AssertionError("the engine loops")
    except RemoteProtocolError:
        pass
