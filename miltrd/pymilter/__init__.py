"""pymilter's ``Milter`` API on miltrd's engine: no C libmilter, no compiler.

In a process started by ``miltrd pymilter PROGRAM.py`` (or after
``miltrd.pymilter.finder.install()``), ``import Milter`` gives this module,
``import milter`` gives ``miltrd.pymilter.milter`` and ``Milter.testctx`` /
``Milter.test`` give this package's test harnesses; pymilter's pure-Python
helper modules (``Milter.utils``, ``Milter.dynip`` ...) are loaded from a
pymilter source tree or installation when one is on ``sys.path``. A real
pymilter installed on the machine is untouched: nothing is installed under
the top-level name ``Milter``.

What a program sees is pymilter 1.0.5's public API: ``Base`` and
``Milter`` with every callback and pymilter's argument shapes, the return
constants, the decorators, the actions with libmilter's rules (end of
message only, ``DisabledAction`` when not negotiated), ``factory``,
``set_flags``, ``set_exception_policy``, ``runmilter``, ``setbacklog``
and ``uniqueID``. The differences from C pymilter are listed in README.md
("pymilter programs").

This module imports nothing of miltrd outside ``miltrd.pymilter``;
``runmilter`` reaches the daemon through ``miltrd.pymilter.serve``.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from . import milter
from .milter import (
    ACCEPT,
    ADDHDRS,
    ADDRCPT,
    ADDRCPT_PAR,
    ALL_OPTS,
    CHGBODY,
    CHGFROM,
    CHGHDRS,
    CONTINUE,
    CURR_ACTS,
    DELRCPT,
    DISCARD,
    FAILURE,
    M_CONNECT,
    M_DATA,
    M_ENVFROM,
    M_ENVRCPT,
    M_EOH,
    M_EOM,
    M_HELO,
    MODBODY,
    NOREPLY,
    P_HDR_LEADSPC,
    P_NOBODY,
    P_NOCONNECT,
    P_NODATA,
    P_NOEOH,
    P_NOHDRS,
    P_NOHELO,
    P_NOMAIL,
    P_NORCPT,
    P_NOUNKNOWN,
    P_NR_BODY,
    P_NR_CONN,
    P_NR_DATA,
    P_NR_EOH,
    P_NR_HDR,
    P_NR_HELO,
    P_NR_MAIL,
    P_NR_RCPT,
    P_NR_UNKN,
    P_RCPT_REJ,
    P_SKIP,
    QUARANTINE,
    REJECT,
    SETSYMLIST,
    SKIP,
    SUCCESS,
    TEMPFAIL,
    V1_ACTS,
    V2_ACTS,
    VERSION,
    error,
    getdiag,
    getversion,
    set_exception_policy,
    set_flags,
    setbacklog,
    setconn,
    setdbg,
    settimeout,
    stop,
)

__version__ = "1.0.5"

__all__ = [
    "ACCEPT",
    "ADDHDRS",
    "ADDRCPT",
    "ADDRCPT_PAR",
    "ALL_OPTS",
    "CHGBODY",
    "CHGFROM",
    "CHGHDRS",
    "CONTINUE",
    "CURR_ACTS",
    "DELRCPT",
    "DISCARD",
    "FAILURE",
    "M_CONNECT",
    "M_DATA",
    "M_ENVFROM",
    "M_ENVRCPT",
    "M_EOH",
    "M_EOM",
    "M_HELO",
    "MODBODY",
    "NOREPLY",
    "P_HDR_LEADSPC",
    "P_NOBODY",
    "P_NOCONNECT",
    "P_NODATA",
    "P_NOEOH",
    "P_NOHDRS",
    "P_NOHELO",
    "P_NOMAIL",
    "P_NORCPT",
    "P_NOUNKNOWN",
    "P_NR_BODY",
    "P_NR_CONN",
    "P_NR_DATA",
    "P_NR_EOH",
    "P_NR_HDR",
    "P_NR_HELO",
    "P_NR_MAIL",
    "P_NR_RCPT",
    "P_NR_UNKN",
    "P_RCPT_REJ",
    "P_SKIP",
    "QUARANTINE",
    "REJECT",
    "SETSYMLIST",
    "SKIP",
    "SUCCESS",
    "TEMPFAIL",
    "V1_ACTS",
    "V2_ACTS",
    "VERSION",
    "error",
    "getdiag",
    "getversion",
    "set_exception_policy",
    "set_flags",
    "setbacklog",
    "setconn",
    "setdbg",
    "settimeout",
    "stop",
    "Base",
    "Milter",
    "DisabledAction",
    "OPTIONAL_CALLBACKS",
    "MACRO_CALLBACKS",
    "factory",
    "uniqueID",
    "nocallback",
    "noreply",
    "decode",
    "symlist",
    "enable_protocols",
    "rejected_recipients",
    "header_leading_space",
    "negotiate_callback",
    "connect_callback",
    "close_callback",
    "dictfromlist",
    "param2dict",
    "envcallback",
    "decode_mask",
    "runmilter",
]

K = TypeVar("K", bound=type)
F = TypeVar("F", bound=Callable[..., Any])

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def uniqueID() -> int:
    """A number one higher than the last call's (thread-safe), from 1."""
    with _ids_lock:
        return next(_ids)


