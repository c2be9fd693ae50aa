"""SKIP: the MTA stops sending the body as soon as no plugin wants it, also
when it offers SKIP but cannot leave the body out (no NOBODY) or cannot
send it without waiting for replies (no NR_BODY)."""

from __future__ import annotations

import asyncio

from miltrd.api import Action, Phase
from miltrd.chain import Declared
from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import MtaConnection, ProtocolFlag
from miltrd.server.translate import request_for

from .test_bad_peers import start_config, with_daemon

BODY = b"x" * 200 + b"\r\n"
MESSAGE = b"From: a@example.org\r\nSubject: skip\r\n\r\n" + BODY * 1000  # 3+ chunks
FULL = MtaConnection().offer_protocol
STAMP = '[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
SIZE = (
    '[plugins.size]\nuse = "tests.testplugins:BodyLength"\n'
    '[plugins.size.when]\nsenders = ["{sender}"]\n'
)


def run(tmp_path, chain: str, offer: ProtocolFlag, sender: str = "a@example.org"):
    cfg, spec = start_config(tmp_path, chain=chain)

    async def body(daemon):
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer, MtaConnection(protocol=offer))
        try:
            env = Envelope(sender=sender, recipients=["b@example.com"])
            return await replay(client, MESSAGE, env), client.mta.negotiated
        finally:
            await client.close()

    return asyncio.run(with_daemon(cfg, body))


def body_steps(result) -> list[str]:
    return [type(r).__name__ for step, r in result.steps if step == "body"]


def test_body_nobody_reads_is_skipped_at_once_when_the_mta_cannot_leave_it_out(
    tmp_path,
) -> None:
    result, agreed = run(
        tmp_path, '[chain]\nplugins = ["stamp"]\n' + STAMP, FULL & ~ProtocolFlag.NOBODY
    )
    assert ProtocolFlag.SKIP in agreed.protocol
    assert body_steps(result) == ["Skip"]  # the first chunk, and no more
    assert [c.value for c in result.changes if getattr(c, "name", "") == "X-Test"] == [
        "added by miltrd"
    ]


def test_body_observed_but_not_wanted_any_more_is_skipped_without_nr_body(tmp_path) -> None:
    chain = '[chain]\nplugins = ["size", "stamp"]\n' + SIZE.format(sender="x@elsewhere") + STAMP
    result, agreed = run(tmp_path, chain, FULL & ~ProtocolFlag.NR_BODY)
    assert ProtocolFlag.NR_BODY not in agreed.protocol
    assert body_steps(result) == ["Skip"]  # size's `when` ruled it out at MAIL


def test_body_still_wanted_is_sent_whole(tmp_path) -> None:
    chain = '[chain]\nplugins = ["size", "stamp"]\n' + SIZE.format(sender="a@example.org") + STAMP
    result, _ = run(tmp_path, chain, FULL & ~ProtocolFlag.NR_BODY)
    assert set(body_steps(result)) == {"Continue"} and len(body_steps(result)) >= 3
    sizes = [c.value for c in result.changes if getattr(c, "name", "") == "X-Body-Length"]
    assert sizes == [str(len(BODY) * 1000)]


def test_skip_is_asked_for_whatever_the_chain_declares() -> None:
    for observes, decides in [
        (Phase.NONE, Phase.NONE),  # body not observed
        (Phase.BODY, Phase.NONE),  # observed, not decided
        (Phase.BODY, Phase.BODY),  # decided
    ]:
        declared = Declared(observes=Phase.CONNECT | observes, decides=decides, actions=Action.NONE)
        assert ProtocolFlag.SKIP in request_for(declared).protocol
