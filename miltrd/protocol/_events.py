"""Events that are not packets: end of input, and "feed me more bytes"."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["ConnectionClosed", "NeedData", "NEED_DATA"]


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection cleanly (at a packet boundary)."""


class NeedData(enum.Enum):
    """``next_event()`` found no complete packet: feed more bytes first."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final[Literal[NeedData.NEED_DATA]] = NeedData.NEED_DATA
