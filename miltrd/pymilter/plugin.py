"""A pymilter ``Milter.Base`` subclass as a miltrd chain member.

``use = "pymilter:module:Class"`` in a plugin table makes ``Class`` (a
``Milter.Base`` subclass, imported with ``import Milter`` resolving to this
layer) a plugin: its return codes become verdicts, its ``setreply`` the
SMTP reply of a reject or tempfail, its end-of-message actions the plugin's
changes, and the chain's rules, ``when``, observe mode, timeouts, on_error
and metrics apply as to any plugin. ``adapter_for`` also builds the single
plugin ``miltrd pymilter`` serves a program with.

Layering: like every plugin this module imports only ``miltrd.api``, plus
the compatibility layer it adapts (``miltrd.pymilter``, which imports
nothing else of miltrd).

The callbacks are synchronous and may block, as under libmilter: each runs
in a worker thread (one at a time per connection), so a slow DNS lookup in
one connection does not hold up the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import importlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ..api import (
    ACCEPT,
    DISCARD,
    Action,
    Connection,
    Message,
    Phase,
    Plugin,
    SmtpReply,
    Verdict,
    VerdictKind,
)
from . import MACRO_CALLBACKS, OPTIONAL_CALLBACKS, Base, milter
from .session import DEFAULT_MACROS, Change, MilterSession, Outcome

__all__ = ["PymilterPlugin", "adapter_for", "load", "executor", "verdict_of", "hostaddr_of"]

log = logging.getLogger("miltrd.pymilter")
T = TypeVar("T")

ALL_ACTIONS = (
    Action.ADD_HEADERS
    | Action.CHANGE_HEADERS
    | Action.ADD_RECIPIENTS
    | Action.DELETE_RECIPIENTS
    | Action.CHANGE_SENDER
    | Action.REPLACE_BODY
    | Action.QUARANTINE
)
# Callback -> (phase, hook).
CALLBACKS: dict[str, tuple[Phase, str]] = {
    "connect": (Phase.CONNECT, "on_connect"),
    "hello": (Phase.HELO, "on_helo"),
    "envfrom": (Phase.MAIL, "on_mail"),
    "envrcpt": (Phase.RCPT, "on_rcpt"),
    "data": (Phase.DATA, "on_data"),
    "header": (Phase.HEADER, "on_header"),
    "eoh": (Phase.EOH, "on_eoh"),
    "body": (Phase.BODY, "on_body"),
}
STAGE_PHASES: dict[int, Phase] = {
    milter.M_CONNECT: Phase.CONNECT,
    milter.M_HELO: Phase.HELO,
    milter.M_ENVFROM: Phase.MAIL,
    milter.M_ENVRCPT: Phase.RCPT,
    milter.M_DATA: Phase.DATA,
    milter.M_EOH: Phase.EOH,
    milter.M_EOM: Phase.EOM,
}
# What a chain member's filter object is told the MTA offered: every
# action, and every step skippable and reply-less (the chain negotiates).
CHAIN_PROTOCOL = milter.P_NR_ALL | sum(nc for _nr, nc in OPTIONAL_CALLBACKS.values())

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads callbacks run in (created on first use)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=256, thread_name_prefix="pymilter"
            )
        return _executor


def hostaddr_of(conn: Connection) -> tuple[int, Any]:
    """(family, hostaddr) as pymilter gives them to ``connect``."""
    address = conn.address or ""
    if conn.family == "unix":
        return socket.AF_UNIX, address
    if conn.family in ("inet", "inet6"):
        try:
            ip = str(ipaddress.ip_address(address.strip("[]").removeprefix("IPv6:")))
        except ValueError:
            ip = address
        if conn.family == "inet":
            return socket.AF_INET, (ip, conn.port or 0)
        return socket.AF_INET6, (ip, conn.port or 0, 0, 0)
    return 0, None


def verdict_of(outcome: Outcome) -> Verdict | None:
    rc = outcome.rc
    if rc in (milter.CONTINUE, milter.NOREPLY, milter.SKIP):
        return None
    if rc == milter.ACCEPT:
        return ACCEPT
    if rc == milter.DISCARD:
        return DISCARD
    reply = outcome.reply
    smtp = None
    if reply is not None:
        # libmilter sends the text as set, '%' doubled; miltrd's encoder
        # doubles it itself, so the wire carries the same bytes.
        lines = tuple(line.replace("%%", "%") for line in reply.lines)
        smtp = SmtpReply(reply.code, reply.xcode, lines)
    if rc == milter.REJECT:
        return Verdict(VerdictKind.REJECT, smtp)
    if rc != milter.TEMPFAIL:
        log.error("pymilter: callback returned %r, not a milter code: tempfail", rc)
        smtp = None
    return Verdict(VerdictKind.TEMPFAIL, smtp)


def _apply(msg: Message, change: Change) -> None:
    kind = change.kind
    if kind == "addheader":
        if change.index < 0:
            msg.add_header(change.name, change.value)
        else:
            msg.insert_header(change.index, change.name, change.value)
    elif kind == "chgheader":
        # Sendmail and Postfix take index 0 as the first field, like 1.
        msg.change_header(change.name, change.value, index=max(change.index, 1))
    elif kind == "addrcpt":
        msg.add_recipient(change.name, change.params or "")
    elif kind == "delrcpt":
        msg.delete_recipient(change.name)
    elif kind == "chgfrom":
        msg.change_sender(change.name, change.params)
    elif kind == "quarantine":
        msg.quarantine(change.name)


class PymilterPlugin(Plugin):
    """Base of the adapter classes ``adapter_for`` builds."""

    actions = ALL_ACTIONS
    milter_factory: ClassVar[Any] = None  # builds the filter object
    catch_exceptions: ClassVar[bool] = False  # True: set_exception_policy
    filter_name: ClassVar[str] = ""
    # Call callbacks directly, in the caller's thread (``miltrd pymilter``
    # serves each connection in a thread of its own); else in worker threads.
    inline: ClassVar[bool] = False

    def __init__(
        self, options: Any, *, name: str, internal_rules: Any, log: logging.Logger
    ) -> None:
        super().__init__(options, name=name, internal_rules=internal_rules, log=log)
        self._sessions: dict[str, MilterSession] = {}

    def new_session(self, conn: Connection) -> MilterSession:
        """A session for ``conn`` whose filter object is not built yet."""
        session = MilterSession(
            self.filter_name or self.name,
            lambda: conn.macros,
            factory=type(self).milter_factory,
            catch=self.catch_exceptions,
        )
        self._sessions[conn.id] = session
        return session

    def session_for(self, conn: Connection) -> MilterSession:
        session = self._sessions.get(conn.id)
        if session is None:
            session = self.new_session(conn)
            # No MTA negotiation reaches a chain member: offer everything.
            session.negotiate(milter.CURR_ACTS, CHAIN_PROTOCOL)
        return session

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread, with the caller's context
        (so log lines carry the queue id)."""
        if self.inline:
            return func(*args)
        call = functools.partial(contextvars.copy_context().run, func, *args)
        return await asyncio.get_running_loop().run_in_executor(executor(), call)

    async def _run(self, session: MilterSession, callback: str, *args: Any) -> Outcome:
        return await self.run_sync(session.call, callback, *args)

    async def _decide(self, conn: Connection, callback: str, *args: Any) -> Verdict | None:
        return verdict_of(await self._run(self.session_for(conn), callback, *args))

    async def on_eom(self, msg: Message) -> Verdict | None:
        session = self.session_for(msg.conn)
        outcome = await self._run(session, "eom")
        try:
            for change in outcome.changes:
                _apply(msg, change)
            if outcome.body is not None:
                msg.replace_body(outcome.body)
        except Exception:
            if not self.catch_exceptions:
                raise
            outcome = session.untrapped("eom")
        return verdict_of(outcome)

    async def on_abort(self, msg: Message) -> None:
        session = self._sessions.get(msg.conn.id)
        if session is not None:
            await self._run(session, "abort")

    async def on_close(self, conn: Connection) -> None:
        session = self._sessions.pop(conn.id, None)
        if session is not None and not session.closed:
            await self._run(session, "close")