# Callback -> (its no-reply bit, its no-callback bit).
OPTIONAL_CALLBACKS: dict[str, tuple[int, int]] = {
    "connect": (P_NR_CONN, P_NOCONNECT),
    "hello": (P_NR_HELO, P_NOHELO),
    "envfrom": (P_NR_MAIL, P_NOMAIL),
    "envrcpt": (P_NR_RCPT, P_NORCPT),
    "data": (P_NR_DATA, P_NODATA),
    "unknown": (P_NR_UNKN, P_NOUNKNOWN),
    "eoh": (P_NR_EOH, P_NOEOH),
    "body": (P_NR_BODY, P_NOBODY),
    "header": (P_NR_HDR, P_NOHDRS),
}
# Callback -> the macro stage whose list @symlist sets.
MACRO_CALLBACKS: dict[str, int] = {
    "connect": M_CONNECT,
    "hello": M_HELO,
    "envfrom": M_ENVFROM,
    "envrcpt": M_ENVRCPT,
    "data": M_DATA,
    "eom": M_EOM,
    "eoh": M_EOH,
}

# A run of '%' of odd length: libmilter would drop the whole reply.
_PERCENT_RUN = re.compile(r"%+")


def decode_mask(bits: int, names: list[str]) -> list[str]:
    """The names (of constants in ``milter``) whose bits are set in ``bits``,
    then the leftover bits in hex."""
    found = [name for name in names if bits & getattr(milter, name)]
    for name in names:
        bits &= ~getattr(milter, name)
    if bits:
        found.append(hex(bits))
    return found


# --- decorators ---------------------------------------------------------------


def enable_protocols(klass: K, mask: int) -> K:
    """Class decorator helper: let the MTA use the protocol steps in
    ``mask`` (e.g. ``P_RCPT_REJ``, ``P_HDR_LEADSPC``) for this class."""
    klass._protocol_mask = klass.protocol_mask() & ~mask  # type: ignore[attr-defined]
    # Subclasses inherit what was enabled, whatever callbacks they add.
    klass._enabled_protocols = getattr(klass, "_enabled_protocols", 0) | mask  # type: ignore[attr-defined]
    return klass


def rejected_recipients(klass: K) -> K:
    """Class decorator: pass recipients the MTA rejected to ``envrcpt`` too."""
    return enable_protocols(klass, P_RCPT_REJ)


def header_leading_space(klass: K) -> K:
    """Class decorator: header values keep their leading space and folding."""
    return enable_protocols(klass, P_HDR_LEADSPC)


