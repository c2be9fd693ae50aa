"""Changes a plugin may ask for. They reach the MTA at end of message.

Header names must be RFC 5322 field names (at most 76 characters). Header
values are made valid when built (``wiretext.fold_header``): line breaks
and control characters (which could come from the SMTP peer) become
spaces, so a plugin that copies peer data into a header can never inject a
header line of its own; non-ASCII words become RFC 2047 encoded words; the
value is folded so that no line passes 998 octets. Addresses are cleaned
of control characters the same way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, ClassVar

from .phases import Action
from .wiretext import MAX_NAME, clean_text, fold_header

__all__ = [
    "Change",
    "HeaderAddition",
    "HeaderInsertion",
    "HeaderChange",
    "RecipientAddition",
    "RecipientDeletion",
    "SenderChange",
    "BodyReplacement",
    "Quarantining",
    "clean_text",
]

_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")  # printable ASCII except ':'


def _check_name(name: str) -> None:
    if not _FIELD_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid header field name")
    if len(name) > MAX_NAME:
        raise ValueError(f"header field name {name!r} is longer than {MAX_NAME} characters")


def _set(obj: object, attr: str, value: object) -> None:
    object.__setattr__(obj, attr, value)


@dataclass(frozen=True, slots=True)
class HeaderAddition:
    action: ClassVar[Action] = Action.ADD_HEADERS  # what the plugin must declare

    name: str
    value: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        _set(self, "value", fold_header(self.name, self.value))


@dataclass(frozen=True, slots=True)
class HeaderInsertion:
    action: ClassVar[Action] = Action.ADD_HEADERS  # what the plugin must declare

    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.index < 0:
            raise ValueError("header index must be >= 0")
        _set(self, "value", fold_header(self.name, self.value))


@dataclass(frozen=True, slots=True)
class HeaderChange:
    """Change the index-th (from 1) field called name; "" deletes it."""

    action: ClassVar[Action] = Action.CHANGE_HEADERS  # what the plugin must declare

    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.index < 1:
            raise ValueError("header occurrence index counts from 1")
        _set(self, "value", fold_header(self.name, self.value))


@dataclass(frozen=True, slots=True)
class RecipientAddition:
    action: ClassVar[Action] = Action.ADD_RECIPIENTS  # what the plugin must declare

    address: str
    esmtp_args: str = ""

    def __post_init__(self) -> None:
        _set(self, "address", clean_text(self.address).strip())
        _set(self, "esmtp_args", clean_text(self.esmtp_args))
        if not self.address or " " in self.address:
            raise ValueError(f"{self.address!r} is not a recipient address")


@dataclass(frozen=True, slots=True)
class RecipientDeletion:
    """The recipient exactly as the MTA gave it in RCPT (with <>)."""

    action: ClassVar[Action] = Action.DELETE_RECIPIENTS  # what the plugin must declare

    address: str


@dataclass(frozen=True, slots=True)
class SenderChange:
    action: ClassVar[Action] = Action.CHANGE_SENDER  # what the plugin must declare

    address: str
    esmtp_args: str | None = None

    def __post_init__(self) -> None:
        _set(self, "address", clean_text(self.address).strip())
        if " " in self.address:
            raise ValueError(f"{self.address!r} is not a sender address")
        if self.esmtp_args is not None:
            _set(self, "esmtp_args", clean_text(self.esmtp_args))


@dataclass(frozen=True, slots=True)
class BodyReplacement:
    """The new body (CRLF line ends).

    A small body is ``data``. A large one is ``file``, a seekable binary
    file holding ``size`` bytes from offset 0, so that it is never held in
    memory whole; ``chunks()`` reads either form a piece at a time and
    ``read()`` returns all of it (for tests and small bodies).
    """

    action: ClassVar[Action] = Action.REPLACE_BODY  # what the plugin must declare

    data: bytes = b""
    file: IO[bytes] | None = field(default=None, compare=False, repr=False)
    size: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.file is None:
            _set(self, "size", len(self.data))
        elif self.size < 0:
            raise ValueError("a body given as a file needs its size")

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The body in pieces of at most ``size`` bytes."""
        if self.file is None:
            for i in range(0, len(self.data), size):
                yield self.data[i : i + size]
            return
        pos = 0
        while pos < self.size:
            with self._lock:
                self.file.seek(pos)
                piece = self.file.read(min(size, self.size - pos))
            if not piece:
                return
            pos += len(piece)
            yield piece

    def read(self) -> bytes:
        """The whole replacement body (CRLF line ends) as bytes."""
        return b"".join(self.chunks())


@dataclass(frozen=True, slots=True)
class Quarantining:
    action: ClassVar[Action] = Action.QUARANTINE  # what the plugin must declare

    reason: str

    def __post_init__(self) -> None:
        _set(self, "reason", clean_text(self.reason))


Change = (
    HeaderAddition
    | HeaderInsertion
    | HeaderChange
    | RecipientAddition
    | RecipientDeletion
    | SenderChange
    | BodyReplacement
    | Quarantining
)
