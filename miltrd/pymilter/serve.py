"""``Milter.runmilter`` on miltrd's daemon.

The program's filter becomes the one plugin of a chain (``adapter_for``
with ``Milter.factory``), served by miltrd's ``Daemon``: its listeners,
connection limits, signals (SIGTERM/SIGINT stop and let open sessions
finish), logging and metrics. What differs from a configured chain is the
negotiation, which follows pymilter and libmilter instead of the chain's
needs: each connection's filter object is built at OPTNEG and its
``negotiate`` callback picks the actions, the protocol steps (from
``@nocallback``, ``@noreply``, ``enable_protocols``) and the macro lists
(``@symlist``); unknown SMTP commands reach ``unknown``; a SKIP from
``body`` is sent as SKIP.

Daemon settings other than the socket come from a miltrd config file when
``miltrd pymilter -c FILE`` gave one (its chain is ignored), else from the
defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any

from ..api import NoOptions, VerdictKind
from ..chain import Runtime, build_runtime
from ..config import ConfigError, PluginEntry, load, load_text, parse_listen
from ..logs import setup_logging
from ..protocol import (
    ActionFlag,
    Continue,
    MacroStage,
    OptionNegotiation,
    ProtocolFlag,
    Skip,
    Unknown,
)
from ..protocol._negotiation import effective_offer
from ..server import Daemon, MilterHandler
from ..server.connection import next_conn_id
from ..server.translate import no_reply_phases
from . import milter
from .plugin import PymilterPlugin, adapter_for, verdict_of

__all__ = ["serve", "options", "ServeOptions", "PymilterDaemon", "PymilterHandler"]

log = logging.getLogger("miltrd.pymilter")
LIBMILTER_TIMEOUT = 7210.0  # libmilter's default I/O timeout, seconds
ALL_ACTION_BITS = 0x1FF
ALL_PROTOCOL_BITS = 0x1FFFFF


@dataclasses.dataclass
class ServeOptions:
    """Set by ``miltrd pymilter`` before the program runs."""

    config_path: str | None = None
    log_level: str | None = None
    inline: bool = False  # callbacks on the event loop (--inline)


options = ServeOptions()


class PymilterHandler(MilterHandler):
    """A connection negotiated the way libmilter negotiates for pymilter."""

    def __init__(
        self, runtime: Runtime, cid: str, *, on_message: Any, plugin: PymilterPlugin
    ) -> None:
        super().__init__(runtime, cid, on_message=on_message)
        self.plugin = plugin

    async def _dispatch(self, event: object) -> bytes:
        if isinstance(event, OptionNegotiation):
            return await self._negotiate_pymilter()
        if isinstance(event, Unknown):
            return await self._unknown(event)
        return await super()._dispatch(event)

    async def _negotiate_pymilter(self) -> bytes:
        offer = self.fc.offer
        assert offer is not None
        _version, mta_actions, mta_protocol = effective_offer(offer)
        session = self.plugin.new_session(self.conn)
        # libmilter answers for the filter where the MTA lacks a no-reply
        # step, so the filter is offered every one of them.
        offered = int(mta_protocol) | milter.P_NR_ALL
        rc, actions, protocol = await self.plugin.run_sync(
            session.negotiate, int(mta_actions), offered
        )
        if rc == milter.ALL_OPTS:
            actions, protocol = int(mta_actions), int(mta_protocol) & milter.P_SKIP
        elif rc != milter.CONTINUE:
            raise ConnectionError(f"the filter's negotiate answered {rc}: connection refused")
        macros = {MacroStage(stage): names for stage, names in session.ctx.symlists.items()}
        out = self.fc.negotiate(
            actions=ActionFlag(actions & ALL_ACTION_BITS),
            protocol=ProtocolFlag(protocol & ALL_PROTOCOL_BITS),
            macros=macros,
        )
        agreed = self.fc.negotiated
        assert agreed is not None
        self.chain.no_reply = no_reply_phases(agreed.protocol)
        return out

    async def _unknown(self, event: Unknown) -> bytes:
        session = self.plugin.session_for(self.conn)
        outcome = await self.plugin.run_sync(session.call, "unknown", event.line)
        verdict = verdict_of(outcome)
        if verdict is None:
            return self.fc.send(Continue()) if self.fc.reply_owed else b""
        return self._answer(verdict)

    async def _body(self, event: Any) -> bytes:
        verdict = await self.chain.body(event.data)
        session = self.plugin.session_for(self.conn)
        negotiated = self.fc.negotiated
        if (
            verdict.kind is VerdictKind.CONTINUE
            and session.skip_body
            and self.fc.reply_owed
            and negotiated is not None
            and ProtocolFlag.SKIP in negotiated.protocol
        ):
            return self.fc.send(Skip())
        return self._answer(verdict)


class PymilterDaemon(Daemon):
    """miltrd's daemon serving one pymilter program."""

    def make_handler(self, runtime: Runtime) -> MilterHandler:
        plugin = runtime.plugins[0].plugin
        assert isinstance(plugin, PymilterPlugin)
        return PymilterHandler(runtime, next_conn_id(), on_message=self.message_done, plugin=plugin)

    async def reload(self) -> bool:
        log.warning("SIGHUP: a pymilter program is not reloaded; restart it to run changed code")
        return False