def nocallback(func: F) -> F:
    """Method decorator: tell the MTA not to call this callback at all.

    ValueError for a callback that cannot be switched off; the method must
    still return CONTINUE (RuntimeError otherwise), for MTAs and test
    harnesses that call it anyway.
    """
    try:
        bit = OPTIONAL_CALLBACKS[func.__name__][1]
    except KeyError:
        raise ValueError("@nocallback applied to non-optional method: " + func.__name__) from None

    @wraps(func)
    def wrapper(self: Any, *args: Any) -> int:
        if func(self, *args) != CONTINUE:
            raise RuntimeError(f"{func.__name__} return code must be CONTINUE with @nocallback")
        return CONTINUE

    wrapper.milter_protocol = bit  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def noreply(func: F) -> F:
    """Method decorator: the MTA does not wait for this callback's answer.

    When that was negotiated the callback's CONTINUE becomes NOREPLY (any
    other answer raises RuntimeError); otherwise its answer is sent as is.
    """
    try:
        bit = OPTIONAL_CALLBACKS[func.__name__][0]
    except KeyError:
        raise ValueError("@noreply applied to non-optional method: " + func.__name__) from None

    @wraps(func)
    def wrapper(self: Any, *args: Any) -> int:
        rc: int = func(self, *args)
        if self._protocol & bit:
            if rc != CONTINUE:
                raise RuntimeError(f"{func.__name__} return code must be CONTINUE with @noreply")
            return NOREPLY
        return rc

    wrapper.milter_protocol = bit  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def decode(strategy: str) -> Callable[[F], F]:
    """Method decorator for envfrom, envrcpt and header: how bytes that are
    not UTF-8 reach the method. 'bytes' passes bytes; 'strict' passes str,
    or bytes when they do not decode; 'ignore' and 'replace' as in
    ``bytes.decode``; the default is 'surrogateescape'."""

    def set_strategy(func: F) -> F:
        func.error_strategy = strategy  # type: ignore[attr-defined]
        return func

    return set_strategy


def symlist(*syms: str) -> Callable[[F], F]:
    """Method decorator: ask the MTA for only these macros (at most 5) at
    this callback's stage."""

    def set_syms(func: F) -> F:
        if len(syms) > 5:
            raise ValueError("@symlist limited to 5 macros by MTA: " + func.__name__)
        if func.__name__ not in MACRO_CALLBACKS:
            raise ValueError("@symlist applied to non-symlist method: " + func.__name__)
        func._symlist = syms  # type: ignore[attr-defined]
        return func

    return set_syms


class DisabledAction(RuntimeError):
    """An action was called that was not negotiated with the MTA."""


def _decoded(values: tuple[bytes, ...], strategy: str) -> tuple[Any, ...]:
    if strategy == "bytes":
        return values
    try:
        return tuple(v.decode("utf-8", strategy) for v in values)
    except UnicodeDecodeError:
        return values


