"""An MTA side and a filter side wired together in memory (h11's ConnectionPair idea)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from miltrd.protocol import (
    NEED_DATA,
    ActionFlag,
    FilterConnection,
    FilterResponse,
    MacroStage,
    MtaCommand,
    MtaConnection,
    OptionNegotiation,
    OptionNegotiationReply,
    ProtocolFlag,
)


class Pair:
    def __init__(
        self,
        mta: MtaConnection | None = None,
        filter_side: FilterConnection | None = None,
    ) -> None:
        self.mta = mta or MtaConnection()
        self.filter = filter_side or FilterConnection()

    def negotiate(
        self,
        *,
        actions: ActionFlag = ActionFlag.NONE,
        protocol: ProtocolFlag = ProtocolFlag.NONE,
        macros: Mapping[MacroStage, Iterable[str]] | None = None,
    ) -> OptionNegotiationReply:
        self.filter.receive_data(self.mta.send(self.mta.option_negotiation()))
        event = self.filter.next_event()
        assert isinstance(event, OptionNegotiation)
        self.mta.receive_data(
            self.filter.negotiate(actions=actions, protocol=protocol, macros=macros)
        )
        reply = self.mta.next_event()
        assert isinstance(reply, OptionNegotiationReply)
        assert self.mta.negotiated == self.filter.negotiated
        return reply

    def mta_send(self, cmd: MtaCommand) -> None:
        self.filter.receive_data(self.mta.send(cmd))

    def send_only(self, cmd: MtaCommand) -> object:
        """Send a command that gets no reply; return what the filter saw."""
        self.mta_send(cmd)
        event = self.filter.next_event()
        assert not self.filter.reply_owed
        assert self.mta.awaiting is None
        return event

    def exchange(self, cmd: MtaCommand, *responses: FilterResponse) -> list[object]:
        """Send ``cmd``, answer with ``responses``; return what the MTA decoded."""
        self.mta_send(cmd)
        assert self.filter.next_event() == cmd
        self.mta.receive_data(self.filter.send_all(responses))
        got = []
        while (event := self.mta.next_event()) is not NEED_DATA:
            got.append(event)
        assert self.mta.awaiting is None
        assert not self.filter.reply_owed
        return got
