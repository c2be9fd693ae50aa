"""The translator between the chain and the wire, as tables."""

from __future__ import annotations

import logging

import pytest

from miltrd.api import (
    ACCEPT,
    CONTINUE,
    DISCARD,
    Action,
    BodyReplacement,
    Change,
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    Phase,
    Quarantining,
    RecipientAddition,
    RecipientDeletion,
    SenderChange,
    reject,
    tempfail,
)
from miltrd.chain import Declared
from miltrd.protocol import (
    ACTION_NEEDED,
    Accept,
    ActionFlag,
    AddHeader,
    AddRecipient,
    AddRecipientPar,
    ChangeHeader,
    ChangeSender,
    Command,
    Continue,
    DeleteRecipient,
    Discard,
    InsertHeader,
    MacroStage,
    ProtocolFlag,
    Quarantine,
    Reject,
    ReplaceBody,
    ReplyCode,
    Skip,
    TempFail,
)
from miltrd.server.translate import (
    ACTION_BITS,
    body_reply,
    change_response,
    eom_responses,
    no_reply_phases,
    reply_of,
    request_for,
)

ALL_ACTIONS = ActionFlag(0x1FF)

# change -> the Action the plugin declares -> the wire response -> the action flag it needs
CHANGES: list[tuple[Change, Action, object, ActionFlag]] = [
    (
        HeaderAddition("X-A", "1"),
        Action.ADD_HEADERS,
        AddHeader("X-A", "1"),
        ActionFlag.ADDHDRS,
    ),
    (
        HeaderInsertion(0, "X-A", "1"),
        Action.ADD_HEADERS,
        InsertHeader(0, "X-A", "1"),
        ActionFlag.ADDHDRS,
    ),
    (
        HeaderChange(2, "X-A", "1"),
        Action.CHANGE_HEADERS,
        ChangeHeader(2, "X-A", "1"),
        ActionFlag.CHGHDRS,
    ),
    (
        HeaderChange(1, "X-A", ""),
        Action.CHANGE_HEADERS,
        ChangeHeader(1, "X-A", ""),
        ActionFlag.CHGHDRS,
    ),
    (
        RecipientAddition("a@example.com"),
        Action.ADD_RECIPIENTS,
        AddRecipient("<a@example.com>"),
        ActionFlag.ADDRCPT,
    ),
    (
        RecipientAddition("a@example.com", "NOTIFY=NEVER"),
        Action.ADD_RECIPIENTS,
        AddRecipientPar("<a@example.com>", "NOTIFY=NEVER"),
        ActionFlag.ADDRCPT_PAR,
    ),
    (
        RecipientDeletion("<A@Example.com>"),
        Action.DELETE_RECIPIENTS,
        DeleteRecipient("<A@Example.com>"),
        ActionFlag.DELRCPT,
    ),
    (
        SenderChange("s@example.com"),
        Action.CHANGE_SENDER,
        ChangeSender("<s@example.com>", None),
        ActionFlag.CHGFROM,
    ),
    (
        SenderChange("s@example.com", "SIZE=10"),
        Action.CHANGE_SENDER,
        ChangeSender("<s@example.com>", "SIZE=10"),
        ActionFlag.CHGFROM,
    ),
    (
        BodyReplacement(b"new\r\n"),
        Action.REPLACE_BODY,
        ReplaceBody(b"new\r\n"),
        ActionFlag.CHGBODY,
    ),
    (
        Quarantining("held"),
        Action.QUARANTINE,
        Quarantine("held"),
        ActionFlag.QUARANTINE,
    ),
]


@pytest.mark.parametrize(
    ("change", "action", "response", "flag"),
    CHANGES,
    ids=[f"{type(c).__name__}-{i}" for i, (c, *_rest) in enumerate(CHANGES)],
)
def test_every_change_kind_maps_to_one_action_and_one_response(
    change: Change, action: Action, response: object, flag: ActionFlag
) -> None:
    assert change.action is action  # what the plugin must declare
    assert change_response(change) == response  # what goes on the wire
    assert ACTION_NEEDED[type(response)] is flag  # what the MTA must grant
    assert flag in ACTION_BITS[action]  # and declaring the action negotiates it


def test_the_table_covers_every_change_kind_and_every_declarable_action() -> None:
    kinds = {type(c) for c, *_rest in CHANGES}
    assert kinds == set(Change.__args__)  # type: ignore[attr-defined]
    # AUTH_RESULTS has no change class: the chain writes that header itself.
    declarable = {a for a in Action if a not in (Action.NONE, Action.AUTH_RESULTS)}
    assert {a for _c, a, *_rest in CHANGES} == declarable
    assert set(ACTION_BITS) == {a for a in Action if a is not Action.NONE}


