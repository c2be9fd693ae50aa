"""The Python floor: the least a milter written in Python can do per packet.

    python3 bench/pyfloor.py PORT              # a reply per command, as Reference
    python3 bench/pyfloor.py PORT --noreply    # replies only at end of message, as Declared
    python3 bench/pyfloor.py PORT --engine [--noreply]
                                               # the same, every packet through miltrd's engine
    python3 bench/pyfloor.py PORT --hooks [--noreply]
                                               # and bench/benchplugin.py's hooks called directly

Not a filter anyone would run, and not miltrd: one ``asyncio.Protocol`` on
uvloop (asyncio's loop where uvloop is missing) whose ``data_received``
cuts packets by their length field, looks only at the command byte and
writes canned replies: the option negotiation miltrd's ``Reference`` (or,
with ``--noreply``, ``Declared``) chain sends (bench/benchplugin.py: every
step observed, action ADDHDRS, the macro lists miltrd asks for;
``--noreply`` waives every reply but end of message's), CONTINUE for every command that owes one, and at end of
message ADDHEADER X-Bench then CONTINUE, all the replies owed for one
read in one write. No command's data is decoded, no macro is kept, no state
checked. TCP_NODELAY; TCP_QUICKACK re-armed after a read that no reply
answered (as miltrd does: a reply carries the ACK).

With ``--engine`` the packets go through miltrd's protocol engine
(``miltrd.protocol.FilterConnection``: each decoded into its command, the
order checked, macros kept, each reply encoded by ``send``) and nothing
else of miltrd: no handler, chain, plugin or metrics. With ``--hooks``,
also the plugin's hooks (bench/benchplugin.py's ``Reference``, or
``Declared`` with ``--noreply``), each called as a coroutine straight from
its decoded command with the plugin API's ``Connection`` and ``Message``:
what a layer above the engine rebuilt around direct calls would cost at
least. Between the floors and miltrd's own rows lie the engine's cost, the
hooks', and that of the rest (the handler's dispatch, the chain's
bookkeeping, the daemon's per-connection work).

By hand, from the checkout, with the environment scripts/test.sh makes
(``--engine`` and ``--hooks`` import miltrd):
``PYTHONPATH=. .venv/bin/python bench/pyfloor.py 47999 --engine``.

It answers the question issue 17 leaves: how far below pymilter can pure
Python get on the same wire, doing none of a real filter's work. ``bench.run``
and ``bench.cpusplit`` run it as ``pyfloor`` and ``pyfloor-nr`` (with the
engine: ``enginefloor`` and ``enginefloor-nr``; with the hooks:
``hooksfloor`` and ``hooksfloor-nr``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

# SMFIP_* (libmilter's mfdef.h): what bench/benchplugin.py's chains ask.
NOUNKNOWN, SKIP, NR_UNKN = 0x100, 0x400, 0x20000
NR_ALL_BUT_EOM = 0x80 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x40000 | 0x80000
ADDHDRS, SETSYMLIST = 0x01, 0x100
# The macro lists miltrd asks for (SMFIF_SETSYMLIST), so that the MTA sends
# the floors the same macro packets: stage, then the names.
MACRO_LISTS = (
    (0, "j {client_addr} {client_name} {daemon_name}"),
    (1, "{cipher} {tls_version}"),
    (2, "i {auth_authen} {auth_author} {auth_type} {mail_addr}"),
    (3, "i {rcpt_addr} {rcpt_mailer}"),
    (4, "i"),
    (5, "i"),
    (6, "i"),
)
_HEAD = struct.Struct("!IB")
_OFFER = struct.Struct("!III")


def packet(code: bytes, data: bytes = b"") -> bytes:
    return _HEAD.pack(len(data) + 1, code[0]) + data


CONTINUE = packet(b"c")
EOM_REPLY = packet(b"h", b"X-Bench\0pyfloor\0") + CONTINUE
# Commands that owe a reply under the Reference negotiation: CONNECT,
# HELO, MAIL, RCPT, DATA, HEADER, EOH, BODY (EOM and OPTNEG apart).
REPLIED = frozenset(b"CHMRTLNB")


def _nothing() -> None:
    pass


class Floor(asyncio.Protocol):
    def __init__(self, noreply: bool) -> None:
        self.noreply = noreply
        self.replied = frozenset() if noreply else REPLIED
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.quickack: Callable[[], None] = _nothing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._own: socket.socket | None = None
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        own = socket.socket(sock.family, socket.SOCK_STREAM, 0, sock.fileno())
        own.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        setsockopt, level, opt = own.setsockopt, socket.IPPROTO_TCP, socket.TCP_QUICKACK
        self._own = own  # detached in connection_lost: the transport owns the descriptor

        def quickack() -> None:
            setsockopt(level, opt, 1)

        self.quickack = quickack

    def connection_lost(self, exc: Exception | None) -> None:
        if self._own is not None:
            self._own.detach()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        end = len(buf)
        pos = 0
        out = []
        replied = self.replied
        while end - pos >= 5:
            stop = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
            if stop > end:
                break
            code = buf[pos + 4]
            if code in replied:
                out.append(CONTINUE)
            elif code == 0x45:  # E: end of message
                out.append(EOM_REPLY)
            elif code == 0x4F:  # O: option negotiation
                out.append(self._negotiate(buf[pos + 5 : stop]))
            elif code == 0x51:  # Q: quit
                assert self.transport is not None
                self.transport.close()
                return
            pos = stop
        self.buf = buf[pos:] if pos < end else b""
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        else:
            self.quickack()

    def _negotiate(self, offer: bytes) -> bytes:
        version, actions, protocol = _OFFER.unpack_from(offer)
        want = NOUNKNOWN | NR_UNKN | SKIP | (NR_ALL_BUT_EOM if self.noreply else 0)
        lists = b"".join(
            struct.pack("!I", stage) + names.encode() + b"\0" for stage, names in MACRO_LISTS
        )
        agreed = _OFFER.pack(min(version, 6), (ADDHDRS | SETSYMLIST) & actions, want & protocol)
        return packet(b"O", agreed + lists)


class EngineFloor(Floor):
    """The floor with miltrd's protocol engine in the path."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.fc = _ENGINE.FilterConnection()

    def data_received(self, data: bytes) -> None:
        fc = self.fc
        need, optneg, macros, eom, quit_ = _KINDS
        fc.receive_data(data)
        out = []
        while (event := fc.next_event()) is not need:
            kind = type(event)
            if kind is optneg:
                out.append(fc.negotiate(**_REQUESTS[self.noreply]))
            elif kind is macros:
                fc.macros()
            elif fc.reply_owed:
                if kind is eom:
                    out.append(fc.send(_ADDED))
                out.append(fc.send(_CONTINUE))
            elif kind is quit_:
                assert self.transport is not None
                self.transport.close()
                return
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        else:
            self.quickack()


