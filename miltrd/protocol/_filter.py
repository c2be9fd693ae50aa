"""The filter side: what miltrd serves to Postfix and Sendmail.

Usage, one object per MTA connection::

    conn = FilterConnection()
    conn.receive_data(bytes_from_socket)        # b"" means EOF
    while (event := conn.next_event()) is not NEED_DATA:
        ...                                     # OptionNegotiation -> conn.negotiate(...)
        if conn.reply_owed:                     # Header etc. -> conn.send(Continue())
            sock.send(conn.send(Continue()))

``next_event`` returns a command, ``ConnectionClosed`` or ``NEED_DATA``, and
raises RemoteProtocolError on anything malformed or out of order; after
that the connection is in State.ERROR and every call raises again.
``send`` returns the bytes to write and raises LocalProtocolError when the
response is not allowed now (nothing owed, not negotiated, wrong stage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._commands import (
    COMMAND_CODES,
    DECODERS,
    Abort,
    DefineMacros,
    MtaCommand,
    OptionNegotiation,
    decode_command,
)
from ._constants import (
    MDS_1M,
    MDS_64K,
    ActionFlag,
    Command,
    MacroStage,
    ProtocolFlag,
)
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import NEED_DATA, ConnectionClosed, NeedData
from ._framing import _LEN, ReceiveBuffer
from ._negotiation import Negotiated, build_reply
from ._responses import (
    ACTION_NEEDED,
    FINAL_RESPONSES,
    FIXED_WIRE,
    Continue,
    FilterResponse,
    OptionNegotiationReply,
    Progress,
    ReplaceBody,
    encode_response,
)
from ._state import (
    MESSAGE_STATES,
    TRANSITIONS,
    State,
    after_final_reply,
    finals_by_code,
    legal_finals,
    reply_codes,
    why_illegal,
)

__all__ = ["FilterConnection", "MESSAGE_MACRO_STAGES"]

# Macro packets for these commands describe one message; the rest (CONNECT,
# HELO) describe the connection and survive from message to message.
MESSAGE_MACRO_STAGES = frozenset(
    {
        Command.MAIL,
        Command.RCPT,
        Command.DATA,
        Command.HEADER,
        Command.EOH,
        Command.BODY,
        Command.BODYEOB,
    }
)
_AFTER_MAIL_STAGES = MESSAGE_MACRO_STAGES - {Command.MAIL}


# Command(code) is a Python-level Enum call; a reply asks for it every time.
_COMMANDS: dict[int, Command] = {int(c): c for c in Command}
# What an agreement fixes for the rest of the connection: the agreement,
# the reply's bytes, the commands that get a reply, the final replies
# allowed to each.
_Agreement = tuple[Negotiated, bytes, frozenset[int], dict[int, frozenset[type]]]
_AGREEMENTS: dict[tuple[object, ...], _Agreement] = {}
_UNNEGOTIATED_REPLY_CODES = reply_codes(ProtocolFlag.NONE)

# The hot path compares plain ints and module globals, not Enum attributes.
_MACRO = int(Command.MACRO)
_OPTNEG = int(Command.OPTNEG)
_MAIL = int(Command.MAIL)
_ABORT = int(Command.ABORT)
_QUIT_NC = int(Command.QUIT_NC)
_BODYEOB = int(Command.BODYEOB)
# Commands whose arrival changes more than the state and the reply owed.
_BOOKKEEPING = frozenset({_MACRO, _OPTNEG, _MAIL, _ABORT, _QUIT_NC, _BODYEOB})
_ERROR = State.ERROR
_SESSION = State.SESSION
_unpack_len = _LEN.unpack_from


class FilterConnection:
    """One milter connection, seen from the filter.

    ``reply_owed`` (bool, read only): whether the MTA waits for a reply to
    the last command (``awaiting``). A plain attribute, kept in step with
    ``awaiting``, because a caller asks it for every command.

    ``exhausted`` (bool, read only): True when the last ``next_event`` took
    the last byte received and input has not ended, so that the next call
    would return NEED_DATA; False whenever that is not known. A caller
    draining events may stop on it without that call (most reads carry one
    command, so the call would be one in two).
    """

    def __init__(self, *, max_data_size: int = MDS_1M, min_packet_limit: int = MDS_64K) -> None:
        """``max_data_size``: the largest data size this filter agrees to
        (MDS_256K/MDS_1M are echoed only up to it). ``min_packet_limit``:
        packets up to this size are accepted even if less was negotiated
        (Postfix sends header fields up to its header_size_limit whole).
        """
        self._buffer = ReceiveBuffer()
        self._eof = False
        # The command held back while its implicit Abort is delivered.
        self._pending: MtaCommand | None = None
        self._max_data_size = max_data_size
        self._min_limit = min_packet_limit
        self._limit = max(MDS_64K, min_packet_limit)
        self.state = State.INIT
        self.offer: OptionNegotiation | None = None
        self.negotiated: Negotiated | None = None
        # The commands that get a reply, fixed by the negotiation.
        self._reply_codes = _UNNEGOTIATED_REPLY_CODES
        # Command code -> the final replies allowed to it, once negotiated.
        self._finals: dict[int, frozenset[type]] = {}
        self._awaiting: int | None = None
        self.reply_owed = False  # see the class docstring
        self.exhausted = False  # see the class docstring
        self._replacing_body = False
        self._body_replaced = False
        self._macros: dict[int, dict[str, str]] = {}
        # What macros() returns, kept between changes (None: to be merged
        # again). Never changed in place, so a caller may keep it.
        self._merged: dict[str, str] | None = {}
        # Set when a message ends; the message's macros stay readable until
        # the next packet arrives, then they are dropped.
        self._message_over = False

    # --- properties -----------------------------------------------------

    @property
    def awaiting(self) -> Command | None:
        """The command whose reply is owed, or None."""
        return None if self._awaiting is None else _COMMANDS[self._awaiting]

    @property
    def packet_limit(self) -> int:
        """The largest data part accepted from the MTA right now."""
        return self._limit

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded into commands."""
        return len(self._buffer)

    def macros(self) -> dict[str, str]:
        """All macro values currently defined, later stages overriding.

        The dict is shared until the macros next change (the engine then
        makes a new one): read it, do not change it.
        """
        merged = self._merged
        if merged is None:
            merged = {}
            for values in self._macros.values():
                merged.update(values)
            self._merged = merged
        return merged

    def _define(self, cmd: DefineMacros) -> None:
        stage, values = cmd.command, cmd.macros
        merged = self._merged
        if merged is not None and stage not in self._macros:
            # A new stage goes last in the merge, so its values override
            # all earlier ones: the merged dict need not be made again.
            self._merged = {**merged, **values}
        else:
            self._merged = None
        self._macros[stage] = dict(values)

    # --- input ----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the MTA; ``b""`` signals end of input."""
        self.exhausted = False
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        buf = self._buffer
        if type(data) is bytes and buf._pos >= len(buf._buf) and not buf._size:
            buf._buf = data  # ReceiveBuffer.feed's common case, without the call
            buf._pos = 0
        else:
            buf.feed(data)

    def next_event(self) -> MtaCommand | ConnectionClosed | NeedData:
        """Return the next command, ConnectionClosed, or NEED_DATA.

        Raises RemoteProtocolError for malformed or out-of-order input, and
        LocalProtocolError if called while a reply is still owed.
        """
        if self.state is _ERROR:
            raise RemoteProtocolError("connection already failed")
        if self._awaiting is not None:
            raise LocalProtocolError(f"a reply to {self.awaiting.name} is owed first")  # type: ignore[union-attr]
        if self._pending is not None:
            cmd, self._pending = self._pending, None
            return self._accept(cmd)
        # The common case inline: a whole packet in the current piece, legal
        # now, not an implicit abort. Anything else takes _next_event, the
        # general path, which reads the same packet again from the buffer.
        buf = self._buffer
        raw = buf._buf
        start = buf._pos
        end = len(raw)
        if end - start >= 5:
            (length,) = _unpack_len(raw, start)
            stop = start + 4 + length
            if stop <= end and 0 < length <= self._limit + 1:
                code = raw[start + 4]
                move = TRANSITIONS[self.state].get(code)
                if move is not None and not move[1]:
                    if stop == end:  # let go of a consumed read at once
                        buf._buf = b""
                        buf._pos = 0
                        self.exhausted = not buf._size and not self._eof
                    else:
                        buf._pos = stop
                    if self._message_over:
                        self._message_over = False
                        self._clear_message_macros()
                    try:
                        cmd = DECODERS[code](raw[start + 5 : stop])
                    except ProtocolError:
                        self.state = _ERROR
                        raise
                    self.state = move[0]
                    if code == _MACRO:
                        self._define(cmd)  # type: ignore[arg-type]
                    elif code in _BOOKKEEPING:
                        self._bookkeeping(code, cmd)
                    if code in self._reply_codes:
                        self._awaiting = code
                        self.reply_owed = True
                    return cmd
        elif start >= end and not buf._size and not self._eof:
            return NEED_DATA
        return self._next_event()

    def _next_event(self) -> MtaCommand | ConnectionClosed | NeedData:
        try:
            packet = self._buffer.next_packet(self._limit)
            if packet is None:
                if not self._eof:
                    return NEED_DATA
                if len(self._buffer):
                    raise RemoteProtocolError("connection closed in the middle of a packet")
                self.state = State.CLOSED
                return ConnectionClosed()
            if self.state is State.CLOSED:
                raise RemoteProtocolError("data after QUIT")
            if self._message_over:
                self._message_over = False
                self._clear_message_macros()
            cmd = decode_command(*packet)
            move = TRANSITIONS[self.state].get(packet[0])
            if move is None:
                # Raised outside an except block: an error whose __context__
                # held another traceback would keep the caller's frames alive.
                raise RemoteProtocolError(why_illegal(self.state, packet[0]))
            new_state, implicit_abort = move
        except ProtocolError:
            self.state = State.ERROR
            raise
        self.state = new_state
        if implicit_abort:
            # Deliver Abort first, then the command. Macros sent just before
            # a MAIL belong to the new message and must survive the abort.
            self._pending = cmd
            keep_mail = packet[0] == Command.MAIL
            self._clear_message_macros(keep_mail=keep_mail)
            self._replacing_body = self._body_replaced = False
            return Abort(implicit=True)
        return self._accept(cmd)

    def _accept(self, cmd: MtaCommand) -> MtaCommand:
        code = int(COMMAND_CODES[type(cmd)])
        if code in _BOOKKEEPING:
            self._bookkeeping(code, cmd)
        if code in self._reply_codes:
            self._awaiting = code
            self.reply_owed = True
        return cmd

    def _bookkeeping(self, code: int, cmd: MtaCommand) -> None:
        if code == _MACRO:
            assert isinstance(cmd, DefineMacros)
            self._define(cmd)
        elif code == _OPTNEG:
            assert isinstance(cmd, OptionNegotiation)
            self.offer = cmd
        elif code == _MAIL:
            macros = self._macros
            for stage in _AFTER_MAIL_STAGES:
                if macros.pop(stage, None) is not None:
                    self._merged = None
        elif code == _ABORT:
            self._clear_message_macros()
            self._end_message()
        elif code == _QUIT_NC:
            self._macros.clear()
            self._merged = {}
            self._end_message()
        elif code == _BODYEOB:
            self._end_message()

    def _clear_message_macros(self, *, keep_mail: bool = False) -> None:
        macros = self._macros
        for stage in MESSAGE_MACRO_STAGES:
            if not (keep_mail and stage == _MAIL) and macros.pop(stage, None) is not None:
                self._merged = None

    def _end_message(self) -> None:
        self._message_over = True
        self._replacing_body = False
        self._body_replaced = False

    # --- output ---------------------------------------------------------

    def negotiate(
        self,
        *,
        actions: ActionFlag = ActionFlag.NONE,
        protocol: ProtocolFlag = ProtocolFlag.NONE,
        macros: Mapping[MacroStage, Iterable[str]] | None = None,
        version: int | None = None,
    ) -> bytes:
        """Answer the MTA's OPTNEG; return the bytes of the reply.

        Actions and steps the MTA did not offer are dropped; check
        ``negotiated`` for what was agreed. Raises LocalProtocolError if no
        OPTNEG is waiting for its reply.
        """
        offer = self.offer
        if self._awaiting != _OPTNEG or offer is None:
            raise LocalProtocolError("no option negotiation to answer")
        # An MTA makes the same offer on every connection and a filter the
        # same request: the agreement and its bytes are worked out once.
        lists: tuple[tuple[MacroStage, tuple[str, ...]], ...] | None = None
        if macros:
            lists = tuple(macros.items())  # type: ignore[arg-type]  # one call where the lists are tuples already
            for _stage, names in lists:
                if type(names) is not tuple:
                    lists = tuple((k, tuple(v)) for k, v in macros.items())
                    break
        # The offer by its fields: hashing the dataclass is a call into Python.
        key = (
            offer.version,
            offer.actions,
            offer.protocol,
            actions,
            protocol,
            lists,
            version,
            self._max_data_size,
        )
        known = _AGREEMENTS.get(key)
        if known is None:
            reply, agreed = build_reply(
                offer,
                actions=actions,
                protocol=protocol,
                macros=dict(lists) if lists else None,
                version=version,
                max_data_size=self._max_data_size,
            )
            if len(_AGREEMENTS) >= 64:
                _AGREEMENTS.clear()
            known = _AGREEMENTS[key] = (
                agreed,
                encode_response(reply),
                reply_codes(agreed.protocol),
                finals_by_code(agreed.protocol, lenient_skip=False),
            )
        agreed, out, self._reply_codes, self._finals = known
        self.negotiated = agreed
        self._limit = max(agreed.data_size, self._min_limit)
        self._awaiting = None
        self.reply_owed = False
        return out

    def send(self, response: FilterResponse) -> bytes:
        """Return the bytes for ``response``; LocalProtocolError if illegal now."""
        kind = type(response)
        code = self._awaiting
        legal = self._finals.get(code)  # type: ignore[arg-type]
        if legal is None or kind not in legal:
            return self._send(response)
        # A final reply that is legal now (Continue, Accept, ...): the same
        # as _send's last steps, without its checks for other kinds.
        self._awaiting = None
        self.reply_owed = False
        state = self.state
        if kind is not Continue and state in MESSAGE_STATES:
            state = self.state = after_final_reply(state, code, kind)  # type: ignore[arg-type]
        if state is _SESSION:
            self._message_over = True
            self._replacing_body = False
            self._body_replaced = False
        wire = FIXED_WIRE.get(kind)
        return wire if wire is not None else encode_response(response)

    def _send(self, response: FilterResponse) -> bytes:
        kind = type(response)
        code = self._awaiting
        if code is None:
            raise LocalProtocolError(f"{kind.__name__}: no reply is owed now")
        if kind is OptionNegotiationReply or code == _OPTNEG:
            raise LocalProtocolError("answer option negotiation with negotiate()")
        assert self.negotiated is not None
        if kind is Progress:
            return encode_response(response)
        needed = ACTION_NEEDED.get(kind)
        if needed is not None:
            return self._modification(response, code, needed)
        if kind not in legal_finals(code, self.negotiated.protocol, lenient_skip=False):
            raise LocalProtocolError(
                f"{kind.__name__} is not a valid reply to {Command(code).name}"
            )
        assert kind in FINAL_RESPONSES
        self._awaiting = None
        self.reply_owed = False
        self.state = after_final_reply(self.state, code, kind)
        if self.state is _SESSION:
            self._end_message()
        return encode_response(response)

    def send_all(self, responses: Iterable[FilterResponse]) -> bytes:
        """Encode several responses into one write (no Nagle stalls)."""
        return b"".join(self.send(r) for r in responses)

    def _modification(self, response: FilterResponse, code: int, needed: ActionFlag) -> bytes:
        assert self.negotiated is not None
        name = type(response).__name__
        if code != _BODYEOB:
            raise LocalProtocolError(f"{name} is allowed only at end of message")
        # As ints: a Flag's ``in`` is a call into Python, at every change sent.
        if int(needed) & ~int(self.negotiated.actions):
            raise LocalProtocolError(f"{name} needs action {needed.name}, not negotiated")
        if isinstance(response, ReplaceBody):
            # Postfix wants the replacement body as one contiguous run.
            if self._body_replaced and not self._replacing_body:
                raise LocalProtocolError("body replacement must be one contiguous run")
            self._replacing_body = self._body_replaced = True
            data = bytes(response.data)
            size = min(self.negotiated.data_size, MDS_1M)
            if len(data) <= size:
                return encode_response(response)
            return b"".join(
                encode_response(ReplaceBody(data[i : i + size])) for i in range(0, len(data), size)
            )
        self._replacing_body = False
        return encode_response(response)
