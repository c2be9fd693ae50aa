"""The validated configuration, as frozen objects: one dataclass per section.

Each section's dataclass is what ``coerce`` builds from the TOML table, so
its fields, types and defaults are the section's keys. A field whose type
has ``toml_type`` and ``from_toml`` (``ListenSpec``, ``FileMode``) is
written in the file as that TOML type and parsed into the field's type.
``[internal]`` is the exception that proves it: the file form
(``InternalSection``) becomes the plugin API's ``InternalRules``, which
also takes domains from sendmail.cf and must not know the file.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..api import ConfigPath, InternalRules, Plugin
from .errors import Problem
from .when import When

__all__ = [
    "ListenSpec",
    "parse_listen",
    "parse_metrics_listen",
    "FileMode",
    "LogLevel",
    "InternalSection",
    "ChainSection",
    "DaemonConfig",
    "PluginCommon",
    "PluginEntry",
    "Config",
    "OnError",
    "Mode",
    "PLUGIN_COMMON_KEYS",
]


class _Choice(str, enum.Enum):
    """A config choice: compares, prints and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class OnError(_Choice):
    """What a message gets when a hook raises or times out (``on_error``)."""

    TEMPFAIL = "tempfail"  # 451 4.3.0: the sender retries, nothing is lost
    CONTINUE = "continue"  # as if the plugin had said nothing
    REJECT = "reject"  # 550 5.7.1
    ACCEPT = "accept"  # as if the plugin had accepted


LogLevel = Literal["debug", "info", "warning", "error"]


class Mode(_Choice):
    """How a plugin's verdicts and changes are used (``mode``)."""

    ENFORCE = "enforce"
    OBSERVE = "observe"  # logged as "would ...", never sent to the MTA


@dataclass(frozen=True)
class ListenSpec:
    """Where to listen, in Sendmail's X-line syntax."""

    toml_type: ClassVar[type] = str

    kind: Literal["unix", "inet", "inet6"]
    text: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def from_toml(cls, text: str) -> ListenSpec:
        """``parse_listen``; a ``sendmail:NAME`` form is resolved by the loader."""
        return parse_listen(text)

    @property
    def all_addresses(self) -> bool:
        return self.kind != "unix" and self.host in ("", "0.0.0.0", "::", "*")


_INET = re.compile(r"(\d+)(?:@(.+))?\Z")


def parse_listen(text: str) -> ListenSpec:
    """Parse ``local:/path``, ``unix:/path``, ``inet:PORT@HOST``, ``inet6:PORT@HOST``.

    Raises ValueError with a message saying what is wrong.
    """
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f'"{text}": expected local:/path, inet:PORT@HOST or inet6:PORT@HOST')
    if scheme in ("local", "unix"):
        if not rest.startswith("/"):
            raise ValueError(f'"{text}": a unix socket needs an absolute path')
        return ListenSpec("unix", text, path=rest)
    if scheme in ("inet", "inet6"):
        m = _INET.match(rest)
        if not m:
            hint = ""
            if re.fullmatch(r".+:\d+", rest):
                phost, _, pport = rest.rpartition(":")
                hint = f" (that is Postfix's syntax; miltrd uses {scheme}:{pport}@{phost})"
            raise ValueError(f'"{text}": expected {scheme}:PORT@HOST{hint}')
        port = int(m.group(1))
        if not 0 < port < 65536:
            raise ValueError(f'"{text}": port {port} is out of range')
        host = (m.group(2) or "").strip("[]")
        if scheme == "inet" and ":" in host:
            raise ValueError(f'"{text}": an IPv6 address needs inet6:')
        return ListenSpec(scheme, text, host=host, port=port)  # type: ignore[arg-type]
    raise ValueError(f'"{text}": unknown socket type {scheme!r} (local, unix, inet, inet6)')


def parse_metrics_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9187`` or ``[::1]:9187`` -> (host, port); ValueError if not."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.rpartition(":")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range")
    return host, number


