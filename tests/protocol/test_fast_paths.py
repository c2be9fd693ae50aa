"""The engine's fast paths against the general code they shortcut.

FilterConnection.next_event cuts a packet that lies whole in the current
read and is legal now without calling into the buffer or the state
machine, and send() answers a legal final reply from a table; decoders
decode a packet's text in one call. Each must give exactly what the
general path gives: the same events, errors, state, macros and bytes.
"""

from __future__ import annotations

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
    BodyChunk,
    Connect,
    Continue,
    Data,
    DefineMacros,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Family,
    FilterConnection,
    Header,
    Helo,
    LocalProtocolError,
    MailFrom,
    OptionNegotiation,
    Progress,
    ProtocolError,
    ProtocolFlag,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reject,
    RemoteProtocolError,
    ReplyCode,
    Skip,
    State,
    TempFail,
    Unknown,
    decode_command,
    encode_command,
)
from miltrd.protocol._strings import read_strings


class GeneralFilterConnection(FilterConnection):
    """FilterConnection with its inline paths switched off."""

    def next_event(self):  # type: ignore[no-untyped-def]
        if self.state is State.ERROR:
            raise RemoteProtocolError("connection already failed")
        if self._awaiting is not None:
            raise LocalProtocolError(f"a reply to {self.awaiting.name} is owed first")
        if self._pending is not None:
            cmd, self._pending = self._pending, None
            return self._accept(cmd)
        return self._next_event()

    def receive_data(self, data) -> None:  # type: ignore[no-untyped-def]
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        self._buffer.feed(data)

    send = FilterConnection._send


PACKETS = [
    encode_command(c)
    for c in (
        OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)),
        DefineMacros(ord("C"), {"j": "mx.test", "{daemon_name}": "smtpd"}),
        DefineMacros(ord("M"), {"{mail_addr}": "a@x.test", "i": "4QAB"}),
        DefineMacros(ord("R"), {"{rcpt_addr}": "b@y.test"}),
        DefineMacros(ord("E"), {"i": "4QAB"}),
        Connect("client.test", Family.INET6, 2525, "2001:db8::5"),
        Connect("unknown"),
        Helo("client.test"),
        MailFrom("<a@x.test>", ("SIZE=100",)),
        RcptTo("<b@y.test>"),
        Data(),
        Header("Subject", " caf\udce9"),
        EndOfHeaders(),
        BodyChunk(b"hello\r\n" * 20),
        EndOfMessage(),
        EndOfMessage(b"last\r\n"),
        Unknown("XYZZY"),
        Abort(),
        QuitNewConnection(),
        Quit(),
    )
] + [
    b"\x00\x00\x00\x03Zxy",  # unknown code
    b"\x00\x00\x00\x00",  # length 0
    b"\x00\x00\x00\x05O\x00\x00\x00\x06",  # a short OPTNEG
    b"\x00\x01\x00\x00L",  # longer than 64 KiB
]
ANSWERS = [
    Continue(),
    Continue(),
    Continue(),
    Accept(),
    Reject(),
    TempFail(),
    Discard(),
    Skip(),
    Progress(),
    ReplyCode(550, ("no",), "5.7.1"),
    AddHeader("X-Test", "yes"),
]
PROTOCOLS = [
    ProtocolFlag.NONE,
    ProtocolFlag.SKIP | ProtocolFlag.NR_HDR | ProtocolFlag.NR_BODY,
    ProtocolFlag(0x1FF000) | ProtocolFlag.SKIP,
]


def _outcome(call):  # type: ignore[no-untyped-def]
    try:
        return ("ok", call())
    except ProtocolError as exc:
        return (type(exc).__name__, str(exc))


def _snapshot(conn: FilterConnection) -> tuple[object, ...]:
    assert conn.reply_owed is (conn.awaiting is not None)
    # macros() is merged as stages arrive: it must equal a merge from scratch.
    merged: dict[str, str] = {}
    for values in conn._macros.values():
        merged.update(values)
    assert conn.macros() == merged
    assert list(conn.macros().items()) == list(merged.items())
    return (conn.state, conn.awaiting, conn.macros(), conn.buffered, conn.negotiated)


def _run(kind: type[FilterConnection], stream: bytes, cuts: list[int], script: list[int]):  # type: ignore[no-untyped-def]
    conn = kind()
    trace: list[object] = []
    answers = iter(script)
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for piece in [*(p for p in pieces if p), b""]:
        trace.append(_outcome(lambda p=piece: conn.receive_data(p)))
        for _ in range(200):
            promised = conn.exhausted  # a caller may stop here without the call
            result = _outcome(conn.next_event)
            assert not promised or result == ("ok", NEED_DATA)
            trace.append((result, _snapshot(conn)))
            event = result[1]
            if result[0] != "ok" or event is NEED_DATA:
                break
            if isinstance(event, OptionNegotiation):
                protocol = PROTOCOLS[next(answers, 0) % len(PROTOCOLS)]
                trace.append(
                    _outcome(
                        lambda p=protocol: conn.negotiate(actions=ActionFlag(0x1FF), protocol=p)
                    )
                )
            while conn.reply_owed:
                answer = ANSWERS[next(answers, 0) % len(ANSWERS)]
                trace.append((_outcome(lambda a=answer: conn.send(a)), _snapshot(conn)))
                if isinstance(answer, (AddHeader, Progress)):
                    continue
                if conn.reply_owed:  # refused: answer what is always allowed
                    trace.append(_outcome(lambda: conn.send(Continue())))
                break
    return trace


