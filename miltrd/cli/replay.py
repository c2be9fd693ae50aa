"""``miltrd replay``: one message through the chain, or through any milter."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

from ..chain import Runtime
from ..chain.session import MessageRecord
from ..config import ConfigError
from ..logs import setup_logging
from ..mta import (
    Envelope,
    MilterClient,
    ReplayResult,
    apply_changes,
    describe,
    open_milter,
    render,
    replay,
    split_message,
)
from ..protocol import ProtocolError
from ..server import MilterHandler
from .check import load_runtime

__all__ = ["replay_command"]


def replay_command(args: argparse.Namespace, config_path: str) -> int:
    raw = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    env = Envelope(
        sender=args.sender,
        recipients=args.rcpt or ["postmaster@localhost"],
        client_ip=args.client_ip,
        client_name=args.client_name
        or ("localhost" if args.client_ip.startswith("127.") else "unknown"),
        helo=args.helo or args.client_name or "localhost",
        auth=args.auth,
    )
    try:
        result, history = asyncio.run(_run(args, config_path, raw, env))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (OSError, ProtocolError) as exc:
        print(f"miltrd replay: {exc}", file=sys.stderr)
        return 1
    for phase, response in result.steps:
        print(f"{phase}: {describe(response)}")
    for rcpt, response in result.rejected_recipients.items():
        print(f"recipient {rcpt}: {describe(response)}")
    for change in result.changes:
        print(f"change: {describe(change)}")
    if history:
        last = history[-1]
        for name, verdict in last.plugins.items():
            if verdict == "not-applied":
                print(f"plugin {name}: not applied ({last.not_applied[name]})")
            else:
                print(f"plugin {name}: applied, {verdict}")
    print(
        f"verdict: {result.action}"
        + (f" (at {result.ended_at})" if result.ended_at != "eom" else "")
    )
    if args.output:
        headers, body = split_message(raw)
        headers, body = apply_changes(headers, body, result.changes)
        Path(args.output).write_bytes(render(headers, body))
    return 0


async def replay_in_process(
    runtime: Runtime, raw: bytes, env: Envelope
) -> tuple[ReplayResult, list[MessageRecord]]:
    """Send one message through a runtime's chain over a socket pair: the
    real server code path, with no listener. Returns the filter's answers
    and the chain's per-message history (what applied, what did not)."""
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=theirs)
    handler = MilterHandler(runtime, "replay")
    serving = asyncio.ensure_future(handler.serve(server_reader, server_writer))
    reader, writer = await asyncio.open_connection(sock=ours)
    client = MilterClient(reader, writer)
    try:
        return await replay(client, raw, env), handler.chain.history
    finally:
        await client.close()
        await serving


async def _run(
    args: argparse.Namespace, config_path: str, raw: bytes, env: Envelope
) -> tuple[ReplayResult, list[MessageRecord]]:
    if args.connect:
        reader, writer = await open_milter(args.connect)
        client = MilterClient(reader, writer)
        try:
            return await replay(client, raw, env), []
        finally:
            await client.close()
    runtime = load_runtime(config_path)
    setup_logging(runtime.config.daemon.log_level, "stderr")
    try:
        return await replay_in_process(runtime, raw, env)
    finally:
        await runtime.close()
