"""Finding the real peers the integration tests need.

The README's test command installs them. Under CI (CI set in the
environment) a missing tool is a failure, never a skip; on a developer's
machine without them the test is skipped with the command to install them.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

INSTALL_HINT = "run ./scripts/test.sh (it installs the test dependencies)"


def require(*paths_or_commands: str) -> None:
    missing = [
        p
        for p in paths_or_commands
        if not (os.path.exists(p) if p.startswith("/") else shutil.which(p))
    ]
    if not missing:
        return
    message = f"missing {', '.join(missing)}: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
