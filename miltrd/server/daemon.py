"""The daemon: listeners, connections, reload and shutdown.

Signal handlers only set events. SIGHUP builds a new runtime off to the
side and swaps one reference: new connections use it, open ones finish on
the runtime they started with (closed when its last connection ends). A
bad new config keeps the old runtime and logs every problem. SIGTERM
stops accepting, lets open sessions finish within shutdown_timeout,
cancels the rest, removes the unix sockets and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import logging
import os
import pwd
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from http.server import ThreadingHTTPServer
from typing import Any

from .. import metrics
from ..chain import Runtime, build_runtime
from ..config import ConfigError, load, parse_metrics_listen
from . import systemd, unlinker
from .connection import MilterHandler, Reader, Writer, next_conn_id, serve_overloaded
from .inline import INLINE, InlineProtocol
from .listen import Listener, ListenError, open_listener
from .preload import preload

__all__ = ["Daemon", "StartupError", "drop_privileges", "remove_socket_files"]

# Seconds a thread that wants the GIL waits before CPython makes the holder
# let go (sys.setswitchinterval; CPython's default is 0.005).
SWITCH_INTERVAL = 0.001

log = logging.getLogger("miltrd.server")


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


def drop_privileges(
    user: str | None, group: str | None, listeners: Sequence[Listener] = ()
) -> unlinker.Unlinker | None:
    """Become ``user`` (and ``group``) after binding, when started as root.

    Before the drop, everything serving may import later is loaded (the
    user may not be able to read the installation), and if that user could
    not remove the unix socket files of ``listeners`` at shutdown, a helper
    that keeps root for only that is started: the returned Unlinker, whose
    ``finish()`` removes them. StartupError for an unknown user or group.
    """
    if os.geteuid() != 0 or not user:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise StartupError(f"daemon.user: no such user {user!r}") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        raise StartupError(f"daemon.group: no such group {group!r}") from None
    preload()
    remover = unlinker.start(
        [listener.path for listener in listeners if listener.path],
        pw.pw_uid,
        gid,
        [listener.sock.fileno() for listener in listeners],
    )
    os.setgroups([])
    os.setgid(gid)
    os.setuid(pw.pw_uid)
    log.info("running as user %s (uid %d, gid %d)", user, pw.pw_uid, gid)
    return remover


def freeze_long_lived() -> None:
    """Take what is alive now out of the garbage collector's full collections.

    Called once a process has loaded its configuration and plugins, before
    it serves: modules, the configuration and the plugins live as long as
    the process. Left to the collector, every full collection walks them
    all again, a pause of about 20 ms in which no connection's reply goes
    out (``python3 -m bench.run --mixed``, bench/loopwatch.py); frozen
    (``gc.freeze``, Python 3.7+), a full collection walks only what serving
    made since. Garbage is collected first so that none is frozen with them.
    """
    gc.collect()
    gc.freeze()
    log.debug(
        "%d objects of the start-up kept out of the garbage collector's full collections",
        gc.get_freeze_count(),
    )


def remove_socket_files(listeners: Sequence[Listener], remover: unlinker.Unlinker | None) -> None:
    """Remove the unix socket files we created, by ourselves or through the
    helper that kept root for it; a failure is logged, never raised."""
    for listener in listeners:
        if remover is None or listener.path not in remover.paths:
            listener.remove_socket_file()
    if remover is not None:
        remover.finish()


class Daemon:
    # Commands run in the read callback (server/inline.py); a subclass whose
    # handlers read the socket themselves sets this False.
    serves_inline = True

    def __init__(self, config_path: str, runtime: Runtime) -> None:
        self.config_path = config_path
        self.runtime = runtime
        self.listeners: list[Listener] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.tasks: set[asyncio.Task[None]] = set()  # connections being served
        self._users: dict[int, int] = {}  # id(runtime) -> open connections
        self._retired: dict[int, Runtime] = {}
        self.serial_lock = asyncio.Lock()  # daemon.serial: one connection at a time
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.owns_socket_files = True
        self.unlinker: unlinker.Unlinker | None = None  # removes them after a drop from root
        self.metrics_server: ThreadingHTTPServer | None = None
        # A worker of a Supervisor: the supervisor serves the metrics (the
        # sums of every worker's) and counts reloads; this one only counts.
        self.supervised = False
        self.messages = 0  # messages finished, for daemon.max_messages
        self.stop_reason = "request"  # what stopped us, for the log
        self.cancelling = False  # shutdown_timeout passed: open sessions are cancelled

    # --- start --------------------------------------------------------------

    def open_listeners(self) -> None:
        activated = systemd.activated_sockets()
        if activated:
            log.info("using %d socket(s) passed by systemd", len(activated))
            self.listeners = [Listener(sock, None) for sock in activated]
            return
        try:
            for spec in self.runtime.config.daemon.listen:
                self.listeners.append(open_listener(spec, self.runtime.config.daemon))
        except ListenError as exc:
            self.close_listeners()
            raise StartupError(str(exc)) from None

    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.sock.close()
            listener.remove_socket_file()

    async def start(self) -> None:
        """Open listeners (if not yet), drop privileges, start serving."""
        if not self.listeners:
            self.open_listeners()
        daemon = self.runtime.config.daemon
        if daemon.metrics_listen:
            recorder = metrics.enable()
            if not self.supervised and self.metrics_server is None:
                host, port = parse_metrics_listen(daemon.metrics_listen)
                try:
                    self.metrics_server = recorder.serve(host, port)
                except OSError as exc:
                    raise StartupError(f"daemon.metrics_listen: cannot listen: {exc}") from None
        self.unlinker = drop_privileges(daemon.user, daemon.group, self.listeners)
        # asyncio calls listen() again on a socket it is given: pass the
        # configured backlog, or its default of 100 replaces ours.
        backlog = daemon.backlog
        loop = asyncio.get_running_loop()
        entry = _ConnectionTask(self)

        def protocol() -> InlineProtocol:
            made = InlineProtocol(entry.inline)
            made.loop = loop
            return made

        for listener in self.listeners:
            unix = listener.sock.family == socket.AF_UNIX
            server: asyncio.base_events.Server
            if self.serves_inline and INLINE:
                create = loop.create_unix_server if unix else loop.create_server
                server = await create(protocol, sock=listener.sock, backlog=backlog)
            elif unix:
                server = await asyncio.start_unix_server(entry, sock=listener.sock, backlog=backlog)
            else:
                server = await asyncio.start_server(entry, sock=listener.sock, backlog=backlog)
            self.servers.append(server)
            log.info("listening on %s", listener.name)
        log.info("chain: %s", ", ".join(p.name for p in self.runtime.plugins) or "(no plugins)")

    # --- run --------------------------------------------------------------------

    def install_signal_handlers(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)

        def remove() -> None:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

        return remove

    def make_handler(self, runtime: Runtime) -> MilterHandler:
        """The handler of one new connection (a subclass may serve another kind)."""
        return MilterHandler(runtime, next_conn_id(), on_message=self.message_done)

    def request_stop(self, why: str) -> None:
        """Stop serving; ``why`` (a signal name, or the reason) is logged."""
        if not self.stop_event.is_set():
            self.stop_reason = why
            self.stop_event.set()

    def message_done(self) -> None:
        """Called once per finished message; retires a worker at its limit."""
        self.messages += 1
        limit = self.runtime.config.daemon.max_messages
        if limit and self.messages >= limit and not self.stop_event.is_set():
            log.info("served %d messages (daemon.max_messages): retiring this worker", limit)
            self.request_stop("daemon.max_messages")

    async def run(self, *, notify: bool = True, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until stop_event; reload on reload_event.

        ``on_ready`` is called once the listeners accept (a worker tells
        its parent so).
        """
        # Plugins' CPU-heavy work (defang's walk of a big message) runs in
        # threads beside this loop. CPython lets a thread that wants the
        # GIL wait a whole switch interval (5 ms) before it forces a switch,
        # and the loop wants it back after every wait for I/O: a small
        # message's dozen round trips each paid that beside a big walk. At
        # 1 ms the loop waits at most about that long per wake-up.
        sys.setswitchinterval(SWITCH_INTERVAL)
        await self.start()
        if notify:
            systemd.notify("READY=1\nSTATUS=serving")
        if on_ready is not None:
            on_ready()
        stop = asyncio.ensure_future(self.stop_event.wait())
        try:
            while True:
                reload = asyncio.ensure_future(self.reload_event.wait())
                await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    reload.cancel()
                    break
                self.reload_event.clear()
                await self.reload()
        finally:
            await self.shutdown()

    async def reload(self) -> bool:
        systemd.notify("RELOADING=1")
        log.info("reloading %s", self.config_path)
        try:
            config = load(self.config_path)
            runtime = build_runtime(config)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload failed: %s", problem)
            log.error("reload failed: still running with the previous configuration")
            systemd.notify("READY=1\nSTATUS=reload failed, running the previous configuration")
            if not self.supervised:
                metrics.recorder().reload("failed")
            return False
        for warning in config.warnings:
            log.warning("%s", warning)
        old = self.runtime
        self.runtime = runtime
        if not self.supervised:
            metrics.recorder().reload("ok")
        if config.daemon.listen != old.config.daemon.listen:
            log.warning("daemon.listen changed: restart miltrd for it to take effect")
        log.info("reloaded: chain %s", ", ".join(p.name for p in runtime.plugins) or "(empty)")
        if not self._users.get(id(old)):
            await old.close()
        else:
            self._retired[id(old)] = old
        systemd.notify("READY=1\nSTATUS=serving")
        return True

    async def shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        for server in self.servers:
            server.close()
        if self.owns_socket_files:
            remove_socket_files(self.listeners, self.unlinker)
        timeout = self.runtime.config.daemon.shutdown_timeout
        # A connection accepted just before the close gets its task a few
        # loop turns later (accept, transport, connection_made, task): give
        # it those turns so it is served, not dropped. Counted in turns, not
        # only in time: on a busy host 0.1 s can pass in one turn.
        await asyncio.sleep(0.1)
        for _ in range(8):
            await asyncio.sleep(0)
        drained = cancelled = 0
        log.info(
            "stopping on %s: %d session(s) open, waiting up to %.0fs",
            self.stop_reason,
            len(self.tasks),
            timeout,
        )
        if self.tasks:
            done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            drained, cancelled = len(done), len(pending)
            if pending:
                log.warning("cancelling %d connection(s) still open", len(pending))
                self.cancelling = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await self.runtime.close()
        for runtime in self._retired.values():
            await runtime.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        log.info("stopped: %d session(s) drained, %d cancelled", drained, cancelled)