async def _on_connect(self: PymilterPlugin, conn: Connection) -> Verdict | None:
    family, hostaddr = hostaddr_of(conn)
    return await self._decide(conn, "connect", conn.hostname, family, hostaddr)


async def _on_helo(self: PymilterPlugin, conn: Connection, name: str) -> Verdict | None:
    return await self._decide(conn, "hello", name)


async def _on_mail(self: PymilterPlugin, msg: Message, sender: str) -> Verdict | None:
    return await self._decide(msg.conn, "envfrom", f"<{sender}>", *msg.sender_args)


async def _on_rcpt(self: PymilterPlugin, msg: Message, recipient: str) -> Verdict | None:
    return await self._decide(msg.conn, "envrcpt", f"<{recipient}>", *msg.rcpt_args)


async def _on_data(self: PymilterPlugin, msg: Message) -> Verdict | None:
    return await self._decide(msg.conn, "data")


async def _on_header(self: PymilterPlugin, msg: Message, name: str, value: str) -> Verdict | None:
    return await self._decide(msg.conn, "header", name, value)


async def _on_eoh(self: PymilterPlugin, msg: Message) -> Verdict | None:
    return await self._decide(msg.conn, "eoh")


async def _on_body(self: PymilterPlugin, msg: Message, chunk: bytes) -> Verdict | None:
    session = self.session_for(msg.conn)
    if session.skip_body:
        return None
    return verdict_of(await self._run(session, "body", chunk))


