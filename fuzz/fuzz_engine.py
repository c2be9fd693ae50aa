"""Coverage-guided fuzzing of the protocol engine with atheris (libFuzzer).

    python3 fuzz/fuzz_engine.py -runs=1000000 -max_len=4096 fuzz/corpus   # the long run
    python3 fuzz/fuzz_engine.py -runs=20000 fuzz/corpus                   # what CI runs

The first input byte picks the side (filter or MTA) and how the rest is cut
into reads; the rest is the byte stream. The seeds in fuzz/corpus are whole
sessions as Postfix and a libmilter filter send them (fuzz/make_corpus.py).
The only exception allowed out of the engine is RemoteProtocolError; the
loop is bounded, so a hang is a failure too; no packet larger than the
negotiated bound is ever buffered. A crash input found here belongs in
tests/protocol/vectors/ as a regression vector.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from miltrd.protocol import (
        MDS_64K,
        NEED_DATA,
        ActionFlag,
        ConnectionClosed,
        Continue,
        FilterConnection,
        MtaConnection,
        OptionNegotiation,
        ProtocolFlag,
        RemoteProtocolError,
    )


def _pieces(data: bytes, cut: int) -> list[bytes]:
    step = 1 + cut % 97
    return [data[i : i + step] for i in range(0, len(data), step)] if cut % 2 else [data]


def drive_filter(data: bytes, cut: int) -> None:
    conn = FilterConnection(max_data_size=MDS_64K)
    steps = 0
    for piece in [*_pieces(data, cut), b""]:
        conn.receive_data(piece)
        while True:
            steps += 1
            if steps > 100_000:
                raise AssertionError("the filter side loops")
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                return
            if isinstance(event, OptionNegotiation):
                conn.negotiate(
                    actions=ActionFlag(0x1FF), protocol=ProtocolFlag(0x1FF000) | ProtocolFlag.SKIP
                )
            elif conn.reply_owed:
                conn.send(Continue())
            assert len(conn._buffer) <= len(data)


def drive_mta(data: bytes, cut: int) -> None:
    mta = MtaConnection(max_data_size=MDS_64K)
    mta.send(mta.option_negotiation())
    steps = 0
    for piece in [*_pieces(data, cut), b""]:
        mta.receive_data(piece)
        while True:
            steps += 1
            if steps > 100_000:
                raise AssertionError("the MTA side loops")
            event = mta.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break


def test_one_input(raw: bytes) -> None:
    if not raw:
        return
    selector, data = raw[0], raw[1:]
    try:
        if selector & 1:
            drive_mta(data, selector >> 1)
        else:
            drive_filter(data, selector >> 1)
    except RemoteProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
