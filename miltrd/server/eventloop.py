"""Which event loop serves: asyncio's own, or uvloop's.

uvloop (libuv, Cython) runs the loop, the sockets and the transports in C:
per milter packet that is the epoll turn, the read callback and the write
that asyncio's selector loop runs as Python. The handler, engine and chain
are the same Python either way. ``daemon.event_loop``: "auto" (uvloop when
it is installed, the default), "uvloop" (an error at start if it is not),
"asyncio".
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["uvloop_available", "loop_factory", "run", "loop_name"]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A new-loop function for ``choice``, or None for asyncio's default.

    Raises RuntimeError for "uvloop" when uvloop is not installed.
    """
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise RuntimeError(f'daemon.event_loop = "uvloop": {exc}') from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(choice: str) -> str:
    """What ``choice`` runs here: "uvloop" or "asyncio"."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, None], choice: str) -> None:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    factory = loop_factory(choice)
    if factory is None:
        asyncio.run(main)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)
    else:  # pragma: no cover - Python 3.10 has no Runner
        loop = factory()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
