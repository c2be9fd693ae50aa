"""Small plugins used by the tests (loaded with ``use = "tests.testplugins:..."``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Literal

from miltrd.api import (
    ACCEPT,
    DISCARD,
    Action,
    Connection,
    Message,
    Phase,
    Plugin,
    Verdict,
    reject,
    tempfail,
)


@dataclass(frozen=True)
class RecipientList:
    recipients: list[str] = field(default_factory=list)


class RejectRecipient(Plugin):
    Options = RecipientList

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        if recipient.lower() in (r.lower() for r in self.options.recipients):
            return reject(f"<{recipient}>: no such user here", code=550, xcode="5.1.1")
        return None


@dataclass(frozen=True)
class HeaderOptions:
    name: str = "X-Test"
    value: str = "added by miltrd"


class AddHeader(Plugin):
    Options = HeaderOptions
    actions = Action.ADD_HEADERS

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.add_header(self.options.name, self.options.value)
        return None


@dataclass(frozen=True)
class SenderList:
    senders: list[str] = field(default_factory=list)


class TempfailSender(Plugin):
    Options = SenderList

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        if sender.lower() in self.options.senders:
            return tempfail("greylisted, try again later", code=451, xcode="4.7.1")
        return None


@dataclass(frozen=True)
class RaiseOptions:
    phase: Literal["mail", "eom"] = "eom"
    only_sender: str = ""


class Raiser(Plugin):
    Options = RaiseOptions

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        if self.options.phase == "mail" and (
            sender == self.options.only_sender or not self.options.only_sender
        ):
            raise RuntimeError("plugin bug at mail")
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        if self.options.phase == "eom" and (
            msg.sender == self.options.only_sender or not self.options.only_sender
        ):
            raise RuntimeError("plugin bug at eom")
        return None


@dataclass(frozen=True)
class SlowOptions:
    seconds: float = 1.0


class Slow(Plugin):
    Options = SlowOptions
    # Set by an in-process test: set when a message is inside the slow hook.
    inside: asyncio.Event | None = None

    async def on_eom(self, msg: Message) -> Verdict | None:
        if Slow.inside is not None:
            Slow.inside.set()
        await asyncio.sleep(self.options.seconds)
        return None


class AcceptAtMail(Plugin):
    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        return ACCEPT


class DiscardAll(Plugin):
    async def on_eom(self, msg: Message) -> Verdict | None:
        return DISCARD


class UpperBody(Plugin):
    actions = Action.REPLACE_BODY
    needs = Phase.BODY

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.replace_body(msg.body.read().upper())
        return None


class ReversedLinesFromFile(Plugin):
    """Replaces the body with its lines reversed, given as a file (the
    streamed form of a replacement body)."""

    actions = Action.REPLACE_BODY
    needs = Phase.BODY

    async def on_eom(self, msg: Message) -> Verdict | None:
        import tempfile

        with tempfile.TemporaryFile() as f:
            for line in reversed(msg.body.read().split(b"\r\n")):
                f.write(line + b"\r\n")
            f.seek(0)
            msg.replace_body(f)
        return None


class BodyLength(Plugin):
    """Records the body length it sees at end of message in a header."""

    actions = Action.ADD_HEADERS
    needs = Phase.BODY

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.add_header("X-Body-Length", str(msg.body.size))
        msg.add_header("X-Body-Start", msg.body.read()[:10].decode(errors="replace"))
        return None


class Recorder(Plugin):
    """Remembers every hook call in a class-level list (for chain tests)."""

    calls: list[tuple[str, str]] = []
    needs = Phase.HEADER

    async def on_connect(self, conn: Connection) -> Verdict | None:
        Recorder.calls.append((self.name, "connect"))
        return None

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        Recorder.calls.append((self.name, f"mail {sender}"))
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        Recorder.calls.append((self.name, f"rcpt {recipient}"))
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        Recorder.calls.append((self.name, f"eom {len(msg.headers)} headers"))
        return None

    async def on_abort(self, msg: Message) -> None:
        Recorder.calls.append((self.name, "abort"))


class Concurrency(Plugin):
    """Records how many end-of-message hooks ran at the same time."""

    current = 0
    peak = 0

    async def on_eom(self, msg: Message) -> Verdict | None:
        Concurrency.current += 1
        Concurrency.peak = max(Concurrency.peak, Concurrency.current)
        await asyncio.sleep(0.3)
        Concurrency.current -= 1
        return None


@dataclass(frozen=True)
class EchoOptions:
    header: str = "X-A"


class EchoHeader(Plugin):
    """Copies the value it received for one header into X-Echo."""

    Options = EchoOptions
    actions = Action.ADD_HEADERS
    needs = Phase.HEADER

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.add_header("X-Echo", msg.header(self.options.header) or "(none)")
        return None


class SwapContent(Plugin):
    """Changes a header, adds one and replaces the body, all at end of message."""

    actions = Action.ADD_HEADERS | Action.CHANGE_HEADERS | Action.REPLACE_BODY

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.change_header("Subject", "swapped")
        msg.replace_body(b"new body\r\n")
        msg.add_header("X-Swapped", "yes")
        return None


class Snapshot(Plugin):
    """Records, at end of message, the message it sees and the one received."""

    seen: list[dict[str, object]] = []
    needs = Phase.HEADER | Phase.BODY

    async def on_eom(self, msg: Message) -> Verdict | None:
        Snapshot.seen.append(
            {
                "subject": msg.header("Subject"),
                "headers": [name for name, _ in msg.headers],
                "body": msg.body.read(),
                "received_headers": list(msg.received_headers),
                "received_body": msg.received_body.read(),
            }
        )
        return None


@dataclass(frozen=True)
class VerdictOptions:
    verdict: Literal["continue", "reject", "tempfail", "discard"] = "continue"


class Verdicts(Plugin):
    """Answers the configured verdict at end of message."""

    Options = VerdictOptions

    async def on_eom(self, msg: Message) -> Verdict | None:
        match self.options.verdict:
            case "reject":
                return reject("refused by test", code=550, xcode="5.7.1")
            case "tempfail":
                return tempfail("try later (test)", code=451, xcode="4.7.1")
            case "discard":
                return DISCARD
        return None


@dataclass(frozen=True)
class ResultOptions:
    method: str = "dkim"
    result: str = "pass"
    properties: dict[str, str] = field(default_factory=dict)
    declare: bool = True


class PublishResult(Plugin):
    """Publishes one authentication result at end of message."""

    Options = ResultOptions
    actions = Action.AUTH_RESULTS

    async def on_eom(self, msg: Message) -> Verdict | None:
        if self.options.result:  # "" publishes nothing
            msg.publish_auth_result(
                self.options.method, self.options.result, self.options.properties
            )
        return None


class PublishUndeclared(Plugin):
    """Publishes a result without declaring Action.AUTH_RESULTS (a contract error)."""

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.publish_auth_result("dkim", "pass")
        return None


class ReadResults(Plugin):
    """Adds X-Earlier-Results: what earlier plugins published (method=result by plugin)."""

    actions = Action.ADD_HEADERS

    async def on_eom(self, msg: Message) -> Verdict | None:
        seen = ", ".join(f"{r.plugin}:{r.method}={r.result}" for r in msg.auth_results)
        msg.add_header("X-Earlier-Results", seen or "none")
        return None


@dataclass(frozen=True)
class WatchOptions:
    fail_at_header: bool = False


class HeaderWatcher(Plugin):
    """Watches headers without deciding there (so headers get no reply);
    records its end-of-message calls."""

    Options = WatchOptions
    decides = Phase.EOM
    actions = Action.ADD_HEADERS
    eom_calls = 0

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        if self.options.fail_at_header:
            raise RuntimeError("plugin bug at header")
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        HeaderWatcher.eom_calls += 1
        msg.add_header("X-Watched", "yes")
        return None


@dataclass(frozen=True)
class WaitOptions:
    seconds: float = 0.02
    # How each hook waits: "sleep", "thread" (run_in_executor), "timeout"
    # (asyncio.timeout around a sleep), "timeout0" (asyncio.timeout(0)),
    # "wait_for", "yield" (sleep(0)).
    how: str = "sleep"
    at: list[str] = field(default_factory=lambda: ["mail", "header", "body", "eom"])
    raise_at: str = ""  # a hook that raises after it has waited
    times: int = 0  # wait in this many hook calls only (0: in every one)


class Waiter(Plugin):
    """Waits in its hooks (as DNS or a worker thread would) without deciding
    before end of message, so headers and body get no reply and the MTA
    pipelines them. Records what it saw in ``Waiter.seen``: (phase, value,
    queue id, conn id, whether the current task is the one the hook began in)."""

    Options = WaitOptions
    decides = Phase.EOM
    actions = Action.ADD_HEADERS
    needs = Phase.BODY
    seen: list[tuple[str, str, str, str, bool]] = []

    async def _wait(self, phase: str, value: str) -> None:
        from miltrd.logs import conn_id, queue_id

        before = asyncio.current_task()
        if phase in self.options.at:
            self.waits = getattr(self, "waits", 0) + 1
        if phase in self.options.at and not (0 < self.options.times < self.waits):
            how = self.options.how
            seconds = self.options.seconds
            if how == "sleep":
                await asyncio.sleep(seconds)
            elif how == "yield":
                await asyncio.sleep(0)
            elif how == "thread":
                import time

                await asyncio.get_running_loop().run_in_executor(None, time.sleep, seconds)
            elif how == "timeout":
                async with asyncio.timeout(seconds * 20):
                    await asyncio.sleep(seconds)
                try:  # one that does expire, caught inside the hook
                    async with asyncio.timeout(seconds / 2):
                        await asyncio.sleep(seconds * 20)
                except TimeoutError:
                    pass
            elif how == "timeout0":  # a budget already spent: expires at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0):
                        await asyncio.sleep(seconds * 20)
                await asyncio.sleep(seconds)
            elif how == "wait_for":
                await asyncio.wait_for(asyncio.sleep(seconds), seconds * 20)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.sleep(seconds * 20), seconds / 2)
            else:
                raise ValueError(how)
        same = asyncio.current_task() is before
        Waiter.seen.append((phase, value, queue_id.get(), conn_id.get(), same))
        logging.getLogger("miltrd.test").info("waiter: %s %s", phase, value)
        if phase == self.options.raise_at:
            raise RuntimeError(f"plugin bug after waiting at {phase}")

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        await self._wait("mail", sender)
        return None

    async def on_rcpt(self, msg: Message, recipient: str) -> Verdict | None:
        await self._wait("rcpt", recipient)
        return None

    async def on_header(self, msg: Message, name: str, value: str) -> Verdict | None:
        await self._wait("header", f"{name}: {value}")
        return None

    async def on_body(self, msg: Message, chunk: bytes) -> Verdict | None:
        await self._wait("body", str(len(chunk)))
        return None

    async def on_eom(self, msg: Message) -> Verdict | None:
        await self._wait("eom", "")
        from miltrd.logs import conn_id

        me = conn_id.get()
        headers = sum(1 for s in Waiter.seen if s[0] == "header" and s[3] == me)
        msg.add_header("X-Waited-Headers", str(headers))
        msg.add_header("X-Waited-Body", str(msg.body.size))
        return None

    async def on_abort(self, msg: Message) -> None:
        Waiter.seen.append(("abort", "", "", "", True))


class SwitchInterval(Plugin):
    """Adds X-Switch-Interval: the GIL switch interval (seconds) the daemon
    runs with, as a plugin's thread meets it."""

    actions = Action.ADD_HEADERS

    async def on_eom(self, msg: Message) -> Verdict | None:
        msg.add_header("X-Switch-Interval", repr(sys.getswitchinterval()))
        return None