def _listen_text(socketname: str) -> str:
    # libmilter takes a bare path as a unix socket.
    if ":" not in socketname or socketname.startswith("/"):
        return "local:" + os.path.abspath(socketname)
    return socketname


def build(name: str, socketname: str, timeout: float) -> tuple[str, Runtime]:
    """The runtime ``runmilter`` serves; milter.error for a bad setting."""
    settings = milter.settings
    try:
        config = load(options.config_path) if options.config_path else load_text("", "<pymilter>")
    except ConfigError as exc:
        raise milter.error("; ".join(str(p) for p in exc.problems)) from None
    try:
        spec = parse_listen(_listen_text(socketname))
    except ValueError as exc:
        raise milter.error(f"cannot set connection info: {exc}") from None
    io_timeout = float(timeout or settings.timeout or LIBMILTER_TIMEOUT)
    daemon = dataclasses.replace(
        config.daemon,
        listen=(spec,),
        backlog=settings.backlog or config.daemon.backlog,
        idle_timeout=io_timeout,
        workers=1,
        max_messages=0,
        log_level=options.log_level or config.daemon.log_level,
    )
    adapter = adapter_for(
        None, factory=_factory, catch_exceptions=True, filter_name=name, inline=options.inline
    )
    # A callback may take as long as the MTA waits (libmilter has no limit).
    entry = PluginEntry(
        name=name or "pythonfilter", cls=adapter, options=NoOptions(), timeout=io_timeout
    )
    config = dataclasses.replace(config, daemon=daemon, plugins=(entry,))
    try:
        return config.path, build_runtime(config)
    except ConfigError as exc:
        raise milter.error("; ".join(str(p) for p in exc.problems)) from None


def _factory() -> Any:
    from .. import pymilter

    return pymilter.factory()


def serve(name: str, socketname: str, timeout: float, *, rmsock: bool = True) -> None:
    """Serve until stopped; milter.error if the daemon cannot start."""
    from ..server import StartupError

    path, runtime = build(name, socketname, timeout)
    cfg = runtime.config.daemon
    setup_logging(cfg.log_level, cfg.log, cfg.syslog_socket)
    daemon = PymilterDaemon(path, runtime)
    try:
        daemon.open_listeners()
    except StartupError as exc:
        raise milter.error(f"cannot start: {exc}") from None
    milter.settings.stop.clear()

    async def main() -> None:
        remove = daemon.install_signal_handlers()
        watcher = asyncio.ensure_future(_watch_stop(daemon))
        try:
            await daemon.run()
        finally:
            watcher.cancel()
            remove()

    try:
        asyncio.run(main())
    except StartupError as exc:
        raise milter.error(f"cannot start: {exc}") from None


async def _watch_stop(daemon: Daemon) -> None:
    """milter.stop() may be called from any thread: poll for it."""
    while not milter.settings.stop.is_set():
        await asyncio.sleep(0.25)
    daemon.stop_event.set()
