"""The per-message record: what each plugin answered and changed, and the
one summary line per message that ``miltrd stats`` reads.

The line (logger ``miltrd.summary``)::

    summary client=NAME[ADDR] from=<S> to=<R>,... rejected=<R>,...
            plugins=NAME:VERDICT,... changes=NAME:KIND+KIND,... action=A time=S.SSSs

VERDICT is what the plugin answered (``continue``, ``reject``,
``would-reject`` in observe mode, ``error->tempfail`` after a failure) or
why it was never asked: ``not-applied`` (its ``when`` did not match) or
``not-run`` (the message was decided before its turn). ACTION is accept,
reject, tempfail, discard or aborted, with the SMTP reply and ``at PHASE``
when decided before end of message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ..api import (
    BodyReplacement,
    Change,
    Connection,
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    Message,
    Quarantining,
    RecipientAddition,
    RecipientDeletion,
    SenderChange,
    Verdict,
    VerdictKind,
)
from .runtime import LoadedPlugin

__all__ = ["APPLIED", "MessageRecord", "Tally", "change_name", "describe_change"]

summary_log = logging.getLogger("miltrd.summary")

_CHANGE_NAMES = {
    "HeaderAddition": "add-header",
    "HeaderInsertion": "add-header",
    "HeaderChange": "change-header",
    "RecipientAddition": "add-rcpt",
    "RecipientDeletion": "delete-rcpt",
    "SenderChange": "change-from",
    "BodyReplacement": "replace-body",
    "Quarantining": "quarantine",
}


def change_name(change: Change) -> str:
    """The short name of a change, as the summary line and ``stats`` show it."""
    name = type(change).__name__
    if isinstance(change, HeaderChange) and not change.value:
        return "delete-header"
    return _CHANGE_NAMES.get(name, name.lower())


def describe_change(change: Change) -> str:
    """What ``change`` does, in words, for a log line (values shortened,
    no body data): ``add header X-Tag: yes``, ``remove recipient <a@b>``."""
    match change:
        case HeaderAddition():
            return f"add header {change.name}: {_short(change.value)}"
        case HeaderInsertion():
            return f"insert header {change.name} at {change.index}: {_short(change.value)}"
        case HeaderChange() if not change.value:
            return f"remove header {change.name} #{change.index}"
        case HeaderChange():
            return f"change header {change.name} #{change.index} to: {_short(change.value)}"
        case RecipientAddition():
            return f"add recipient <{change.address}>"
        case RecipientDeletion():
            return f"remove recipient <{change.address}>"
        case SenderChange():
            return f"change the sender to <{change.address}>"
        case BodyReplacement():
            return "replace the body"
        case Quarantining():
            return f"quarantine the message: {_short(change.reason)}"
    return type(change).__name__


def _short(text: str, limit: int = 120) -> str:
    """One line, at most ``limit`` characters (folded values unfolded)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class MessageRecord:
    """What became of one message: each plugin's verdict (``not-applied``,
    ``not-run`` for plugins never called), why the plugins whose ``when``
    did not match were not applied, and each plugin's changes: short names
    such as ``replace-body`` or ``add-rcpt`` (``would-...`` in observe
    mode) and what it recorded with ``Message.record`` (``archived``)."""

    action: str
    plugins: dict[str, str]
    not_applied: dict[str, str]
    changes: dict[str, list[str]] = field(default_factory=dict)
    effects: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


# Read once per message, bound once: on Python 3.11 an Enum member read from
# its class, and a member's ``value``, are calls into Python. APPLIED: the
# verdicts whose message gets its changes (the chain's end of message too).
APPLIED = (VerdictKind.CONTINUE, VerdictKind.ACCEPT)
_ACTION = {kind: kind.value for kind in VerdictKind}


