"""asyncio listeners and connections that drive the protocol engine and the chain."""

from .connection import MilterHandler
from .daemon import Daemon, StartupError, drop_privileges
from .listen import Listener, ListenError, open_listener

__all__ = [
    "Daemon",
    "ListenError",
    "Listener",
    "MilterHandler",
    "StartupError",
    "drop_privileges",
    "open_listener",
]
