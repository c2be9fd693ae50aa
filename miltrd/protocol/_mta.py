"""The MTA side: what Postfix and Sendmail do, for tests, replay and benchmarks.

Usage::

    mta = MtaConnection()
    sock.send(mta.send(OptionNegotiation(6, mta.offer_actions, mta.offer_protocol)))
    ... read until next_event() gives the OptionNegotiationReply ...
    if not mta.skips(Connect):
        sock.send(mta.send(Connect(...)))
        ... read events until mta.awaiting is None ...

``send`` raises LocalProtocolError when the command may not be sent now
(a reply is still awaited, the filter switched the step off, the version
lacks it, a body chunk is too big). ``next_event`` returns a response,
ConnectionClosed or NEED_DATA and raises RemoteProtocolError when the filter
sends something malformed or not allowed at this point, judged as Postfix
judges it.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._commands import (
    COMMAND_CODES,
    BodyChunk,
    MtaCommand,
    OptionNegotiation,
    encode_command,
)
from ._constants import (
    ACTIONS_BY_VERSION,
    CHUNK_SIZE,
    MAX_VERSION,
    NO_STEP_FLAG,
    PROTOCOL_BY_VERSION,
    ActionFlag,
    Command,
    ProtocolFlag,
)
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import NEED_DATA, ConnectionClosed, NeedData
from ._framing import ReceiveBuffer
from ._negotiation import Negotiated, check_reply
from ._responses import (
    ACTION_NEEDED,
    FilterResponse,
    OptionNegotiationReply,
    Progress,
    Quarantine,
    ReplaceBody,
    decode_response,
)
from ._state import (
    IllegalTransition,
    State,
    advance,
    after_final_reply,
    legal_finals,
    reply_expected,
)

__all__ = ["MtaConnection", "DEFAULT_MTA_LIMIT"]

DEFAULT_MTA_LIMIT = 64 * 1024 * 1024  # Postfix allows 1 GiB; a test tool needs less

# The protocol version that introduced a command (Postfix's per-version masks).
_MIN_VERSION = {Command.UNKNOWN: 3, Command.DATA: 4, Command.QUIT_NC: 6}


class MtaConnection:
    """One milter connection, seen from the MTA."""

    def __init__(
        self,
        *,
        version: int = MAX_VERSION,
        actions: ActionFlag | None = None,
        protocol: ProtocolFlag | None = None,
        max_data_size: int = DEFAULT_MTA_LIMIT,
    ) -> None:
        self.version = version
        self.offer_actions = ACTIONS_BY_VERSION[version] if actions is None else actions
        self.offer_protocol = PROTOCOL_BY_VERSION[version] if protocol is None else protocol
        # An MTA offers MDS bits only when configured to (Milter.maxdatasize).
        if protocol is None:
            self.offer_protocol &= ~(ProtocolFlag.MDS_256K | ProtocolFlag.MDS_1M)
        self._buffer = ReceiveBuffer()
        self._eof = False
        self._limit = max_data_size
        self.state = State.INIT
        self.offer: OptionNegotiation | None = None
        self.negotiated: Negotiated | None = None
        self._awaiting: int | None = None
        self._in_body_replacement = False
        self._body_replaced = False

    def option_negotiation(self) -> OptionNegotiation:
        """The OPTNEG command with this side's offer."""
        return OptionNegotiation(self.version, self.offer_actions, self.offer_protocol)

    @property
    def awaiting(self) -> Command | None:
        """The command whose final reply is still to come, or None."""
        return None if self._awaiting is None else Command(self._awaiting)

    def skips(self, command: type) -> bool:
        """True if the filter asked not to receive this kind of command."""
        code = COMMAND_CODES[command]
        if self.negotiated is None:
            return False
        flag = NO_STEP_FLAG.get(code)
        if flag is not None and flag in self.negotiated.protocol:
            return True
        return self.negotiated.version < _MIN_VERSION.get(code, 0)

    def body_chunks(self, body: bytes) -> Iterator[BodyChunk]:
        """Split a body into chunks of at most MILTER_CHUNK_SIZE bytes."""
        view = memoryview(body)
        for i in range(0, len(body), CHUNK_SIZE):
            yield BodyChunk(bytes(view[i : i + CHUNK_SIZE]))

    # --- output ---------------------------------------------------------

    def send(self, cmd: MtaCommand) -> bytes:
        """Return the bytes of ``cmd``; LocalProtocolError if illegal now."""
        code = COMMAND_CODES[type(cmd)]
        if self._awaiting is not None and code != Command.MACRO:
            raise LocalProtocolError(f"still awaiting the reply to {Command(self._awaiting).name}")
        if self.negotiated is None and code not in (Command.OPTNEG, Command.MACRO):
            raise LocalProtocolError(f"{Command(code).name} before negotiation finished")
        if self.negotiated is not None and self.skips(type(cmd)):
            raise LocalProtocolError(f"the filter did not negotiate {Command(code).name}")
        if isinstance(cmd, BodyChunk):
            size = self.negotiated.data_size if self.negotiated else CHUNK_SIZE
            if len(cmd.data) > size:
                raise LocalProtocolError(f"body chunk of {len(cmd.data)} bytes exceeds {size}")
        try:
            new_state, _implicit = advance(self.state, code)
        except IllegalTransition as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = new_state
        if isinstance(cmd, OptionNegotiation):
            self.offer = cmd
        protocol = self.negotiated.protocol if self.negotiated else ProtocolFlag.NONE
        if reply_expected(code, protocol):
            self._awaiting = code
        if code in (Command.BODYEOB, Command.ABORT, Command.QUIT_NC):
            self._in_body_replacement = self._body_replaced = False
        return encode_command(cmd)

    # --- input ----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the filter; ``b""`` signals end of input."""
        if not data:
            self._eof = True
        else:
            self._buffer.feed(data)

    def next_event(self) -> FilterResponse | ConnectionClosed | NeedData:
        """Return the next response, ConnectionClosed, or NEED_DATA."""
        if self.state is State.ERROR:
            raise RemoteProtocolError("connection already failed")
        try:
            packet = self._buffer.next_packet(self._limit)
            if packet is None:
                if not self._eof:
                    return NEED_DATA
                if len(self._buffer):
                    raise RemoteProtocolError("filter closed in the middle of a packet")
                return ConnectionClosed()
            response = decode_response(*packet)
            self._check(response)
        except ProtocolError:
            self.state = State.ERROR
            raise
        return response

    def _check(self, response: FilterResponse) -> None:
        kind = type(response)
        code = self._awaiting
        if code is None:
            raise RemoteProtocolError(f"{kind.__name__} sent when no reply was due")
        if code == Command.OPTNEG:
            if not isinstance(response, OptionNegotiationReply):
                raise RemoteProtocolError(f"{kind.__name__} in answer to OPTNEG")
            assert self.offer is not None
            self.negotiated = check_reply(self.offer, response)
            self._awaiting = None
            return
        assert self.negotiated is not None
        if kind is Progress:
            return
        needed = ACTION_NEEDED.get(kind)
        if needed is not None:
            # Postfix keeps a quarantine request from any stage.
            if code != Command.BODYEOB and kind is not Quarantine:
                raise RemoteProtocolError(f"{kind.__name__} outside end of message")
            if needed not in self.negotiated.actions:
                raise RemoteProtocolError(f"{kind.__name__} without negotiated {needed.name}")
            if kind is ReplaceBody:
                if self._body_replaced and not self._in_body_replacement:
                    raise RemoteProtocolError("body replacement interleaved with other changes")
                self._in_body_replacement = self._body_replaced = True
            else:
                self._in_body_replacement = False
            return
        if kind not in legal_finals(code, self.negotiated.protocol, lenient_skip=True):
            raise RemoteProtocolError(
                f"{kind.__name__} is not a valid reply to {Command(code).name}"
            )
        self._awaiting = None
        self.state = after_final_reply(self.state, code, kind)
