"""Interop with independent implementations of the other side.

- OpenDKIM's miltertest (Debian package miltertest) plays the MTA against
  a filter built on miltrd's FilterConnection.
- A filter written in C against Sendmail's libmilter (Debian package
  libmilter-dev), compiled here, is driven by miltrd's MtaConnection.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from miltrd.protocol import (
    NEED_DATA,
    AddHeader,
    AddRecipient,
    AddRecipientPar,
    BodyChunk,
    ChangeHeader,
    ChangeSender,
    Connect,
    Continue,
    Data,
    DeleteRecipient,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    InsertHeader,
    MailFrom,
    MtaConnection,
    OptionNegotiationReply,
    ProtocolFlag,
    Quarantine,
    Quit,
    RcptTo,
    ReplaceBody,
    ReplyCode,
)

from ..tools import free_port, require, wait_for_port
from . import engine_filter

HERE = Path(__file__).parent
pytestmark = pytest.mark.integration


def test_miltertest_drives_the_filter_side() -> None:
    require("miltertest")
    port = free_port()
    server = engine_filter.start(port)
    try:
        result = subprocess.run(
            ["miltertest", "-D", f"sock=inet:{port}@127.0.0.1", "-s", str(HERE / "engine.lua")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


@pytest.fixture(scope="module")
def cmilter(tmp_path_factory: pytest.TempPathFactory):
    require("gcc", "/usr/include/libmilter/mfapi.h")
    exe = tmp_path_factory.mktemp("cmilter") / "cmilter"
    subprocess.run(
        ["gcc", "-Wall", "-o", str(exe), str(HERE / "cmilter.c"), "-lmilter", "-lpthread"],
        check=True,
    )
    port = free_port()
    proc = subprocess.Popen([str(exe), f"inet:{port}@127.0.0.1"])
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Driver:
    """Blocking socket + MtaConnection: send a command, collect its replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.mta = MtaConnection()

    def command(self, cmd) -> list[object]:
        if self.mta.negotiated is not None and self.mta.skips(type(cmd)):
            return []
        self.sock.sendall(self.mta.send(cmd))
        got: list[object] = []
        while self.mta.awaiting is not None:
            event = self.mta.next_event()
            if event is NEED_DATA:
                data = self.sock.recv(65536)
                self.mta.receive_data(data)
                continue
            got.append(event)
        return got


def test_mta_side_decodes_libmilter(cmilter: int) -> None:
    d = _Driver(cmilter)
    (reply,) = d.command(d.mta.option_negotiation())
    assert isinstance(reply, OptionNegotiationReply)
    assert reply.version == 6
    assert ProtocolFlag.NR_HDR in d.mta.negotiated.protocol

    assert d.command(Connect("client.test", Family.INET, 1234, "192.0.2.1")) == [Continue()]
    assert d.command(Helo("client.test")) == [Continue()]
    assert d.command(MailFrom("<a@example.net>")) == [Continue()]
    assert d.command(RcptTo("<reject@example.com>")) == [
        ReplyCode(550, ("first line", "100% second line"), "5.7.1")
    ]
    assert d.command(RcptTo("<temp@example.com>")) == [ReplyCode(451, ("try later",), "4.3.0")]
    assert d.command(RcptTo("<gone@example.com>")) == [Continue()]
    assert d.command(Data()) == [Continue()]
    assert d.command(Header("Subject", "hello")) == []  # NR_HDR: no reply
    assert d.command(Header("X-Remove", "x")) == []
    assert d.command(EndOfHeaders()) == [Continue()]
    assert d.command(BodyChunk(b"original body\r\n")) == [Continue()]
    got = d.command(EndOfMessage())
    assert got[-1] == Continue()
    mods = got[:-1]
    body = b"".join(m.data for m in mods if isinstance(m, ReplaceBody))
    assert body == bytes(b"0123456789abcdef"[i % 16] for i in range(200000))
    assert [m for m in mods if not isinstance(m, ReplaceBody)] == [
        AddHeader("X-C-Added", "added value"),
        InsertHeader(0, "X-C-Inserted", "at top"),
        ChangeHeader(1, "Subject", "changed subject"),
        ChangeHeader(1, "X-Remove", ""),
        AddRecipient("<added@example.com>"),
        AddRecipientPar("<added-par@example.com>", "NOTIFY=NEVER"),
        DeleteRecipient("<gone@example.com>"),
        ChangeSender("<new-sender@example.com>", "BODY=8BITMIME"),
        Quarantine("held for review"),
    ]
    # A second message on the same connection.
    assert d.command(MailFrom("<b@example.net>")) == [Continue()]
    d.sock.sendall(d.mta.send(Quit()))
    d.sock.close()
