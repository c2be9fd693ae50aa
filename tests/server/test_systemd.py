"""sd_notify without libsystemd."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from miltrd.server import systemd


def test_notify_never_waits_for_a_receiver_that_does_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full notification queue must not stall the daemon (its signal loop
    sends READY/RELOADING on every SIGHUP)."""
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    finished = threading.Event()

    def storm() -> None:
        for _ in range(500):
            systemd.notify("RELOADING=1")
        finished.set()

    threading.Thread(target=storm, daemon=True).start()
    try:
        assert finished.wait(10), "notify blocked on a full queue"
        assert receiver.recv(4096) == b"RELOADING=1"  # the first ones did arrive
    finally:
        receiver.close()


def test_notify_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
