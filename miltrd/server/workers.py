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
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from ..chain import Runtime, build_runtime
from ..config import ConfigError, load
from . import systemd
from .connection import set_conn_prefix
from .daemon import Daemon, drop_privileges, remove_socket_files
from .listen import Listener

__all__ = ["Supervisor"]

log = logging.getLogger("miltrd.server")
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


class Supervisor:
    def __init__(self, config_path: str, runtime: Runtime, listeners: list[Listener]) -> None:
        self.config_path = config_path
        self.runtime = runtime
        self.listeners = listeners
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self._serial = 0

    @property
    def workers(self) -> int:
        return self.runtime.config.daemon.workers

    def run(self) -> int:
        daemon = self.runtime.config.daemon
        remover = drop_privileges(daemon.user, daemon.group, self.listeners)
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for _ in range(self.workers):
                self._spawn()
            systemd.notify(f"READY=1\nSTATUS=serving with {self.workers} workers")
            log.info("started %d workers", self.workers)
            while self.children:
                info = signal.sigtimedwait(_SIGNALS, 1.0)
                if info is None:
                    self._reap()
                    continue
                if info.si_signo == signal.SIGCHLD:
                    self._reap()
                elif info.si_signo == signal.SIGHUP:
                    self._reload()
                else:
                    self._stop(signal.Signals(info.si_signo).name)
        finally:
            remove_socket_files(self.listeners, remover)
        log.info("stopped")
        return 0

    def _spawn(self) -> None:
        self._serial += 1
        serial = self._serial
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            return
        # The worker: fresh signal state, no systemd notifications of its own.
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            os.environ.pop("NOTIFY_SOCKET", None)
            set_conn_prefix(f"w{serial}.")
            code = _worker_main(self.config_path, self.runtime, self.listeners)
        except BaseException:
            log.exception("worker failed")
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            started = self.children.pop(pid, time.monotonic())
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

    def _reload(self) -> None:
        systemd.notify("RELOADING=1")
        try:
            runtime = build_runtime(load(self.config_path))
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload failed: %s", problem)
            log.error("reload failed: still running with the previous configuration")
            systemd.notify("READY=1")
            return
        old = self.runtime
        self.runtime = runtime
        # The parent only needed it to validate; its plugins never run here.
        asyncio.run(old.close())
        if runtime.config.daemon.workers != old.config.daemon.workers:
            log.warning("daemon.workers changed: restart miltrd for it to take effect")
            self.runtime = runtime = _with_workers(runtime, old.config.daemon.workers)
        for pid in list(self.children):
            os.kill(pid, signal.SIGHUP)
        log.info("reload passed to %d workers", len(self.children))
        systemd.notify("READY=1")

    def _stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        systemd.notify("STOPPING=1")
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


def _with_workers(runtime: Runtime, workers: int) -> Runtime:
    import dataclasses

    daemon = dataclasses.replace(runtime.config.daemon, workers=workers)
    config = dataclasses.replace(runtime.config, daemon=daemon)
    return dataclasses.replace(runtime, config=config)


def _worker_main(config_path: str, runtime: Runtime, listeners: list[Listener]) -> int:
    daemon = Daemon(config_path, runtime)
    daemon.listeners = listeners
    daemon.owns_socket_files = False  # the parent removes them

    async def main() -> None:
        remove = daemon.install_signal_handlers()
        try:
            await daemon.run(notify=False)
        finally:
            remove()

    asyncio.run(main())
    return 0
