"""``miltrd run``: the daemon in the foreground (systemd Type=notify)."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys

from .. import __version__
from ..chain import build_runtime
from ..config import ConfigError, load
from ..logs import setup_logging
from ..server import Daemon, StartupError, eventloop
from ..server.daemon import freeze_long_lived
from ..server.workers import Supervisor, block_signals
from .check import timeout_warnings

__all__ = ["run"]

log = logging.getLogger("miltrd")


def run(path: str) -> int:
    """Serve until SIGTERM; 0 after a clean stop, 1 when it cannot start."""
    # Until a handler is ready for them, SIGHUP and SIGTERM wait (pending)
    # instead of killing the process: from here to the first served
    # connection, and in every worker the supervisor forks.
    # They stay blocked after the daemon stopped: one arriving on the way
    # out must not turn a clean exit into a death by signal.
    previous = block_signals()
    return _run(path, previous)


def _run(path: str, previous: set[int | signal.Signals]) -> int:
    try:
        config = load(path)
        runtime = build_runtime(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    setup_logging(config.daemon.log_level, config.daemon.log, config.daemon.syslog_socket)
    log.info(
        "miltrd %s starting: config %s, pid %d, event loop %s",
        __version__,
        config.path,
        os.getpid(),
        eventloop.loop_name(config.daemon.event_loop),
    )
    for warning in config.warnings:
        log.warning("%s", warning)
    for text in timeout_warnings(runtime):
        log.warning("%s", text)
    open_files_up_to_hard_limit()
    daemon = Daemon(path, runtime)
    try:
        daemon.open_listeners()
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    if config.daemon.workers > 1 or config.daemon.max_messages:
        try:
            return Supervisor(path, runtime, daemon.listeners).run()
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            return 1

    async def main() -> None:
        remove = daemon.install_signal_handlers()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        freeze_long_lived()
        try:
            await daemon.run()
        finally:
            block_signals()  # a late signal must not turn a clean exit into a kill
            remove()

    try:
        eventloop.run(main(), config.daemon.event_loop)
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def open_files_up_to_hard_limit() -> None:
    """Raise the soft limit on open files to the hard one.

    systemd and login sessions start services at a soft limit of 1024 for
    the sake of programs that use select(); miltrd uses epoll and needs a
    descriptor or two per MTA connection (max_connections defaults to 512).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)
