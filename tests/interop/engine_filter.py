"""A minimal filter built directly on miltrd.protocol.FilterConnection.

It lets an independent MTA side (OpenDKIM's miltertest) exercise the
engine's filter side without the daemon: it rejects one recipient and, at
end of message, adds, inserts and changes headers, edits recipients,
changes the sender and replaces the body with the old body upper-cased.
"""

from __future__ import annotations

import socket
import socketserver
import threading

from miltrd.protocol import (
    NEED_DATA,
    ActionFlag,
    AddHeader,
    AddRecipient,
    BodyChunk,
    ChangeHeader,
    ChangeSender,
    ConnectionClosed,
    Continue,
    DeleteRecipient,
    EndOfMessage,
    FilterConnection,
    InsertHeader,
    MacroStage,
    OptionNegotiation,
    ProtocolFlag,
    RcptTo,
    RemoteProtocolError,
    ReplaceBody,
    ReplyCode,
)

ACTIONS = (
    ActionFlag.ADDHDRS
    | ActionFlag.CHGHDRS
    | ActionFlag.CHGBODY
    | ActionFlag.ADDRCPT
    | ActionFlag.DELRCPT
    | ActionFlag.CHGFROM
)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        conn = FilterConnection()
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                    continue
                if isinstance(event, ConnectionClosed):
                    return
                out = b""
                if isinstance(event, OptionNegotiation):
                    out = conn.negotiate(
                        actions=ACTIONS,
                        protocol=ProtocolFlag.NR_HDR,
                        macros={MacroStage.ENVFROM: ["{auth_authen}"]},
                    )
                elif isinstance(event, RcptTo) and event.recipient == "<reject@example.com>":
                    out = conn.send(ReplyCode(550, ("no such user here",), "5.1.1"))
                elif isinstance(event, BodyChunk):
                    body += event.data
                elif isinstance(event, EndOfMessage):
                    body += event.data
                    macros = conn.macros()
                    out = conn.send_all(
                        [
                            AddHeader("X-Engine", f"seen {len(body)} body bytes"),
                            AddHeader("X-Auth", macros.get("{auth_authen}", "none")),
                            InsertHeader(0, "X-First", "top"),
                            ChangeHeader(1, "Subject", "rewritten"),
                            AddRecipient("<added@example.com>"),
                            DeleteRecipient("<gone@example.com>"),
                            ChangeSender("<sender2@example.com>"),
                            ReplaceBody(bytes(body).upper()),
                        ]
                    )
                    body.clear()
                if conn.reply_owed:
                    out += conn.send(Continue())
                if out:
                    sock.sendall(out)
        except (RemoteProtocolError, OSError):
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def start(port: int) -> _Server:
    server = _Server(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
