"""One pymilter filter object driven through one MTA connection.

``MilterSession`` is the engine half of the layer: it builds the program's
filter object (``Milter.factory``) at negotiation, calls its callbacks with
pymilter's argument shapes, applies ``set_exception_policy`` to a callback
that raises, and returns what the callback decided: the return code, the
SMTP reply set with ``setreply`` (libmilter's rule: used only with a
REJECT for a 5xx reply or a TEMPFAIL for a 4xx reply, and forgotten after
each callback), and at end of message the actions it asked for.

``EngineContext`` is the ``milterContext`` the filter object sees
(``self._ctx``); like libmilter it refuses actions outside end of message
with ``milter.error``. Callbacks are synchronous and may block: the
callers run them in worker threads, one callback of a connection at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import pymilter as api
from . import milter

__all__ = [
    "make_reply",
    "EngineContext",
    "MilterSession",
    "Outcome",
    "Reply",
    "Change",
    "DEFAULT_MACROS",
]

log = logging.getLogger("miltrd.pymilter")

_RCODE = re.compile(r"[45]\d\d\Z")
_XCODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_MAX_REPLY_LINES = 32

# The macros Postfix and Sendmail send by default, per stage: what a
# pymilter program sees without @symlist, asked for explicitly when the
# filter shares a miltrd chain (whose own lists replace the MTA's defaults).
DEFAULT_MACROS: dict[int, frozenset[str]] = {
    milter.M_CONNECT: frozenset(
        {
            "j",
            "_",
            "v",
            "{daemon_name}",
            "{daemon_addr}",
            "{daemon_port}",
            "{if_name}",
            "{if_addr}",
            "{client_addr}",
            "{client_name}",
            "{client_port}",
            "{client_ptr}",
            "{client_connections}",
            "{client_resolve}",
        }
    ),
    milter.M_HELO: frozenset(
        {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"}
    ),
    milter.M_ENVFROM: frozenset(
        {
            "i",
            "{auth_type}",
            "{auth_authen}",
            "{auth_ssf}",
            "{auth_author}",
            "{mail_mailer}",
            "{mail_host}",
            "{mail_addr}",
        }
    ),
    milter.M_ENVRCPT: frozenset({"i", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"}),
    milter.M_DATA: frozenset({"i"}),
    milter.M_EOH: frozenset({"i"}),
    milter.M_EOM: frozenset({"i", "{msg_id}"}),
}


@dataclass(frozen=True)
class Reply:
    """An SMTP reply from setreply: code, enhanced code, text lines."""

    code: int
    xcode: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One action asked for at end of message.

    kind: addheader (name, value, index: -1 appends), chgheader (name,
    index, value; "" deletes), addrcpt (address, params), delrcpt
    (address), chgfrom (address, params), quarantine (reason).
    """

    kind: str
    name: str = ""
    value: str = ""
    index: int = -1
    params: str | None = None


@dataclass
class Outcome:
    """What one callback decided."""

    rc: int
    reply: Reply | None = None
    changes: list[Change] = field(default_factory=list)
    body: bytes | None = None  # the replacement body, when replacebody was used


def make_reply(rcode: str, xcode: str | None, *lines: str | None) -> Reply:
    """Check a setreply as libmilter does: a 4xx/5xx code of three digits,
    an enhanced code of the same class (default x.0.0), 1 to 32 lines
    without CR or LF. milter.error("cannot set reply") otherwise."""
    if not isinstance(rcode, str) or not _RCODE.match(rcode):
        raise milter.error("cannot set reply")
    if xcode is None:
        xcode = rcode[0] + ".0.0"
    elif not _XCODE.match(xcode) or xcode[0] != rcode[0]:
        raise milter.error("cannot set reply")
    text = [line if line is not None else "" for line in lines] or [""]
    if len(text) > _MAX_REPLY_LINES or any("\r" in t or "\n" in t for t in text):
        raise milter.error("cannot set reply")
    return Reply(int(rcode), xcode, tuple(text))


