"""Prometheus metrics, served on an optional loopback HTTP listener.

Uses the standard client library (prometheus_client); nothing is counted
unless ``[daemon] metrics_listen`` is set. ``current()`` is None when
metrics are off, so the hot path pays one attribute check.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any

__all__ = ["Metrics", "current", "enable", "parse_metrics_listen"]

log = logging.getLogger("miltrd.metrics")
_current: Metrics | None = None


def current() -> Metrics | None:
    return _current


def parse_metrics_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9187`` or ``[::1]:9187`` -> (host, port); ValueError if not."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.rpartition(":")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range")
    return host, number


class Metrics:
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
        if _current is None:
            _current = Metrics()
        return _current
