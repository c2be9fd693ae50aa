"""Runs the plugins of one runtime for one SMTP connection.

The chain rule, phase by phase, in ``chain.plugins`` order:

1. A hook returns a verdict (None = continue). REJECT, TEMPFAIL and DISCARD
   end the message at once: later plugins are not called and the first
   such verdict wins. At RCPT, REJECT and TEMPFAIL refuse only that
   recipient; later plugins are not asked about it.
2. ACCEPT retires that plugin for the rest of the message (at CONNECT or
   HELO: for the rest of the connection). When every plugin has accepted
   and no change is pending, the chain answers ACCEPT and the MTA stops
   sending this message.
3. Changes asked for in any phase are returned at end of message in chain
   order, then the final verdict. What a plugin sees is one consistent
   message: ``msg.headers`` and ``msg.body`` carry every change asked for so
   far (at end of message: by the plugins before it), header changes and
   body together, applied as the MTA will apply them; ``msg.received_headers``
   and ``msg.received_body`` are the message as the MTA sent it.
4. A plugin in observe mode runs fully; its verdicts and changes are
   logged as "would ..." and dropped.
5. A hook that raises or runs past its timeout gets the plugin's on_error
   verdict, logged with the traceback and the queue id.

One summary line per message says, for each plugin, what it answered or
why it was never asked (``not-applied``: its ``when`` did not match;
``not-run``: the message was decided before its turn), and what each
plugin changed (``changes=``). With log_level "debug" every phase and
every plugin's verdict is logged as it happens.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..api import (
    ACCEPT,
    CONTINUE,
    MESSAGE_PHASES,
    Body,
    Change,
    Connection,
    Message,
    Phase,
    PluginContractError,
    Verdict,
    VerdictKind,
    bare_address,
    reject,
    tempfail,
)
from ..config import OnError
from ..logs import queue_id
from .applicability import Applicability
from .authresults import with_auth_results
from .record import APPLIED, MessageRecord, Tally, describe_change
from .runtime import LoadedPlugin, Runtime
from .timebound import resume_bounded, then

__all__ = ["ChainSession", "EomResult", "on_error_verdict"]

log = logging.getLogger("miltrd.chain")


def on_error_verdict(policy: OnError) -> Verdict:
    """The verdict a failed hook's message gets under ``policy``: tempfail
    is 451 4.3.0 (the sender retries), reject is 550 5.7.1."""
    if policy is OnError.CONTINUE:
        return CONTINUE
    if policy is OnError.ACCEPT:
        return ACCEPT
    if policy is OnError.REJECT:
        return reject(
            "Message rejected by mail filter", code=550, xcode="5.7.1", reason="plugin error"
        )
    return tempfail(
        "Temporary failure in mail filter, try again later",
        code=451,
        xcode="4.3.0",
        reason="plugin error",
    )


@dataclass
class EomResult:
    verdict: Verdict
    changes: list[Change] = field(default_factory=list)


# A phase's name in log lines and metrics labels, and whether it belongs to
# a message: asked at every hook call, where Flag arithmetic and Enum names
# cost more than the rest of the call.
_PHASE_NAME: dict[Phase, str] = {phase: (phase.name or "").lower() for phase in Phase}
_IN_MESSAGE: dict[Phase, bool] = {phase: bool(phase & MESSAGE_PHASES) for phase in Phase}
# Enum members read at every hook call, bound once: on Python 3.11 reading
# one from its class goes through EnumType.__getattr__'s slot, a call into
# Python (about 100 ns, against 8 for a module global).
_CONNECT = Phase.CONNECT
_HELO = Phase.HELO
_MAIL = Phase.MAIL
_RCPT = Phase.RCPT
_DATA = Phase.DATA
_HEADER = Phase.HEADER
_EOH = Phase.EOH
_BODY = Phase.BODY
_EOM = Phase.EOM
_CONTINUE_KIND = VerdictKind.CONTINUE
_ACCEPT_KIND = VerdictKind.ACCEPT
_REFUSALS = (VerdictKind.REJECT, VerdictKind.TEMPFAIL)


class ChainSession:
    """Per-connection chain state; one hook call at a time."""

    def __init__(
        self, runtime: Runtime, conn: Connection, *, on_message: Callable[[], None] | None = None
    ) -> None:
        self.runtime = runtime
        self.on_message = on_message
        self.conn = conn
        self.plugins = runtime.plugins
        self._conn_retired: set[str] = set()
        self._decider = ""  # the plugin whose verdict ended the last phase
        self._accepted: set[str] = set()
        self.msg: Message | None = None
        # The last few messages' records (replay shows the last one). Bounded:
        # an MTA may keep one connection open for thousands of messages.
        self.history: collections.deque[MessageRecord] = collections.deque(maxlen=4)
        self._retired: set[str] = set()
        self._when = Applicability(runtime.conditional)
        self._tally = Tally()
        self._metrics = metrics.recorder()
        # Hook timings only where metrics are on (the base recorder counts nothing).
        self._timed = type(self._metrics) is not metrics.Recorder
        # Phases the MTA does not wait on (negotiated SMFIP_NR_*): a verdict
        # there cannot be sent, so the chain holds it (see ``_settle``).
        self.no_reply = Phase.NONE
        self._final: Verdict | None = None
        # Asked once per connection, not twice per hook (the level changes
        # only with a reload, which new connections pick up).
        self._debug = log.isEnabledFor(logging.DEBUG)
        # Forged Authentication-Results are removed at end of message.
        self._writes_auth_results = runtime.writes_auth_results
        # The queue id this chain last gave the log context (``queue_id``),
        # which the session starts with "".
        self._qid = ""

    # --- helpers ------------------------------------------------------------

    def _new_message(self) -> Message:
        self._end_message_state()
        self._final = None
        body = Body(self.runtime.config.daemon.spool_threshold)
        self.msg = Message(conn=self.conn, body=body)
        self._retired = set(self._conn_retired)
        self._accepted = set()
        self._when.new_message()
        self._tally.new_message()
        return self.msg

    def _end_message_state(self) -> None:
        if self.msg is not None:
            self.msg.close()
        self.msg = None
        if self._qid:
            queue_id.set("")
            self._qid = ""

    def _refresh_qid(self) -> None:
        # Asked at five phases of every message, set when it changes: a
        # context variable's set() builds a new context (and a token).
        qid = self.conn.macro("i")
        if qid and qid != self._qid:
            queue_id.set(qid)
            self._qid = qid

    def _active(self, phase: Phase, recipient: str | None = None) -> Sequence[LoadedPlugin]:
        hooked = self.runtime.hooked[phase]
        if self._when.conditional:
            excluded, skip = self._when.judge(self.conn, self.msg, recipient)
            self._retired |= excluded
            if skip:
                return [p for p in hooked if p.name not in self._retired and p.name not in skip]
        if not self._retired:
            return hooked
        return [p for p in hooked if p.name not in self._retired]

    def wants(self, phase: Phase) -> bool:
        """Does any plugin still in the game look at this phase's data?"""
        retired = self._retired
        observers = self.runtime.observed_by.get(phase)
        if observers is None:  # the table holds single phases; NONE or a combination
            observers = tuple(p for p in self.plugins if phase & p.observes)
        return any(p.name not in retired for p in observers)

    def _keeps_body(self) -> bool:
        """Store the body only for plugins that declared ``needs = Phase.BODY``;
        a plugin that only hooks on_body sees each chunk without a copy."""
        return any(p.keeps_body and p.name not in self._retired for p in self.plugins)

    def _all_accepted(self, phase: Phase = Phase.NONE) -> bool:
        if self._writes_auth_results:
            return False
        # Plugins whose `when` does not match do not count.
        excluded = self._when.excluded
        counted = False
        for p in self.plugins:
            if p.name in excluded:
                continue
            if p.name not in self._accepted and p.name not in self._conn_retired:
                return False
            counted = True
        # Before end of message an ACCEPT would lose the pending changes; at
        # end of message they are sent ahead of it. (Asked last: the loop
        # above usually answers first, at every hook.)
        if counted and phase is not _EOM and self.msg is not None and self.msg.changes():
            return False
        return counted

    def _failed(self, p: LoadedPlugin, how: str) -> Verdict:
        """The on_error verdict for a hook that raised or timed out (``how``)."""
        result = on_error_verdict(p.on_error)
        self._tally.verdicts[p.name] = f"{how}->{result.kind.value}"
        self._metrics.hook_failed(p.name, how)
        return result

    def _call(
        self,
        p: LoadedPlugin,
        phase: Phase,
        hook: Callable[..., Awaitable[Verdict | None]],
        args: tuple[Any, ...],
    ) -> Verdict | Awaitable[Verdict]:
        """Call one hook: its verdict, or, if the hook waits, an awaitable
        that finishes it under the plugin's time bound.

        Most hooks finish without waiting; running them up to their first
        suspension here, in the caller's frame, spares a coroutine (and a
        timer) per hook call on the hot path.
        """
        self.conn.caller = p.caller
        tally = self._tally
        (tally.called if _IN_MESSAGE[phase] else tally.conn_called).add(p.name)
        started = self._metrics.clock() if self._timed else 0.0
        waiting = False
        try:
            coro: Any = hook(*args)
            try:
                pending = coro.send(None)
            except StopIteration as done:
                result = done.value
                result = CONTINUE if result is None else _checked(result, phase)
            else:
                waiting = True
                return self._call_rest(p, phase, coro, pending, started)
        except TimeoutError:
            return self._timed_out(p, phase)
        except Exception:
            return self._raised(p, phase)
        finally:
            if not waiting:  # _hook_done written out: this runs at every hook call
                self.conn.caller = None
                if self._timed:
                    self._metrics.hook_done(p.name, _PHASE_NAME[phase], started)
        if result is CONTINUE and not self._debug:
            return result
        return self._outcome(p, phase, result)

    async def _call_rest(
        self, p: LoadedPlugin, phase: Phase, coro: Any, pending: Any, started: float
    ) -> Verdict:
        """The rest of a hook that waited (see ``_call``)."""
        try:
            result = _checked(await resume_bounded(coro, pending, p.timeout), phase)
        except TimeoutError:
            return self._timed_out(p, phase)
        except Exception:
            return self._raised(p, phase)
        finally:
            self._hook_done(p, phase, started)
        return self._outcome(p, phase, result)

    def _hook_done(self, p: LoadedPlugin, phase: Phase, started: float) -> None:
        self.conn.caller = None
        if self._timed:
            self._metrics.hook_done(p.name, _PHASE_NAME[phase], started)

    def _timed_out(self, p: LoadedPlugin, phase: Phase) -> Verdict:
        log.error(
            "plugin %s: %s hook timed out after %.1fs; on_error=%s",
            p.name,
            _PHASE_NAME[phase],
            p.timeout,
            p.on_error,
        )
        return self._failed(p, "timeout")

    def _raised(self, p: LoadedPlugin, phase: Phase) -> Verdict:
        log.exception(
            "plugin %s: %s hook failed; on_error=%s", p.name, _PHASE_NAME[phase], p.on_error
        )
        return self._failed(p, "error")

    def _outcome(self, p: LoadedPlugin, phase: Phase, result: Verdict) -> Verdict:
        """A hook's verdict as the chain takes it: tallied, and only logged
        ("would ...") for a plugin in observe mode."""
        if self._debug:
            log.debug(
                "plugin %s: %s -> %s%s",
                p.name,
                _PHASE_NAME[phase],
                result.describe(),
                " (observe)" if p.observe_only else "",
            )
        if result.kind is _CONTINUE_KIND:
            return result
        label = result.kind.value
        if p.observe_only:
            log.info("plugin %s (observe): would %s", p.name, result.describe())
            # Counted as the summary line says it, never as a refusal the
            # MTA was not told of.
            label = f"would-{label}"
        self._tally.verdicts[p.name] = label
        self._metrics.verdict(p.name, label)
        return CONTINUE if p.observe_only else result

    def _run(
        self,
        phase: Phase,
        hook: str,
        args: tuple[Any, ...],
        recipient: str | None = None,
    ) -> Verdict | Awaitable[Verdict]:
        """Ask the phase's plugins in chain order (the chain rule above):
        the phase's verdict, or an awaitable of it once a hook waits."""
        if self._retired or self._when.conditional:
            active = self._active(phase, recipient)
        else:
            active = self.runtime.hooked[phase]
        if self._debug:
            log.debug(
                "%s%s: %s",
                _PHASE_NAME[phase],
                f" <{recipient}>" if recipient else "",
                ", ".join(p.name for p in active) or "no plugin to call",
            )
        for p in active:
            verdict = self._call(p, phase, p.hooks[hook], args)
            if verdict is CONTINUE:
                continue
            # Where an accept retires a plugin: for the message, or at
            # CONNECT and HELO for the connection.
            retired_scope = self._retired if _IN_MESSAGE[phase] else self._conn_retired
            if not isinstance(verdict, Verdict):
                i = active.index(p)
                return self._run_rest(phase, hook, args, active, i, verdict, retired_scope)
            if verdict.kind is _CONTINUE_KIND:
                continue
            if self._decided(p, verdict, retired_scope):
                return verdict
        # Nobody has accepted yet (the usual case): not all have.
        if not self._accepted and not self._conn_retired:
            return CONTINUE
        return ACCEPT if self._all_accepted(phase) else CONTINUE

    async def _run_rest(
        self,
        phase: Phase,
        hook: str,
        args: tuple[Any, ...],
        active: Sequence[LoadedPlugin],
        i: int,
        waiting: Awaitable[Verdict],
        retired_scope: set[str],
    ) -> Verdict:
        """``_run`` from the hook of ``active[i]`` that waits on."""
        verdict = await waiting
        while True:
            if verdict.kind is not _CONTINUE_KIND and self._decided(
                active[i], verdict, retired_scope
            ):
                return verdict
            i += 1
            if i >= len(active):
                break
            p = active[i]
            called = self._call(p, phase, p.hooks[hook], args)
            verdict = called if isinstance(called, Verdict) else await called
        return ACCEPT if self._all_accepted(phase) else CONTINUE

    def _decided(self, p: LoadedPlugin, verdict: Verdict, retired_scope: set[str]) -> bool:
        """After a verdict other than continue: True if it ends the phase
        (reject, tempfail, discard); an accept retires the plugin."""
        if verdict.kind is _ACCEPT_KIND:
            retired_scope.add(p.name)
            self._retired.add(p.name)
            self._accepted.add(p.name)
            return False
        self._decider = p.name
        return True

    # --- phases ---------------------------------------------------------------

    # Every phase returns what to answer the MTA. Once a verdict has ended
    # the message (``_final``), later events of that message get the same
    # answer without calling any plugin: that is how a verdict reached in a
    # phase without a reply is sent at the next reply the MTA waits for.
    #
    # Each phase comes twice: ``X_now`` runs it at once and returns the
    # verdict, or an awaitable of it if a hook waits (the daemon's hot
    # path: no coroutine unless one is needed); ``X`` is the same as a
    # coroutine.

    def connect_now(self) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        verdict = self._run(_CONNECT, "on_connect", (self.conn,))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _CONNECT)

    def helo_now(self, name: str) -> Verdict | Awaitable[Verdict]:
        self.conn.helo = name
        if self._final is not None:
            return self._final
        verdict = self._run(_HELO, "on_helo", (self.conn, name))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _HELO)

    def mail_now(self, sender: str, args: tuple[str, ...]) -> Verdict | Awaitable[Verdict]:
        msg = self._new_message()
        msg.sender = bare_address(sender)
        msg.sender_args = args
        self._refresh_qid()
        verdict = self._run(_MAIL, "on_mail", (msg, msg.sender))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _MAIL)

    def rcpt_now(self, recipient: str, args: tuple[str, ...]) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        msg = self.msg or self._new_message()
        bare = bare_address(recipient)
        msg.rcpt_args = args
        self._refresh_qid()
        verdict = self._run(_RCPT, "on_rcpt", (msg, bare), recipient=bare)
        if isinstance(verdict, Verdict):
            return self._rcpt_done(verdict, msg, bare, recipient)
        return then(verdict, self._rcpt_done, msg, bare, recipient)

    def _rcpt_done(self, verdict: Verdict, msg: Message, bare: str, recipient: str) -> Verdict:
        if verdict.kind in _REFUSALS:
            msg.rejected_recipients.append(bare)
            log.info("recipient <%s> refused by %s: %s", bare, self._decider, verdict.describe())
            if _RCPT & self.no_reply:
                # No reply to refuse this recipient alone: it ends the message.
                return self._settle(verdict, _RCPT)
            return verdict
        msg.recipients.append(bare)
        msg.raw_recipients[bare.lower()] = recipient
        return self._settle(verdict, _RCPT)

    def data_now(self) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        msg = self.msg or self._new_message()
        self._refresh_qid()
        verdict = self._run(_DATA, "on_data", (msg,))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _DATA)

    def header_now(self, name: str, value: str) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        msg = self.msg or self._new_message()
        msg.received_headers.append((name, value))
        verdict = self._run(_HEADER, "on_header", (msg, name, value))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _HEADER)

    def eoh_now(self) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        msg = self.msg or self._new_message()
        self._refresh_qid()
        verdict = self._run(_EOH, "on_eoh", (msg,))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _EOH)

    def body_now(self, chunk: bytes) -> Verdict | Awaitable[Verdict]:
        if self._final is not None:
            return self._final
        msg = self.msg or self._new_message()
        if self._keeps_body():
            msg.body.append(chunk)
        verdict = self._run(_BODY, "on_body", (msg, chunk))
        return verdict if verdict is CONTINUE else self._settle_now(verdict, _BODY)

    async def connect(self) -> Verdict:
        return await _verdict(self.connect_now())

    async def helo(self, name: str) -> Verdict:
        return await _verdict(self.helo_now(name))

    async def mail(self, sender: str, args: tuple[str, ...]) -> Verdict:
        return await _verdict(self.mail_now(sender, args))

    async def rcpt(self, recipient: str, args: tuple[str, ...]) -> Verdict:
        return await _verdict(self.rcpt_now(recipient, args))

    async def data(self) -> Verdict:
        return await _verdict(self.data_now())

    async def header(self, name: str, value: str) -> Verdict:
        return await _verdict(self.header_now(name, value))

    async def eoh(self) -> Verdict:
        return await _verdict(self.eoh_now())

    async def body(self, chunk: bytes) -> Verdict:
        return await _verdict(self.body_now(chunk))

    def _settle_now(
        self, verdict: Verdict | Awaitable[Verdict], phase: Phase
    ) -> Verdict | Awaitable[Verdict]:
        # The phases ask ``verdict is CONTINUE`` before calling this: the
        # usual answer then costs no call.
        if isinstance(verdict, Verdict):
            return self._settle(verdict, phase)
        return then(verdict, self._settle, phase)

    async def eom(self) -> EomResult:
        """Run end of message: the final verdict, and the changes to send
        before it (none unless the verdict is continue or accept). A verdict
        that ended the message earlier is the answer, with no changes."""
        final, self._final = self._final, None
        if final is not None:
            return EomResult(final)
        msg = self.msg or self._new_message()
        self._refresh_qid()
        ran = self._run(_EOM, "on_eom", (msg,))
        # Awaited only where a hook waits: a coroutine per message spared.
        verdict = ran if isinstance(ran, Verdict) else await ran
        result = EomResult(verdict)
        if verdict.kind in APPLIED:
            result.changes = self._ordered_changes(msg)
            if self._writes_auth_results:
                observing = self.runtime.observe_mode
                result.changes = with_auth_results(self.conn, msg, result.changes, observing)
        self._summary(verdict)
        self._end_message_state()
        return result

    def _ordered_changes(self, msg: Message) -> list[Change]:
        order = self.runtime.positions
        observe = self.runtime.observe_mode
        changes = msg.changes()
        if len(changes) > 1:
            changes = sorted(changes, key=lambda item: order.get(item[0], 0))
        out: list[Change] = []
        for name, change in changes:
            if name in observe:
                log.info("plugin %s (observe): would %s", name, describe_change(change))
                continue
            out.append(change)
        return out

    def _settle(self, verdict: Verdict, phase: Phase) -> Verdict:
        """Return ``verdict``; if it ends the message (reject, tempfail,
        discard, or everyone accepted), log the summary, drop the message
        and keep the verdict as the answer to the rest of it. At CONNECT and
        HELO it is kept only where that phase has no reply."""
        if not (verdict.ends_message or verdict.kind is _ACCEPT_KIND):
            return verdict
        if phase & MESSAGE_PHASES:
            self._summary(verdict, at=(phase.name or "").lower())
            self._end_message_state()
            self._final = verdict
        elif phase & self.no_reply:
            self._final = verdict
        return verdict

    def hold(self, verdict: Verdict) -> None:
        """End the message with ``verdict`` (the daemon's on_error after an
        internal error in a phase without a reply); it answers the next
        event the MTA waits on, as a plugin failure there would."""
        if self._final is None:
            self._summary(verdict, at="internal error")
            self._end_message_state()
            self._final = verdict

    async def abort(self) -> None:
        self._final = None
        msg = self.msg
        if msg is None:
            return
        for p in self.runtime.hooked[Phase.ABORT]:
            await _verdict(self._call(p, Phase.ABORT, _aborted, (p, msg)))
        self._summary(None, at="abort")
        self._end_message_state()

    async def close(self) -> None:
        if self.msg is not None:
            await self.abort()
        for p in self.runtime.closing:
            await _verdict(self._call(p, Phase.CLOSE, _closed, (p, self.conn)))

    def _summary(self, verdict: Verdict | None, at: str = "eom") -> None:
        """Close the message's record: summary line, history, metrics."""
        msg = self.msg
        if msg is None:
            return
        if self.on_message is not None:
            self.on_message()
        record = self._tally.close(
            self.conn,
            msg,
            verdict,
            at,
            self.plugins,
            self._when.excluded,
            self._conn_retired,
            self.runtime.observe_mode,
        )
        self.history.append(record)
        self._metrics.message("accept" if record.action == "continue" else record.action)


async def _verdict(answer: Verdict | Awaitable[Verdict]) -> Verdict:
    return answer if isinstance(answer, Verdict) else await answer


def _checked(result: object, phase: Phase) -> Verdict:
    """A hook's return value as a verdict (None is continue); PluginContractError
    for anything else, and for DISCARD outside a message."""
    if result is None:
        return CONTINUE
    if not isinstance(result, Verdict):
        raise PluginContractError(f"returned {result!r}, not a Verdict or None")
    if result.kind is VerdictKind.DISCARD and not _IN_MESSAGE[phase]:
        raise PluginContractError(f"DISCARD is not allowed at {phase.name}")
    return result


async def _aborted(p: LoadedPlugin, msg: Message) -> None:
    """on_abort has no say: whatever it returns, the message is over."""
    await p.plugin.on_abort(msg)


async def _closed(p: LoadedPlugin, conn: Connection) -> None:
    """on_close has no say: the connection is over."""
    await p.plugin.on_close(conn)