class HooksFloor(EngineFloor):
    """The engine floor that also calls bench/benchplugin.py's hooks, each
    straight from its decoded command: what a rebuilt layer above the
    engine could cost at least, with plugins' hooks as coroutines.

    Its read loop is EngineFloor's with the hook call added, written out
    again rather than shared through a per-command method: the engine
    floor's figures must not carry a call it does not need.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        api = _API
        self.plugin = api["plugin"][self.noreply]
        self.conn = api["Connection"](id="floor", internal_rules=api["rules"])
        self.conn.caller = api["caller"]
        self.msg: Any = None

    def data_received(self, data: bytes) -> None:
        fc = self.fc
        need, optneg, macros, eom, quit_ = _KINDS
        plugin, conn = self.plugin, self.conn
        fc.receive_data(data)
        out = []
        while (event := fc.next_event()) is not need:
            kind = type(event)
            if kind is macros:
                conn.macros = fc.macros()
                continue
            if kind is optneg:
                out.append(fc.negotiate(**_REQUESTS[self.noreply]))
                continue
            if kind is quit_:
                assert self.transport is not None
                self.transport.close()
                return
            hook = _HOOKS.get(kind)
            if hook is not None:
                _run(hook(self, plugin, event))
            if fc.reply_owed:
                if kind is eom:
                    out.append(fc.send(_ADDED))
                out.append(fc.send(_CONTINUE))
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        else:
            self.quickack()

    def new_message(self) -> Any:
        self.msg = _API["Message"](conn=self.conn, body=_API["Body"](1 << 20))
        return self.msg


def _run(coro: Any) -> None:
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("a bench hook waited")  # pragma: no cover


def load_engine() -> None:
    """What the engine floor needs of miltrd, made once (not per connection)."""
    global _ENGINE, _KINDS, _CONTINUE, _ADDED, _REQUESTS
    import miltrd.protocol as engine

    _ENGINE = engine
    _KINDS = (
        engine.NEED_DATA,
        engine.OptionNegotiation,
        engine.DefineMacros,
        engine.EndOfMessage,
        engine.Quit,
    )
    _CONTINUE = engine.Continue()
    _ADDED = engine.AddHeader("X-Bench", "pyfloor")
    _REQUESTS = {
        noreply: {
            "actions": engine.ActionFlag(ADDHDRS | SETSYMLIST),
            "macros": {
                engine.MacroStage(stage): tuple(names.split()) for stage, names in MACRO_LISTS
            },
            "protocol": engine.ProtocolFlag(
                NOUNKNOWN | NR_UNKN | SKIP | (NR_ALL_BUT_EOM if noreply else 0)
            ),
        }
        for noreply in (False, True)
    }


def load_hooks() -> None:
    """What the hooks floor needs: the engine's, the plugin API's, the hooks."""
    global _API, _HOOKS
    load_engine()
    from bench import benchplugin
    from miltrd import api

    rules = api.InternalRules()
    log = logging.getLogger("pyfloor")
    _API = {
        "Connection": api.Connection,
        "Message": api.Message,
        "Body": api.Body,
        "rules": rules,
        "caller": api.Caller("ref", api.Action.ADD_HEADERS),
        "plugin": {
            noreply: cls(None, name="ref", internal_rules=rules, log=log)
            for noreply, cls in ((False, benchplugin.Reference), (True, benchplugin.Declared))
        },
    }
    e = _ENGINE

    def msg(f: HooksFloor) -> Any:
        return f.msg if f.msg is not None else f.new_message()

    _HOOKS = {
        e.Connect: lambda f, p, ev: p.on_connect(f.conn),
        e.Helo: lambda f, p, ev: p.on_helo(f.conn, ev.name),
        e.MailFrom: lambda f, p, ev: p.on_mail(f.new_message(), ev.sender),
        e.RcptTo: lambda f, p, ev: p.on_rcpt(msg(f), ev.recipient),
        e.Data: lambda f, p, ev: p.on_data(msg(f)),
        e.Header: lambda f, p, ev: p.on_header(msg(f), ev.name, ev.value),
        e.EndOfHeaders: lambda f, p, ev: p.on_eoh(msg(f)),
        e.BodyChunk: lambda f, p, ev: p.on_body(msg(f), ev.data),
        e.EndOfMessage: lambda f, p, ev: p.on_eom(msg(f)),
    }


_API: dict[str, Any] = {}
_HOOKS: dict[type, Callable[..., Any]] = {}
_ENGINE: Any = None
_KINDS: Any = None
_CONTINUE: Any = None
_ADDED: Any = None
_REQUESTS: dict[bool, dict[str, Any]] = {}


async def main(port: int, noreply: bool, engine: bool, hooks: bool) -> None:
    loop = asyncio.get_running_loop()
    kind: type[Floor] = Floor
    if hooks:
        load_hooks()
        kind = HooksFloor
    elif engine:
        load_engine()
        kind = EngineFloor
    server = await loop.create_server(lambda: kind(noreply), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of miltrd
        runner = asyncio.run  # type: ignore[assignment]
    ap = argparse.ArgumentParser(
        prog="bench/pyfloor.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("port", type=int, help="TCP port on 127.0.0.1")
    ap.add_argument("--noreply", action="store_true", help="answer only end of message")
    ap.add_argument("--engine", action="store_true", help="through miltrd's protocol engine")
    ap.add_argument(
        "--hooks", action="store_true", help="and the plugin's hooks (implies --engine)"
    )
    args = ap.parse_args()
    runner(main(args.port, args.noreply, args.engine, args.hooks))