HOOK_IMPLEMENTATIONS = {
    "on_connect": _on_connect,
    "on_helo": _on_helo,
    "on_mail": _on_mail,
    "on_rcpt": _on_rcpt,
    "on_data": _on_data,
    "on_header": _on_header,
    "on_eoh": _on_eoh,
    "on_body": _on_body,
}


def adapter_for(
    milter_class: type[Base] | None,
    *,
    factory: Any = None,
    catch_exceptions: bool = False,
    filter_name: str = "",
    inline: bool = False,
) -> type[PymilterPlugin]:
    """The plugin class serving ``milter_class`` (or, with ``milter_class``
    None, whatever ``factory`` builds for each connection: every hook is
    then implemented and the MTA negotiation decides what is called).

    Hooks exist for the callbacks the class does not switch off with
    ``@nocallback``; phases whose callback is ``@noreply`` are not
    deciding; each stage asks for its ``@symlist`` macros, or for the
    MTAs' default macros.
    """
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "milter_factory": staticmethod(factory if factory is not None else milter_class),  # type: ignore[arg-type]
        "catch_exceptions": catch_exceptions,
        "filter_name": filter_name,
        "inline": inline,
    }
    decides = Phase.EOM
    macros: dict[Phase, frozenset[str]] = {}
    for callback, (phase, hook) in CALLBACKS.items():
        declared = 0
        if milter_class is not None:
            declared = getattr(getattr(milter_class, callback), "milter_protocol", 0)
        nr, nc = OPTIONAL_CALLBACKS[callback]
        if declared & nc:
            continue
        namespace[hook] = HOOK_IMPLEMENTATIONS[hook]
        if not declared & nr:
            decides |= phase
    if milter_class is not None:
        for callback, stage in MACRO_CALLBACKS.items():
            syms = getattr(getattr(milter_class, callback), "_symlist", None)
            macros[STAGE_PHASES[stage]] = frozenset(syms) if syms else DEFAULT_MACROS[stage]
    namespace["decides"] = decides
    namespace["macros"] = macros
    label = milter_class.__name__ if milter_class is not None else "factory"
    return type(f"Pymilter_{label}", (PymilterPlugin,), namespace)


_adapters: dict[str, type[PymilterPlugin]] = {}


def load(spec: str) -> type[PymilterPlugin]:
    """``"module:Class"`` -> the adapter plugin class for that pymilter class.

    The module is imported with ``import Milter`` resolving to this layer.
    Raises ImportError, AttributeError or TypeError with a message.
    """
    from .finder import install

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f'expected "pymilter:module:Class", got "pymilter:{spec}"')
    if spec in _adapters:
        return _adapters[spec]
    install()
    module = importlib.import_module(module_name)
    obj = getattr(module, attr)
    if not (isinstance(obj, type) and issubclass(obj, Base)):
        raise TypeError(f"{spec}: {obj!r} is not a subclass of Milter.Base")
    cls = _adapters[spec] = adapter_for(obj)
    return cls
