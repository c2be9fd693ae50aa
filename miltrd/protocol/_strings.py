"""NUL-terminated strings on the wire.

Text is decoded as UTF-8 with surrogateescape: 8-bit addresses and header
values from the SMTP peer survive a decode/encode round trip byte for byte.
"""

from __future__ import annotations

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "split_strings",
    "read_strings",
    "join_strings",
    "to_wire",
    "from_wire",
    "check_text",
]


def from_wire(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def to_wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def check_text(text: str, what: str) -> None:
    """Refuse a string that cannot travel as one NUL-terminated field."""
    if not isinstance(text, str):
        raise LocalProtocolError(f"{what} must be str, got {type(text).__name__}")
    if "\0" in text:
        raise LocalProtocolError(f"{what} contains a NUL byte")
    if text.isascii():
        return  # the common case needs no trial encoding
    try:
        to_wire(text)
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} cannot be encoded: {exc}") from None


def split_strings(
    data: bytes, what: str, minimum: int = 1, maximum: int | None = None
) -> list[str]:
    """Split ``data`` into NUL-terminated strings and check their count.

    Raises RemoteProtocolError if the last string is not terminated or the
    count is outside [minimum, maximum].
    """
    if not data:
        parts: list[bytes] = []
    else:
        if data[-1] != 0:
            raise RemoteProtocolError(f"{what}: string not NUL-terminated")
        parts = data[:-1].split(b"\0")
    n = len(parts)
    if n < minimum or (maximum is not None and n > maximum):
        want = str(minimum) if maximum == minimum else f"{minimum}..{maximum or 'n'}"
        raise RemoteProtocolError(f"{what}: expected {want} strings, got {n}")
    return [from_wire(p) for p in parts]


def read_strings(data: bytes, count: int | None = None) -> list[str]:
    """Read NUL-terminated strings the way a tolerant MTA-facing reader must.

    A string ends at its NUL or at the end of the packet; with ``count``,
    exactly that many strings come back, missing ones as "" and anything
    after the last one ignored (libmilter hands C strings to its callbacks,
    so a value ends at its first NUL). Never raises: the packet's framing
    is already known to be sound, so its content cannot be unreadable.
    """
    parts = data.split(b"\0")
    if parts and parts[-1] == b"" and len(parts) > 1:
        parts.pop()  # the terminator of the last string, not an empty string
    if count is not None:
        parts = (parts + [b""] * count)[:count]
    return [from_wire(p) for p in parts]


def join_strings(*texts: str) -> bytes:
    return b"".join(to_wire(t) + b"\0" for t in texts)
