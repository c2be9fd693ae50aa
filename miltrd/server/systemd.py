"""systemd integration: sd_notify and socket activation, without libsystemd."""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ["notify", "activated_sockets"]

SD_LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET; False if not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        # Never wait for the receiver: a full queue would stall the parent's
        # signal loop (and with it reloads, worker replacement and stop).
        sock.setblocking(False)
        sock.sendto(state.encode(), address)
        return True
    return False


def activated_sockets() -> list[socket.socket]:
    """Sockets passed by systemd (LISTEN_FDS), for this process only."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return [
        socket.socket(fileno=fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    ]
