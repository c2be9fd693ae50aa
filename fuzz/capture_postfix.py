"""Capture real Postfix milter sessions as fuzz seeds.

    python3 fuzz/capture_postfix.py        # writes fuzz/corpus/postfix-*

Starts miltrd, a recording TCP proxy in front of it and a private Postfix
(the test suite's harness), sends a few messages, and stores each
connection's two byte streams: what Postfix sent (seed for the filter side,
first byte 0x00) and what miltrd answered (seed for the MTA side, 0x01).
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.mta import Miltrd, Postfix, Sink, running, world_readable_tmpdir  # noqa: E402
from tests.tools import free_port  # noqa: E402

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]
[chain]
plugins = ["rcpt", "stamp", "upper"]
[plugins.rcpt]
use = "tests.testplugins:RejectRecipient"
recipients = ["nobody@example.com"]
[plugins.stamp]
use = "tests.testplugins:AddHeader"
[plugins.upper]
use = "tests.testplugins:UpperBody"
"""


class Recorder:
    def __init__(self, target: int) -> None:
        self.target = target
        self.sessions: list[tuple[bytearray, bytearray]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        to_filter, to_mta = bytearray(), bytearray()
        self.sessions.append((to_filter, to_mta))

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bytearray
        ) -> None:
            while data := await src.read(65536):
                log += data
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_w, to_filter), pump(up_r, writer, to_mta))


def main() -> None:
    out = REPO / "fuzz" / "corpus"
    with world_readable_tmpdir() as base:
        port, proxy_port = free_port(), free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(port=port))
        miltrd = Miltrd(cfg, port=port)
        recorder = Recorder(port)
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(
            asyncio.start_server(recorder.handle, "127.0.0.1", proxy_port)
        )
        threading.Thread(target=loop.run_forever, daemon=True).start()
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{proxy_port}", sink.port)
        with running(miltrd, sink, postfix):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.com", "seed"
            msg.set_content("seed body\n" * 50)
            msg.add_attachment(
                b"\x00\x01" * 500, maintype="application", subtype="octet-stream", filename="x.bin"
            )
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                smtp.ehlo("seed.client.example")
                smtp.send_message(msg, to_addrs=["b@example.com", "nobody@example.com"])
                smtp.rset()
                smtp.mail("c@example.org")
                smtp.rcpt("nobody@example.com")
            sink.wait_for(1)
        loop.call_soon_threadsafe(server.close)
    for n, (to_filter, to_mta) in enumerate(s for s in recorder.sessions if s[0]):
        (out / f"postfix-{n}-filter").write_bytes(b"\x00" + bytes(to_filter))
        (out / f"postfix-{n}-mta").write_bytes(b"\x01" + bytes(to_mta))
        print(f"session {n}: {len(to_filter)} bytes from Postfix, {len(to_mta)} from miltrd")


if __name__ == "__main__":
    main()
