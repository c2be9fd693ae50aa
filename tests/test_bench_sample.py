"""The benchmark's shipped chain sees its clients as internal, as it says.

bench/run.py's ``sample`` filter and bench/mixed.py's ``shipped`` chain run
etc/miltrd.toml's chain for an internal client sending outgoing mail, so
that spf skips its DNS lookups. The clients are Postfix on loopback and
bench/postfixgen.py's sessions (and bench/cgen.c's, the same bytes), which
announce CLIENT_ADDR: an address outside [internal] would have spf query
the machine's resolver on every message and measure that instead.
"""

from __future__ import annotations

from bench.postfixgen import CLIENT_ADDR
from bench.run import SAMPLE_CHAIN, SAMPLE_INTERNAL
from miltrd.chain import build_runtime
from miltrd.config import load_text


def test_every_benchmark_client_of_the_shipped_chain_is_internal() -> None:
    runtime = build_runtime(load_text(SAMPLE_INTERNAL + "[chain]" + SAMPLE_CHAIN))
    internal = runtime.config.internal
    assert internal.is_internal_ip(CLIENT_ADDR)
    assert internal.is_internal_ip("127.0.0.1")
    assert internal.is_internal_domain("example.com")
    assert [p.name for p in runtime.plugins] == ["zombie", "spf", "bcc"]
