"""Authentication-Results and Received-SPF as real MTAs deliver them.

Through a private Postfix and a private Sendmail: an incoming
Authentication-Results header that claims the site's authserv-id is gone
(RFC 8601 section 5), one from another host stays, and miltrd's own
Authentication-Results and Received-SPF sit above every header the client
sent (RFC 7208 section 9.1: prepended). The spf result comes from the
loopback DNS server.
"""

from __future__ import annotations

import email.parser
import email.policy
import smtplib
from collections.abc import Iterator

import authres
import pytest

from ..dnsserver import dns_server
from ..tools import free_port, require
from .mta import (
    POSTFIX,
    SENDMAIL_BIN,
    SMTP_SINK,
    Miltrd,
    Postfix,
    Sendmail,
    Sink,
    running,
    world_readable_tmpdir,
)

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = []
authserv_id = "mta.test.example"

[chain]
plugins = ["spf"]

[plugins.spf]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 3.0
"""

MESSAGE = b"""\
Authentication-Results: mta.test.example; spf=pass smtp.mailfrom=forged@example.com
Authentication-Results: elsewhere.example.net; dkim=pass header.d=example.net
Authentication-Results: MTA.TEST.EXAMPLE (forged); dkim=pass header.d=example.com
From: a@loopback.example.net
To: b@example.com
Subject: authres through {mta}

body
"""


@pytest.fixture(scope="module", params=["postfix", "sendmail"])
def system(request) -> Iterator[tuple[str, int, Sink]]:
    if request.param == "postfix":
        require(POSTFIX, SMTP_SINK, "script")
    else:
        require(str(SENDMAIL_BIN), "m4", "unshare", SMTP_SINK)
    with dns_server() as dns, world_readable_tmpdir() as base:
        port = free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(port=port, dns=dns))
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        mta: Postfix | Sendmail
        if request.param == "postfix":
            mta = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        else:
            mta = Sendmail(base / "sm", f"inet:{port}@127.0.0.1", sink.port)
        with running(miltrd, sink, mta):
            yield request.param, mta.smtp_port, sink


def test_forged_results_are_gone_and_ours_are_on_top(system) -> None:
    name, smtp_port, sink = system
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.sendmail(
            "a@loopback.example.net",
            ["b@example.com"],
            MESSAGE.replace(b"{mta}", name.encode()).replace(b"\n", b"\r\n"),
        )
    raw = sink.delivered(f"authres through {name}")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    fields = [(k.lower(), str(v)) for k, v in msg.items()]
    names = [k for k, _ in fields]

    results = [v for k, v in fields if k == "authentication-results"]
    ours = [v for v in results if v.split(";")[0].strip().lower() == "mta.test.example"]
    assert len(ours) == 1, results
    assert not any("forged" in v for v in results)
    assert any(v.startswith("elsewhere.example.net;") for v in results)

    parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {ours[0]}")
    (spf,) = parsed.results
    assert (spf.method, spf.result) == ("spf", "pass")
    assert [(p.type, p.name, p.value) for p in spf.properties] == [
        ("smtp", "mailfrom", "a@loopback.example.net")
    ]

    # Above every header the client sent: trace fields at the top.
    ours_at = next(i for i, (k, v) in enumerate(fields) if v == ours[0])
    spf_at = names.index("received-spf")
    first_client_header = min(
        names.index("from"),
        next(i for i, (k, v) in enumerate(fields) if v.startswith("elsewhere.example.net")),
    )
    assert ours_at < first_client_header, names
    assert spf_at < first_client_header, names
    assert fields[spf_at][1].startswith("Pass ")
