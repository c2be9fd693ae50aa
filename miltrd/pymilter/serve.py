"""``Milter.runmilter`` on miltrd's daemon.

The program's filter becomes the one plugin of a chain (``adapter_for``
with ``Milter.factory``), served by miltrd's ``Daemon``: its listeners,
connection limits, signals (SIGTERM/SIGINT stop and let open sessions
finish), logging and metrics. What differs from a configured chain is the
negotiation, which follows pymilter and libmilter instead of the chain's
needs: each connection's filter object is built at OPTNEG and its
``negotiate`` callback picks the actions, the protocol steps (from
``@nocallback``, ``@noreply``, ``enable_protocols``) and the macro lists
(``@symlist``), except that connect, MAIL and RCPT stay on for the
summary line (``_keep_summary_steps``); unknown SMTP commands reach ``unknown``; a SKIP from
``body`` is sent as SKIP. As under libmilter, each connection is served
in a thread of its own, which calls the filter's callbacks directly: a
callback that blocks (DNS, a database) holds up only its connection.

Daemon settings other than the socket come from a miltrd config file when
``miltrd pymilter -c FILE`` gave one (its chain is ignored), else from the
defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import signal
import socket
import threading
from typing import Any

from .. import metrics
from ..api import NoOptions, VerdictKind
from ..chain import Runtime, build_runtime
from ..chain.timebound import start
from ..config import ConfigError, LogLevel, PluginEntry, WorkerCount, load, load_text, parse_listen
from ..logs import conn_id, queue_id, setup_logging
from ..protocol import (
    NEED_DATA,
    ActionFlag,
    ConnectionClosed,
    Continue,
    MacroStage,
    OptionNegotiation,
    Progress,
    ProtocolError,
    ProtocolFlag,
    Quit,
    RemoteProtocolError,
    Skip,
    Unknown,
    effective_offer,
)
from ..server import Daemon, MilterHandler
from ..server.connection import (
    READ_SIZE,
    SHUTTING_DOWN,
    Reader,
    Writer,
    next_conn_id,
    quickack_setter,
)
from ..server.translate import no_reply_phases
from ..server.workers import CONTROL_SIGNALS, block_signals
from . import milter
from .plugin import PymilterPlugin, adapter_for, verdict_of

__all__ = ["serve", "options", "ServeOptions", "PymilterDaemon", "PymilterHandler"]

log = logging.getLogger("miltrd.pymilter")
LIBMILTER_TIMEOUT = 7210.0  # libmilter's default I/O timeout, seconds
ALL_ACTION_BITS = 0x1FF
ALL_PROTOCOL_BITS = 0x1FFFFF


@dataclasses.dataclass
class ServeOptions:
    """Set by ``miltrd pymilter`` before the program runs."""

    config_path: str | None = None
    log_level: LogLevel | None = None


options = ServeOptions()


class PymilterHandler(MilterHandler):
    """A connection negotiated the way libmilter negotiates for pymilter,
    served in a thread of its own."""

    def __init__(
        self, runtime: Runtime, cid: str, *, on_message: Any, plugin: PymilterPlugin
    ) -> None:
        super().__init__(runtime, cid, on_message=on_message)
        self.plugin = plugin
        self._send_lock = threading.Lock()
        self._abandoned = False
        self._sock: socket.socket | None = None

    # --- a thread per connection, as libmilter ------------------------------------

    async def serve(self, reader: Reader, writer: Writer) -> None:
        """Serve the connection in a thread of its own, the filter's callbacks
        called inline there (libmilter's model): a callback that blocks holds
        up only its own connection, and no callback pays a hand-over between
        threads. The event loop keeps the listener, the limits and shutdown."""
        transport: Any = writer.transport
        transport.pause_reading()  # this thread's socket reads from now on
        transport_sock = writer.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(transport_sock.fileno()))
        sock.settimeout(self.idle_timeout)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                context.run(self._serve_blocking, sock)
            except BaseException as exc:  # handed to the awaiting task
                loop.call_soon_threadsafe(_settle, done, exc)
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        threading.Thread(target=run, name=f"pymilter-{self.cid}", daemon=True).start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            self._abandon(sock)
            raise
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _abandon(self, sock: socket.socket) -> None:
        """Shutdown gave up on this session: tempfail an owed reply, as the
        daemon does for its own sessions, then end the connection."""
        log.warning("session cancelled at shutdown (shutdown_timeout passed)")
        with self._send_lock:
            self._abandoned = True
            if self.fc.reply_owed:
                with contextlib.suppress(Exception):
                    sock.sendall(self.fc.send(SHUTTING_DOWN))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _send(self, sock: socket.socket, out: bytes) -> None:
        with self._send_lock:
            if not self._abandoned:
                sock.sendall(out)

    def _serve_blocking(self, sock: socket.socket) -> None:
        conn_id.set(self.cid)
        queue_id.set("")
        self._sock = sock
        # TCP_NODELAY, and TCP_QUICKACK re-armed after each read: no Nagle
        # or delayed-ACK stalls (shared/MTA-NOTES.md), as for every session.
        quickack = quickack_setter(sock)
        record = metrics.recorder()
        record.connection_opened()
        try:
            while True:
                try:
                    data = sock.recv(READ_SIZE)
                except TimeoutError:
                    log.warning("MTA idle for %.0fs, closing the connection", self.idle_timeout)
                    break
                quickack()
                self.fc.receive_data(data)
                if not self._drain_blocking(sock) or not data:
                    break
        except RemoteProtocolError as exc:
            log.warning("protocol error from MTA, closing the connection: %s", exc)
            record.protocol_error()
        except (ConnectionError, OSError) as exc:
            if not self._abandoned:
                log.info("connection lost: %s", exc)
        finally:
            record.connection_closed()
            with contextlib.suppress(Exception):
                _finish(self.chain.close())
            with contextlib.suppress(OSError):
                sock.close()

    def _drain_blocking(self, sock: socket.socket) -> bool:
        while True:
            event = self.fc.next_event()
            if event is NEED_DATA:
                return True
            if isinstance(event, (ConnectionClosed, Quit)):
                return False
            try:
                out = _finish(self._dispatch(event))
            except ProtocolError:
                raise
            except Exception:
                out = self._internal_error(event)
            if out:
                self._send(sock, out)

    def _progress(self) -> None:
        """The filter called progress(): tell the MTA now, as libmilter does."""
        if self._sock is not None and self.fc.reply_owed:
            self._send(self._sock, self.fc.send(Progress()))

    async def _dispatch(self, event: object) -> bytes:
        if isinstance(event, OptionNegotiation):
            return await self._negotiate_pymilter()
        if isinstance(event, Unknown):
            return await self._unknown(event)
        return await super()._dispatch(event)

    async def _negotiate_pymilter(self) -> bytes:
        offer = self.fc.offer
        assert offer is not None
        _version, mta_actions, mta_protocol = effective_offer(offer)
        session = self.plugin.new_session(self.conn)
        session.ctx.on_progress = self._progress
        # libmilter answers for the filter where the MTA lacks a no-reply
        # step, so the filter is offered every one of them.
        offered = int(mta_protocol) | milter.P_NR_ALL
        rc, actions, protocol = await self.plugin.run_sync(
            session.negotiate, int(mta_actions), offered
        )
        if rc == milter.ALL_OPTS:
            actions, protocol = int(mta_actions), int(mta_protocol) & milter.P_SKIP
        elif rc != milter.CONTINUE:
            raise ConnectionError(f"the filter's negotiate answered {rc}: connection refused")
        protocol = _keep_summary_steps(session, int(mta_protocol), protocol)
        macros = {MacroStage(stage): names for stage, names in session.ctx.symlists.items()}
        out = self.fc.negotiate(
            actions=ActionFlag(actions & ALL_ACTION_BITS),
            protocol=ProtocolFlag(protocol & ALL_PROTOCOL_BITS),
            macros=macros,
        )
        agreed = self.fc.negotiated
        assert agreed is not None
        self.chain.no_reply = no_reply_phases(agreed.protocol)
        return out

    async def _unknown(self, event: Unknown) -> bytes:
        session = self.plugin.session_for(self.conn)
        outcome = await self.plugin.run_sync(session.call, "unknown", event.line)
        verdict = verdict_of(outcome)
        if verdict is None:
            return self.fc.send(Continue()) if self.fc.reply_owed else b""
        return self._answer(verdict)

    async def _on_body(self, event: Any) -> bytes:
        verdict = await self.chain.body(event.data)
        session = self.plugin.session_for(self.conn)
        negotiated = self.fc.negotiated
        if (
            verdict.kind is VerdictKind.CONTINUE
            and session.skip_body
            and self.fc.reply_owed
            and negotiated is not None
            and ProtocolFlag.SKIP in negotiated.protocol
        ):
            return self.fc.send(Skip())
        return self._answer(verdict)


# The steps whose arguments every summary line carries (client, sender,
# recipients), with the no-reply bit that spares the MTA a round trip and
# the filter's callback for each.
_SUMMARY_STEPS = (
    (ProtocolFlag.NOCONNECT, ProtocolFlag.NR_CONN, "connect"),
    (ProtocolFlag.NOMAIL, ProtocolFlag.NR_MAIL, "envfrom"),
    (ProtocolFlag.NORCPT, ProtocolFlag.NR_RCPT, "envrcpt"),
)


def _keep_summary_steps(session: Any, mta_protocol: int, protocol: int) -> int:
    """The filter's protocol choice with connect, MAIL and RCPT kept on, so
    the summary line names the client, the sender and the recipients as
    for every chain. A step the filter switched off (``@nocallback``, or a
    callback it does not define) is asked for without a reply where the MTA
    offers that, and never reaches the filter (``not_called``)."""
    not_called = set()
    for step_off, no_reply, callback in _SUMMARY_STEPS:
        if protocol & step_off:
            protocol &= ~step_off
            if mta_protocol & no_reply:
                protocol |= no_reply
            not_called.add(callback)
    session.not_called = frozenset(not_called)
    return protocol


class _Unfinished(RuntimeError):
    """A coroutine of the chain waited on the event loop inside a
    connection thread (only an inline chain runs there)."""


def _finish(coro: Any) -> Any:
    """Run a chain coroutine that never suspends to its end, in this thread."""
    finished, value = start(coro)
    if not finished:
        raise _Unfinished("a hook suspended in a pymilter connection thread")
    return value


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


class PymilterDaemon(Daemon):
    """miltrd's daemon serving one pymilter program."""

    serves_inline = False  # each connection's thread reads its own socket

    def make_handler(self, runtime: Runtime) -> MilterHandler:
        plugin = runtime.plugins[0].plugin
        assert isinstance(plugin, PymilterPlugin)
        return PymilterHandler(runtime, next_conn_id(), on_message=self.message_done, plugin=plugin)

    async def reload(self) -> bool:
        log.warning("SIGHUP: a pymilter program is not reloaded; restart it to run changed code")
        return False


def _listen_text(socketname: str) -> str:
    # libmilter takes a bare path as a unix socket.
    if ":" not in socketname or socketname.startswith("/"):
        return "local:" + os.path.abspath(socketname)
    return socketname


def build(name: str, socketname: str, timeout: float) -> tuple[str, Runtime]:
    """The runtime ``runmilter`` serves; milter.error for a bad setting."""
    settings = milter.settings
    try:
        config = load(options.config_path) if options.config_path else load_text("", "<pymilter>")
    except ConfigError as exc:
        raise milter.error("; ".join(str(p) for p in exc.problems)) from None
    try:
        spec = parse_listen(_listen_text(socketname))
    except ValueError as exc:
        raise milter.error(f"cannot set connection info: {exc}") from None
    io_timeout = float(timeout or settings.timeout or LIBMILTER_TIMEOUT)
    daemon = dataclasses.replace(
        config.daemon,
        listen=(spec,),
        backlog=settings.backlog or config.daemon.backlog,
        idle_timeout=io_timeout,
        workers=WorkerCount(1),
        max_messages=0,
        log_level=options.log_level or config.daemon.log_level,
    )
    # Callbacks run inline in each connection's own thread.
    adapter = adapter_for(
        None, factory=_factory, catch_exceptions=True, filter_name=name, inline=True
    )
    entry = PluginEntry(
        name=name or "pythonfilter", cls=adapter, options=NoOptions(), timeout=io_timeout
    )
    config = dataclasses.replace(config, daemon=daemon, plugins=(entry,))
    try:
        return config.path, build_runtime(config)
    except ConfigError as exc:
        raise milter.error("; ".join(str(p) for p in exc.problems)) from None


def _factory() -> Any:
    from .. import pymilter

    return pymilter.factory()


def serve(name: str, socketname: str, timeout: float, *, rmsock: bool = True) -> None:
    """Serve until stopped; milter.error if the daemon cannot start."""
    from ..server import StartupError

    # The socket listens before the loop has its handlers: until then a
    # SIGTERM or SIGHUP waits instead of killing the program (as libmilter
    # blocks them in smfi_main).
    previous = block_signals()
    try:
        path, runtime = build(name, socketname, timeout)
        cfg = runtime.config.daemon
        setup_logging(cfg.log_level, cfg.log, cfg.syslog_socket)
        daemon = PymilterDaemon(path, runtime)
        try:
            daemon.open_listeners()
        except StartupError as exc:
            raise milter.error(f"cannot start: {exc}") from None
        milter.settings.stop.clear()

        async def main() -> None:
            remove = daemon.install_signal_handlers()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            watcher = asyncio.ensure_future(_watch_stop(daemon))
            try:
                await daemon.run()
            finally:
                block_signals()
                watcher.cancel()
                remove()

        try:
            asyncio.run(main())
        except StartupError as exc:
            raise milter.error(f"cannot start: {exc}") from None
    finally:
        # The program goes on after runmilter returns: give it back its
        # signals, unless one is waiting (it would end the program now).
        if not signal.sigpending() & CONTROL_SIGNALS:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def _watch_stop(daemon: Daemon) -> None:
    """milter.stop() may be called from any thread: poll for it."""
    while not milter.settings.stop.is_set():
        await asyncio.sleep(0.25)
    daemon.stop_event.set()
