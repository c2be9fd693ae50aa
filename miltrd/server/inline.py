"""Serve an MTA connection from the event loop's read callback.

With asyncio streams every milter packet costs a task wake-up, a second
loop turn (one more ``epoll_wait``) and a StreamReader copy before the
engine sees it; a milter round trip is only a few dozen microseconds of
Python, so that hand-over was a large part of miltrd's CPU per message
(bench/RESULTS-2026-12-01.md). Here ``data_received`` feeds the engine and
runs the commands at once, with the connection's own task entered as the
current task and its context active, so that hooks see the same
``asyncio.current_task()``, context variables and ``asyncio.timeout`` as
when the task runs them. Only when a hook really waits (DNS, a worker
thread, a full socket buffer) does the rest continue in that task; bytes
that arrive meanwhile are buffered in the engine, and reading pauses past
a bound, as a StreamReader would.

Entering a task from a callback uses ``asyncio.tasks._enter_task`` and
``_leave_task`` (present from Python 3.7 to 3.14; the eager task factory of
3.12 does the same). Where they are missing, or on Python 3.10 (no
``create_task(context=)``), connections are served by the task, reading
through this protocol as through a StreamReader.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .connection import MilterHandler

__all__ = ["InlineProtocol", "INLINE"]

_tasks: Any = asyncio.tasks
INLINE = (
    sys.version_info >= (3, 11)
    and callable(getattr(_tasks, "_enter_task", None))
    and callable(getattr(_tasks, "_leave_task", None))
)

# Bound once: the module attribute lookups would run at every read.
_enter_task: Any = getattr(_tasks, "_enter_task", None)
_leave_task: Any = getattr(_tasks, "_leave_task", None)

# Bytes buffered while a hook waits before the socket stops being read
# (a StreamReader's default limit is 64 KiB, paused at twice that).
PAUSE_AT = 256 * 1024


class InlineProtocol(asyncio.Protocol):
    """One accepted MTA connection.

    ``entry(protocol)`` runs as the connection's task (the daemon's
    bookkeeping); it either reads raw bytes with :meth:`read` (as from a
    StreamReader) or hands a handler to :meth:`serve`, after which commands
    run inline in :meth:`data_received`.
    """

    # The loop that serves it, when whoever makes the protocols knows it (the
    # daemon does): connection_made then need not ask for the running loop,
    # a getpid() system call on Python 3.11.
    loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, entry: Callable[[InlineProtocol], Coroutine[Any, Any, None]]) -> None:
        self._entry = entry
        self.handler: MilterHandler | None = None
        self._raw = bytearray()  # before a handler is attached
        self._eof = False
        self._lost: BaseException | None = None
        self._busy = True  # the task is running commands (or none attached yet)
        self._waiter: asyncio.Future[None] | None = None  # the idle task waits here
        self._handed: Any = None  # what _wake gave the task to do
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._wrote = False  # a reply was written since the last read

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio.Transport in spirit; uvloop's transports do not subclass it.
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._loop = loop = self.loop or asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        # The task runs in this context and so do the inline commands: a
        # context variable set by either is seen by the other.
        self._ctx = contextvars.copy_context()
        self.task: asyncio.Task[None]
        if sys.version_info >= (3, 11):
            self.task = loop.create_task(self._entry(self), context=self._ctx)
        else:  # pragma: no cover - Python 3.10: not inline (see INLINE)
            self.task = loop.create_task(self._entry(self))

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None:
            self._raw += data
            self._wake_reader()
            if len(self._raw) > PAUSE_AT:
                self._pause_reading()
            return
        handler.note_input()
        handler.fc.receive_data(data)
        if self._busy:  # a hook waits: the task takes these commands later
            handler.ack_now()
            if handler.fc.buffered > PAUSE_AT:
                self._pause_reading()
            return
        self._wrote = False
        self._run_inline()
        if not self._wrote or self.transport.get_write_buffer_size():
            self._ack_unanswered()

    def eof_received(self) -> bool:
        self._end_of_input()
        return True  # keep the transport: replies owed may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if exc is None:
            self._end_of_input()
            return
        self._lost = exc
        if self.handler is None:
            self._wake_reader()
        elif not self._busy:
            self._busy = True
            self._wake(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # --- writing: the part of asyncio.StreamWriter a MilterHandler uses ------------
    # (the protocol is its own writer: a separate object would make a
    # reference cycle that only the garbage collector frees)

    def write(self, data: bytes) -> None:
        # A reply to a connection already lost (the MTA reset it while a
        # hook waited) is dropped, as asyncio's transports drop it; uvloop's
        # raise RuntimeError on a closed handle, before connection_lost runs.
        if self.transport.is_closing():
            return
        self.transport.write(data)
        self._wrote = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        closed = self.closed
        if not closed.done():
            # Nothing but this waits on ``closed``: no need for shield()'s
            # second future to keep a cancellation from reaching it.
            await closed

    async def drain(self) -> None:
        """Return once the transport's write buffer is below its high mark."""
        if self.transport.is_closing():
            await asyncio.sleep(0)  # as StreamWriter.drain: let connection_lost run
            return
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # --- raw reading (before or instead of inline serving) ----------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered if -1); b"" at end of input.

        Raises the OSError that ended the connection, if one did.
        """
        while not self._raw and not self._eof:
            if self._lost is not None:
                raise self._lost
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if n < 0 or n >= len(self._raw):
            data = bytes(self._raw)
            self._raw.clear()
        else:
            data = bytes(self._raw[:n])
            del self._raw[:n]
        if self._read_paused and len(self._raw) <= PAUSE_AT:
            self._resume_reading()
        return data

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- inline serving -------------------------------------------------------------

    async def serve(self, handler: MilterHandler) -> None:
        """Serve the connection with ``handler`` until it ends (run by the task).

        Commands run in data_received from here on; this task takes over
        only what waits, and ends the session.
        """
        writer = self
        loop = self._loop
        async with handler.session(writer, loop):
            try:
                self.handler = handler
                self._wrote = False
                read = bool(self._raw)
                if read:
                    handler.note_input()
                    handler.fc.receive_data(bytes(self._raw))
                    self._raw.clear()
                if self._eof:
                    handler.fc.receive_data(b"")
                more = await handler.drain_events(writer)
                if read and (not self._wrote or self.transport.get_write_buffer_size()):
                    self._ack_unanswered()
                while more:
                    if self._lost is not None:
                        raise self._lost
                    self._resume_reading()
                    self._waiter = waiter = loop.create_future()
                    self._busy = False
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        if not self._hand_cancel_to_hook():
                            raise
                    finally:
                        self._waiter = None
                    item, self._handed = self._handed, None
                    if isinstance(item, BaseException):
                        raise item
                    more = await item if item is not False else False
                    if more:  # what arrived while a hook waited
                        more = await handler.drain_events(writer)
            finally:
                self._busy = True  # nothing runs inline after the session
                self.handler = None  # no cycle left for the garbage collector
                self._resume_reading()

    def _run_inline(self) -> None:
        """Run the buffered commands now, as the connection's task."""
        handler = self.handler
        assert handler is not None
        self._busy = True
        loop, task = self._loop, self.task
        try:
            _enter_task(loop, task)
        except RuntimeError:  # another task is current: let ours run them
            self._wake(handler.drain_events(self))
            return
        try:
            value: Any = self._ctx.run(handler.drain_now, self)
        except BaseException as exc:  # handed to the task, which ends the session
            value = exc
        finally:
            _leave_task(loop, task)
        if value is True:
            self._busy = False  # all done: wait for more bytes
            return
        # False (the MTA ended the connection), an exception, or the rest
        # of a hook that waits: the task carries on with it.
        self._wake(value)

    def _ack_unanswered(self) -> None:
        """After the commands of a read have run, when no reply went out
        (the caller asks; a reply carries the ACK): ACK at once.

        An MTA without TCP_NODELAY (Sendmail) holds its next small write
        until the last one is ACKed; a read that gets no reply (macros, a
        no-reply phase, a hook that waits) would otherwise be ACKed only
        when the kernel's delayed-ACK timer fires, up to 40 ms later
        (shared/MTA-NOTES.md). Re-arming TCP_QUICKACK sends that ACK now.
        Where a reply was written, the same setsockopt would send an ACK of
        its own on top of the reply: a second trip through the TCP stack
        per command, for nothing.
        """
        handler = self.handler
        if handler is not None and not self.transport.is_closing():
            handler.ack_now()

    def _wake(self, item: Any) -> None:
        """Hand ``item`` to the task: what the task is to do next."""
        self._handed = item
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _hand_cancel_to_hook(self) -> bool:
        """The task was cancelled while a hook's rest was being handed to it.

        A hook that waited inline may cancel its task before the task has
        taken the rest over: ``asyncio.timeout(0)`` (a budget already spent)
        cancels at once, and so may shutdown in that loop turn. Had the task
        run the hook, the hook would get that cancellation at the await it is
        suspended in; so it does here: the task is cancelled again (the count
        kept, so that asyncio.timeout turns it into TimeoutError) and awaits
        the rest. False when nothing awaitable was handed over (a plain
        cancellation of an idle connection).
        """
        item = self._handed
        if item is None or item is False or isinstance(item, BaseException):
            return False
        task = self.task
        task.uncancel()
        task.cancel()
        return True

    def _end_of_input(self) -> None:
        if self._eof:
            return
        self._eof = True
        handler = self.handler
        if handler is None:
            self._wake_reader()
            return
        handler.fc.receive_data(b"")
        if not self._busy:
            self._run_inline()

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.transport.is_closing():
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()