class _ConnectionTask:
    """Runs one connection with the runtime current when it was accepted."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def inline(self, protocol: InlineProtocol) -> Coroutine[Any, Any, None]:
        # Not a coroutine of its own: one frame less to resume at each of
        # the task's steps.
        return self(protocol, protocol, protocol)

    async def __call__(
        self, reader: Reader, writer: Writer, inline: InlineProtocol | None = None
    ) -> None:
        daemon = self.daemon
        # The inline protocol knows its task (current_task() would ask for
        # the running loop: a getpid() system call on Python 3.11).
        task = inline.task if inline is not None else asyncio.current_task()
        assert task is not None
        runtime = daemon.runtime
        if len(daemon.tasks) >= runtime.config.daemon.max_connections:
            log.warning(
                "max_connections (%d) reached: answering a new connection with 421",
                runtime.config.daemon.max_connections,
            )
            metrics.recorder().connection_refused()
            await serve_overloaded(reader, writer)
            return
        daemon.tasks.add(task)
        key = id(runtime)
        daemon._users[key] = daemon._users.get(key, 0) + 1
        try:
            if runtime.config.daemon.serial:
                async with daemon.serial_lock:
                    await daemon.make_handler(runtime).serve(reader, writer)
            elif inline is not None:
                await inline.serve(daemon.make_handler(runtime))
            else:
                await daemon.make_handler(runtime).serve(reader, writer)
        except asyncio.CancelledError:
            if not daemon.cancelling:
                raise
            # The session logged its own line. Ending the task normally keeps
            # asyncio's stream callback from logging a CancelledError traceback
            # per connection (Python 3.11 calls task.exception() on it).
        finally:
            daemon.tasks.discard(task)
            daemon._users[key] -= 1
            if not daemon._users[key]:
                del daemon._users[key]
                retired = daemon._retired.pop(key, None)
                if retired is not None:
                    await retired.close()
