"""Whole conversations between the MTA side and the filter side."""

from __future__ import annotations

import pytest

from miltrd.protocol import (
    MDS_64K,
    MDS_256K,
    NEED_DATA,
    Abort,
    Accept,
    ActionFlag,
    AddHeader,
    BodyChunk,
    ChangeHeader,
    Connect,
    ConnectionClosed,
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
    MacroStage,
    MailFrom,
    MtaConnection,
    OptionNegotiation,
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
    Skip,
    State,
    TempFail,
    encode_command,
    encode_response,
)

from .pair import Pair


def test_full_message_with_modifications() -> None:
    pair = Pair()
    pair.negotiate(
        actions=ActionFlag.ADDHDRS | ActionFlag.CHGHDRS | ActionFlag.CHGBODY | ActionFlag.ADDRCPT,
        protocol=ProtocolFlag.NR_HDR | ProtocolFlag.NR_EOH,
    )
    assert pair.exchange(Connect("c.test", Family.INET, 4321, "192.0.2.7"), Continue()) == [
        Continue()
    ]
    pair.exchange(Helo("c.test"), Continue())
    pair.exchange(MailFrom("<a@x.test>", ("BODY=8BITMIME",)), Continue())
    pair.exchange(RcptTo("<b@y.test>"), Continue())
    pair.exchange(Data(), Continue())
    # NR_HDR / NR_EOH: no reply owed, the filter side must not send one.
    assert pair.send_only(Header("Subject", "hi")) == Header("Subject", "hi")
    assert not pair.filter.reply_owed
    with pytest.raises(LocalProtocolError):
        pair.filter.send(Continue())
    pair.send_only(EndOfHeaders())
    pair.exchange(BodyChunk(b"body\r\n"), Continue())
    got = pair.exchange(
        EndOfMessage(),
        AddHeader("X-Test", "1"),
        ChangeHeader(1, "Subject", "changed"),
        ReplaceBody(b"new body\r\n"),
        Progress(),
        Continue(),
    )
    assert got == [
        AddHeader("X-Test", "1"),
        ChangeHeader(1, "Subject", "changed"),
        ReplaceBody(b"new body\r\n"),
        Progress(),
        Continue(),
    ]
    assert pair.filter.state is State.SESSION
    assert pair.mta.state is State.SESSION


def test_reply_owed_blocks_next_event() -> None:
    pair = Pair()
    pair.negotiate()
    pair.mta_send(Connect("h", Family.UNKNOWN))
    assert pair.filter.next_event() == Connect("h", Family.UNKNOWN)
    with pytest.raises(LocalProtocolError):
        pair.filter.next_event()


def test_nothing_owed_means_no_send() -> None:
    conn = FilterConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(Continue())


def test_modification_only_at_end_of_message() -> None:
    pair = Pair()
    pair.negotiate(actions=ActionFlag.ADDHDRS)
    pair.exchange(Connect("h", Family.UNKNOWN), Continue())
    pair.mta_send(MailFrom("<a@b>"))
    pair.filter.next_event()
    with pytest.raises(LocalProtocolError, match="end of message"):
        pair.filter.send(AddHeader("X", "1"))


def test_modification_needs_negotiated_action() -> None:
    pair = Pair()
    pair.negotiate(actions=ActionFlag.ADDHDRS)
    pair.mta_send(EndOfMessage())
    pair.filter.next_event()
    with pytest.raises(LocalProtocolError, match="CHGBODY"):
        pair.filter.send(ReplaceBody(b"x"))
    with pytest.raises(LocalProtocolError, match="QUARANTINE"):
        pair.filter.send(Quarantine("x"))


def test_body_replacement_is_chunked_to_negotiated_size() -> None:
    pair = Pair()
    pair.negotiate(actions=ActionFlag.CHGBODY)
    body = bytes(range(256)) * 800  # 204800 bytes
    got = pair.exchange(EndOfMessage(), ReplaceBody(body), Continue())
    chunks = [r for r in got if isinstance(r, ReplaceBody)]
    assert [len(c.data) for c in chunks] == [MDS_64K, MDS_64K, MDS_64K, 204800 - 3 * MDS_64K]
    assert b"".join(c.data for c in chunks) == body


