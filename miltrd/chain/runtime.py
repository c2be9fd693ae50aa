"""A Runtime: a validated config with its plugins built, and what they need.

Built once per start or reload and never changed afterwards; connections
keep the runtime they started with, so a reload never disturbs them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api import DECIDING_PHASES, HOOKS, Action, Caller, OptionError, Phase, Plugin
from ..config import Config, ConfigError, Mode, OnError, PluginEntry, Problem

__all__ = ["Runtime", "LoadedPlugin", "Declared", "build_runtime", "CORE_OBSERVES", "CORE_MACROS"]

# What the chain itself reads, whatever the plugins: the client, the
# envelope (for logs and [internal] checks) and the end of the message.
CORE_OBSERVES = Phase.CONNECT | Phase.HELO | Phase.MAIL | Phase.RCPT | Phase.EOM
# Requesting macro lists replaces the MTA's defaults, so these must include
# everything the chain reads itself.
CORE_MACROS: Mapping[Phase, frozenset[str]] = {
    Phase.CONNECT: frozenset({"j", "{daemon_name}", "{client_addr}", "{client_name}"}),
    Phase.HELO: frozenset({"{tls_version}", "{cipher}"}),
    Phase.MAIL: frozenset({"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}"}),
    Phase.RCPT: frozenset({"i", "{rcpt_addr}", "{rcpt_mailer}"}),
    Phase.DATA: frozenset({"i"}),
    Phase.EOH: frozenset({"i"}),
    Phase.EOM: frozenset({"i"}),
}


@dataclass(frozen=True)
class LoadedPlugin:
    """One chain entry, built: the plugin instance and what its class declares."""

    entry: PluginEntry
    plugin: Plugin
    implemented: Phase
    observes: Phase
    deciding: Phase
    actions: Action
    timeout: float  # seconds
    on_error: OnError
    position: int = 0  # in chain.plugins
    caller: Caller = field(init=False)  # what the chain sets on the connection around its hooks
    keeps_body: bool = field(init=False)  # declared ``needs = Phase.BODY``: msg.body is kept
    # Read at every hook call, so stored rather than derived each time.
    name: str = field(init=False)  # the chain entry's name
    observe_only: bool = field(init=False)  # mode = "observe"
    # Hook name ("on_header") -> the plugin's bound method: looked up once,
    # not bound anew at every call.
    hooks: Mapping[str, Callable[..., Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.entry.name)
        hooks = {name: getattr(self.plugin, name) for name in HOOKS}
        object.__setattr__(self, "hooks", hooks)
        object.__setattr__(self, "observe_only", self.entry.mode is Mode.OBSERVE)
        caller = Caller(self.name, self.actions, self.observe_only, self.position)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "keeps_body", bool(Phase.BODY & type(self.plugin).needs))


@dataclass(frozen=True)
class Declared:
    """What the chain's plugins declared, joined with what the chain reads
    itself: the phases observed and decided, the changes allowed, the
    macros wanted per phase. (A plugin's own ``needs`` is only the phases
    it reads without a hook; this is the whole chain's declaration.)"""

    observes: Phase
    decides: Phase
    actions: Action
    macros: Mapping[Phase, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    config: Config
    plugins: tuple[LoadedPlugin, ...]
    declared: Declared
    dry_run: bool = False  # miltrd replay: plugins make no lasting change (Connection.dry_run)
    # The plugins that hook each phase, in chain order: worked out once per
    # runtime (a reload), not at every connection.
    hooked: Mapping[Phase, tuple[LoadedPlugin, ...]] = field(init=False)
    # The plugins that look at each phase's data (``observes``), likewise;
    # the names of those in observe mode; each plugin's place in the chain.
    observed_by: Mapping[Phase, tuple[LoadedPlugin, ...]] = field(init=False)
    observe_mode: frozenset[str] = field(init=False)
    positions: Mapping[str, int] = field(init=False)
    # Likewise for what every new connection's chain asks: the plugins with
    # a ``when`` table, those hooking on_close, and whether the chain
    # writes Authentication-Results.
    conditional: tuple[LoadedPlugin, ...] = field(init=False)
    closing: tuple[LoadedPlugin, ...] = field(init=False)
    writes_auth_results: bool = field(init=False)

    def __post_init__(self) -> None:
        hooked = {phase: tuple(p for p in self.plugins if phase & p.implemented) for phase in Phase}
        object.__setattr__(self, "hooked", hooked)
        observed_by = {
            phase: tuple(p for p in self.plugins if phase & p.observes) for phase in Phase
        }
        object.__setattr__(self, "observed_by", observed_by)
        observe_mode = frozenset(p.name for p in self.plugins if p.observe_only)
        object.__setattr__(self, "observe_mode", observe_mode)
        positions = {p.name: i for i, p in enumerate(self.plugins)}
        object.__setattr__(self, "positions", positions)
        conditional = tuple(p for p in self.plugins if p.entry.when is not None)
        object.__setattr__(self, "conditional", conditional)
        object.__setattr__(self, "closing", hooked[Phase.CLOSE])
        writes = bool(Action.AUTH_RESULTS & self.declared.actions)
        object.__setattr__(self, "writes_auth_results", writes)

    async def close(self) -> None:
        for loaded in self.plugins:
            try:
                await loaded.plugin.close()
            except Exception:
                logging.getLogger("miltrd.chain").exception("closing plugin %s failed", loaded.name)


def build_runtime(config: Config, *, dry_run: bool = False) -> Runtime:
    """Build every plugin of the chain; ConfigError if one refuses its options.
    ``dry_run``: for ``miltrd replay``, see Connection.dry_run."""
    loaded: list[LoadedPlugin] = []
    problems = []
    for position, entry in enumerate(config.plugins):
        cls = entry.cls
        try:
            plugin = cls(
                entry.options,
                name=entry.name,
                internal_rules=config.internal,
                log=logging.getLogger(f"miltrd.plugin.{entry.name}"),
            )
        except OptionError as exc:
            problems.append(_option_problem(config, position, entry, exc))
            continue
        except Exception as exc:
            problems.append(
                config.problem(f"plugins.{entry.name}", f"plugin failed to start: {exc!r}")
            )
            continue
        loaded.append(
            LoadedPlugin(
                entry=entry,
                plugin=plugin,
                implemented=cls.implemented(),
                observes=cls.observes(),
                deciding=cls.deciding() & DECIDING_PHASES,
                actions=cls.actions,
                timeout=entry.timeout or config.daemon.timeout,
                on_error=entry.on_error or config.daemon.on_error,
                position=len(loaded),
            )
        )
    if problems:
        raise ConfigError(problems)
    return Runtime(config, tuple(loaded), join_declarations(loaded), dry_run=dry_run)


def _option_problem(config: Config, position: int, entry: PluginEntry, exc: OptionError) -> Problem:
    """Where a plugin's refusal points: its own key, or (``exc.outside``) a
    key of miltrd's sections, at the line that sets it, else at the line of
    the table it belongs in, else where the plugin is enabled."""
    if not exc.outside:
        return config.problem(f"plugins.{entry.name}.{exc.key}", exc.message)
    problem = config.problem(exc.key, exc.message)
    if problem.line is None:
        enabled = config.problem(f"chain.plugins[{position}]", "")
        problem = dataclasses.replace(problem, line=enabled.line)
    return problem


def join_declarations(plugins: list[LoadedPlugin] | tuple[LoadedPlugin, ...]) -> Declared:
    observes = CORE_OBSERVES
    decides = Phase.NONE
    actions = Action.NONE
    macros: dict[Phase, set[str]] = {phase: set(names) for phase, names in CORE_MACROS.items()}
    for p in plugins:
        observes |= p.observes
        # A plugin in observe mode never changes anything at the MTA.
        if not p.observe_only:
            decides |= p.deciding
            actions |= p.actions
        for phase, names in type(p.plugin).macros.items():
            macros.setdefault(phase, set()).update(names)
    # The chain must see the headers to remove forged Authentication-Results.
    if Action.AUTH_RESULTS & actions:
        observes |= Phase.HEADER
    # Anyone who decides anywhere may fail, and a failure may tempfail.
    return Declared(
        observes=observes,
        decides=decides,
        actions=actions,
        macros={phase: frozenset(names) for phase, names in macros.items()},
    )
