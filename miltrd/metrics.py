"""What the daemon counts, through one recorder that may do nothing.

``recorder()`` is the process's ``Recorder``: the base class, whose every
method does nothing, until ``enable()`` (``[daemon] metrics_listen`` set)
swaps in ``Metrics``, which counts with prometheus_client and serves the
counts on a loopback HTTP listener. Callers never ask whether metrics are
on; they tell the recorder what happened.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["Metrics", "Recorder", "enable", "recorder"]

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
            "miltrd_connections_open", "MTA connections being served", registry=r
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

    def serve(self, host: str, port: int) -> Any:
        from prometheus_client import start_http_server

        # Older releases (Debian's 0.16) return None, newer ones (server, thread).
        started = start_http_server(port, addr=host, registry=self.registry)
        server = started[0] if isinstance(started, tuple) else None
        log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)
        return server


_lock = threading.Lock()


def enable() -> Metrics:
    """Turn metrics on for this process (idempotent)."""
    global _current
    with _lock:
        if not isinstance(_current, Metrics):
            _current = Metrics()
        return _current
