"""IMAP work slots shared by every mailbox of a process, with a lane for live mail.

A first sync of thousands of mailboxes queues them all for the ``max_concurrent_syncs``
slots, one batch at a time (FIFO). Measured with ``bench.ingest --live``: a message
APPENDed to an IDLE mailbox during a 20,000-message backfill waited behind that whole
queue for each of its rounds (SELECT, sizes, fetch), p99 7.5 s instead of ~0.56 s.
:class:`Slots` serves two queues: a waiter in the ``urgent`` lane (a mailbox past its
first sync, woken by IDLE or a poll) takes the next free slot before any backfill
waiter; backfill waiters keep FIFO order among themselves. Live mail is a trickle next
to a backfill, so the backfill is slowed by at most the live work itself::

    async with slots.lane(urgent=True):
        ...
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

__all__ = ["Lane", "Slots"]


class Slots:
    """A counting semaphore whose waiters in the urgent lane are woken first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot")
        self._free = size
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()

    def lane(self, *, urgent: bool) -> Lane:
        return Lane(self, urgent)

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._normal)

    async def acquire(self, *, urgent: bool = False) -> None:
        if self._free > 0 and not self._urgent and (urgent or not self._normal):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # woken, then cancelled: hand the slot on
            else:
                queue.remove(waiter)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the slot passes straight to it
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Lane:
    """``async with`` one slot, in one lane (reusable)."""

    def __init__(self, slots: Slots, urgent: bool) -> None:
        self._slots, self._urgent = slots, urgent

    async def __aenter__(self) -> None:
        await self._slots.acquire(urgent=self._urgent)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._slots.release()
