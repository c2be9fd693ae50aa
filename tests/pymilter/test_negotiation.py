"""What the MTA is asked for at option negotiation: the same from the layer
as from C pymilter, for the same program file."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from miltrd.mta import MilterClient, open_milter
from miltrd.protocol import MacroStage, ProtocolFlag

from ..tools import free_port
from .runner import ENGINES, PROGRAMS, REPO, Program, c_pymilter_available, require_engine
from .sdist import unpack


def negotiated(spec: str) -> object:
    async def go() -> object:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        try:
            await client.negotiate()
            return client.mta.negotiated
        finally:
            await client.close()

    return asyncio.run(go())


def on_engine(engine: str, path: Path, *extra: str) -> object:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    prog = Program(path, spec, *extra, engine=engine, port=port)
    try:
        return negotiated(spec)
    finally:
        prog.stop()


@pytest.mark.parametrize(
    ("program", "extra"),
    [
        (PROGRAMS / "modifier.py", ()),
        (PROGRAMS / "steps.py", ()),
        (REPO / "bench" / "pymilter_ref.py", ()),
        (REPO / "bench" / "pymilter_ref.py", ("--noreply",)),
    ],
)
def test_same_negotiation_as_c_pymilter(program: Path, extra: tuple[str, ...]) -> None:
    require_engine("c")
    results = {engine: on_engine(engine, program, *extra) for engine in ENGINES}
    assert results["miltrd"] == with_summary_steps(results["c"])


def with_summary_steps(negotiated: object) -> object:
    """C pymilter's negotiation with the one difference the layer makes on
    purpose: connect, MAIL and RCPT stay on (without a reply: this MTA
    offers every no-reply bit) when the filter switched them off, so that
    the summary line names the client, the sender and the recipients."""
    protocol = negotiated.protocol  # type: ignore[attr-defined]
    for step_off, no_reply in (
        (ProtocolFlag.NOCONNECT, ProtocolFlag.NR_CONN),
        (ProtocolFlag.NOMAIL, ProtocolFlag.NR_MAIL),
        (ProtocolFlag.NORCPT, ProtocolFlag.NR_RCPT),
    ):
        if step_off in protocol:
            protocol = (protocol & ~step_off) | no_reply
    return dataclasses.replace(negotiated, protocol=protocol)  # type: ignore[type-var]


def test_symlist_is_negotiated_as_pymilter_documents(tmp_path: Path) -> None:
    """sample.py marks envfrom @symlist('{auth_authen}') and @noreply.

    On the layer that is what the MTA is asked for. C pymilter 1.0.5 on
    Python 3 hands setsymlist bytes where its C code wants str; the
    TypeError inside Base.negotiate makes it answer ALL_OPTS (every step,
    every reply, the MTA's own macro lists) - a pymilter bug the README
    lists among the differences.
    """
    outcomes = {}
    for engine in ["miltrd", "c"] if c_pymilter_available() else ["miltrd"]:
        root = unpack(tmp_path / engine)
        sock = root / "pythonsock"
        env = {"HOME": str(root)}
        prog = Program(root / "sample.py", engine=engine, unix_path=sock, cwd=root, env=env)
        try:
            outcomes[engine] = negotiated(f"local:{sock}")
        finally:
            prog.stop()
    ours = outcomes["miltrd"]
    assert ours.macros == {MacroStage.ENVFROM: ("{auth_authen}",)}  # type: ignore[attr-defined]
    assert ProtocolFlag.NR_MAIL in ours.protocol  # type: ignore[attr-defined]
    assert ProtocolFlag.NOUNKNOWN in ours.protocol  # type: ignore[attr-defined]
    if "c" in outcomes:
        c = outcomes["c"]
        assert c.macros == {} and c.protocol == ProtocolFlag.SKIP  # type: ignore[attr-defined]
        assert c.actions == ours.actions  # type: ignore[attr-defined]
