"""Read and validate /etc/mail/miltrd.toml.

``load(path)`` returns a ``Config`` or raises one ``ConfigError`` carrying
every problem found, each naming the file, the line where known and the
key path. Nothing here exits or prints; the command line does that.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..api import ConfigPath, InternalRules
from ..registry import PluginLoadError, load_plugin
from .advice import advise
from .coerce import Parsers, Problems, coerce
from .errors import ConfigError, Problem
from .locate import LineIndex
from .model import (
    PLUGIN_COMMON_KEYS,
    ChainSection,
    Config,
    DaemonConfig,
    InternalSection,
    ListenSpec,
    Mode,
    PluginCommon,
    PluginEntry,
    parse_listen,
    parse_metrics_listen,
)
from .sendmail_cf import SendmailCfError, class_members, filter_socket, read_cf

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["load", "load_text", "DEFAULT_PATH"]

DEFAULT_PATH = "/etc/mail/miltrd.toml"
_TOP_LEVEL = ("daemon", "internal", "chain", "plugins")


def load(path: str | Path) -> Config:
    """Load and validate the config file at ``path``."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read: {exc.strerror or exc}", file=path)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8: {exc}", file=path)]) from None
    return load_text(text, path)


def load_text(text: str, path: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        message = str(exc)
        if line is None and "(at line " in message:
            try:
                line = int(message.rsplit("(at line ", 1)[1].split(",")[0])
            except ValueError:
                line = None
        raise ConfigError([Problem("", f"TOML syntax error: {message}", line, path)]) from None
    index = LineIndex(text)
    problems: Problems = []
    config = _build(data, path, problems)
    if problems or config is None:
        raise ConfigError(Problem(p, m, index.line_of(p), path) for p, m in problems)
    advice = advise(data, [entry.name for entry in config.plugins])
    entries = tuple(
        dataclasses.replace(entry, mode=Mode.OBSERVE, observe_why=advice.observe[entry.name])
        if entry.mode == Mode.ENFORCE and entry.name in advice.observe
        else entry
        for entry in config.plugins
    )
    warnings = tuple(
        sorted(
            (Problem(p, m, index.line_of(p), path) for p, m in advice.warnings),
            key=lambda problem: problem.line or 0,
        )
    )
    return dataclasses.replace(config, lines=index, plugins=entries, warnings=warnings)


def _table(data: dict[str, Any], key: str, problems: Problems) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.append((key, "expected a table"))
        return {}
    return value


def _build(data: dict[str, Any], path: str, problems: Problems) -> Config | None:
    # Every path option (typed ConfigPath) written relative is relative to
    # the directory of the file, not to wherever miltrd was started.
    base = os.path.dirname(os.path.abspath(path))
    paths: Parsers = {ConfigPath: functools.partial(ConfigPath.resolved, base=base)}
    for key in data:
        if key not in _TOP_LEVEL:
            problems.append((key, f"unknown section (expected {', '.join(_TOP_LEVEL)})"))
    daemon_table = _table(data, "daemon", problems)
    cf_path = daemon_table.get("sendmail_cf", DaemonConfig.sendmail_cf)
    cf = _SendmailCf(
        ConfigPath.resolved(cf_path, base) if isinstance(cf_path, str) else DaemonConfig.sendmail_cf
    )
    daemon = coerce(
        DaemonConfig,
        daemon_table,
        "daemon",
        problems,
        parsers={**paths, ListenSpec: cf.listen_spec},
    )
    if daemon is not None:
        _check_daemon(daemon, problems)
    internal_raw = coerce(InternalSection, _table(data, "internal", problems), "internal", problems)
    chain = coerce(ChainSection, _table(data, "chain", problems), "chain", problems)
    internal = _internal(internal_raw, problems, cf) if internal_raw else None
    plugins_tables = _table(data, "plugins", problems)
    entries: list[PluginEntry] = []
    if chain is not None:
        seen: set[str] = set()
        for i, name in enumerate(chain.plugins):
            if name in seen:
                problems.append((f"chain.plugins[{i}]", f'plugin "{name}" is listed twice'))
                continue
            seen.add(name)
            table = plugins_tables.get(name, {})
            entry = _plugin(name, table, f"chain.plugins[{i}]", problems, paths)
            if entry is not None:
                entries.append(entry)
        # A table for a plugin the chain does not list is kept but unused
        # (config.advice warns): sites keep the settings of a disabled plugin.
    if problems or daemon is None or internal is None:
        return None
    return Config(path, daemon, internal, tuple(entries))


class _SendmailCf:
    """sendmail.cf, read once and only if the config refers to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            self._text = read_cf(self.path)
        return self._text

    def listen_spec(self, text: str) -> ListenSpec:
        """``parse_listen``, and ``sendmail:NAME``: the socket of the filter
        NAME defined in sendmail.cf (its X line)."""
        if not text.startswith("sendmail:"):
            return parse_listen(text)
        try:
            socket_spec = filter_socket(self.text(), text.partition(":")[2])
        except SendmailCfError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        spec = parse_listen(socket_spec)
        return dataclasses.replace(spec, text=f"{text} ({socket_spec})")


def _check_daemon(daemon: DaemonConfig, problems: Problems) -> None:
    """What the types alone do not say about ``[daemon]``."""
    if not daemon.listen:
        problems.append(("daemon.listen", "at least one listen address is needed"))
    for key in ("timeout", "shutdown_timeout", "idle_timeout"):
        if getattr(daemon, key) <= 0:
            problems.append((f"daemon.{key}", "must be more than 0 seconds"))
    if daemon.metrics_listen:
        try:
            host, _ = parse_metrics_listen(daemon.metrics_listen)
        except ValueError:
            problems.append(
                (
                    "daemon.metrics_listen",
                    f'expected "IP:PORT" or "[IPv6]:PORT", got "{daemon.metrics_listen}"',
                )
            )
        else:
            if not ipaddress.ip_address(host).is_loopback and not daemon.metrics_public:
                problems.append(
                    (
                        "daemon.metrics_listen",
                        f"{host} is not a loopback address (set metrics_public = true to allow it)",
                    )
                )
        if daemon.workers > 1:
            problems.append(("daemon.metrics_listen", "metrics need workers = 1"))
    if daemon.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        problems.append(
            ("daemon.event_loop", 'uvloop is not installed (Debian: python3-uvloop); use "auto"')
        )
    if not 1 <= daemon.workers <= 256:
        problems.append(("daemon.workers", "must be between 1 and 256"))
    if daemon.max_messages < 0:
        problems.append(("daemon.max_messages", "must be 0 (no limit) or more"))
    if not 1 <= daemon.backlog <= 65535:
        problems.append(("daemon.backlog", "must be between 1 and 65535"))
    if daemon.max_connections < 1:
        problems.append(("daemon.max_connections", "must be at least 1"))
    if daemon.spool_threshold < 0:
        problems.append(("daemon.spool_threshold", "must be 0 or more bytes"))
    if not 65535 <= daemon.max_packet <= 64 * 1024 * 1024:
        problems.append(("daemon.max_packet", "must be between 65535 and 67108864 bytes"))


# RFC 8601 section 2.5: a host name (a token without ';' or spaces).
_AUTHSERV_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")


def _internal(raw: InternalSection, problems: Problems, cf: _SendmailCf) -> InternalRules:
    networks = []
    for i, text in enumerate(raw.networks):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            problems.append((f"internal.networks[{i}]", f"not a network: {exc}"))
    names = list(raw.domains)
    if raw.sendmail_class:
        try:
            names += class_members(cf.text(), raw.sendmail_class)
        except SendmailCfError as exc:
            problems.append(("internal.sendmail_class", f"{cf.path}: {exc}"))
    domains = frozenset(d.lower().rstrip(".") for d in names)
    authserv_id = raw.authserv_id.strip()
    if authserv_id and not _AUTHSERV_ID.match(authserv_id):
        problems.append(
            (
                "internal.authserv_id",
                f"expected a host name like mx.example.com, got {authserv_id!r}",
            )
        )
    return InternalRules(tuple(networks), domains, raw.authenticated, authserv_id.lower())


def _plugin(
    name: str, table: Any, where: str, problems: Problems, paths: Parsers
) -> PluginEntry | None:
    prefix = f"plugins.{name}"
    if not isinstance(table, dict):
        problems.append((prefix, "expected a table"))
        return None
    use = table.get("use")
    if use is not None and not isinstance(use, str):
        problems.append((f"{prefix}.use", 'expected "module:Class"'))
        return None
    try:
        cls = load_plugin(name, use)
    except PluginLoadError as exc:
        problems.append((f"{prefix}.use" if use else where, str(exc)))
        return None
    common_table = {k: table[k] for k in PLUGIN_COMMON_KEYS if k in table}
    common: PluginCommon | None = coerce(PluginCommon, common_table, prefix, problems)
    if common is not None and common.timeout is not None and common.timeout <= 0:
        problems.append(
            (f"{prefix}.timeout", f"expected a number of seconds > 0, got {common.timeout:g}")
        )
        common = None
    own = {k: v for k, v in table.items() if k not in PLUGIN_COMMON_KEYS}
    options = coerce(cls.Options, own, prefix, problems, paths)
    if options is None or common is None:
        return None
    return PluginEntry(
        name=name,
        cls=cls,
        options=options,
        mode=common.mode,
        on_error=common.on_error,
        timeout=common.timeout,
        use=use,
        when=common.when,
    )