@pytest.mark.parametrize(
    ("verdict", "command", "response"),
    [
        (CONTINUE, Command.MAIL, Continue()),
        (ACCEPT, Command.RCPT, Accept()),
        (DISCARD, Command.BODYEOB, Discard()),
        (DISCARD, Command.CONNECT, TempFail()),
        (DISCARD, Command.HELO, TempFail()),
        (reject("no", code=550, xcode="5.7.1"), Command.MAIL, ReplyCode(550, ("no",), "5.7.1")),
        (tempfail("later", code=451, xcode=None), Command.RCPT, ReplyCode(451, ("later",), None)),
    ],
)
def test_verdict_to_reply(verdict, command, response) -> None:
    assert reply_of(verdict, command) == response


def test_reply_kinds_without_an_smtp_reply() -> None:
    from miltrd.api import Verdict, VerdictKind

    assert reply_of(Verdict(VerdictKind.REJECT), Command.MAIL) == Reject()
    assert reply_of(Verdict(VerdictKind.TEMPFAIL), Command.MAIL) == TempFail()


def test_end_of_message_sends_changes_in_order_the_last_body_last_then_the_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changes: list[Change] = [
        HeaderAddition("X-A", "1"),
        BodyReplacement(b"first"),
        Quarantining("q"),
        BodyReplacement(b"second"),
        HeaderChange(1, "Subject", "s"),
    ]
    out = list(eom_responses(CONTINUE, changes, ALL_ACTIONS))
    assert out == [
        AddHeader("X-A", "1"),
        Quarantine("q"),
        ChangeHeader(1, "Subject", "s"),
        ReplaceBody(b"second"),
        Continue(),
    ]
    granted = ALL_ACTIONS & ~ActionFlag.QUARANTINE
    with caplog.at_level(logging.ERROR, logger="miltrd.server"):
        out = list(eom_responses(ACCEPT, changes, granted))
    assert Quarantine("q") not in out and out[-1] == Accept()
    assert "the MTA did not allow QUARANTINE" in caplog.text


@pytest.mark.parametrize(
    ("declared", "protocol_has", "protocol_lacks", "actions"),
    [
        (  # observes mail, decides nowhere: MAIL without reply, the rest off;
            # SKIP still, for an MTA that cannot leave the body out
            Declared(Phase.CONNECT | Phase.MAIL | Phase.EOM, Phase.NONE, Action.NONE),
            ProtocolFlag.NR_MAIL | ProtocolFlag.NOHELO | ProtocolFlag.NOBODY | ProtocolFlag.SKIP,
            ProtocolFlag.NOMAIL,
            ActionFlag.NONE,
        ),
        (  # observes the body, decides nowhere: no reply, and SKIP for an
            # MTA that has no NR_BODY
            Declared(Phase.BODY | Phase.EOM, Phase.NONE, Action.NONE),
            ProtocolFlag.NR_BODY | ProtocolFlag.SKIP,
            ProtocolFlag.NOBODY,
            ActionFlag.NONE,
        ),
        (  # decides on the body: body chunks get replies, and SKIP is asked for
            Declared(Phase.BODY | Phase.EOM, Phase.BODY, Action.ADD_RECIPIENTS),
            ProtocolFlag.SKIP | ProtocolFlag.NOCONNECT,
            ProtocolFlag.NR_BODY | ProtocolFlag.NOBODY,
            ActionFlag.ADDRCPT | ActionFlag.ADDRCPT_PAR,
        ),
    ],
)
def test_declarations_to_negotiation(declared, protocol_has, protocol_lacks, actions) -> None:
    req = request_for(declared)
    assert protocol_has in req.protocol
    assert not protocol_lacks & req.protocol
    assert ProtocolFlag.NOUNKNOWN in req.protocol
    assert req.actions == actions


def test_macros_are_requested_per_stage_sorted() -> None:
    declared = Declared(
        Phase.MAIL,
        Phase.NONE,
        Action.NONE,
        {Phase.MAIL: frozenset({"{b}", "i"}), Phase.BODY: {"x"}},
    )
    assert request_for(declared).macros == {MacroStage.ENVFROM: ("i", "{b}")}


def test_no_reply_phases_read_back_from_the_negotiated_flags() -> None:
    declared = Declared(Phase.MAIL | Phase.HEADER | Phase.EOM, Phase.MAIL, Action.NONE)
    assert no_reply_phases(request_for(declared).protocol) == Phase.HEADER


@pytest.mark.parametrize(
    ("verdict", "protocol", "wanted", "reply"),
    [
        (CONTINUE, ProtocolFlag.SKIP, False, Skip()),  # nobody wants more: skip it
        (CONTINUE, ProtocolFlag.SKIP, True, Continue()),  # still wanted
        (CONTINUE, ProtocolFlag.NONE, False, Continue()),  # the MTA has no SKIP
        (ACCEPT, ProtocolFlag.SKIP, False, Accept()),  # a decision is never a skip
    ],
)
def test_body_chunk_replies(verdict, protocol, wanted, reply) -> None:
    assert body_reply(verdict, protocol, wanted) == reply
