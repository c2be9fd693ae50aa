"""One task per MTA connection: bytes <-> FilterConnection <-> chain.

The loop reads, feeds the engine, dispatches each event to the chain and
writes every reply owed for one command in a single write (no Nagle or
delayed-ACK stalls). A malformed packet closes this one connection with
one log line; anything else that goes wrong inside is answered with the
configured on_error verdict, never with a silent accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Protocol

from .. import metrics
from ..api import CONTINUE, Connection, Phase, Verdict
from ..chain import ChainSession, EomResult, Runtime, on_error_verdict
from ..chain.timebound import start, then
from ..logs import conn_id, queue_id
from ..protocol import (
    MDS_1M,
    NEED_DATA,
    Abort,
    ActionFlag,
    BodyChunk,
    Command,
    Connect,
    ConnectionClosed,
    Continue,
    Data,
    DefineMacros,
    EndOfHeaders,
    EndOfMessage,
    FilterConnection,
    Header,
    Helo,
    MailFrom,
    OptionNegotiation,
    Progress,
    ProtocolError,
    ProtocolFlag,
    Quit,
    QuitNewConnection,
    RcptTo,
    RemoteProtocolError,
    ReplyCode,
    Unknown,
)
from .translate import (
    body_reply,
    eom_responses,
    family_name,
    no_reply_phases,
    reply_of,
    request_for,
    uses_smtputf8,
)

__all__ = [
    "MilterHandler",
    "Reader",
    "Writer",
    "serve_overloaded",
    "next_conn_id",
    "set_conn_prefix",
    "quickack_setter",
    "READ_SIZE",
    "SHUTTING_DOWN",
]

log = logging.getLogger("miltrd.server")
READ_SIZE = 256 * 1024
PROGRESS_INTERVAL = 10.0  # seconds between SMFIR_PROGRESS during a slow end of message
_ids = itertools.count(1)


_prefix = ""


def set_conn_prefix(prefix: str) -> None:
    """Connection ids of a worker process start with its own prefix."""
    global _prefix
    _prefix = prefix


def next_conn_id() -> str:
    return f"{_prefix}c{next(_ids)}"


class Reader(Protocol):
    """What a handler reads from: an asyncio.StreamReader, or the inline
    server's protocol before it serves inline (server/inline.py)."""

    async def read(self, n: int = -1) -> bytes: ...


class Writer(Protocol):
    """What a handler writes through: an asyncio.StreamWriter, or the
    inline server's writer (server/inline.py)."""

    @property
    def transport(self) -> asyncio.WriteTransport: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


# A command's handler answers with the bytes to write, or with the chain's
# verdict (turned into bytes by the caller, ``_answer``), or an awaitable of
# either where a hook waits.
Handle = Callable[["MilterHandler", Any], "bytes | Verdict | Awaitable[bytes | Verdict]"]