class EngineContext:
    """pymilter's milterContext for one connection."""

    def __init__(self, macros: Callable[[], Mapping[str, str]]) -> None:
        self._priv: Any = None
        self._macros = macros
        self.reply: Reply | None = None
        self.negotiating = False
        self.in_eom = False
        self.symlists: dict[int, tuple[str, ...]] = {}
        self.changes: list[Change] = []
        self.body: list[bytes] | None = None
        self.progress_calls = 0
        # Set by a server that can tell the MTA at once (SMFIR_PROGRESS).
        self.on_progress: Callable[[], None] | None = None

    def getpriv(self) -> Any:
        return self._priv

    def setpriv(self, priv: Any) -> None:
        self._priv = priv

    def getsymval(self, name: str) -> str | None:
        macros = self._macros()
        if name in macros:
            return macros[name]
        # libmilter accepts a one-letter macro with or without braces.
        bare = name[1:-1] if name.startswith("{") and name.endswith("}") else name
        for key in (bare, "{" + bare + "}"):
            if len(bare) == 1 and key in macros:
                return macros[key]
        return None

    def setreply(self, rcode: str, xcode: str | None, *lines: str | None) -> None:
        """libmilter's smfi_setreply/smfi_setmlreply checks; milter.error
        ("cannot set reply") when one fails."""
        self.reply = make_reply(rcode, xcode, *lines)

    def setsymlist(self, stage: int, macros: bytes | str) -> None:
        if not self.negotiating or stage not in DEFAULT_MACROS or stage in self.symlists:
            raise milter.error("cannot set macro list")
        raw = macros.decode("utf-8", "surrogateescape") if isinstance(macros, bytes) else macros
        names = tuple(raw.split())
        if not names:
            raise milter.error("cannot set macro list")
        self.symlists[stage] = names

    def _at_eom(self, what: str) -> None:
        if not self.in_eom:
            raise milter.error(f"cannot {what}")

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self._at_eom("add header")
        self.changes.append(Change("addheader", str(field), str(value), int(idx)))

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        self._at_eom("change header")
        if int(idx) < 0:
            raise milter.error("cannot change header")
        self.changes.append(Change("chgheader", str(field), value or "", int(idx)))

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        self._at_eom("add recipient")
        self.changes.append(Change("addrcpt", str(rcpt), params=params))

    def delrcpt(self, rcpt: str) -> None:
        self._at_eom("delete recipient")
        self.changes.append(Change("delrcpt", str(rcpt)))

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self._at_eom("change sender")
        self.changes.append(Change("chgfrom", str(sender), params=params))

    def quarantine(self, reason: str) -> None:
        self._at_eom("quarantine")
        self.changes.append(Change("quarantine", str(reason)))

    def replacebody(self, chunk: bytes) -> None:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"replacebody() argument must be bytes, not {type(chunk).__name__}")
        self._at_eom("replace body")
        if self.body is None:
            self.body = []
        self.body.append(bytes(chunk))

    def progress(self) -> None:
        # Where no server hook is set, miltrd's server already tells the MTA
        # about a slow end of message every 10 s.
        self.progress_calls += 1
        if self.on_progress is not None:
            self.on_progress()


def _wire(text: str) -> bytes:
    # The protocol layer decodes UTF-8 with surrogateescape: this is its inverse.
    return text.encode("utf-8", "surrogateescape")