def test_body_replacement_must_be_contiguous() -> None:
    pair = Pair()
    pair.negotiate(actions=ActionFlag.CHGBODY | ActionFlag.ADDHDRS)
    pair.mta_send(EndOfMessage())
    pair.filter.next_event()
    pair.filter.send(ReplaceBody(b"a"))
    pair.filter.send(AddHeader("X", "1"))
    with pytest.raises(LocalProtocolError, match="contiguous"):
        pair.filter.send(ReplaceBody(b"b"))


def test_mds_256k_offered_is_echoed_and_used() -> None:
    mta = MtaConnection(protocol=ProtocolFlag(0x1FFFFF) | ProtocolFlag.MDS_256K)
    pair = Pair(mta=mta)
    pair.negotiate(actions=ActionFlag.CHGBODY)
    assert ProtocolFlag.MDS_256K in pair.filter.negotiated.protocol
    assert pair.mta.negotiated.data_size == MDS_256K
    assert pair.filter.packet_limit == MDS_256K
    got = pair.exchange(EndOfMessage(), ReplaceBody(b"x" * 300000), Continue())
    assert [len(r.data) for r in got if isinstance(r, ReplaceBody)] == [MDS_256K, 300000 - MDS_256K]
    # And the MTA may now send body chunks that large.
    pair.exchange(MailFrom("<a@b>"), Continue())
    pair.exchange(BodyChunk(b"y" * MDS_256K), Continue())


def test_version_2_mta() -> None:
    mta = MtaConnection(version=2)
    pair = Pair(mta=mta)
    pair.negotiate(
        actions=ActionFlag.ADDHDRS | ActionFlag.CHGFROM,
        protocol=ProtocolFlag.NR_HDR | ProtocolFlag.NR_CONN | ProtocolFlag.NODATA,
    )
    agreed = pair.filter.negotiated
    assert agreed.version == 2
    assert agreed.actions == ActionFlag.ADDHDRS  # CHGFROM is v6
    # NR_HDR (0x80), NR_CONN and NODATA are all beyond SMFI_V2_PROT (0x7F).
    assert agreed.protocol == ProtocolFlag.NONE
    assert mta.skips(Data) and mta.skips(type(QuitNewConnection()))
    # NR_CONN was not agreed: CONNECT still gets a reply.
    pair.exchange(Connect("h", Family.UNKNOWN), Continue())
    with pytest.raises(LocalProtocolError):
        mta.send(Data())


def test_zero_offer_means_version_1_masks() -> None:
    conn = FilterConnection()
    conn.receive_data(encode_command(OptionNegotiation(6, ActionFlag(0), ProtocolFlag(0))))
    conn.next_event()
    conn.negotiate(actions=ActionFlag.CHGFROM | ActionFlag.ADDHDRS, protocol=ProtocolFlag.NOHELO)
    assert conn.negotiated.actions == ActionFlag.ADDHDRS
    assert conn.negotiated.protocol == ProtocolFlag.NOHELO


def test_macro_lists_request_setsymlist() -> None:
    pair = Pair()
    pair.negotiate(macros={MacroStage.ENVFROM: ["{auth_authen}"]})
    assert ActionFlag.SETSYMLIST in pair.mta.negotiated.actions
    assert pair.mta.negotiated.macros == {MacroStage.ENVFROM: ("{auth_authen}",)}


