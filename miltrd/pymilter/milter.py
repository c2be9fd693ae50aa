"""The ``milter`` module of pymilter, without C: constants and process settings.

pymilter's ``milter`` is a C extension over Sendmail's libmilter. Here the
same names carry the same values (libmilter's mfapi.h: SMFIS_*, SMFIF_*,
SMFIP_*, SMFIM_*), and the functions that configure the process record
their setting for ``Milter.runmilter``, which serves the program on
miltrd's daemon. The callback-registration half of the C module
(``register``, ``set_*_callback``, ``main``) is what ``Milter.runmilter``
does for a program; a program that drives it by hand gets ``milter.error``
from ``main`` naming ``Milter.runmilter`` as the way to run.

In a process started with ``miltrd pymilter`` this module is importable as
``milter``; nothing here imports the rest of miltrd.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "error",
    "set_flags",
    "set_exception_policy",
    "setbacklog",
    "settimeout",
    "setconn",
    "setdbg",
    "getversion",
    "getdiag",
    "register",
    "opensocket",
    "main",
    "stop",
    "settings",
    "Settings",
]


class error(Exception):
    """What libmilter's MI_FAILURE becomes, as in pymilter."""


# Return codes of callbacks (SMFIS_*).
CONTINUE = 0
REJECT = 1
DISCARD = 2
ACCEPT = 3
TEMPFAIL = 4
NOREPLY = 7
SKIP = 8
ALL_OPTS = 10

SUCCESS = 0
FAILURE = -1
VERSION = 0x01000001

# Actions (SMFIF_*).
ADDHDRS = 0x01
CHGBODY = 0x02
MODBODY = CHGBODY
ADDRCPT = 0x04
DELRCPT = 0x08
CHGHDRS = 0x10
QUARANTINE = 0x20
CHGFROM = 0x40
ADDRCPT_PAR = 0x80
SETSYMLIST = 0x100
V1_ACTS = 0x0F
V2_ACTS = 0x3F
CURR_ACTS = 0x1FF

# Macro stages (SMFIM_*).
M_CONNECT = 0
M_HELO = 1
M_ENVFROM = 2
M_ENVRCPT = 3
M_DATA = 4
M_EOM = 5
M_EOH = 6

# Protocol steps (SMFIP_*).
P_NOCONNECT = 0x1
P_NOHELO = 0x2
P_NOMAIL = 0x4
P_NORCPT = 0x8
P_NOBODY = 0x10
P_NOHDRS = 0x20
P_NOEOH = 0x40
P_NR_HDR = 0x80
P_NOUNKNOWN = 0x100
P_NODATA = 0x200
P_SKIP = 0x400
P_RCPT_REJ = 0x800
P_NR_CONN = 0x1000
P_NR_HELO = 0x2000
P_NR_MAIL = 0x4000
P_NR_RCPT = 0x8000
P_NR_DATA = 0x10000
P_NR_UNKN = 0x20000
P_NR_EOH = 0x40000
P_NR_BODY = 0x80000
P_HDR_LEADSPC = 0x100000

# The no-reply bits libmilter "fakes" for an MTA that lacks them: it
# answers CONTINUE itself, so a filter may always ask for them.
P_NR_ALL = (
    P_NR_CONN | P_NR_HELO | P_NR_MAIL | P_NR_RCPT | P_NR_DATA | P_NR_UNKN | P_NR_EOH | P_NR_BODY
) | P_NR_HDR

_POLICIES = (CONTINUE, REJECT, TEMPFAIL, ACCEPT)


@dataclass
class Settings:
    """What the program set through this module before ``runmilter``."""

    flags: int = CURR_ACTS
    exception_policy: int = TEMPFAIL
    backlog: int | None = None
    timeout: float | None = None
    conn: str | None = None
    debug: int = 0
    callbacks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


settings = Settings()


def set_flags(flags: int) -> None:
    """The actions (ADDHDRS, CHGBODY, ...) this filter may use."""
    settings.flags = int(flags)


def set_exception_policy(policy: int) -> None:
    """What a callback that raises answers: TEMPFAIL (default), REJECT,
    CONTINUE or ACCEPT; anything else raises ``error``."""
    if policy not in _POLICIES:
        raise error("invalid exception policy")
    settings.exception_policy = policy


def setbacklog(backlog: int) -> None:
    """The listen(2) backlog of the filter's socket."""
    if int(backlog) <= 0:
        raise error("cannot set backlog")
    settings.backlog = int(backlog)


def settimeout(timeout: float) -> None:
    """Seconds to wait for the MTA (libmilter's I/O timeout, default 7210)."""
    settings.timeout = float(timeout)


def setconn(conn: str) -> None:
    """The socket to listen on: ``local:/path``, ``inet:PORT@HOST``, ``inet6:PORT@HOST``."""
    if not conn:
        raise error("cannot set connection info")
    settings.conn = conn


def setdbg(level: int) -> None:
    settings.debug = int(level)


def getversion() -> tuple[int, int, int]:
    """The libmilter version this layer behaves as (1.0.1: negotiate, setsymlist)."""
    return (1, 0, 1)


def getdiag() -> tuple[int, int]:
    return (0, 0)


def _setter(name: str) -> Callable[[Callable[..., Any] | None], None]:
    def set_callback(func: Callable[..., Any] | None) -> None:
        if func is None:
            settings.callbacks.pop(name, None)
        else:
            settings.callbacks[name] = func

    set_callback.__name__ = f"set_{name}_callback"
    return set_callback


set_connect_callback = _setter("connect")
set_helo_callback = _setter("helo")
set_envfrom_callback = _setter("envfrom")
set_envrcpt_callback = _setter("envrcpt")
set_header_callback = _setter("header")
set_eoh_callback = _setter("eoh")
set_body_callback = _setter("body")
set_eom_callback = _setter("eom")
set_abort_callback = _setter("abort")
set_close_callback = _setter("close")


def register(name: str, **callbacks: Callable[..., Any] | None) -> None:
    for key, func in callbacks.items():
        if func is not None:
            settings.callbacks[key] = func


def opensocket(rmsock: bool = True) -> None:
    """Listening starts in ``Milter.runmilter``; kept for programs that call it."""


def main() -> None:
    raise error(
        "miltrd runs pymilter programs through Milter.runmilter(); "
        "the low-level milter.main() loop is not provided"
    )


def stop() -> None:
    """Ask a running ``Milter.runmilter`` to stop, as libmilter's smfi_stop."""
    settings.stop.set()