class MilterSession:
    """The program's filter object for one connection, and how to call it.

    name: the filter's name (in untrapped-exception replies);
    macros: returns the macros currently defined;
    catch: apply the exception policy (``miltrd pymilter``) rather than
    let the exception reach the caller (a chain member: the chain's
    on_error applies).
    """

    def __init__(
        self,
        name: str,
        macros: Callable[[], Mapping[str, str]],
        *,
        factory: Callable[[], Any] | None = None,
        catch: bool = True,
    ) -> None:
        self.name = name
        self.factory = factory
        self.ctx = EngineContext(macros)
        self.catch = catch
        self.skip_body = False  # the filter answered SKIP in this message
        # Callbacks the filter switched off whose steps the server still
        # receives (the summary line's client, sender and recipients):
        # answered CONTINUE without calling the filter, as if never sent.
        self.not_called: frozenset[str] = frozenset()
        self.closed = False

    @property
    def milter(self) -> Any:
        return self.ctx.getpriv()

    def _ensure(self) -> Any:
        m = self.ctx.getpriv()
        if not m:
            # Milter.factory is read per connection: a program may change it.
            m = (self.factory or api.factory)()
            m._setctx(self.ctx)
        return m

    def untrapped(self, callback: str) -> Outcome:
        policy = milter.settings.exception_policy
        log.exception("pymilter: untrapped exception in %s (%s callback)", self.name, callback)
        text = f"pymilter: untrapped exception in {self.name[:40]}"
        if policy == milter.REJECT:
            return Outcome(milter.REJECT, Reply(554, "5.3.0", (text,)))
        if policy == milter.TEMPFAIL:
            return Outcome(milter.TEMPFAIL, Reply(451, "4.3.0", (text,)))
        return Outcome(policy)

    def negotiate(self, actions: int, protocol: int) -> tuple[int, int, int]:
        """Build the filter object and run its negotiate callback.

        actions, protocol: what the MTA offers (SMFIF_*, SMFIP_* bits).
        Returns (rc, actions, protocol): rc CONTINUE with the filter's
        choice, ALL_OPTS for everything offered, anything else to refuse
        the connection. Macro lists asked for are in ``ctx.symlists``.
        """
        opts = [actions, protocol, 0, 0]
        self.ctx.negotiating = True
        try:
            rc: int = self._ensure().negotiate(opts)
        except Exception:
            if not self.catch:
                raise
            rc = self.untrapped("negotiate").rc
        finally:
            self.ctx.negotiating = False
        if rc == milter.ALL_OPTS:
            return rc, actions, protocol
        return rc, int(opts[0]), int(opts[1])

    def call(self, callback: str, *args: Any) -> Outcome:
        """Run one callback: connect(hostname, family, hostaddr), hello(name),
        envfrom(sender, *params), envrcpt(rcpt, *params), data(),
        header(name, value), eoh(), body(chunk: bytes), eom(), abort(),
        unknown(command), close(). Text arguments are str as decoded from
        the wire; they reach the filter as pymilter gives them."""
        if callback in self.not_called:
            return Outcome(milter.CONTINUE)
        ctx = self.ctx
        ctx.reply = None
        if callback == "envfrom":
            self.skip_body = False
        eom = callback == "eom"
        if eom:
            ctx.in_eom = True
            ctx.changes = []
            ctx.body = None
        try:
            rc = self._dispatch(callback, args)
        except Exception:
            if not self.catch:
                raise
            outcome = self.untrapped(callback)
        else:
            if not isinstance(rc, int):
                log.error("pymilter: %s callback returned %r, not a milter code", callback, rc)
                rc = milter.TEMPFAIL
            outcome = Outcome(rc)
            reply = ctx.reply
            if reply is not None and (
                (rc == milter.REJECT and reply.code >= 500)
                or (rc == milter.TEMPFAIL and reply.code < 500)
            ):
                outcome.reply = reply
        finally:
            ctx.reply = None
            ctx.in_eom = False
        if eom:
            outcome.changes = ctx.changes
            outcome.body = b"".join(ctx.body) if ctx.body is not None else None
            ctx.changes = []
            ctx.body = None
        if callback == "body" and outcome.rc == milter.SKIP:
            self.skip_body = True
        return outcome

    def _dispatch(self, callback: str, args: tuple[Any, ...]) -> Any:
        if callback == "close":
            self.closed = True
            return api.close_callback(self.ctx)
        m = self._ensure()
        if callback == "connect":
            return m.connect(*args)
        if callback in ("envfrom", "envrcpt"):
            return getattr(m, callback + "_bytes")(*(_wire(a) for a in args))
        if callback == "header":
            name, value = args
            return m.header_bytes(name, _wire(value))
        if callback == "hello":
            return m.hello(*args)
        return getattr(m, callback)(*args)