class Base:
    """One SMTP connection as the MTA reports it; subclass and override the
    callbacks you need. Every callback returns one of CONTINUE, REJECT,
    TEMPFAIL, ACCEPT, DISCARD, SKIP (body only). Callbacks left as they are
    here are switched off at the MTA (``@nocallback``)."""

    _ctx: Any = None
    _actions: int = CURR_ACTS
    _protocol: int = 0

    def _setctx(self, ctx: Any) -> None:
        """Attach to (or, with None, detach from) the engine's context."""
        self._ctx = ctx
        self._actions = CURR_ACTS
        self._protocol = 0
        if ctx:
            ctx.setpriv(self)

    def log(self, *msg: Any) -> None:
        """Subclasses write their log lines here."""

    # --- callbacks ------------------------------------------------------------

    @nocallback
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        """hostaddr: (ip, port) for AF_INET, (ip, port, flowinfo, scope_id)
        for AF_INET6, the socket path for AF_UNIX, None when unknown."""
        return CONTINUE

    @nocallback
    def hello(self, hostname: str) -> int:
        return CONTINUE

    def envfrom_bytes(self, *b: bytes) -> int:
        """Decode MAIL FROM and its ESMTP parameters per ``@decode``."""
        strategy = getattr(self.envfrom, "error_strategy", "surrogateescape")
        s = _decoded(b, strategy)
        return self.envfrom(*s)

    @nocallback
    def envfrom(self, f: Any, *s: Any) -> int:
        """f: the sender as given, with angle brackets; s: ESMTP parameters."""
        return CONTINUE

    def envrcpt_bytes(self, *b: bytes) -> int:
        strategy = getattr(self.envrcpt, "error_strategy", "surrogateescape")
        s = _decoded(b, strategy)
        return self.envrcpt(*s)

    @nocallback
    def envrcpt(self, to: Any, *s: Any) -> int:
        """A REJECT here refuses this recipient only."""
        return CONTINUE

    @nocallback
    def data(self) -> int:
        return CONTINUE

    def header_bytes(self, fld: str, val: bytes) -> int:
        strategy = getattr(self.header, "error_strategy", "surrogateescape")
        if strategy == "bytes":
            return self.header(fld, val)
        return self.header(fld, _decoded((val,), strategy)[0])

    @nocallback
    def header(self, field: str, value: Any) -> int:
        return CONTINUE

    @nocallback
    def eoh(self) -> int:
        return CONTINUE

    @nocallback
    def body(self, blk: bytes) -> int:
        return CONTINUE

    @nocallback
    def unknown(self, cmd: str) -> int:
        return CONTINUE

    def eom(self) -> int:
        """End of message: the only place the actions may be used."""
        return CONTINUE

    def abort(self) -> int:
        return CONTINUE

    def close(self) -> int:
        return CONTINUE

    # --- negotiation ----------------------------------------------------------

    @classmethod
    def protocol_mask(cls) -> int:
        """The SMFIP_N* bits (and RCPT_REJ, HDR_LEADSPC) this class asks the
        MTA to leave set: steps it does not use, replies it does not give."""
        mask = cls.__dict__.get("_protocol_mask")
        if mask is not None:
            return int(mask)
        p = (P_RCPT_REJ | P_HDR_LEADSPC) & ~getattr(cls, "_enabled_protocols", 0)
        for name, (nr, nc) in OPTIONAL_CALLBACKS.items():
            declared = getattr(getattr(cls, name), "milter_protocol", 0)
            p |= (nr | nc) & ~declared
        cls._protocol_mask = p  # type: ignore[attr-defined]
        return p

    def negotiate(self, opts: list[int]) -> int:
        """opts: [actions, protocol steps, 0, 0] offered; changed in place to
        what this connection uses. Returns CONTINUE, or ALL_OPTS to take
        everything offered."""
        try:
            self._actions, p, _f1, _f2 = opts
            for name, stage in MACRO_CALLBACKS.items():
                syms = getattr(getattr(self, name), "_symlist", None)
                if syms is not None:
                    self.setsymlist(stage, *syms)
            opts[1] = self._protocol = p & ~self.protocol_mask()
            opts[2] = 0
            opts[3] = 0
        except Exception:
            return ALL_OPTS
        return CONTINUE

    # --- usable from any callback ---------------------------------------------

    def getsymval(self, sym: str) -> str | None:
        """A macro's value ("j", "{auth_authen}"), None when the MTA sent none."""
        value: str | None = self._ctx.getsymval(sym)
        return value

    def setreply(
        self, rcode: str, xcode: str | None = None, msg: str | None = None, *ml: str
    ) -> None:
        """The SMTP reply for this callback's REJECT (5xx) or TEMPFAIL (4xx),
        one or more lines; a '%' must be doubled (ValueError otherwise) and
        is sent doubled, as libmilter does."""
        for line in (msg, *ml):
            if line is None:
                continue
            if any(len(run) & 1 for run in _PERCENT_RUN.findall(line)):
                raise ValueError("'%' must be doubled: " + line)
        self._ctx.setreply(rcode, xcode, msg, *ml)

    def setsymlist(self, stage: int, *macros: str) -> None:
        """From ``negotiate`` only: the macros (at most 5) wanted at ``stage``."""
        if not self._actions & SETSYMLIST:
            raise DisabledAction("SETSYMLIST")
        if len(macros) > 5:
            raise ValueError("setsymlist limited to 5 macros by MTA")
        names: list[bytes] = []
        for item in macros:
            raw = item.encode("utf8") if isinstance(item, str) else bytes(item)
            names.extend(part for part in raw.split(b" ") if part)
        self._ctx.setsymlist(stage, b" ".join(names))

    # --- end of message only ----------------------------------------------------

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        """Append a header field, or insert it at ``idx`` (0 = top)."""
        if not self._actions & ADDHDRS:
            raise DisabledAction("ADDHDRS")
        self._ctx.addheader(field, value, idx)

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        """Change the ``idx``-th field called ``field``; '' or None deletes it."""
        if not self._actions & CHGHDRS:
            raise DisabledAction("CHGHDRS")
        self._ctx.chgheader(field, idx, value)

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        """Add an envelope recipient (RCPT TO syntax), with ESMTP params."""
        if not self._actions & ADDRCPT:
            raise DisabledAction("ADDRCPT")
        if params and not self._actions & ADDRCPT_PAR:
            raise DisabledAction("ADDRCPT_PAR")
        self._ctx.addrcpt(rcpt, params)

    def delrcpt(self, rcpt: str) -> None:
        """Remove an envelope recipient, as given to ``envrcpt``."""
        if not self._actions & DELRCPT:
            raise DisabledAction("DELRCPT")
        self._ctx.delrcpt(rcpt)

    def replacebody(self, body: bytes) -> None:
        """Replace the body; call repeatedly with consecutive chunks."""
        if not self._actions & MODBODY:
            raise DisabledAction("MODBODY")
        self._ctx.replacebody(body)

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        """Change the envelope sender (MAIL FROM syntax)."""
        if not self._actions & CHGFROM:
            raise DisabledAction("CHGFROM")
        self._ctx.chgfrom(sender, params)

    def quarantine(self, reason: str) -> None:
        if not self._actions & QUARANTINE:
            raise DisabledAction("QUARANTINE")
        self._ctx.quarantine(reason)

    def progress(self) -> None:
        """Tell the MTA the filter is still working."""
        self._ctx.progress()