@settings(max_examples=400)
@given(
    st.lists(st.integers(0, len(PACKETS) - 1), max_size=40),
    st.lists(st.integers(0, 4000), max_size=12),
    st.lists(st.integers(0, 1000), max_size=60),
)
def test_filter_connection_matches_its_general_path(order, cuts, script) -> None:
    # Mostly a well-formed start, so that the fast path gets to run.
    stream = PACKETS[0] + b"".join(PACKETS[i] for i in order)
    cuts = sorted({c for c in cuts if c < len(stream)})
    fast = _run(FilterConnection, stream, cuts, script)
    general = _run(GeneralFilterConnection, stream, cuts, script)
    assert fast == general


def _reference(code: int, data: bytes) -> object:
    """The decoders as read_strings() reads the packet, field by field."""
    if code == ord("H"):
        return Helo(read_strings(data, 1)[0])
    if code == ord("U"):
        return Unknown(read_strings(data, 1)[0])
    if code == ord("L"):
        return Header(*read_strings(data, 2))
    if code in (ord("M"), ord("R")):
        argv = read_strings(data)
        return (MailFrom if code == ord("M") else RcptTo)(argv[0], tuple(argv[1:]))
    if code == ord("D"):
        macros: dict[str, str] = {}
        if data:
            strings = read_strings(data[1:])
            for i in range(0, len(strings) - 1, 2):
                if strings[i]:
                    macros[strings[i]] = strings[i + 1]
        return DefineMacros(data[0] if data else 0, macros)
    if code == ord("B"):
        return BodyChunk(data)
    assert code == ord("E")
    return EndOfMessage(data)


_FIELD = st.one_of(
    st.binary(max_size=8),
    st.sampled_from([b"", b"\xc3", b"\xa9", b"\xc3\xa9", b"\xe2\x82", b"\xff", b"a"]),
)


@settings(max_examples=1000)
@given(
    st.sampled_from(list(b"HULMRDBE")),
    st.lists(_FIELD, max_size=7),
    st.sampled_from([b"", b"\0"]),
)
def test_decoders_read_strings_as_read_strings_does(code, fields, tail) -> None:
    data = b"\0".join(fields) + tail
    cmd = decode_command(code, data)
    expected = _reference(code, data)
    assert cmd == expected
    assert type(cmd) is type(expected)
    assert [getattr(cmd, f.name) for f in dataclasses.fields(cmd)] == [
        getattr(expected, f.name)
        for f in dataclasses.fields(expected)  # type: ignore[arg-type]
    ]
    if code == ord("D"):  # the same order of names, too
        assert list(cmd.macros) == list(expected.macros)  # type: ignore[attr-defined,union-attr]


def test_an_illegal_command_raises_without_a_chained_exception() -> None:
    """The server clears a protocol error's traceback to break the cycle
    through its frames; a chained exception would keep one of its own."""
    conn = FilterConnection()
    conn.receive_data(encode_command(Helo("x")))
    with pytest.raises(RemoteProtocolError, match="HELO before option negotiation") as info:
        conn.next_event()
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_exhausted_says_when_the_next_event_is_need_data() -> None:
    conn = FilterConnection()
    conn.receive_data(PACKETS[0] + PACKETS[1])  # OPTNEG and a macro packet in one read
    assert isinstance(conn.next_event(), OptionNegotiation)
    assert not conn.exhausted  # the macro packet is still buffered
    conn.negotiate(protocol=ProtocolFlag.NONE)
    assert isinstance(conn.next_event(), DefineMacros)
    assert conn.exhausted  # the read is used up: the drain loop may stop here
    conn.receive_data(PACKETS[5][:3])
    assert not conn.exhausted
    assert conn.next_event() is NEED_DATA
    conn.receive_data(PACKETS[5][3:])
    assert isinstance(conn.next_event(), Connect)  # joined: the general path,
    conn.send(Continue())  # which leaves exhausted False (not known)
    conn.receive_data(PACKETS[7])
    assert isinstance(conn.next_event(), Helo)
    conn.send(Continue())
    assert conn.exhausted
    conn.receive_data(b"")  # end of input: the next call reports it, not NEED_DATA
    assert not conn.exhausted
    assert not isinstance(conn.next_event(), type(NEED_DATA))
