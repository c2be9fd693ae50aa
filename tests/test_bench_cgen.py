"""bench/cgen.c sends what bench/postfixgen.py sends, byte for byte.

The C client exists to drive a filter for less CPU than the Python
generator (bench/workers.py uses it); it is the same benchmark only while
its sessions are the Python generator's. Both are recorded here by one
filter that negotiates as miltrd's ``Declared`` and ``Reference`` chains do
(bench/engine.py's modes) and answers what is owed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socketserver
import threading
from collections.abc import Iterator

import pytest

from bench import cgen
from bench.engine import _MACROS, MODES
from bench.postfixgen import run_postfix_like
from miltrd.protocol import (
    NEED_DATA,
    ActionFlag,
    AddHeader,
    Continue,
    EndOfMessage,
    FilterConnection,
    OptionNegotiation,
    Quit,
    encode_command,
)

pytestmark = pytest.mark.skipif(not cgen.available(), reason="gcc cannot build bench/cgen.c")


class _Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sessions: list[bytes] = []  # the bytes of each connection, in order of closing
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Session)


class _Session(socketserver.BaseRequestHandler):
    server: _Recorder

    def handle(self) -> None:
        fc = FilterConnection()
        received = bytearray()
        try:
            while data := self.request.recv(65536):
                received += data
                fc.receive_data(data)
                while (event := fc.next_event()) is not NEED_DATA:
                    if isinstance(event, OptionNegotiation):
                        protocol = MODES[self.server.mode]
                        reply = fc.negotiate(
                            actions=ActionFlag.ADDHDRS, protocol=protocol, macros=_MACROS
                        )
                        self.request.sendall(reply)
                    elif isinstance(event, Quit):
                        return
                    elif fc.reply_owed:
                        out = (
                            fc.send(AddHeader("X-Bench", "yes"))
                            if isinstance(event, EndOfMessage)
                            else b""
                        )
                        self.request.sendall(out + fc.send(Continue()))
        finally:
            with self.server.lock:
                self.server.sessions.append(bytes(received))


@contextlib.contextmanager
def _recording(mode: str) -> Iterator[_Recorder]:
    server = _Recorder(mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _one_message_session(sessions: list[bytes]) -> bytes:
    """The first whole SMTP session (one message, then QUIT) recorded, its
    queue id made neutral: each generator numbers its messages its own way."""
    whole = [s for s in sessions if s.endswith(b"\x00\x00\x00\x01Q") and b"\x00\x00\x00\x01E" in s]
    assert whole, "no complete session recorded"
    return re.sub(rb"4Q[0-9A-F]{5,}", b"4QXXXXX", whole[0])


@pytest.mark.parametrize("mode", ["declared", "reference"])
@pytest.mark.parametrize("size", [4096, 200_000])
def test_c_client_sends_the_python_generators_bytes(mode: str, size: int) -> None:
    # One recording filter per generator: a session that ends late cannot
    # be taken for the other generator's.
    with _recording(mode) as recorder:
        port = recorder.server_address[1]
        result, _, _ = asyncio.run(
            run_postfix_like(
                "127.0.0.1", port, connections=1, size=size, per_connection=1, seconds=0.2
            )
        )
        assert result.errors == 0 and result.total > 0
    python_session = _one_message_session(recorder.sessions)

    with _recording(mode) as recorder:
        port = recorder.server_address[1]
        result, seconds, cpu = cgen.run_c_generator(
            port, connections=2, size=size, per_connection=1, seconds=0.2
        )
    assert result.errors == 0 and result.total > 0 and result.messages > 0
    assert len(result.latencies) == result.messages and min(result.latencies) > 0
    assert seconds == pytest.approx(0.2) and cpu > 0
    # One connection is the probe that learns the negotiation.
    assert encode_command(cgen._OFFER) + encode_command(Quit()) in recorder.sessions
    assert _one_message_session(recorder.sessions) == python_session
