"""What the daemon counts, through one recorder that may do nothing.

``recorder()`` is the process's ``Recorder``: the base class, whose every
method does nothing, until ``enable()`` (``[daemon] metrics_listen`` set)
swaps in ``Metrics``, which counts with prometheus_client and serves the
counts on a loopback HTTP listener. Callers never ask whether metrics are
on; they tell the recorder what happened.

With pre-forked workers (``workers = N``, or ``max_messages``), each worker
counts its own and ``Shared`` adds them up: prometheus_client's
multiprocess mode, in which every process writes its values to files in
one directory (``PROMETHEUS_MULTIPROC_DIR``, made afresh at each start and
removed at exit) and the supervisor's scrape endpoint sums them. Counters
of a worker that retired or crashed stay in the sums; its share of the
``miltrd_connections_open`` gauge (``livesum``) is dropped when it is
reaped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

__all__ = ["Metrics", "Recorder", "Shared", "enable", "recorder"]

log = logging.getLogger("miltrd.metrics")


class Recorder:
    """Receives every countable event; this base class counts nothing."""

    def clock(self) -> float:
        """A start time for ``hook_done`` (seconds; 0.0 when not timing)."""
        return 0.0

    def connection_opened(self) -> None:
        """An MTA connection is being served."""

    def connection_closed(self) -> None:
        """...and is over."""

    def connection_refused(self) -> None:
        """Answered 421 over max_connections."""

    def protocol_error(self) -> None:
        """A connection closed for malformed input."""

    def negotiation_failed(self) -> None:
        """The MTA did not offer every action the chain needs."""

    def reload(self, outcome: str) -> None:
        """A reload ended, ``"ok"`` or ``"failed"``."""

    def hook_done(self, plugin: str, phase: str, started: float) -> None:
        """A hook returned (or failed); ``started`` came from ``clock()``."""

    def verdict(self, plugin: str, kind: str) -> None:
        """A plugin answered something other than continue."""

    def hook_failed(self, plugin: str, how: str) -> None:
        """A hook raised (``how`` = ``"error"``) or timed out (``"timeout"``)."""

    def message(self, action: str) -> None:
        """A message ended: accept, reject, tempfail, discard or aborted."""


_NOTHING = Recorder()
_current: Recorder = _NOTHING


def recorder() -> Recorder:
    """The recorder of this process (one that counts nothing when metrics are off)."""
    return _current


class Metrics(Recorder):
    """Counts in a prometheus_client registry (names ``miltrd_*``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.connections_open = Gauge(
            "miltrd_connections_open",
            "MTA connections being served",
            registry=r,
            multiprocess_mode="livesum",  # with workers: the sum over the live ones
        )
        self.connections = Counter("miltrd_connections", "MTA connections accepted", registry=r)
        self.refused = Counter(
            "miltrd_connections_refused",
            "Connections answered 421 over max_connections",
            registry=r,
        )
        self.messages = Counter(
            "miltrd_messages", "Messages by final action", ["action"], registry=r
        )
        self.verdicts = Counter(
            "miltrd_plugin_verdicts",
            "Plugin verdicts other than continue",
            ["plugin", "verdict"],
            registry=r,
        )
        self.errors = Counter(
            "miltrd_plugin_errors", "Plugin hooks that raised", ["plugin"], registry=r
        )
        self.timeouts = Counter(
            "miltrd_plugin_timeouts", "Plugin hooks past their timeout", ["plugin"], registry=r
        )
        self.hook_seconds = Histogram(
            "miltrd_hook_seconds",
            "Time spent in plugin hooks",
            ["plugin", "phase"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
            ),
            registry=r,
        )
        self.negotiation_failures = Counter(
            "miltrd_negotiation_failures",
            "Negotiations where the MTA did not offer what the chain needs",
            registry=r,
        )
        self.protocol_errors = Counter(
            "miltrd_protocol_errors", "Connections closed for malformed input", registry=r
        )
        self.reloads = Counter("miltrd_reloads", "Reloads by outcome", ["outcome"], registry=r)

    def clock(self) -> float:
        return time.perf_counter()

    def connection_opened(self) -> None:
        self.connections.inc()
        self.connections_open.inc()

    def connection_closed(self) -> None:
        self.connections_open.dec()

    def connection_refused(self) -> None:
        self.refused.inc()

    def protocol_error(self) -> None:
        self.protocol_errors.inc()

    def negotiation_failed(self) -> None:
        self.negotiation_failures.inc()

    def reload(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()

    def hook_done(self, plugin: str, phase: str, started: float) -> None:
        self.hook_seconds.labels(plugin, phase).observe(time.perf_counter() - started)

    def verdict(self, plugin: str, kind: str) -> None:
        self.verdicts.labels(plugin, kind).inc()

    def hook_failed(self, plugin: str, how: str) -> None:
        (self.timeouts if how == "timeout" else self.errors).labels(plugin).inc()

    def message(self, action: str) -> None:
        self.messages.labels(action).inc()

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Serve this process's counts at http://host:port/metrics (OSError if
        the address cannot be bound); ``shutdown()`` on the result stops it."""
        server = listen_http(host, port, self.registry)
        start_http(server)
        return server


def listen_http(host: str, port: int, registry: Any) -> ThreadingHTTPServer:
    """Bind the scrape endpoint for ``registry`` (not serving yet: ``start_http``).

    prometheus_client's own handler, in a server we hold, so that a forked
    worker can close its copy of the socket. OSError if it cannot bind."""
    import socket

    from prometheus_client.exposition import MetricsHandler

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    server = Server((host, port), MetricsHandler.factory(registry))
    log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)
    return server


def start_http(server: ThreadingHTTPServer) -> None:
    """Answer scrapes on ``server`` from a daemon thread."""
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class Shared:
    """The sums of every worker's counts (prometheus_client multiprocess mode).

    Made by the supervisor before it forks a worker: it creates the
    directory the processes write to (a new one per start, in the
    temporary directory) and points ``PROMETHEUS_MULTIPROC_DIR`` at it, so
    every ``Metrics`` made from then on, in this process or a worker,
    writes there. ``listen`` binds the endpoint that sums them.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.path = ""
        self.server: ThreadingHTTPServer | None = None
        self.serving = False

    def listen(self, host: str, port: int) -> None:
        """Bind the endpoint (before privileges are dropped); OSError if not."""
        self.server = listen_http(host, port, self.registry)

    def open(self) -> None:
        """Create the directory (as the user the workers run as: after the
        drop) and send every ``Metrics`` made from now on to it."""
        from prometheus_client import multiprocess as mp
        from prometheus_client import values as vals

        # Untyped in some releases: typed here as Any for both.
        multiprocess: Any = mp
        values: Any = vals
        self.path = tempfile.mkdtemp(prefix="miltrd-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.path
        # The value class is chosen when prometheus_client is first
        # imported: a plugin may have imported it before the variable was set.
        values.ValueClass = values.get_value_class()
        multiprocess.MultiProcessCollector(self.registry, path=self.path)
        log.info("summing the workers' metrics in %s", self.path)

    def start(self) -> None:
        if self.server is not None and not self.serving:
            start_http(self.server)
            self.serving = True

    def in_worker(self) -> None:
        """In a new worker: close its copy of the endpoint's socket (only
        the supervisor serves it, and the port must free when it exits)."""
        if self.server is not None:
            self.server.socket.close()
            self.server = None

    def process_dead(self, pid: int) -> None:
        """A worker exited: its live gauges (connections open) no longer count."""
        from prometheus_client import multiprocess as mp

        multiprocess: Any = mp
        if self.path:
            multiprocess.mark_process_dead(pid, self.path)

    def close(self) -> None:
        """Stop serving and remove the directory."""
        if self.server is not None:
            if self.serving:
                self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.path:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.path)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


_lock = threading.Lock()


def enable() -> Metrics:
    """Turn metrics on for this process (idempotent)."""
    global _current
    with _lock:
        if not isinstance(_current, Metrics):
            _current = Metrics()
        return _current
