"""bounded(): hooks that never wait, hooks that wait, time-outs, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from miltrd.chain.timebound import bounded


async def immediate() -> str:
    return "now"


async def waits(seconds: float) -> str:
    await asyncio.sleep(seconds)
    await asyncio.sleep(0)
    return "later"


async def raises_after_wait() -> str:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def catches_cancel() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return "cleaned up"
    return "no"


def test_immediate_and_waiting_hooks() -> None:
    assert asyncio.run(bounded(immediate(), 1)) == "now"
    assert asyncio.run(bounded(waits(0.01), 1)) == "later"


def test_timeout_and_exceptions() -> None:
    with pytest.raises(TimeoutError):
        asyncio.run(bounded(waits(5), 0.05))
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(bounded(raises_after_wait(), 1))


def test_the_hook_sees_cancellation() -> None:
    async def go() -> str:
        task = asyncio.ensure_future(bounded(catches_cancel(), 5))
        await asyncio.sleep(0.01)
        task.cancel()
        return await task

    assert asyncio.run(go()) == "cleaned up"
