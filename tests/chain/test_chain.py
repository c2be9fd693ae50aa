"""The chain rules of DESIGN.md, one test each, through ChainSession."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from miltrd.api import (
    ACCEPT,
    CONTINUE,
    DISCARD,
    Action,
    Connection,
    Message,
    Phase,
    Plugin,
    Verdict,
    VerdictKind,
    reject,
    tempfail,
)
from miltrd.api import changes as m
from miltrd.chain import ChainSession, build_runtime
from miltrd.config import load_text

LOG: list[str] = []


@dataclass(frozen=True)
class Script:
    """What a scripted plugin answers, per phase name."""

    answers: dict[str, str] = field(default_factory=dict)
    header: str = ""


def _verdict(text: str) -> Verdict | None:
    kind = text.split(":", 1)[0]
    if kind == "reject":
        return reject("no")
    if kind == "tempfail":
        return tempfail("later")
    if kind == "accept":
        return ACCEPT
    if kind == "discard":
        return DISCARD
    if kind == "raise":
        raise RuntimeError("scripted failure")
    if kind == "sleep":
        return None
    return CONTINUE


class Scripted(Plugin):
    Options = Script
    actions = Action.ADD_HEADERS | Action.REPLACE_BODY
    needs = Phase.BODY

    async def _answer(self, phase: str) -> Verdict | None:
        LOG.append(f"{self.name}:{phase}")
        text = self.options.answers.get(phase, "continue")
        if text == "sleep":
            await asyncio.sleep(5)
        return _verdict(text)

    async def on_connect(self, conn: Connection) -> Verdict | None:
        return await self._answer("connect")

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        return await self._answer("mail")

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        return await self._answer(f"rcpt {recipient}")

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        return await self._answer("header")

    async def on_eom(self, msg: Message) -> Verdict | None:
        LOG.append(f"{self.name}:body={msg.body.read()!r}")
        if self.options.header:
            msg.add_header("X-By", self.options.header)
        if self.options.answers.get("replace"):
            msg.replace_body(self.options.answers["replace"].encode())
        return await self._answer("eom")

    async def on_abort(self, msg: Message) -> None:
        LOG.append(f"{self.name}:abort from=<{msg.sender}>")


def make_session(*plugins: tuple[str, dict], extra: str = "") -> ChainSession:
    lines = ["[chain]", f"plugins = {[name for name, _ in plugins]!r}".replace("'", '"')]
    for name, opts in plugins:
        lines.append(f"[plugins.{name}]")
        lines.append('use = "tests.chain.test_chain:Scripted"')
        for key, value in opts.items():
            if key == "answers":
                inner = ", ".join(f'"{k}" = "{v}"' for k, v in value.items())
                lines.append(f"answers = {{ {inner} }}")
            else:
                lines.append(f"{key} = {value!r}".replace("'", '"'))
    config = load_text("\n".join(lines) + "\n" + extra)
    runtime = build_runtime(config)
    conn = Connection(
        id="t", internal_rules=config.internal, hostname="client", address="192.0.2.1"
    )
    LOG.clear()
    return ChainSession(runtime, conn)


def run(coro):
    return asyncio.run(coro)


async def _message(session: ChainSession, rcpts=("a@x",), body=b"hello\r\n"):
    verdicts = [await session.mail("<s@y>", ())]
    for r in rcpts:
        verdicts.append(await session.rcpt(f"<{r}>", ()))
    verdicts.append(await session.header("Subject", "x"))
    verdicts.append(await session.body(body))
    result = await session.eom()
    return verdicts, result


def test_plugins_run_in_config_order() -> None:
    s = make_session(("b", {}), ("a", {}), ("c", {}))
    run(_message(s))
    assert [e for e in LOG if e.endswith(":mail")] == ["b:mail", "a:mail", "c:mail"]


def test_first_terminal_verdict_wins_and_later_plugins_are_not_called() -> None:
    s = make_session(
        ("a", {"answers": {"mail": "tempfail"}}), ("b", {"answers": {"mail": "reject"}})
    )

    async def go():
        return await s.mail("<s@y>", ())

    verdict = run(go())
    assert verdict.kind is VerdictKind.TEMPFAIL
    assert "b:mail" not in LOG


def test_rcpt_reject_refuses_only_that_recipient() -> None:
    s = make_session(("a", {"answers": {"rcpt bad@x": "reject"}}), ("b", {}))
    verdicts, result = run(_message(s, rcpts=("bad@x", "good@x")))
    assert verdicts[1].kind is VerdictKind.REJECT
    assert verdicts[2].kind is VerdictKind.CONTINUE
    assert "b:rcpt bad@x" not in LOG  # later plugins are not asked about it
    assert "b:rcpt good@x" in LOG
    assert result.verdict.kind is VerdictKind.CONTINUE


def test_accept_retires_a_plugin_for_the_message_only() -> None:
    s = make_session(("a", {"answers": {"mail": "accept"}}), ("b", {}))

    async def go():
        await _message(s)
        await _message(s)

    run(go())
    assert LOG.count("a:mail") == 2  # called again for the next message
    assert not any(e.startswith("a:rcpt") or e.startswith("a:eom") for e in LOG)
    assert any(e.startswith("b:rcpt") for e in LOG)


def test_all_plugins_accepted_means_accept_at_the_mta() -> None:
    s = make_session(("a", {"answers": {"mail": "accept"}}), ("b", {"answers": {"mail": "accept"}}))
    verdict = run(s.mail("<s@y>", ()))
    assert verdict.kind is VerdictKind.ACCEPT


class TagThenAccept(Plugin):
    actions = Action.ADD_HEADERS

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        msg.add_header("X-Tag", recipient)
        return ACCEPT


def test_pending_changes_block_the_early_accept() -> None:
    config = load_text(
        '[chain]\nplugins = ["t"]\n[plugins.t]\nuse = "tests.chain.test_chain:TagThenAccept"\n'
    )
    s = ChainSession(build_runtime(config), Connection(id="t", internal_rules=config.internal))

    async def go():
        await s.mail("<s@y>", ())
        at_rcpt = await s.rcpt("<r@y>", ())
        return at_rcpt, await s.eom()

    at_rcpt, result = run(go())
    # Everyone accepted, but an accept now would lose the header: continue.
    assert at_rcpt.kind is VerdictKind.CONTINUE
    assert result.changes == [m.HeaderAddition("X-Tag", "r@y")]


def test_changes_are_sent_in_chain_order_and_later_plugins_see_the_new_body() -> None:
    s = make_session(
        ("a", {"header": "first", "answers": {"replace": "NEW BODY"}}),
        ("b", {"header": "second"}),
    )
    _, result = run(_message(s))
    assert result.changes == [
        m.HeaderAddition("X-By", "first"),
        m.BodyReplacement(b"NEW BODY"),
        m.HeaderAddition("X-By", "second"),
    ]
    assert "b:body=b'NEW BODY'" in LOG
    assert "a:body=b'hello\\r\\n'" in LOG


def test_observe_mode_logs_would_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    s = make_session(
        (
            "watch",
            {"mode": "observe", "header": "x", "answers": {"mail": "reject", "replace": "Z"}},
        ),
        ("b", {}),
    )
    with caplog.at_level(logging.INFO, logger="miltrd"):
        verdicts, result = run(_message(s))
    assert verdicts[0].kind is VerdictKind.CONTINUE
    assert result.changes == []
    assert "b:body=b'hello\\r\\n'" in LOG  # the observed replacement did not happen
    assert "would reject" in caplog.text
    assert "(observe): would add header " in caplog.text


def test_raising_hook_gets_on_error_with_traceback_and_queue_id(caplog) -> None:
    s = make_session(("a", {"answers": {"eom": "raise"}}), ("b", {}))
    s.conn.macros = {"i": "QID42"}
    with caplog.at_level(logging.INFO, logger="miltrd"):
        _, result = run(_message(s))
    assert result.verdict.kind is VerdictKind.TEMPFAIL
    assert result.verdict.reply is not None and result.verdict.reply.code == 451
    assert "RuntimeError: scripted failure" in caplog.text
    assert "plugin a: eom hook failed" in caplog.text


@pytest.mark.parametrize(
    "policy, kind",
    [
        ("continue", VerdictKind.CONTINUE),
        ("reject", VerdictKind.REJECT),
        ("accept", VerdictKind.ACCEPT),
        ("tempfail", VerdictKind.TEMPFAIL),
    ],
)
def test_on_error_policies(policy: str, kind: VerdictKind) -> None:
    s = make_session(("a", {"answers": {"mail": "raise"}, "on_error": policy}))
    assert run(s.mail("<s@y>", ())).kind is kind


def test_daemon_on_error_is_the_fallback() -> None:
    s = make_session(("a", {"answers": {"mail": "raise"}}), extra='[daemon]\non_error = "reject"\n')
    assert run(s.mail("<s@y>", ())).kind is VerdictKind.REJECT


def test_hook_timeout_gets_on_error(caplog) -> None:
    s = make_session(("a", {"answers": {"mail": "sleep"}, "timeout": 0.1}))
    with caplog.at_level(logging.INFO, logger="miltrd"):
        verdict = run(s.mail("<s@y>", ()))
    assert verdict.kind is VerdictKind.TEMPFAIL
    assert "plugin a: mail hook timed out after 0.1s; on_error=tempfail" in caplog.text


def test_discard_ends_the_message() -> None:
    s = make_session(("a", {"answers": {"header": "discard"}}), ("b", {}))
    verdicts, result = run(_message(s))
    # mail, rcpt, header (a discards), body (the message is over: same answer)
    assert [v.kind for v in verdicts] == [VerdictKind.CONTINUE] * 2 + [VerdictKind.DISCARD] * 2
    assert result.verdict.kind is VerdictKind.DISCARD and result.changes == []
    assert "b:header" not in LOG


def test_discard_at_connect_is_a_contract_error() -> None:
    s = make_session(("a", {"answers": {"connect": "discard"}, "on_error": "continue"}))
    assert run(s.connect()).kind is VerdictKind.CONTINUE


def test_undeclared_change_is_a_contract_error(caplog) -> None:
    class Sneaky(Plugin):
        async def on_eom(self, msg: Message) -> Verdict | None:
            msg.add_header("X-Sneaky", "1")
            return None

    import tests.chain.test_chain as me

    me.Sneaky = Sneaky  # type: ignore[attr-defined]
    config = load_text(
        '[chain]\nplugins = ["s"]\n[plugins.s]\nuse = "tests.chain.test_chain:Sneaky"\n'
    )
    s = ChainSession(build_runtime(config), Connection(id="t", internal_rules=config.internal))

    async def go():
        await s.mail("<a@b>", ())
        return await s.eom()

    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = run(go())
    assert result.verdict.kind is VerdictKind.TEMPFAIL
    assert result.changes == []
    assert "without declaring Action.ADD_HEADERS" in caplog.text


def test_state_is_reset_between_messages() -> None:
    class Counter(Plugin):
        async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
            msg.state["n"] = msg.state.get("n", 0) + 1
            msg.conn.state["total"] = msg.conn.state.get("total", 0) + 1
            LOG.append(f"msg={msg.state['n']} conn={msg.conn.state['total']}")
            return None

    import tests.chain.test_chain as me

    me.Counter = Counter  # type: ignore[attr-defined]
    config = load_text(
        '[chain]\nplugins = ["c"]\n[plugins.c]\nuse = "tests.chain.test_chain:Counter"\n'
    )
    s = ChainSession(build_runtime(config), Connection(id="t", internal_rules=config.internal))
    LOG.clear()

    async def go():
        for _ in range(2):
            await s.mail("<a@b>", ())
            await s.rcpt("<x@y>", ())
            await s.rcpt("<z@y>", ())
            await s.eom()

    run(go())
    assert LOG == ["msg=1 conn=1", "msg=2 conn=2", "msg=1 conn=3", "msg=2 conn=4"]


def test_abort_calls_on_abort_and_starts_clean() -> None:
    s = make_session(("a", {}))

    async def go():
        await s.mail("<first@y>", ())
        await s.rcpt("<a@x>", ())
        await s.abort()
        assert s.msg is None
        return await _message(s)

    verdicts, result = run(go())
    assert LOG[:3] == ["a:mail", "a:rcpt a@x", "a:abort from=<first@y>"]
    assert [v.kind for v in verdicts] == [VerdictKind.CONTINUE] * 4
    assert result.verdict.kind is VerdictKind.CONTINUE
    assert "a:abort from=<s@y>" not in LOG  # the next message did not inherit it


def test_a_verdict_where_no_reply_is_owed_answers_the_rest_of_the_message() -> None:
    s = make_session(("a", {"answers": {"header": "tempfail"}}), ("b", {}))
    s.no_reply = Phase.HEADER  # negotiated SMFIP_NR_HDR: the MTA does not wait

    verdicts, result = run(_message(s))
    kinds = [v.kind for v in verdicts]
    assert kinds == [VerdictKind.CONTINUE] * 2 + [VerdictKind.TEMPFAIL] * 2
    assert result.verdict.kind is VerdictKind.TEMPFAIL and result.changes == []
    assert not any(e.startswith(("a:body", "b:body", "b:header")) for e in LOG)
    LOG.clear()
    verdicts, result = run(_message(s, rcpts=("c@x",)))  # the next message starts clean
    assert result.verdict.kind is VerdictKind.TEMPFAIL  # a answers tempfail at header again
    assert LOG[:2] == ["a:mail", "b:mail"]


def test_a_recipient_refused_where_no_reply_is_owed_ends_the_message() -> None:
    s = make_session(("a", {"answers": {"rcpt bad@x": "reject"}}), ("b", {}))
    s.no_reply = Phase.RCPT  # no reply to refuse just that recipient

    verdicts, result = run(_message(s, rcpts=("bad@x", "good@x")))
    assert [v.kind for v in verdicts[1:]] == [VerdictKind.REJECT] * 4
    assert "a:rcpt good@x" not in LOG and "b:rcpt good@x" not in LOG
    assert result.verdict.kind is VerdictKind.REJECT and result.changes == []


def test_large_body_is_spooled_to_disk() -> None:
    s = make_session(("a", {}), extra="[daemon]\nspool_threshold = 1000\n")

    async def go():
        await s.mail("<s@y>", ())
        await s.body(b"x" * 5000)
        assert s.msg is not None and s.msg.body.on_disk
        assert s.msg.body.size == 5000
        return await s.eom()

    run(go())


def _two_plugin_session(first_mode: str = "enforce") -> ChainSession:
    config = load_text(
        '[chain]\nplugins = ["swap", "snap"]\n'
        f'[plugins.swap]\nuse = "tests.testplugins:SwapContent"\nmode = "{first_mode}"\n'
        '[plugins.snap]\nuse = "tests.testplugins:Snapshot"\n'
    )
    conn = Connection(id="t", internal_rules=config.internal, hostname="c", address="192.0.2.1")
    return ChainSession(build_runtime(config), conn)


async def _headed_message(session: ChainSession):
    await session.mail("<s@y>", ())
    await session.rcpt("<a@x>", ())
    for name, value in (("From", "s@y"), ("Subject", "old"), ("Content-Type", "text/plain")):
        await session.header(name, value)
    await session.body(b"old body\r\n")
    return await session.eom()


def test_a_later_plugin_sees_earlier_header_changes_and_body_together() -> None:
    from tests.testplugins import Snapshot

    Snapshot.seen.clear()
    run(_headed_message(_two_plugin_session()))
    (seen,) = Snapshot.seen
    assert seen["subject"] == "swapped"  # never the new body under old headers
    assert seen["headers"] == ["From", "Subject", "Content-Type", "X-Swapped"]
    assert seen["body"] == b"new body\r\n"
    # and the message as received stays at hand
    assert seen["received_headers"] == [
        ("From", "s@y"),
        ("Subject", "old"),
        ("Content-Type", "text/plain"),
    ]
    assert seen["received_body"] == b"old body\r\n"


def test_an_observing_plugin_leaves_later_plugins_the_received_message() -> None:
    from tests.testplugins import Snapshot

    Snapshot.seen.clear()
    result = run(_headed_message(_two_plugin_session("observe")))
    (seen,) = Snapshot.seen
    assert result.changes == []
    assert seen["subject"] == "old" and seen["body"] == b"old body\r\n"


@pytest.mark.parametrize(
    "changes, expected",
    [
        ([m.HeaderAddition("X-A", "1")], [("To", "t"), ("Subject", "s"), ("X-A", "1")]),
        ([m.HeaderInsertion(0, "X-A", "1")], [("X-A", "1"), ("To", "t"), ("Subject", "s")]),
        ([m.HeaderInsertion(99, "X-A", "1")], [("To", "t"), ("Subject", "s"), ("X-A", "1")]),
        ([m.HeaderChange(1, "subject", "n")], [("To", "t"), ("Subject", "n")]),
        ([m.HeaderChange(1, "Subject", "")], [("To", "t")]),
        ([m.HeaderChange(2, "Subject", "n")], [("To", "t"), ("Subject", "s"), ("Subject", "n")]),
        ([m.HeaderChange(2, "Subject", "")], [("To", "t"), ("Subject", "s")]),
        ([m.BodyReplacement(b"x"), m.RecipientAddition("r@x")], [("To", "t"), ("Subject", "s")]),
    ],
)
def test_header_changes_apply_as_the_mta_applies_them(changes, expected) -> None:
    from miltrd.api import apply_header_changes

    assert apply_header_changes([("To", "t"), ("Subject", "s")], changes) == expected


def test_wants_answers_for_no_phase_and_for_combined_phases() -> None:
    # The per-runtime table behind wants() holds single phases; NONE and
    # combinations are answered as before it (found in review).
    rt = build_runtime(
        load_text(
            '[chain]\nplugins = ["p"]\n[plugins.p]\nuse = "tests.testplugins:HeaderWatcher"\n'
        )
    )
    chain = ChainSession(rt, Connection(id="x", internal_rules=rt.config.internal))
    assert chain.wants(Phase.HEADER) is True
    assert chain.wants(Phase.NONE) is False
    assert chain.wants(Phase.HEADER | Phase.BODY) is True
