"""The two errors the protocol engine raises, and nothing else.

``RemoteProtocolError`` means the peer broke the protocol: the caller closes
that one connection. ``LocalProtocolError`` means our side asked for
something the protocol forbids at this point: a bug in the caller.
Both subclass ``ProtocolError`` so a connection loop can catch either.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "RemoteProtocolError", "LocalProtocolError"]


class ProtocolError(Exception):
    """Base of every error the protocol engine raises."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid milter protocol here."""


class LocalProtocolError(ProtocolError):
    """This side tried to send something the protocol does not allow now."""