class MilterHandler:
    """Serves one MTA connection with one runtime."""

    _handlers: ClassVar[dict[type, Handle]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _handlers_of(cls)

    def __init__(
        self,
        runtime: Runtime,
        cid: str | None = None,
        *,
        on_message: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.on_message = on_message
        self.cid = cid or next_conn_id()
        daemon = runtime.config.daemon
        self.fc = FilterConnection(max_data_size=MDS_1M, min_packet_limit=daemon.max_packet)
        self.conn = Connection(
            id=self.cid, internal_rules=runtime.config.internal, dry_run=runtime.dry_run
        )
        self.chain = ChainSession(runtime, self.conn, on_message=on_message)
        self.smtputf8 = False  # the client gave SMTPUTF8 with this message's MAIL FROM
        self.idle_timeout = daemon.idle_timeout
        self._writer: Writer | None = None
        self._quickack: Callable[[], None] = _no_quickack
        self._own: socket.socket | None = None  # see own_socket
        self._record: metrics.Recorder  # set by session(), as _loop
        self._last_read = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop  # set by session(), before any read
        self._idle_closed = False  # the watchdog closed it (and said so)
        self._progress_timer: asyncio.TimerHandle | None = None

    async def serve(self, reader: Reader, writer: Writer) -> None:
        """Serve the connection over asyncio streams until the MTA closes it."""
        async with self.session(writer):
            while True:
                data = await reader.read(READ_SIZE)
                self.note_read()
                self.fc.receive_data(data)
                if not await self.drain_events(writer) or not data:
                    break

    def session(
        self, writer: Writer, loop: asyncio.AbstractEventLoop | None = None
    ) -> MilterHandler:
        """Around serving one connection (``async with``): its log context,
        idle watchdog and metrics; how it ended, in one log line; closing it.

        A malformed packet (RemoteProtocolError) or a lost connection ends
        the block quietly after its log line; cancellation (shutdown) is
        logged, an owed reply tempfailed, and re-raised. ``loop``: the
        running loop, when the caller has it at hand (asking for it costs
        a getpid() system call on Python 3.11).

        The handler is its own context manager (one connection, one
        session): an ``asynccontextmanager`` would cost a generator, two
        ``anext`` calls and a StopAsyncIteration at every connection.
        """
        self._writer = writer
        self._loop = loop or asyncio.get_running_loop()
        return self

    async def __aenter__(self) -> None:
        writer = self._writer
        assert writer is not None
        conn_id.set(self.cid)
        queue_id.set("")
        loop = self._loop
        self._last_read = loop.time()
        # A timer, not a task: it costs one heap entry per idle period, and
        # its log line carries the connection id (this context, copied).
        self._idle_timer = loop.call_later(
            self.idle_timeout, self._check_idle, writer, context=contextvars.copy_context()
        )
        self._record = record = metrics.recorder()
        record.connection_opened()
        # Last: from here on __aexit__ runs, and it lets go of the descriptor.
        self._own = own = own_socket(writer.get_extra_info("socket"))
        # TCP_NODELAY is set on the listener and inherited by every
        # connection (listen.py); QUICKACK is re-armed after each read.
        self._quickack = _rearm(own)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        writer = self._writer
        assert writer is not None
        own, self._own = self._own, None
        if own is not None:
            # The transport's descriptor, not ours to close (see own_socket).
            own.detach()
            self._quickack = _no_quickack
        swallowed = False
        try:
            if exc is None:
                pass
            elif isinstance(exc, RemoteProtocolError):
                # After the idle watchdog's abort the engine sees the end of
                # input, perhaps mid-packet: that close has had its line.
                if not self._idle_closed:
                    log.warning("protocol error from MTA, closing the connection: %s", exc)
                    self._record.protocol_error()
                # Its traceback holds the frames that hold it (and the
                # protocol, its transport, the handler): a cycle only the
                # garbage collector frees. Nothing reads the traceback after
                # the log line.
                exc.__traceback__ = None
                swallowed = True
            elif isinstance(exc, (ConnectionError, OSError)):
                log.info("connection lost: %s", exc)
                exc.__traceback__ = None
                swallowed = True
            elif isinstance(exc, asyncio.CancelledError):
                self._cancelled(writer)
        finally:
            del exc, tb  # no traceback kept alive by this frame while it waits below
            self._record.connection_closed()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            try:  # noqa: SIM105 - not contextlib.suppress: once per connection, cheaper
                await self.chain.close()
            except Exception:
                pass
            writer.close()
            try:  # noqa: SIM105
                await writer.wait_closed()
            except Exception:
                pass
        return swallowed

    def note_read(self) -> None:
        """After each read: the idle clock restarts and TCP_QUICKACK is re-armed."""
        # The loop kept from session(): asking for the running loop costs a
        # getpid() system call on Python 3.11, at every read.
        self._last_read = self._loop.time()
        self._quickack()

    def note_input(self) -> None:
        """After a read whose commands run at once (server/inline.py): the
        idle clock restarts; the ACK is left to ``ack_now``, called only
        where no reply went out with one."""
        self._last_read = self._loop.time()

    def ack_now(self) -> None:
        """Re-arm TCP_QUICKACK: the kernel ACKs what was read at once."""
        self._quickack()

    def _cancelled(self, writer: Writer) -> None:
        """The daemon gave up on this session (shutdown_timeout passed).

        One line, carrying the queue id (the task's contextvar), then a
        tempfail for a reply the MTA is waiting for: closing the socket
        alone would leave the outcome to milter_default_action, which a
        site may have set to accept.

        The MTA may be waiting on a command still in the engine's buffer:
        one pipelined behind no-reply commands (MAIL, RCPT, headers, body
        with the NR_ flags) while a hook of an earlier one waited. Those
        are read up to the first that owes a reply, and that one is answered.
        """
        with contextlib.suppress(ProtocolError):
            while not self.fc.reply_owed:
                event = self.fc.next_event()
                if event is NEED_DATA or isinstance(event, (ConnectionClosed, Quit)):
                    break
        owed = self.fc.awaiting
        if owed is None:
            phase = "between commands"
        elif owed is Command.BODYEOB:
            phase = "end of message"
        else:
            phase = owed.name.lower()
        log.warning("session cancelled at shutdown (shutdown_timeout passed), in %s", phase)
        if self.fc.reply_owed:
            with contextlib.suppress(Exception):
                writer.write(self.fc.send(SHUTTING_DOWN))

    def _check_idle(self, writer: Writer) -> None:
        """Close a connection the MTA left idle past idle_timeout.

        One timer per idle period, checked when it fires, instead of one
        per read keeps the hot path free of timer churn.
        """
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_read
        if idle >= self.idle_timeout:
            log.warning("MTA idle for %.0fs, closing the connection", idle)
            self._idle_closed = True
            writer.transport.abort()
            return
        self._idle_timer = loop.call_later(
            self.idle_timeout - idle, self._check_idle, writer, context=contextvars.copy_context()
        )

    async def drain_events(self, writer: Writer) -> bool:
        """Handle every complete event; False when the connection is over."""
        more = self.drain_now(writer)
        return more if isinstance(more, bool) else await more

    def drain_now(self, writer: Writer) -> bool | Awaitable[bool]:
        """``drain_events`` run at once: True when every complete event is
        handled (more bytes are needed), False when the connection is over,
        or, when a hook waits or the write buffer is full, an awaitable that
        finishes the job (awaited by the connection's task)."""
        fc = self.fc
        handlers = self._handlers
        while True:
            event = fc.next_event()
            if event is NEED_DATA:
                return True
            handle = handlers.get(type(event))
            if handle is None:
                if isinstance(event, (ConnectionClosed, Quit)):
                    return False
                continue
            try:
                out = handle(self, event)
                if out is CONTINUE:  # the chain's usual answer, without _answer's call
                    out = fc.send(_CONTINUE) if fc.reply_owed else b""
                elif not isinstance(out, bytes):
                    if not isinstance(out, Verdict):
                        return self._drain_rest(writer, event, out)  # a hook waits
                    out = self._answer(out)
            except ProtocolError:
                raise
            except Exception:
                out = self._internal_error(event)
            if out:
                writer.write(out)
                if writer.transport.get_write_buffer_size() > _DRAIN_AT:
                    return self._drain_rest(writer, event, None)
            if fc.exhausted:
                return True

    async def _drain_rest(
        self, writer: Writer, event: object, answer: Awaitable[bytes | Verdict] | None
    ) -> bool:
        """``drain_now`` from the event whose ``answer`` waits (or, with
        None, after a write that filled the transport's buffer)."""
        if answer is not None:
            try:
                out = await answer
                if isinstance(out, Verdict):
                    out = self._answer(out)
            except ProtocolError:
                raise
            except Exception:
                out = self._internal_error(event)
            if out:
                writer.write(out)
        if writer.transport.get_write_buffer_size() > _DRAIN_AT:
            await writer.drain()
        return await self.drain_events(writer)

    def _internal_error(self, event: object) -> bytes:
        """In an ``except`` block: log the error handling ``event`` with its
        traceback, and answer as ``_fail_safe``."""
        log.exception("internal error handling %s", type(event).__name__)
        return self._fail_safe()

    def _fail_safe(self) -> bytes:
        """After an internal error: answer an owed reply with the daemon's
        on_error verdict; with no reply owed, the chain holds that verdict
        for the next reply, as it does for a plugin failure."""
        verdict = on_error_verdict(self.runtime.config.daemon.on_error)
        if self.fc.reply_owed:
            return self._answer(verdict)
        self.chain.hold(verdict)
        return b""

    def _answer(self, verdict: Verdict) -> bytes:
        """The bytes that answer the current command with ``verdict``;
        nothing where the phase was negotiated without a reply (the chain
        then holds any verdict that ends the message for the next reply)."""
        fc = self.fc
        if not fc.reply_owed:
            return b""
        if verdict is CONTINUE:
            return fc.send(_CONTINUE)
        return fc.send(reply_of(verdict, fc.awaiting, smtputf8=self.smtputf8))

    async def _dispatch(self, event: object) -> bytes:
        """The bytes that answer one command (what drain_events does for each)."""
        handle = self._handlers.get(type(event))
        if handle is None:
            return b""
        out = handle(self, event)
        if not isinstance(out, (bytes, Verdict)):
            out = await out
        return self._answer(out) if isinstance(out, Verdict) else out

    # One method per command (``_handlers``): each returns the bytes to
    # write or the chain's verdict (see ``Handle``), or an awaitable of
    # either when a plugin's hook waits.

    def _on_optneg(self, event: OptionNegotiation) -> bytes:
        return self._negotiate()

    def _on_macros(self, event: DefineMacros) -> bytes:
        # Read-only: the engine keeps this dict and builds the next merge
        # from it, so a plugin's write would reach later messages.
        self.conn.macros = MappingProxyType(self.fc.macros())
        return b""

    def _on_connect(self, event: Connect) -> Verdict | Awaitable[Verdict]:
        conn = self.conn
        conn.hostname = event.hostname
        conn.family = family_name(event.family)
        conn.address = event.address
        conn.port = event.port
        return self.chain.connect_now()

    def _on_helo(self, event: Helo) -> Verdict | Awaitable[Verdict]:
        return self.chain.helo_now(event.name)

    def _on_mail(self, event: MailFrom) -> Verdict | Awaitable[Verdict]:
        self.smtputf8 = uses_smtputf8(event.args)
        return self.chain.mail_now(event.sender, event.args)

    def _on_rcpt(self, event: RcptTo) -> Verdict | Awaitable[Verdict]:
        return self.chain.rcpt_now(event.recipient, event.args)

    def _on_data(self, event: Data) -> Verdict | Awaitable[Verdict]:
        return self.chain.data_now()

    def _on_header(self, event: Header) -> Verdict | Awaitable[Verdict]:
        return self.chain.header_now(event.name, event.value)

    def _on_eoh(self, event: EndOfHeaders) -> Verdict | Awaitable[Verdict]:
        return self.chain.eoh_now()

    def _on_body(self, event: BodyChunk) -> bytes | Awaitable[bytes]:
        verdict = self.chain.body_now(event.data)
        if not isinstance(verdict, Verdict):
            return then(verdict, self._body_reply)
        return self._body_reply(verdict)

    def _body_reply(self, verdict: Verdict) -> bytes:
        negotiated = self.fc.negotiated
        if not self.fc.reply_owed or negotiated is None:
            return self._answer(verdict)
        wanted = self.chain.wants(_PHASE_BODY)
        return self.fc.send(
            body_reply(verdict, negotiated.protocol, wanted, smtputf8=self.smtputf8)
        )

    # The rest are coroutines, run here up to their first wait: a whole
    # message's end without a wait costs no hand-over to the task.

    def _on_eom(self, event: EndOfMessage) -> bytes | Awaitable[bytes]:
        return _now(self._end_of_message(event))

    def _on_abort(self, event: Abort) -> bytes | Awaitable[bytes]:
        return _now(self._abort())

    def _on_quit_nc(self, event: QuitNewConnection) -> bytes | Awaitable[bytes]:
        return _now(self._new_connection())

    async def _abort(self) -> bytes:
        await self.chain.abort()
        return b""

    async def _new_connection(self) -> bytes:
        chain = self.chain
        await chain.close()
        self.conn = Connection(
            id=self.cid,
            internal_rules=self.runtime.config.internal,
            dry_run=self.runtime.dry_run,
        )
        self.chain = ChainSession(self.runtime, self.conn, on_message=self.on_message)
        self.chain.no_reply = chain.no_reply
        return b""

    def _on_unknown(self, event: Unknown) -> bytes:
        return self.fc.send(Continue()) if self.fc.reply_owed else b""

    def _negotiate(self) -> bytes:
        req = request_for(self.runtime.declared)
        out = self.fc.negotiate(actions=req.actions, protocol=req.protocol, macros=req.macros)
        agreed = self.fc.negotiated
        assert agreed is not None
        self.chain.no_reply = no_reply_phases(agreed.protocol)
        missing = _missing_actions(req.actions, agreed.actions)
        if missing:
            log.warning("the MTA does not offer actions %s; those changes will be dropped", missing)
            metrics.recorder().negotiation_failed()
        log.debug(
            "negotiated version %d actions %r protocol %r",
            agreed.version,
            agreed.actions,
            agreed.protocol,
        )
        return out

    def _progress(self) -> None:
        """Every PROGRESS_INTERVAL during a slow end of message: SMFIR_PROGRESS."""
        if self._writer is not None and self.fc.awaiting is Command.BODYEOB:
            with contextlib.suppress(Exception):
                self._writer.write(self.fc.send(Progress()))
        self._progress_timer = asyncio.get_running_loop().call_later(
            PROGRESS_INTERVAL, self._progress
        )

    async def _end_of_message(self, event: EndOfMessage) -> bytes:
        if event.data:
            await self.chain.body(event.data)
        finished, value = start(self.chain.eom())
        if finished:
            result: EomResult = value  # the common case: no plugin had to wait
        else:
            # The rest runs on in this task, not in one of its own: a plugin's
            # timeout (asyncio.timeout, entered before the hook first waited)
            # cancels the task it was entered in, and that must be the one
            # running the hook, or the timeout ends the whole session.
            # Cancellation at shutdown reaches the hook the same way.
            # Progress keeps the MTA's content timeout from firing meanwhile.
            loop = asyncio.get_running_loop()
            self._progress_timer = loop.call_later(PROGRESS_INTERVAL, self._progress)
            try:
                result = await value
            finally:
                if self._progress_timer is not None:
                    self._progress_timer.cancel()
                self._progress_timer = None
        assert self.fc.negotiated is not None
        out = bytearray()
        for response in eom_responses(
            result.verdict, result.changes, self.fc.negotiated.actions, smtputf8=self.smtputf8
        ):
            out += self.fc.send(response)
            # A large replacement body is written out as it is read.
            if len(out) >= _WRITE_AT and self._writer is not None:
                self._writer.write(bytes(out))
                out.clear()
                await self._writer.drain()
        return bytes(out)


_WRITE_AT = 1 << 20


def _now(coro: Coroutine[Any, Any, bytes]) -> bytes | Awaitable[bytes]:
    """``coro``'s bytes if it finishes without waiting, else an awaitable
    that finishes it (in the connection's task, as a plain await would)."""
    _finished, value = start(coro)
    return value  # type: ignore[no-any-return]


_DRAIN_AT = 1024 * 1024  # bytes in the transport's buffer before writes wait
# Bound once: on Python 3.11 an Enum member read from its class is a call
# into Python, and this one is read at every body chunk.
_PHASE_BODY = Phase.BODY
_CONTINUE = Continue()

# The method that handles each command (``MilterHandler._handlers``, by
# class, so that a subclass's override is the one called).
_HANDLER_NAMES: dict[type, str] = {
    OptionNegotiation: "_on_optneg",
    DefineMacros: "_on_macros",
    Connect: "_on_connect",
    Helo: "_on_helo",
    MailFrom: "_on_mail",
    RcptTo: "_on_rcpt",
    Data: "_on_data",
    Header: "_on_header",
    EndOfHeaders: "_on_eoh",
    BodyChunk: "_on_body",
    EndOfMessage: "_on_eom",
    Abort: "_on_abort",
    QuitNewConnection: "_on_quit_nc",
    Unknown: "_on_unknown",
}


def _handlers_of(cls: type[MilterHandler]) -> dict[type, Handle]:
    return {kind: getattr(cls, name) for kind, name in _HANDLER_NAMES.items()}


MilterHandler._handlers = _handlers_of(MilterHandler)


@functools.lru_cache(maxsize=64)
def _missing_actions(wanted: ActionFlag, agreed: ActionFlag) -> ActionFlag:
    """Actions the chain needs that the MTA did not offer (ADDRCPT_PAR is
    optional: without it a recipient is added without ESMTP arguments)."""
    return wanted & ~agreed & ~ActionFlag.ADDRCPT_PAR


def _no_quickack() -> None:
    pass


def quickack_setter(sock: socket.socket | None) -> Callable[[], None]:
    """Re-arm TCP_QUICKACK after each read on Linux TCP sockets (see MTA-NOTES),
    and set TCP_NODELAY now.

    ``sock`` is a real socket (or asyncio's wrapper of one); see
    :func:`own_socket` for what a transport gives.
    """
    if sock is None or sock.family not in _TCP:
        return _no_quickack
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _rearm(sock)


def _rearm(sock: socket.socket | None) -> Callable[[], None]:
    """What re-arms TCP_QUICKACK on ``sock``, a TCP socket (or None)."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or quickack is None:
        return _no_quickack
    setsockopt = sock.setsockopt
    level = socket.IPPROTO_TCP

    def setter() -> None:
        try:  # noqa: SIM105 - not contextlib.suppress: this runs at every read
            setsockopt(level, quickack, 1)
        except OSError:
            pass

    return setter


_TCP = (socket.AF_INET, socket.AF_INET6)


def own_socket(sock: Any) -> socket.socket | None:
    """A socket object of our own on a transport's TCP socket, or None for
    other sockets.

    uvloop's transports give a stand-in whose setsockopt builds and drops a
    socket object at every call; asyncio's wrap theirs in a Python method.
    The object returned shares the transport's descriptor (no dup(), and
    with family, type and protocol given, no system call to ask them):
    the caller must ``detach()`` it, never close it, and use it only while
    the transport is open (after the transport closes, the descriptor's
    number may be another connection's).
    """
    if sock is None:
        return None
    family = getattr(sock, "family", None)
    if family not in _TCP:
        return None
    try:
        return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, sock.fileno())
    except (OSError, ValueError):
        return None


# What a session still open when shutdown_timeout passes is answered.
# The reply to a command still owed when a session is cancelled at shutdown.
SHUTTING_DOWN = ReplyCode(451, ("Mail filter restarting, try again later",), "4.3.2")

_ONLY_CONNECT = (
    ProtocolFlag.NOHELO
    | ProtocolFlag.NOMAIL
    | ProtocolFlag.NORCPT
    | ProtocolFlag.NODATA
    | ProtocolFlag.NOHDRS
    | ProtocolFlag.NOEOH
    | ProtocolFlag.NOBODY
    | ProtocolFlag.NOUNKNOWN
)


async def serve_overloaded(reader: Reader, writer: Writer) -> None:
    """Above max_connections: negotiate, then answer 421 4.3.2 at connect.

    Closing the socket instead would make the MTA apply its own default
    action, which a site may have set to accept: mail would go unfiltered.
    """
    fc = FilterConnection()
    busy = ReplyCode(421, ("Mail filter busy, try again later",), "4.3.2")
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 60)
            fc.receive_data(data)
            while (event := fc.next_event()) is not NEED_DATA:
                if isinstance(event, (ConnectionClosed, Quit)):
                    return
                if isinstance(event, OptionNegotiation):
                    writer.write(fc.negotiate(protocol=_ONLY_CONNECT))
                elif fc.reply_owed:
                    writer.write(fc.send(busy))
            if not data:
                return
    except (ProtocolError, OSError, TimeoutError):
        return
    finally:
        writer.close()
