"""Logging: stderr (journald) or syslog facility mail, with ids on every line.

A contextvar carries the connection id and the queue id of the message
being handled; a filter copies them into every record, so each line about
a message carries its queue id without the caller passing it around.
Records from a plugin's logger (``miltrd.plugin.NAME``) are prefixed
"plugin NAME: ", so every line a plugin writes names it.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import re
import sys

__all__ = ["setup_logging", "conn_id", "queue_id", "ContextFilter", "SafeFormatter"]

conn_id: contextvars.ContextVar[str] = contextvars.ContextVar("conn_id", default="-")
queue_id: contextvars.ContextVar[str] = contextvars.ContextVar("queue_id", default="")


_PLUGIN_LOGGER = "miltrd.plugin."


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.conn = conn_id.get()
        qid = queue_id.get()
        record.qid = f"{qid}: " if qid else ""
        if record.name.startswith(_PLUGIN_LOGGER):
            plugin = record.name[len(_PLUGIN_LOGGER) :].split(".", 1)[0]
            record.who = f"plugin {plugin}: "
        else:
            record.who = ""
        return True


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


class SafeFormatter(logging.Formatter):
    """Escapes control characters in the message (not in tracebacks), so
    text from an SMTP peer can never forge or break a log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL.sub(_escape, record.message)
        return super().formatMessage(record)


def setup_logging(
    level: str = "info", target: str = "stderr", syslog_socket: str = "/dev/log"
) -> None:
    root = logging.getLogger("miltrd")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    fallback = target == "syslog" and not os.path.exists(syslog_socket)
    if target == "syslog" and not fallback:
        handler = logging.handlers.SysLogHandler(
            address=syslog_socket, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        fmt = "miltrd[%(process)d]: %(levelname)s [%(conn)s] %(qid)s%(who)s%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        # journald adds its own timestamps.
        if os.environ.get("JOURNAL_STREAM"):
            fmt = "%(levelname)s [%(conn)s] %(qid)s%(who)s%(message)s"
        else:
            fmt = "%(asctime)s %(levelname)s [%(conn)s] %(qid)s%(who)s%(message)s"
    handler.setFormatter(SafeFormatter(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    if fallback:
        root.warning("no syslog socket at %s: logging to stderr", syslog_socket)