class Tally:
    """What each plugin answered, for one connection's current message."""

    def __init__(self) -> None:
        self.verdicts: dict[str, str] = {}  # plugin -> what it answered, if not continue
        self.called: set[str] = set()  # plugins called for this message
        self.conn_called: set[str] = set()  # ...or at connect/helo
        self.started = time.monotonic()

    def new_message(self) -> None:
        self.verdicts = {}
        self.called = set()
        self.started = time.monotonic()

    def verdict_of(self, name: str, excluded: Mapping[str, str], conn_accepted: set[str]) -> str:
        if name in excluded:
            return "not-applied"
        verdict = self.verdicts.get(name)
        if verdict is not None:
            return verdict
        if name in conn_accepted:
            return "accept"  # at connect or helo, for the whole connection
        if name in self.called or name in self.conn_called:
            return "continue"
        return "not-run"

    def close(
        self,
        conn: Connection,
        msg: Message,
        verdict: Verdict | None,
        at: str,
        plugins: Iterable[LoadedPlugin],
        excluded: Mapping[str, str],
        conn_accepted: set[str],
        observing: AbstractSet[str],
    ) -> MessageRecord:
        """The record of the message ``verdict`` ended (None: aborted at
        ``at``), after logging its summary line. ``observing``: the names of
        the plugins in observe mode."""
        verdict_of = self.verdict_of
        verdicts = {p.name: verdict_of(p.name, excluded, conn_accepted) for p in plugins}
        applied = verdict is not None and verdict.kind in APPLIED
        changes = _changes_by_plugin(conn, msg, applied, observing)
        effects: dict[str, list[tuple[str, str]]] = {}
        for name, effect, where in msg.effects:
            effects.setdefault(name, []).append((effect, where))
        record = MessageRecord(
            action=_ACTION[verdict.kind] if verdict is not None else "aborted",
            plugins=verdicts,
            not_applied=dict(excluded),
            changes=changes,
            effects=effects,
        )
        if summary_log.isEnabledFor(logging.INFO):
            self._log(conn, msg, verdict, at, verdicts, changes)
        return record

    def _log(
        self,
        conn: Connection,
        msg: Message,
        verdict: Verdict | None,
        at: str,
        verdicts: Mapping[str, str],
        changes: Mapping[str, list[str]],
    ) -> None:
        """The message's summary line."""
        if verdict is None:
            action = "aborted"
        elif verdict.kind is VerdictKind.CONTINUE:
            action = "accept"
        else:
            action = verdict.kind.value
        if verdict is not None and verdict.reply is not None:
            action += f" ({verdict.reply})"
        if verdict is not None and at != "eom":
            action += f" at {at}"
        summary_log.info(
            "summary client=%s from=<%s> to=%s rejected=%s plugins=%s changes=%s action=%s "
            "time=%.3fs",
            f"{conn.hostname}[{conn.address or ''}]",
            msg.sender,
            ",".join(f"<{r}>" for r in msg.recipients) or "-",
            ",".join(f"<{r}>" for r in msg.rejected_recipients) or "-",
            ",".join(f"{name}:{v}" for name, v in verdicts.items()) or "-",
            ",".join(f"{name}:{'+'.join(kinds)}" for name, kinds in changes.items()) or "-",
            action,
            time.monotonic() - self.started,
        )


def _changes_by_plugin(
    conn: Connection, msg: Message, applied: bool, observing: AbstractSet[str]
) -> dict[str, list[str]]:
    """Each plugin's changes by short name; ``applied``: the MTA gets them
    (a refused message's changes are never made, an observer's never)."""
    out: dict[str, list[str]] = {}
    for name, change in msg.changes():
        if not applied and name not in observing:
            continue
        what = change_name(change)
        if name in observing:
            what = "would-" + what
        kinds = out.setdefault(name, [])
        if what not in kinds:
            kinds.append(what)
    for name, effect, _where in msg.effects:
        what = ("would-" if conn.dry_run else "") + effect
        kinds = out.setdefault(name, [])
        if what not in kinds:
            kinds.append(what)
    return out
