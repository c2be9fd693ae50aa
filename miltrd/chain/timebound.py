"""Run a hook with a time bound, without arming a timer when it never waits.

Most plugin hooks finish without awaiting anything. Arming a timeout (a
timer in the event loop's heap, then cancelling it) for each of them costs
more than the hook itself. ``bounded`` first runs the coroutine up to its
first suspension; only if it does suspend does the rest run under
``asyncio.timeout`` (or ``wait_for`` on Python 3.10), driven by the same
task, so cancellation and exceptions reach the hook exactly as with a
plain ``await``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["bounded", "resume_bounded", "start", "then"]

T = TypeVar("T")


class _Resume:
    """Awaitable that continues a coroutine already started by hand."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # cancellation or timeout: into the hook
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                pending = coro.send(None)
            except StopIteration as done:
                return done.value


async def bounded(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """``await coro`` with a timeout of ``seconds`` (TimeoutError past it)."""
    try:
        pending = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return await resume_bounded(coro, pending, seconds)


async def resume_bounded(coro: Coroutine[Any, Any, T], pending: Any, seconds: float) -> T:
    """Finish ``coro``, already run by hand up to its first suspension
    (``pending`` is what it yielded), within ``seconds`` from now
    (TimeoutError past it)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await _Resume(coro, pending)  # type: ignore[no-any-return]

    async def rest() -> T:  # pragma: no cover - Python 3.10
        return await _Resume(coro, pending)  # type: ignore[no-any-return, unused-ignore]

    return await asyncio.wait_for(rest(), seconds)  # pragma: no cover


def start(coro: Coroutine[Any, Any, T]) -> tuple[bool, Any]:
    """Run ``coro`` up to its first suspension.

    Returns (True, result) if it finished, else (False, awaitable) where
    awaiting the awaitable (in a task) finishes the same coroutine.
    """
    try:
        pending = coro.send(None)
    except StopIteration as done:
        return True, done.value
    return False, _Resume(coro, pending)


R = TypeVar("R")


async def then(pending: Awaitable[T], finish: Callable[..., R], *args: Any) -> R:
    """``finish(await pending, *args)``: the rest of a step that runs at
    once when nothing waits (the chain's and the daemon's ``*_now``)."""
    return finish(await pending, *args)