class FileMode(int):
    """A file mode, written in the config as an octal string ("0660")."""

    toml_type: ClassVar[type] = str

    @classmethod
    def from_toml(cls, text: str) -> FileMode:
        """ValueError unless ``text`` is an octal mode from 0 to 0777."""
        try:
            mode = int(text, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ValueError(f'expected an octal mode like "0660", got "{text}"')
        return cls(mode)


_LISTEN = (ListenSpec.from_toml("inet:8894@127.0.0.1"),)
_SYSLOG_SOCKET = ConfigPath("/dev/log")
_SENDMAIL_CF = ConfigPath("/etc/mail/sendmail.cf")
_SOCKET_MODE = FileMode(0o660)


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: listeners, limits, logging, process model."""

    listen: tuple[ListenSpec, ...] = _LISTEN
    socket_mode: FileMode = _SOCKET_MODE
    user: str | None = None
    group: str | None = None
    max_connections: int = 512
    on_error: OnError = OnError.TEMPFAIL
    timeout: float = 4.0  # seconds per hook; two plugins on one step stay below Sendmail's R:10s
    shutdown_timeout: float = 30.0  # seconds to drain at SIGTERM
    log_level: LogLevel = "info"
    log: Literal["stderr", "syslog"] = "stderr"
    syslog_socket: ConfigPath = _SYSLOG_SOCKET  # relative paths: to the config file's directory
    spool_threshold: int = 1024 * 1024  # bytes of body kept in memory
    max_packet: int = 1024 * 1024 - 1  # bytes
    idle_timeout: float = 3600.0  # seconds
    backlog: int = 128
    metrics_listen: str = ""  # e.g. "127.0.0.1:9187" (Prometheus text format)
    metrics_public: bool = False  # allow metrics_listen on a non-loopback address
    workers: int = 1  # processes serving the same listeners
    max_messages: int = 0  # a worker retires after this many messages (0: never)
    serial: bool = False  # serve one connection at a time (debugging a plugin)
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"  # "auto": uvloop if installed
    sendmail_cf: ConfigPath = _SENDMAIL_CF


@dataclass(frozen=True)
class InternalSection:
    networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    domains: list[str] = field(default_factory=list)
    authenticated: bool = True
    sendmail_class: str = ""  # also take domains from this sendmail.cf class, e.g. "w"
    authserv_id: str = ""  # Authentication-Results name (RFC 8601); "" = the MTA's j macro


@dataclass(frozen=True)
class ChainSection:
    plugins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PluginCommon:
    """The keys every ``[plugins.NAME]`` table may carry besides the plugin's own."""

    use: str | None = None  # "module:Class", or another plugin's name
    mode: Mode = Mode.ENFORCE
    on_error: OnError | None = None  # None: the daemon's
    timeout: float | None = None  # seconds; None: the daemon's
    when: When | None = None


# Keys every [plugins.NAME] table may carry besides the plugin's own.
PLUGIN_COMMON_KEYS = tuple(PluginCommon.__dataclass_fields__)


@dataclass(frozen=True)
class PluginEntry:
    name: str
    cls: type[Plugin]
    options: Any
    mode: Mode = Mode.ENFORCE
    on_error: OnError | None = None
    timeout: float | None = None
    use: str | None = None
    when: When | None = None
    observe_why: str = ""  # why enforce was turned into observe (a placeholder)


@dataclass(frozen=True)
class Config:
    path: str
    daemon: DaemonConfig
    internal: InternalRules
    plugins: tuple[PluginEntry, ...]
    lines: Any = field(default=None, compare=False, repr=False)  # LineIndex of the text
    warnings: tuple[Problem, ...] = ()  # what check and run warn about (config.advice)

    def problem(self, path: str, message: str) -> Problem:
        """A Problem located in this config's file."""
        line = self.lines.line_of(path) if self.lines is not None else None
        return Problem(path, message, line, self.path)