class Milter(Base):
    """The logging filter of old pymilter versions: every callback logs;
    the logging ones do not make the MTA wait (``@noreply``)."""

    def log(self, *msg: Any) -> None:
        # pymilter passes end=None, which is print's default: one item a line.
        print("Milter:")
        for item in msg:
            print(item)
        print()

    @noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.log(f"connect from {hostname} at {hostaddr}")
        return CONTINUE

    @noreply
    def hello(self, hostname: str) -> int:
        self.log(f"hello from {hostname}")
        return CONTINUE

    @noreply
    def envfrom(self, f: Any, *s: Any) -> int:
        self.log("mail from", f, s)
        return CONTINUE

    @noreply
    def envrcpt(self, to: Any, *s: Any) -> int:
        self.log("rcpt to", to, s)
        return CONTINUE

    @noreply
    def header(self, field: str, value: Any) -> int:
        self.log(f"{field}: {value}")
        return CONTINUE

    @noreply
    def eoh(self) -> int:
        self.log("eoh")
        return CONTINUE

    def eom(self) -> int:
        self.log("eom")
        return CONTINUE

    def abort(self) -> int:
        self.log("abort")
        return CONTINUE

    def close(self) -> int:
        self.log("close")
        return CONTINUE


# Called for each new connection; may be reassigned while running.
factory: Callable[[], Base] = Milter


def negotiate_callback(ctx: Any, opts: list[int]) -> int:
    """A new connection: build the filter object and let it negotiate."""
    m = factory()
    m._setctx(ctx)
    return m.negotiate(opts)


def connect_callback(ctx: Any, hostname: str, family: int, hostaddr: Any) -> int:
    m = ctx.getpriv()
    if not m:
        m = factory()
        m._setctx(ctx)
    rc: int = m.connect(hostname, family, hostaddr)
    return rc


def close_callback(ctx: Any) -> int:
    m = ctx.getpriv()
    if not m:
        return CONTINUE
    try:
        rc: int = m.close()
    finally:
        m._setctx(None)
    return rc


def dictfromlist(args: Any) -> dict[str, str]:
    """ESMTP parameters NAME=VALUE -> {NAME: VALUE} (names upper-cased)."""
    kw: dict[str, str] = {}
    for s in args:
        name, sep, value = s.partition("=")
        if sep and name:
            kw[name.upper()] = value
    return kw


def param2dict(params: Any) -> dict[str, str | None]:
    """ESMTP parameters -> {NAME: VALUE or None} (names upper-cased)."""
    out: dict[str, str | None] = {}
    for s in params:
        name, sep, value = s.partition("=")
        out[name.upper()] = value if sep else None
    return out


def envcallback(c: Callable[..., Any], args: Any) -> Any:
    """Call ``c(address, *flags, **{NAME: VALUE})`` from envfrom/envrcpt args."""
    kw: dict[str, str] = {}
    positional = [args[0]]
    for s in args[1:]:
        name, sep, value = s.partition("=")
        if sep and name:
            kw[name.upper()] = value
        else:
            positional.append(s)
    return c(*positional, **kw)


def runmilter(name: str, socketname: str, timeout: float = 0, rmsock: bool = True) -> None:
    """Serve ``factory``'s filter on ``socketname`` with miltrd's daemon
    until SIGTERM/SIGINT (or ``milter.stop()``), then return.

    name: the filter's name in logs and untrapped-exception replies;
    socketname: ``local:/path``, ``inet:PORT@HOST`` or ``inet6:PORT@HOST``;
    timeout: seconds to wait for the MTA (0: libmilter's 7210). Raises
    ``milter.error`` when it cannot start (socket in use, bad spec).
    """
    from .serve import serve

    serve(name, socketname, timeout, rmsock=rmsock)
