"""Packet framing: a uint32 length (1 + data), a command byte, the data.

The receive buffer keeps the bytes it is fed as they are and cuts packets
out of them; a packet that spans several reads is joined once, when it is
complete, so that each byte of a body chunk is copied once on its way to
the packet's data. A declared length above the bound is refused before a
single byte of it is buffered or allocated.
"""

from __future__ import annotations

import collections
import struct

from ._errors import RemoteProtocolError

__all__ = ["ReceiveBuffer", "frame", "HEADER_SIZE"]

HEADER_SIZE = 5  # 4-byte length + 1-byte code
_LEN = struct.Struct("!I")
_HEAD = struct.Struct("!IB")
# Shared by every buffer that has not needed one of its own (most packets
# arrive whole); never appended to.
_NO_PARTS: collections.deque[bytes] = collections.deque(maxlen=0)


def frame(code: int, data: bytes = b"") -> bytes:
    """Return one packet: length, code byte, data."""
    return _HEAD.pack(len(data) + 1, code) + data


class ReceiveBuffer:
    """Accumulates bytes and cuts them into (code, data) packets.

    ``_buf[_pos:]`` is the oldest unread piece, kept as it was fed (no
    copy); ``_parts`` holds the pieces fed after it while it ends in a
    partial packet, ``_size`` their total length. FilterConnection reads
    ``_buf`` and ``_pos`` directly to cut a packet that lies whole in the
    current piece without a call (see its ``next_event``).
    """

    __slots__ = ("_buf", "_parts", "_pos", "_size")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._parts: collections.deque[bytes] = _NO_PARTS  # a deque of its own once needed
        self._size = 0

    def __len__(self) -> int:
        return len(self._buf) - self._pos + self._size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        # A caller may reuse a bytearray or memoryview: keep a copy of those.
        piece = data if type(data) is bytes else bytes(data)
        if not piece:
            return
        if self._pos >= len(self._buf) and not self._parts:
            self._buf = piece
            self._pos = 0
        else:
            if self._parts is _NO_PARTS:
                self._parts = collections.deque()
            self._parts.append(piece)
            self._size += len(piece)

    def next_packet(self, max_data: int) -> tuple[int, bytes] | None:
        """Return the next complete packet, or None if more bytes are needed.

        Raises RemoteProtocolError for a zero length or a data part longer
        than ``max_data``, as soon as the length field has arrived.
        """
        buf = self._buf
        pos = self._pos
        parts = self._parts
        if pos >= len(buf):
            if not parts:
                return None
            buf = self._buf = parts.popleft()
            pos = self._pos = 0
            self._size -= len(buf)
        if len(buf) - pos + self._size < 4:
            return None
        # The length and code must lie in one piece; pieces are joined
        # for that only when a read ended inside a packet's first 5 bytes.
        while len(buf) - pos < HEADER_SIZE and parts:
            more = parts.popleft()
            self._size -= len(more)
            buf = self._buf = buf[pos:] + more
            pos = self._pos = 0
        (length,) = _LEN.unpack_from(buf, pos)
        if length == 0:
            raise RemoteProtocolError("packet with length 0 (no command code)")
        if length - 1 > max_data:
            raise RemoteProtocolError(
                f"packet of {length - 1} data bytes exceeds the limit of {max_data}"
            )
        stop = pos + 4 + length
        if stop < len(buf):
            self._pos = stop
            return buf[pos + 4], buf[pos + 5 : stop]
        if stop == len(buf):  # let go of a consumed read at once
            self._buf = b""
            self._pos = 0
            return buf[pos + 4], buf[pos + 5 : stop]
        if stop > len(buf) + self._size:
            return None
        # The packet ends in a later piece: join its data from the pieces
        # in one copy; the rest of its last piece becomes the current one.
        views: list[bytes | memoryview] = [memoryview(buf)[pos + 5 :]]
        need = stop - len(buf)
        while True:
            piece = parts.popleft()
            self._size -= len(piece)
            if len(piece) >= need:
                break
            views.append(piece)
            need -= len(piece)
        views.append(memoryview(piece)[:need])
        if need < len(piece):
            self._buf = piece
            self._pos = need
        else:
            self._buf = b""
            self._pos = 0
        return buf[pos + 4], b"".join(views)
