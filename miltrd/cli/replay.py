"""``miltrd replay``: one message through the chain, or through any milter."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

from ..chain import MessageRecord, Runtime, build_runtime
from ..config import ConfigError, load, parse_listen
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
from .exits import EXIT_ERROR, EXIT_USAGE, REPLAY_EXITS

__all__ = ["replay_command"]


def _default_name(ip: str) -> str:
    return "localhost" if ip.startswith("127.") or ip == "::1" else "unknown"


def _usage(problem: str) -> int:
    print(f"miltrd replay: {problem}", file=sys.stderr)
    return EXIT_USAGE


def _unwritable(path: str) -> str:
    """Why the file ``path`` cannot be written; "" if it can be tried."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return "is a directory"
    if not folder.is_dir():
        return f"no such directory: {folder}"
    if not os.access(folder, os.W_OK | os.X_OK) and not os.access(target, os.W_OK):
        return f"directory {folder} is not writable"
    return ""


def replay_command(args: argparse.Namespace, config_path: str) -> int:
    """Exit status: the verdict (REPLAY_EXITS), EXIT_ERROR or EXIT_USAGE."""
    if args.connect:
        spec = "unix:" + args.connect if args.connect.startswith("/") else args.connect
        try:
            parse_listen(spec)
        except ValueError as exc:
            return _usage(f"--connect {exc}")
    if args.output:
        # Found now, not after the run has been printed.
        unusable = _unwritable(args.output)
        if unusable:
            return _usage(f"--output {args.output}: {unusable}")
    try:
        raw = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    except OSError as exc:
        return _usage(f"{args.message}: {exc.strerror or exc}")
    name = args.client_name or _default_name(args.client_ip)
    env = Envelope(
        sender=args.sender,
        recipients=args.rcpt,
        client_ip=args.client_ip,
        client_name=name,
        helo=args.helo or name,
        auth=args.auth,
    )
    try:
        result, history = asyncio.run(_run(args, config_path, raw, env))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
        where = f"{args.connect}: " if args.connect else ""
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"miltrd replay: {where}{text or type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
    for phase, response in result.steps:
        print(f"{phase}: {describe(response)}")
    for rcpt, response in result.rejected_recipients.items():
        print(f"recipient {rcpt}: {describe(response)}")
    for change in result.changes:
        print(f"change: {describe(change)}")
    if history:
        for line in plugin_lines(history[-1]):
            print(line)
    print(
        f"verdict: {result.action}"
        + (f" (at {result.ended_at})" if result.ended_at != "eom" else "")
    )
    if args.output:
        headers, body = split_message(raw)
        headers, body = apply_changes(headers, body, result.changes)
        try:
            Path(args.output).write_bytes(render(headers, body))
        except OSError as exc:
            return _usage(f"--output {args.output}: {exc.strerror or exc}")
    return REPLAY_EXITS.get(result.action, EXIT_ERROR)


def plugin_lines(record: MessageRecord) -> list[str]:
    """One line per plugin: what it answered, or why it never ran; what it
    changed; what it would have written (replay writes nothing)."""
    lines = []
    for name, verdict in record.plugins.items():
        if verdict == "not-applied":
            line = f"plugin {name}: not applied ({record.not_applied[name]})"
        elif verdict == "not-run":
            line = f"plugin {name}: not run (the message was decided before its turn)"
        else:
            line = f"plugin {name}: applied, {verdict}"
        changes = record.changes.get(name, [])
        if changes:
            line += f"; changes: {' '.join(changes)}"
        lines.append(line)
        for effect, where in record.effects.get(name, []):
            lines.append(f"plugin {name}: would have {effect}: {where} (replay writes nothing)")
    return lines


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
        return await replay(client, raw, env), list(handler.chain.history)
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
    runtime = build_runtime(load(config_path), dry_run=True)
    setup_logging(runtime.config.daemon.log_level, "stderr")
    try:
        return await replay_in_process(runtime, raw, env)
    finally:
        await runtime.close()
