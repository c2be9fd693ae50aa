"""Read and validate /etc/mail/miltrd.toml.

``load(path)`` returns a ``Config`` or raises one ``ConfigError`` carrying
every problem found, each naming the file, the line where known and the
key path. Nothing here exits or prints; the command line does that.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any

from ..api import InternalRules
from ..registry import PluginLoadError, load_plugin
from .advice import advise
from .coerce import Problems, coerce
from .errors import ConfigError, Problem
from .locate import LineIndex
from .model import (
    PLUGIN_COMMON_KEYS,
    ChainSection,
    Config,
    DaemonConfig,
    DaemonSection,
    InternalSection,
    ListenSpec,
    PluginEntry,
    parse_listen,
    parse_metrics_listen,
)
from .sendmail_cf import SendmailCfError, class_members, filter_socket, read_cf
from .when import When

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
        dataclasses.replace(entry, mode="observe", observe_why=advice.observe[entry.name])
        if entry.mode == "enforce" and entry.name in advice.observe
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
    for key in data:
        if key not in _TOP_LEVEL:
            problems.append((key, f"unknown section (expected {', '.join(_TOP_LEVEL)})"))
    daemon_table = _table(data, "daemon", problems)
    daemon_raw = coerce(DaemonSection, daemon_table, "daemon", problems)
    cf_path = daemon_table.get("sendmail_cf", DaemonSection().sendmail_cf)
    cf = _SendmailCf(cf_path if isinstance(cf_path, str) else DaemonSection().sendmail_cf)
    specs = _listen(daemon_table.get("listen", DaemonSection().listen), problems, cf)
    internal_raw = coerce(InternalSection, _table(data, "internal", problems), "internal", problems)
    chain = coerce(ChainSection, _table(data, "chain", problems), "chain", problems)
    daemon = _daemon(daemon_raw, specs, problems) if daemon_raw else None
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
            entry = _plugin(name, plugins_tables.get(name, {}), f"chain.plugins[{i}]", problems)
            if entry is not None:
                entries.append(entry)
        for name in plugins_tables:
            if name not in seen:
                problems.append(
                    (f"plugins.{name}", f'configured but not listed in chain.plugins ("{name}")')
                )
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


def _listen(listen: Any, problems: Problems, cf: _SendmailCf) -> list[ListenSpec]:
    specs: list[ListenSpec] = []
    if not isinstance(listen, list):
        return specs  # the type problem is reported by coerce
    if not listen:
        problems.append(("daemon.listen", "at least one listen address is needed"))
    for i, text in enumerate(listen):
        if not isinstance(text, str):
            continue
        try:
            if text.startswith("sendmail:"):
                # The socket of a filter defined in sendmail.cf (its X line).
                name = text.partition(":")[2]
                socket_spec = filter_socket(cf.text(), name)
                spec = parse_listen(socket_spec)
                specs.append(dataclasses.replace(spec, text=f"{text} ({socket_spec})"))
            else:
                specs.append(parse_listen(text))
        except SendmailCfError as exc:
            problems.append((f"daemon.listen[{i}]", f"{cf.path}: {exc}"))
        except ValueError as exc:
            problems.append((f"daemon.listen[{i}]", str(exc)))
    return specs


def _daemon(raw: DaemonSection, specs: list[ListenSpec], problems: Problems) -> DaemonConfig:
    try:
        mode = int(raw.socket_mode, 8)
        if not 0 <= mode <= 0o777:
            raise ValueError
    except ValueError:
        problems.append(
            ("daemon.socket_mode", f'expected an octal mode like "0660", got "{raw.socket_mode}"')
        )
        mode = 0o660
    for key in ("timeout", "shutdown_timeout", "idle_timeout"):
        if getattr(raw, key) <= 0:
            problems.append((f"daemon.{key}", "must be more than 0 seconds"))
    if raw.metrics_listen:
        try:
            host, _ = parse_metrics_listen(raw.metrics_listen)
        except ValueError:
            problems.append(
                (
                    "daemon.metrics_listen",
                    f'expected "IP:PORT" or "[IPv6]:PORT", got "{raw.metrics_listen}"',
                )
            )
        else:
            if not ipaddress.ip_address(host).is_loopback and not raw.metrics_public:
                problems.append(
                    (
                        "daemon.metrics_listen",
                        f"{host} is not a loopback address (set metrics_public = true to allow it)",
                    )
                )
        if raw.workers > 1:
            problems.append(("daemon.metrics_listen", "metrics need workers = 1"))
    if not 1 <= raw.workers <= 256:
        problems.append(("daemon.workers", "must be between 1 and 256"))
    if raw.max_messages < 0:
        problems.append(("daemon.max_messages", "must be 0 (no limit) or more"))
    if not 1 <= raw.backlog <= 65535:
        problems.append(("daemon.backlog", "must be between 1 and 65535"))
    if raw.max_connections < 1:
        problems.append(("daemon.max_connections", "must be at least 1"))
    if raw.spool_threshold < 0:
        problems.append(("daemon.spool_threshold", "must be 0 or more bytes"))
    if not 65535 <= raw.max_packet <= 64 * 1024 * 1024:
        problems.append(("daemon.max_packet", "must be between 65535 and 67108864 bytes"))
    return DaemonConfig(
        listen=tuple(specs),
        socket_mode=mode,
        user=raw.user,
        group=raw.group,
        max_connections=raw.max_connections,
        on_error=raw.on_error,
        timeout=raw.timeout,
        shutdown_timeout=raw.shutdown_timeout,
        log_level=raw.log_level,
        log=raw.log,
        syslog_socket=raw.syslog_socket,
        spool_threshold=raw.spool_threshold,
        max_packet=raw.max_packet,
        idle_timeout=raw.idle_timeout,
        backlog=raw.backlog,
        metrics_listen=raw.metrics_listen,
        metrics_public=raw.metrics_public,
        workers=raw.workers,
        max_messages=raw.max_messages,
        serial=raw.serial,
        sendmail_cf=raw.sendmail_cf,
    )


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


def _plugin(name: str, table: Any, where: str, problems: Problems) -> PluginEntry | None:
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
    common: dict[str, Any] = {k: table[k] for k in PLUGIN_COMMON_KEYS if k in table}
    mode = common.get("mode", "enforce")
    if mode not in ("enforce", "observe"):
        problems.append((f"{prefix}.mode", f'expected "enforce" or "observe", got {mode!r}'))
    on_error = common.get("on_error")
    if on_error is not None and on_error not in ("tempfail", "continue", "reject", "accept"):
        problems.append(
            (
                f"{prefix}.on_error",
                f"expected one of tempfail, continue, reject, accept, got {on_error!r}",
            )
        )
    timeout = common.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        problems.append((f"{prefix}.timeout", f"expected a number of seconds > 0, got {timeout!r}"))
        timeout = None
    when = None
    if isinstance(common.get("when"), dict):
        when = coerce(When, common["when"], f"{prefix}.when", problems)
    elif "when" in common:
        problems.append((f"{prefix}.when", "expected a table"))
    own = {k: v for k, v in table.items() if k not in PLUGIN_COMMON_KEYS}
    options = coerce(cls.Options, own, prefix, problems)
    if options is None:
        return None
    return PluginEntry(
        name=name,
        cls=cls,
        options=options,
        mode=mode,
        on_error=on_error,
        timeout=float(timeout) if timeout is not None else None,
        use=use,
        when=when,
    )
