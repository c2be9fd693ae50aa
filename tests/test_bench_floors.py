"""The benchmark's floors (bench/pyfloor.py) answer a Postfix-shaped session
with the same replies, in the same writes, as miltrd's bench chains.

The floors are the yardstick for miltrd's CPU per message (README,
Performance): compared like for like only while they negotiate the same
steps and owe the MTA the same replies. A change to bench/benchplugin.py or
to miltrd's negotiation that the floors do not follow fails here.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from bench.engine import MODES, session_writes
from bench.pyfloor import EngineFloor, Floor, HooksFloor, load_engine, load_hooks
from miltrd.chain import build_runtime
from miltrd.config import load_text
from miltrd.server import MilterHandler

_LEN = struct.Struct("!I")


class _Transport:
    """What a protocol writes to; no socket (the floors then set no TCP options)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed


def _codes(written: list[bytes]) -> list[str]:
    """Each write as the reply codes of its packets, e.g. "h+c"."""
    out = []
    for data in written:
        codes, pos = [], 0
        while pos < len(data):
            (length,) = _LEN.unpack_from(data, pos)
            codes.append(chr(data[pos + 4]))
            pos += 4 + length
        out.append("+".join(codes))
    return out


def _miltrd(cls: str, mode: str) -> tuple[bytes, list[str]]:
    """miltrd with bench/benchplugin.py's ``cls``: its negotiation reply
    and the codes of what it writes for the rest of the session, which
    bench/engine.py writes as Postfix would once ``mode`` is agreed."""
    offer, *session = session_writes(4096, mode)
    chain = f'[chain]\nplugins = ["ref"]\n[plugins.ref]\nuse = "bench.benchplugin:{cls}"\n'
    handler = MilterHandler(build_runtime(load_text(chain)), "floors")
    writer = _Transport()
    writer.transport = writer  # type: ignore[attr-defined]
    handler.fc.receive_data(offer)
    assert handler.drain_now(writer) is True  # type: ignore[arg-type]
    optneg = writer.writes.pop()
    agreed = handler.fc.negotiated
    assert agreed is not None and agreed.protocol == MODES[mode]
    for data in session:
        handler.fc.receive_data(data)
        handler.drain_now(writer)  # type: ignore[arg-type]
    return optneg, _codes(writer.writes)


def _floor(floor: Floor, mode: str) -> tuple[bytes, list[str]]:
    offer, *session = session_writes(4096, mode)
    transport = _Transport()
    floor.connection_made(transport)  # type: ignore[arg-type]
    floor.data_received(offer)
    optneg = transport.writes.pop()
    assert struct.unpack_from("!III", optneg, 5)[2] == MODES[mode]
    for data in session:
        floor.data_received(data)
    assert transport.closed  # QUIT
    return optneg, _codes(transport.writes)


@pytest.mark.parametrize(
    ("cls", "noreply", "mode"),
    [("Reference", False, "reference"), ("Declared", True, "declared")],
    ids=["reply", "noreply"],
)
@pytest.mark.parametrize("kind", ["python", "engine", "hooks"])
def test_floor_answers_as_miltrd_does(cls: str, noreply: bool, mode: str, kind: str) -> None:
    load_engine()
    load_hooks()
    floor = {"python": Floor, "engine": EngineFloor, "hooks": HooksFloor}[kind](noreply)
    optneg, replies = _floor(floor, mode)
    miltrd_optneg, miltrd_replies = _miltrd(cls, mode)
    assert optneg == miltrd_optneg
    assert replies == miltrd_replies
    # Not vacuous: a reply per command (CONNECT to the body, then end of
    # message), or only end of message's.
    assert replies[-1] == "h+c"
    assert len(replies) == (1 if noreply else 18)
    if kind == "hooks":  # the plugin's hooks ran, end of message's among them
        assert [type(change).__name__ for _, change in floor.msg.changes()] == ["HeaderAddition"]
