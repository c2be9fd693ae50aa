"""Packet framing: a uint32 length (1 + data), a command byte, the data.

The receive buffer is a bytearray with a read offset, compacted lazily, so
feeding many small pieces stays linear. A declared length above the bound
is refused before a single byte of it is buffered or allocated.
"""

from __future__ import annotations

import struct

from ._errors import RemoteProtocolError

__all__ = ["ReceiveBuffer", "frame", "HEADER_SIZE"]

HEADER_SIZE = 5  # 4-byte length + 1-byte code
_LEN = struct.Struct("!I")


def frame(code: int, data: bytes = b"") -> bytes:
    """Return one packet: length, code byte, data."""
    return _LEN.pack(len(data) + 1) + bytes((code,)) + data


class ReceiveBuffer:
    """Accumulates bytes and cuts them into (code, data) packets.

    While no partial packet is pending, the bytes given to ``feed`` are
    kept as they are (no copy into the buffer); only a trailing partial
    packet is copied into a bytearray to be completed by the next feed.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos >= len(self._buf):
            self._buf = data if isinstance(data, bytes) else bytes(data)
            self._pos = 0
            return
        if isinstance(self._buf, bytes):
            self._buf = bytearray(memoryview(self._buf)[self._pos :])
            self._pos = 0
        elif self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_packet(self, max_data: int) -> tuple[int, bytes] | None:
        """Return the next complete packet, or None if more bytes are needed.

        Raises RemoteProtocolError for a zero length or a data part longer
        than ``max_data``, as soon as the length field has arrived.
        """
        buf = self._buf
        avail = len(buf) - self._pos
        if avail < 4:
            return None
        (length,) = _LEN.unpack_from(buf, self._pos)
        if length == 0:
            raise RemoteProtocolError("packet with length 0 (no command code)")
        if length - 1 > max_data:
            raise RemoteProtocolError(
                f"packet of {length - 1} data bytes exceeds the limit of {max_data}"
            )
        if avail < 4 + length:
            return None
        start = self._pos + 4
        code = buf[start]
        if isinstance(buf, bytes):
            data = buf[start + 1 : start + length]
        else:
            # Slicing a bytearray copies, and bytes() would copy again: a
            # body chunk (up to 64 KiB, or 1 MiB) is copied once this way.
            data = bytes(memoryview(buf)[start + 1 : start + length])
        self._pos = start + length
        if self._pos == len(buf):
            self._buf = b""
            self._pos = 0
        return code, data