def test_oversize_packet_rejected_from_length_field_alone() -> None:
    conn = FilterConnection(max_data_size=MDS_64K)
    conn.receive_data((MDS_64K + 2).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_zero_length_packet() -> None:
    conn = FilterConnection()
    conn.receive_data(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="length 0"):
        conn.next_event()


@pytest.mark.parametrize(
    "commands",
    [
        pytest.param([Header("a", "b")], id="before-optneg"),
        pytest.param([OptionNegotiation(6, ActionFlag(1), ProtocolFlag(0))] * 2, id="optneg-twice"),
        pytest.param(
            [Connect("h", Family.UNKNOWN), Connect("h", Family.UNKNOWN)], id="connect-twice"
        ),
        pytest.param([MailFrom("<a>"), Data(), RcptTo("<b>")], id="rcpt-after-data"),
        pytest.param([MailFrom("<a>"), EndOfHeaders(), Header("a", "b")], id="header-after-eoh"),
    ],
)
def test_out_of_order_is_remote_error(commands) -> None:
    conn = FilterConnection()
    if not isinstance(commands[0], (Header, OptionNegotiation)):
        commands = [OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)), *commands]
    with pytest.raises(RemoteProtocolError):
        for cmd in commands:
            conn.receive_data(encode_command(cmd))
            event = conn.next_event()
            if isinstance(event, OptionNegotiation):
                conn.negotiate(protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.NR_HDR)


def test_new_mail_inside_a_message_is_an_implicit_abort() -> None:
    pair = Pair()
    pair.negotiate(protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.NR_HDR)
    for cmd in (MailFrom("<a>"), RcptTo("<b>"), Header("S", "1")):
        pair.send_only(cmd)
    pair.filter.receive_data(encode_command(DefineMacros(ord("M"), {"{mail_addr}": "c"})))
    pair.filter.receive_data(encode_command(MailFrom("<c>")))
    assert pair.filter.next_event() == DefineMacros(ord("M"), {"{mail_addr}": "c"})
    assert pair.filter.next_event() == Abort(implicit=True)
    assert pair.filter.next_event() == MailFrom("<c>")
    assert pair.filter.macros() == {"{mail_addr}": "c"}
    assert pair.filter.state is State.MAIL


def test_macros_before_optneg_and_reset_rules() -> None:
    conn = FilterConnection()
    conn.receive_data(encode_command(DefineMacros(ord("C"), {"j": "mx"})))
    assert conn.next_event() == DefineMacros(ord("C"), {"j": "mx"})
    pair = Pair(filter_side=conn)
    pair.negotiate(protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.NR_HDR)
    for cmd in (
        DefineMacros(ord("M"), {"{mail_addr}": "a@x"}),
        MailFrom("<a@x>"),
        DefineMacros(ord("R"), {"{rcpt_addr}": "b@y"}),
        RcptTo("<b@y>"),
        DefineMacros(ord("R"), {"{rcpt_addr}": "c@y"}),
        RcptTo("<c@y>"),
    ):
        pair.send_only(cmd)
    assert pair.filter.macros() == {"j": "mx", "{mail_addr}": "a@x", "{rcpt_addr}": "c@y"}
    pair.send_only(Abort())
    assert pair.filter.macros() == {"j": "mx"}
    pair.send_only(QuitNewConnection())
    assert pair.filter.macros() == {}
    assert pair.filter.state is State.NEGOTIATED
    pair.send_only(Connect("again", Family.UNKNOWN))  # a new SMTP session, same socket


def test_reject_at_rcpt_refuses_only_that_recipient() -> None:
    pair = Pair()
    pair.negotiate()
    pair.exchange(MailFrom("<a>"), Continue())
    pair.exchange(RcptTo("<b>"), Reject())
    assert pair.filter.state is State.RCPT
    pair.exchange(RcptTo("<c>"), TempFail())
    pair.exchange(RcptTo("<d>"), Continue())
    pair.exchange(Data(), Continue())


def test_reject_at_mail_ends_the_message() -> None:
    pair = Pair()
    pair.negotiate()
    pair.exchange(MailFrom("<a>"), ReplyCode(550, ("no",), "5.7.1"))
    assert pair.filter.state is pair.mta.state is State.SESSION
    pair.exchange(MailFrom("<a2>"), Accept())
    pair.exchange(MailFrom("<a3>"), Continue())


def test_discard_not_allowed_at_connect() -> None:
    pair = Pair()
    pair.negotiate()
    pair.mta_send(Connect("h", Family.UNKNOWN))
    pair.filter.next_event()
    with pytest.raises(LocalProtocolError):
        pair.filter.send(Discard())


