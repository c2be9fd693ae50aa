"""Pre-forked workers: N processes serving the same listening sockets.

The parent binds the listeners, drops privileges, forks the workers and
then only supervises: it never accepts a connection. Each worker runs the
ordinary asyncio daemon on the inherited sockets.

- SIGHUP: the parent validates the new config first (so a broken file is
  logged once and nothing changes), then passes SIGHUP to every worker,
  which reloads as a single daemon does.
- SIGTERM/SIGINT: passed to every worker; each drains within
  shutdown_timeout; the parent waits, removes the unix sockets and exits.
- A worker that dies is replaced; one that served ``max_messages`` messages
  stops accepting, finishes its sessions and is replaced (for plugins that
  leak).

Signals may arrive in any state of the tree, so none is ever left to its
default action (which would kill a process): the parent keeps them blocked
from ``miltrd run`` on and takes them with ``sigtimedwait``; a new worker
inherits that mask and unblocks only once its asyncio handlers are in
place, so a SIGHUP or SIGTERM sent while it starts is handled, not fatal.
A worker reports through a pipe (and SIGUSR1 to wake the parent) when it
listens; the parent sends ``READY=1`` only when every worker has, and
holds a SIGHUP that arrives before that until then. On SIGTERM the parent
closes its copies of the listening sockets before telling the workers,
which close theirs first thing, so new connections are refused at once
rather than queued unanswered while sessions drain. A worker whose parent
dies (SIGKILL) gets SIGTERM from the kernel and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import signal
import struct
import time

from .. import metrics
from ..chain import Runtime, build_runtime
from ..config import ConfigError, WorkerCount, load, parse_metrics_listen
from . import eventloop, systemd
from .connection import set_conn_prefix
from .daemon import (
    Daemon,
    StartupError,
    drop_privileges,
    freeze_long_lived,
    remove_socket_files,
)
from .listen import Listener

__all__ = ["Supervisor", "CONTROL_SIGNALS", "block_signals"]

log = logging.getLogger("miltrd.server")

# Signals whose default action would end a process in the middle of a
# start, a reload or a drain: blocked until a handler is ready for them.
CONTROL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_SIGNALS = CONTROL_SIGNALS | {signal.SIGCHLD, signal.SIGUSR1}
_PID = struct.Struct("=i")
_PR_SET_PDEATHSIG = 1


def block_signals() -> set[int | signal.Signals]:
    """Block the control signals in this thread (and threads it starts).

    Returns the previous mask. ``miltrd run`` calls it first thing: from
    then on a signal waits for its handler instead of killing the process.
    """
    return signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)


class Supervisor:
    def __init__(self, config_path: str, runtime: Runtime, listeners: list[Listener]) -> None:
        self.config_path = config_path
        self.runtime = runtime
        self.listeners = listeners
        self.children: dict[int, float] = {}  # pid -> start time
        self.ready: set[int] = set()  # workers that reported they listen
        self.announced = False  # READY=1 sent
        self.reload_pending = False  # SIGHUP before READY=1, handled after it
        self.stopping = False
        self._serial = 0
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        self.shared: metrics.Shared | None = None  # the workers' summed metrics

    @property
    def workers(self) -> int:
        return self.runtime.config.daemon.workers

    def run(self) -> int:
        """Fork the workers and supervise them until stopped; the exit code.

        StartupError if the metrics endpoint cannot be bound or the user
        is unknown."""
        daemon = self.runtime.config.daemon
        if daemon.metrics_listen:
            # Every worker counts in its own files; this process serves the
            # sums. Bound before the drop, like the milter listeners.
            self.shared = metrics.Shared()
            host, port = parse_metrics_listen(daemon.metrics_listen)
            try:
                self.shared.listen(host, port)
            except OSError as exc:
                raise StartupError(f"daemon.metrics_listen: cannot listen: {exc}") from None
        remover = drop_privileges(daemon.user, daemon.group, self.listeners)
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        if self.shared is not None:
            try:
                self.shared.open()
            except OSError as exc:
                self.shared.close()
                raise StartupError(
                    f"daemon.metrics_listen: cannot make its directory: {exc}"
                ) from None
            # Started with the signals blocked, so the thread never takes
            # one that sigtimedwait is meant to.
            self.shared.start()
            metrics.enable()  # this process counts the reloads
        try:
            for _ in range(self.workers):
                self._spawn()
            while self.children:
                info = signal.sigtimedwait(_SIGNALS, 1.0)
                self._collect_ready()
                if info is None or info.si_signo in (signal.SIGCHLD, signal.SIGUSR1):
                    self._reap()
                elif info.si_signo == signal.SIGHUP:
                    if self.announced:
                        self._reload()
                    else:
                        self.reload_pending = True
                else:
                    self._stop(signal.Signals(info.si_signo).name)
                self._announce()
        finally:
            self._close_listeners()
            remove_socket_files(self.listeners, remover)
            if self.shared is not None:
                self.shared.close()
            os.close(self._ready_r)
            os.close(self._ready_w)
        log.info("stopped")
        return 0

    # --- workers --------------------------------------------------------------

    def _spawn(self) -> None:
        self._serial += 1
        serial = self._serial
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            return
        # The worker. It keeps the parent's signal mask (control signals
        # blocked) until its handlers are installed; see _worker_main.
        code = 1
        try:
            os.close(self._ready_r)
            if self.shared is not None:
                self.shared.in_worker()
            _die_with_parent(parent)
            os.environ.pop("NOTIFY_SOCKET", None)
            set_conn_prefix(f"w{serial}.")
            code = _worker_main(self.config_path, self.runtime, self.listeners, self._ready_w)
        except BaseException:
            log.exception("worker failed")
        finally:
            os._exit(code)

    def _collect_ready(self) -> None:
        """Read the pids of workers that now listen (see _worker_main)."""
        while True:
            try:
                data = os.read(self._ready_r, _PID.size * 64)
            except BlockingIOError:
                return
            if not data:
                return
            for (pid,) in _PID.iter_unpack(data):
                if pid in self.children:
                    self.ready.add(pid)

    def _announce(self) -> None:
        """READY=1 once every worker listens; then a SIGHUP held until now."""
        if self.announced or self.stopping:
            return
        if len(self.children) < self.workers or not self.ready >= set(self.children):
            return
        self.announced = True
        systemd.notify(f"READY=1\nSTATUS=serving with {self.workers} workers")
        log.info("started %d workers", self.workers)
        if self.reload_pending:
            self.reload_pending = False
            self._reload()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue  # not a worker: the socket-file helper (unlinker), say
            started = self.children.pop(pid)
            self.ready.discard(pid)
            if self.shared is not None:
                self.shared.process_dead(pid)
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == 0:
                log.info("worker %d retired after its message limit; starting a new one", pid)
            else:
                log.error("worker %d exited with %d; starting a new one", pid, code)
                if time.monotonic() - started < 1.0:
                    time.sleep(1.0)  # do not spin on a worker that cannot start
            self._spawn()

    # --- signals --------------------------------------------------------------

    def _reload(self) -> None:
        systemd.notify("RELOADING=1")
        try:
            runtime = build_runtime(load(self.config_path))
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload failed: %s", problem)
            log.error("reload failed: still running with the previous configuration")
            metrics.recorder().reload("failed")
            systemd.notify("READY=1")
            return
        metrics.recorder().reload("ok")
        old = self.runtime
        self.runtime = runtime
        # The parent only needed it to validate; its plugins never run here.
        asyncio.run(old.close())
        if runtime.config.daemon.workers != old.config.daemon.workers:
            log.warning("daemon.workers changed: restart miltrd for it to take effect")
            self.runtime = runtime = _with_workers(runtime, old.config.daemon.workers)
        # A worker still starting holds the signal until its handler is in
        # place, then reloads: none is skipped, none is killed by it.
        for pid in list(self.children):
            os.kill(pid, signal.SIGHUP)
        log.info("reload passed to %d workers", len(self.children))
        systemd.notify("READY=1")

    def _close_listeners(self) -> None:
        """Close the parent's copies of the listening sockets.

        A listening socket accepts as long as any process holds it open:
        with the parent's copies closed, it stops the moment the last
        worker closes its own, so the MTA is refused (and tempfails or
        tries its next milter) instead of waiting for a drain.
        """
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.sock.close()

    def _stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        systemd.notify("STOPPING=1")
        self._close_listeners()
        log.info("stopping on %s: passing it to %d worker(s)", why, len(self.children))
        for pid in list(self.children):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.runtime.config.daemon.shutdown_timeout + 5
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            log.warning("worker %d did not stop in time; killing it", pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.children.pop(pid, None)


def _with_workers(runtime: Runtime, workers: WorkerCount) -> Runtime:
    daemon = dataclasses.replace(runtime.config.daemon, workers=workers)
    config = dataclasses.replace(runtime.config, daemon=daemon)
    return dataclasses.replace(runtime, config=config)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the parent dies (Linux), so it drains and exits.

    Otherwise a SIGKILLed parent leaves workers serving with nobody to
    replace them, holding the port a restarted miltrd needs.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    config_path: str, runtime: Runtime, listeners: list[Listener], ready_fd: int
) -> int:
    daemon = Daemon(config_path, runtime)
    daemon.listeners = listeners
    daemon.owns_socket_files = False  # the parent removes them
    daemon.supervised = True  # the parent serves the metrics and counts reloads
    parent = os.getppid()

    def ready() -> None:
        os.write(ready_fd, _PID.pack(os.getpid()))
        with contextlib.suppress(ProcessLookupError):
            os.kill(parent, signal.SIGUSR1)

    async def main() -> None:
        remove = daemon.install_signal_handlers()
        # Handlers are in place: a signal that arrived while the worker
        # started is delivered to them now (a SIGHUP reloads once serving).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        freeze_long_lived()
        try:
            await daemon.run(notify=False, on_ready=ready)
        finally:
            # Past this point a late SIGHUP or SIGTERM has nothing to do;
            # blocked, it cannot turn a clean exit into a death by signal.
            signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
            remove()

    eventloop.run(main(), runtime.config.daemon.event_loop)
    return 0
