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
    it with the file, the line and the full key path.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


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
        return cls.implemented() | cls.needs

    @classmethod
    def deciding(cls) -> Phase:
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

    # --- hooks (override what you need) --------------------------------------

    async def on_connect(self, conn: Connection) -> Verdict | None:
        return None

    async def on_helo(self, conn: Connection, name: str) -> Verdict | None:
        return None

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        return None

    async def on_data(self, msg: Message) -> Verdict | None:
        return None

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        return None

    async def on_eoh(self, msg: Message) -> Verdict | None:
        return None

    async def on_body(self, msg: Message, chunk: bytes) -> Verdict | None:
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        return None

    async def on_abort(self, msg: Message) -> None:
        return None

    async def on_close(self, conn: Connection) -> None:
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
