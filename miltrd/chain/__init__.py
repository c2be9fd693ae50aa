"""The chain: runs the configured plugins per phase and combines their verdicts."""

from .record import MessageRecord
from .runtime import CORE_MACROS, CORE_OBSERVES, Declared, LoadedPlugin, Runtime, build_runtime
from .session import ChainSession, EomResult, on_error_verdict

__all__ = [
    "CORE_MACROS",
    "CORE_OBSERVES",
    "ChainSession",
    "EomResult",
    "LoadedPlugin",
    "MessageRecord",
    "Declared",
    "Runtime",
    "build_runtime",
    "on_error_verdict",
]
