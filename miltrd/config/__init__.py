"""Loading and validating miltrd's TOML configuration."""

from .errors import ConfigError, Problem
from .load import DEFAULT_PATH, load, load_text
from .model import (
    Config,
    DaemonConfig,
    FileMode,
    ListenSpec,
    LogLevel,
    Mode,
    OnError,
    PluginEntry,
    WorkerCount,
    parse_listen,
    parse_metrics_listen,
)

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "FileMode",
    "LogLevel",
    "Mode",
    "OnError",
    "ListenSpec",
    "PluginEntry",
    "Problem",
    "WorkerCount",
    "load",
    "load_text",
    "parse_listen",
    "parse_metrics_listen",
]