def test_skip_needs_negotiation_and_a_body_chunk() -> None:
    pair = Pair()
    pair.negotiate(protocol=ProtocolFlag.SKIP)
    pair.exchange(MailFrom("<a>"), Continue())
    pair.mta_send(Header("a", "b"))
    pair.filter.next_event()
    with pytest.raises(LocalProtocolError):
        pair.filter.send(Skip())
    pair.mta.receive_data(pair.filter.send(Continue()))
    assert pair.mta.next_event() == Continue()
    pair.exchange(BodyChunk(b"x"), Skip())

    other = Pair()
    other.negotiate()
    other.exchange(MailFrom("<a>"), Continue())
    other.mta_send(BodyChunk(b"x"))
    other.filter.next_event()
    with pytest.raises(LocalProtocolError):
        other.filter.send(Skip())


def test_eof_cases() -> None:
    conn = FilterConnection()
    conn.receive_data(b"\x00\x00\x00")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a packet"):
        conn.next_event()
    clean = FilterConnection()
    assert clean.next_event() is NEED_DATA
    clean.receive_data(b"")
    assert clean.next_event() == ConnectionClosed()


def test_quit_then_nothing() -> None:
    pair = Pair()
    pair.negotiate()
    pair.send_only(Quit())
    assert pair.filter.state is State.CLOSED
    pair.filter.receive_data(encode_command(Helo("x")))
    with pytest.raises(RemoteProtocolError):
        pair.filter.next_event()


# --- the MTA side judging a filter -----------------------------------------


def _mta_after_offer(**kw) -> MtaConnection:
    mta = MtaConnection(**kw)
    mta.send(mta.option_negotiation())
    return mta


@pytest.mark.parametrize(
    "reply, message",
    [
        (b"\x00\x00\x00\x07\x00\x00\x00\x01\x00\x00\x00\x00", "version"),
        (b"\x00\x00\x00\x06\x00\x00\x00\x40\x00\x00\x00\x00", "actions not offered"),
        (b"\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x04\x00", "protocol flags"),
        (b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", "below 2"),
    ],
)
def test_mta_refuses_bad_negotiation(reply: bytes, message: str) -> None:
    mta = _mta_after_offer(version=6, actions=ActionFlag(0x3F), protocol=ProtocolFlag(0x3FF))
    mta.receive_data(len(reply).to_bytes(4, "big")[:3] + bytes([len(reply) + 1]) + b"O" + reply)
    with pytest.raises(RemoteProtocolError, match=message):
        mta.next_event()


def test_mta_refuses_modification_before_eom_and_stray_replies() -> None:
    pair = Pair()
    pair.negotiate(actions=ActionFlag.ADDHDRS)
    pair.mta_send(MailFrom("<a>"))
    pair.mta.receive_data(encode_response(AddHeader("X", "1")))
    with pytest.raises(RemoteProtocolError, match="outside end of message"):
        pair.mta.next_event()

    stray = Pair()
    stray.negotiate()
    stray.mta.receive_data(encode_response(Continue()))
    with pytest.raises(RemoteProtocolError, match="no reply was due"):
        stray.mta.next_event()


def test_multiline_reply_with_percent_travels_intact() -> None:
    pair = Pair()
    pair.negotiate()
    reply = ReplyCode(451, ("Greylisted: 50% of", "try again in 5 minutes"), "4.7.1")
    (got,) = pair.exchange(MailFrom("<a>"), reply)
    assert got == reply


def test_message_macros_do_not_leak_into_the_next_message() -> None:
    pair = Pair()
    pair.negotiate(protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.NR_HDR)
    pair.send_only(DefineMacros(ord("C"), {"j": "mx"}))
    pair.send_only(Connect("h", Family.UNKNOWN))
    pair.send_only(DefineMacros(ord("M"), {"{auth_authen}": "alice"}))
    pair.send_only(MailFrom("<a>"))
    pair.send_only(DefineMacros(ord("E"), {"i": "QID1"}))
    pair.exchange(EndOfMessage(), Continue())
    # Still readable while the end of message is being answered...
    assert pair.filter.macros()["i"] == "QID1"
    # ...gone once the next message starts without macros of its own.
    pair.send_only(MailFrom("<b>"))
    assert pair.filter.macros() == {"j": "mx"}
