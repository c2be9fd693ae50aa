"""The plugin base class: what a plugin declares and the hooks it may write.

A plugin is a subclass of ``Plugin`` that overrides some of the ``on_*``
coroutines. What it overrides is what it observes: miltrd negotiates away
every phase no enabled plugin observes. Class attributes declare the rest:

- ``Options``: a dataclass whose fields are the plugin's config keys under
  ``[plugins.NAME]`` (types str, int, float, bool, list[str],
  dict[str, str], Literal[...] choices, and ``X | None``); validated by
  miltrd before the plugin is built, with every error naming the key.
- ``actions``: the changes it may ask for (``Action`` flags).
- ``decides``: phases where it may return something other than continue
  (default: every deciding phase it observes); phases where no plugin
  decides are negotiated as no-reply, which saves a round trip.
- ``needs``: phases whose data it reads without a hook, e.g.
  ``Phase.HEADER | Phase.BODY`` for a plugin that looks at the whole
  message at end of message. ``msg.body`` is kept only when some plugin
  declares ``Phase.BODY`` here (an ``on_body`` hook alone sees each chunk
  as it arrives, without the body being stored).
- ``macros``: macros it wants per phase, e.g. ``{Phase.MAIL: {"{auth_type}"}}``.

Every hook returns a ``Verdict`` or None (None means continue). A hook
that raises or runs past its timeout gets the plugin's ``on_error``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .context import Connection, InternalRules, Message
from .phases import DECIDING_PHASES, Action, Phase
from .verdicts import Verdict

__all__ = [
    "Plugin",
    "NoOptions",
    "OptionError",
    "run_blocking",
    "HOOKS",
]

T = TypeVar("T")


@dataclass(frozen=True)
class NoOptions:
    """For plugins without keys of their own."""


class OptionError(ValueError):
    """Raised by a plugin's constructor for an option value it cannot use.

    ``key`` is the option's name inside the plugin's table; miltrd reports
    it with the file, the line and the full key path. When what must change
    is a key of miltrd's own sections (the plugin needs ``internal.domains``
    set), ``outside=True`` and ``key`` is that full key path: it is reported
    as such, at its line, or where the plugin is enabled if the file does
    not set it.
    """

    def __init__(self, key: str, message: str, *, outside: bool = False) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.outside = outside


# Hook name -> phase. The order is the order of the phases.
HOOKS: dict[str, Phase] = {
    "on_connect": Phase.CONNECT,
    "on_helo": Phase.HELO,
    "on_mail": Phase.MAIL,
    "on_rcpt": Phase.RCPT,
    "on_data": Phase.DATA,
    "on_header": Phase.HEADER,
    "on_eoh": Phase.EOH,
    "on_body": Phase.BODY,
    "on_eom": Phase.EOM,
    "on_abort": Phase.ABORT,
    "on_close": Phase.CLOSE,
}


class Plugin:
    """Base class of every miltrd plugin."""

    Options: ClassVar[type] = NoOptions
    actions: ClassVar[Action] = Action.NONE
    decides: ClassVar[Phase | None] = None
    needs: ClassVar[Phase] = Phase.NONE
    macros: ClassVar[Mapping[Phase, frozenset[str] | set[str]]] = {}

    def __init__(
        self, options: Any, *, name: str, internal_rules: InternalRules, log: logging.Logger
    ) -> None:
        self.options = options
        self.name = name
        self.internal_rules = internal_rules
        self.log = log

    # --- what the class declares, computed ---------------------------------

    @classmethod
    def implemented(cls) -> Phase:
        """The phases whose hook this class overrides."""
        phases = Phase.NONE
        for hook, phase in HOOKS.items():
            if getattr(cls, hook) is not getattr(Plugin, hook):
                phases |= phase
        return phases

    @classmethod
    def observes(cls) -> Phase:
        """The phases whose data the class reads: its hooks and ``needs``."""
        return cls.implemented() | cls.needs

    @classmethod
    def deciding(cls) -> Phase:
        """The phases where it may answer other than continue: ``decides``,
        or by default every deciding phase it hooks."""
        implemented = cls.implemented() & DECIDING_PHASES
        return implemented if cls.decides is None else cls.decides

    # --- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """Called when this plugin instance is retired (reload or shutdown)."""

    # --- for ``miltrd check`` ------------------------------------------------

    def describe(self) -> list[str]:
        """Lines ``miltrd check`` prints under this plugin (what it will do)."""
        return []

    def readable_files(self) -> Mapping[str, str]:
        """Files the plugin reads while the daemon runs, by option key
        (``{"keys[0].key_file": "/etc/mail/dkim/a.key"}``); ``miltrd check``
        reports each one the daemon's user (``[daemon] user``) cannot read."""
        return {}

    def writable_dirs(self) -> Mapping[str, str]:
        """Directories the plugin writes below while the daemon runs, by
        option key (``{"root": "/var/spool/miltrd/archive"}``); ``miltrd
        check`` reports each one the daemon's user cannot create or write
        (a missing directory counts as writable where its nearest existing
        parent is)."""
        return {}

    # --- hooks (override what you need) --------------------------------------

    # Every hook may raise: any exception (and running past the entry's
    # timeout) gives the message the entry's on_error verdict, logged with the
    # traceback and the queue id; so does PluginContractError from asking for
    # a change the class did not declare. Returning None means continue.

    async def on_connect(self, conn: Connection) -> Verdict | None:
        """SMTP connect: ``conn.hostname`` (the client's name, or its
        address in brackets when it has none), ``conn.address`` (IP text,
        IPv6 without brackets; the socket path for a unix client),
        ``conn.port``, ``conn.family``. REJECT or TEMPFAIL refuse the whole
        connection; DISCARD is not allowed here (PluginContractError)."""
        return None

    async def on_helo(self, conn: Connection, name: str) -> Verdict | None:
        """HELO/EHLO: ``name`` as the client gave it (also ``conn.helo``).
        DISCARD is not allowed here."""
        return None

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        """MAIL FROM: ``sender`` is the bare address, without angle brackets
        (``""`` for the null sender ``<>``); its ESMTP parameters are
        ``msg.sender_args`` (``("SIZE=1234", ...)``). A new ``msg`` starts here."""
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        """RCPT TO: ``recipient`` is the bare address, without angle brackets.
        REJECT or TEMPFAIL refuse this recipient only (where RCPT has no
        reply, negotiated away because no plugin decides there, the whole
        message). Accepted recipients so far are in ``msg.recipients``."""
        return None

    async def on_data(self, msg: Message) -> Verdict | None:
        """DATA: every recipient is known (``msg.recipients``)."""
        return None

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        """One header field, in message order: ``name`` as written, ``value``
        as the MTA sends it, without the space after the colon and not
        unfolded (a folded field keeps its line breaks, LF followed by the
        continuation's white space). Also appended to ``msg.headers``."""
        return None

    async def on_eoh(self, msg: Message) -> Verdict | None:
        """End of headers: ``msg.headers`` is complete."""
        return None

    async def on_body(self, msg: Message, chunk: bytes) -> Verdict | None:
        """One piece of the body, in order, with CRLF line ends: at most the
        negotiated packet size (65535 bytes, or up to 1 MiB where the MTA
        agreed to larger packets); a piece may end inside a line. The body
        is kept in ``msg.body`` only if some plugin declares
        ``needs = Phase.BODY``."""
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        """End of message: the last chance to decide and to ask for changes;
        ``msg.body`` holds the body as earlier plugins left it."""
        return None

    async def on_abort(self, msg: Message) -> None:
        """The MTA abandoned the message (RSET, or the client went away):
        release what was kept for it. A return value is ignored."""
        return None

    async def on_close(self, conn: Connection) -> None:
        """The MTA closed the connection. A return value is ignored."""
        return None


async def run_blocking(
    func: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any
) -> T:
    """Run blocking work (DNS, disk) in a worker thread, bounded by ``timeout``.

    Raises TimeoutError when the bound passes; the thread is left to finish
    on its own, so the function should have its own timeout too.
    """
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.wait_for(asyncio.to_thread(call), timeout)
