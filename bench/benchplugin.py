"""The reference work for the benchmark: observe every phase, add one header.

``Reference`` decides in every phase it hooks (like a libmilter filter that
answers every callback). ``Declared`` does the same work but declares that
it only decides at end of message, so miltrd negotiates the other phases
as no-reply: that is how a miltrd plugin is meant to be written.
"""

from __future__ import annotations

from miltrd.api import Action, Connection, Message, Phase, Plugin, Verdict


class Reference(Plugin):
    actions = Action.ADD_HEADERS

    async def on_connect(self, conn: Connection) -> Verdict | None:
        return None

    async def on_helo(self, conn: Connection, name: str) -> Verdict | None:
        return None

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        return None

    async def on_data(self, msg: Message) -> Verdict | None:
        return None

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        return None

    async def on_eoh(self, msg: Message) -> Verdict | None:
        return None

    async def on_body(self, msg: Message, chunk: bytes) -> Verdict | None:
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.add_header("X-Bench", "miltrd")
        return None


class Declared(Reference):
    decides = Phase.EOM


class Observer(Plugin):
    """Looks at everything and decides nothing: every phase hooked, the
    body kept (``needs = Phase.BODY``, spooled past spool_threshold, as
    dkim and defang keep it), no verdict and no change. miltrd negotiates
    every phase as no-reply, so a large body streams in without a round
    trip: the chain on which a big message costs the daemon the most."""

    needs = Phase.HEADER | Phase.BODY
    decides = Phase.NONE

    async def on_connect(self, conn: Connection) -> Verdict | None:
        return None

    async def on_helo(self, conn: Connection, name: str) -> Verdict | None:
        return None

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        return None

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        return None

    async def on_body(self, msg: Message, chunk: bytes) -> Verdict | None:
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        return None
