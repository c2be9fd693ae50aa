"""Phases and actions in the plugin's vocabulary (not wire bits)."""

from __future__ import annotations

import enum

__all__ = ["Phase", "Action", "MESSAGE_PHASES", "DECIDING_PHASES"]


class Phase(enum.Flag):
    """The milter phases a plugin can hook, in the order they happen."""

    # Members (and the combinations Flag caches) are singletons, so hashing
    # by identity agrees with equality; Enum's own __hash__ is a Python call
    # on the member's name, paid at every dict or set lookup on the hot path.
    __hash__ = object.__hash__

    NONE = 0
    CONNECT = enum.auto()
    HELO = enum.auto()
    MAIL = enum.auto()
    RCPT = enum.auto()
    DATA = enum.auto()
    HEADER = enum.auto()
    EOH = enum.auto()
    BODY = enum.auto()
    EOM = enum.auto()
    ABORT = enum.auto()
    CLOSE = enum.auto()


MESSAGE_PHASES = (
    Phase.MAIL | Phase.RCPT | Phase.DATA | Phase.HEADER | Phase.EOH | Phase.BODY | Phase.EOM
)
# Phases whose hook may return a verdict other than continue.
DECIDING_PHASES = Phase.CONNECT | Phase.HELO | MESSAGE_PHASES


class Action(enum.Flag):
    """Changes a plugin may ask for; each must be declared by the plugin."""

    NONE = 0
    ADD_HEADERS = enum.auto()  # add and insert header fields
    CHANGE_HEADERS = enum.auto()  # change and delete header fields
    ADD_RECIPIENTS = enum.auto()
    DELETE_RECIPIENTS = enum.auto()
    CHANGE_SENDER = enum.auto()
    REPLACE_BODY = enum.auto()
    QUARANTINE = enum.auto()
    # publish authentication results: the chain writes them into one
    # Authentication-Results header and removes forged ones (RFC 8601)
    AUTH_RESULTS = enum.auto()
