"""Opportunistic batches over a faust stream, with manual acknowledgements.

A processor handles every record that is already waiting in its stream's queue
together (up to ``max_size``): one wait for all their output acknowledgements instead of
one per record. It never waits for a batch to fill: the moment the queue is empty
the batch is handled, so at light load each record is handled on arrival, as it would
be record by record.

Why not faust's ``take_events``: it buffers events it has not acknowledged while the
stream waits for more, and during a rebalance faust's ``wait_empty`` waits, with no
limit, for every started event to be acknowledged while flow is suspended, and can
stall a rebalance after a worker is killed. Here a batch is handled before the stream is asked
for an event that is not already queued; the one window left (the queue emptied by a
rebalance between that check and the next read) is closed by a watchdog that handles a
batch older than ``max_wait`` seconds.

Events are acknowledged only after the handler returned (their outputs acknowledged by
Kafka), so faust commits no offset whose effects could be lost. Events fetched under
an older consumer generation (a rebalance happened meanwhile) are neither handled nor
acknowledged: whoever owns their partition now reads them again from the committed
offset, and acknowledging them could let that offset pass records nobody handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Any]], Awaitable[None]]


class Batcher:
    """Feeds ``handler`` lists of faust events from ``stream`` until the stream ends."""

    def __init__(self, app: Any, stream: Any, handler: Handler, max_size: int, max_wait: float):
        self.app = app
        self.stream = stream
        self.handler = handler
        self.max_size = max_size
        self.max_wait = max_wait
        self._buffer: list[Any] = []
        self._since = 0.0
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        stream = self.stream.noack()
        ready = _queue_of(stream)
        watchdog = asyncio.create_task(self._watch(stream))
        try:
            async for event in stream.events():
                async with self._lock:
                    if not self._buffer:
                        self._since = time.monotonic()
                    self._buffer.append(event)
                    if len(self._buffer) >= self.max_size or ready is None or ready.empty():
                        await self._flush(stream)
            async with self._lock:
                if self._buffer:  # the stream ended with records still buffered
                    await self._flush(stream)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _watch(self, stream: Any) -> None:
        while True:
            await asyncio.sleep(self.max_wait / 2)
            if self._buffer and time.monotonic() - self._since >= self.max_wait:
                async with self._lock:
                    if self._buffer:
                        try:
                            await self._flush(stream)
                        except Exception:  # kept for the next tick; the stream loop raises
                            log.exception("batch handler failed; retrying")

    async def _flush(self, stream: Any) -> None:
        events, self._buffer = self._buffer, []
        generation = self.app.consumer_generation_id
        live: list[Any] = []
        stale: list[Any] = []
        for event in events:
            (live if event.message.generation_id == generation else stale).append(event)
        try:
            if live:
                await self.handler(live)
        except BaseException:
            self._buffer = events + self._buffer  # unacknowledged: handled again, or replayed
            raise
        for event in live:
            await stream.ack(event)
        if stale:
            self._forget(stale)

    def _forget(self, stale: list[Any]) -> None:
        """Neither handle nor acknowledge: an acknowledged offset may be committed, and
        these records must be read again from the committed offset by whoever owns their
        partition now. Faust must not wait for them either (its ``wait_empty`` at the next
        rebalance would wait forever)."""
        unacked = getattr(self.app.consumer, "unacked", None)
        for event in stale:
            if unacked is not None:
                unacked.discard(event.message)
        log.warning("rebalance: %d records fetched before it left to be read again", len(stale))


def _queue_of(stream: Any) -> Any:
    """The stream's input queue (``empty()``), or None when it has none to look at."""
    queue = getattr(getattr(stream, "channel", None), "queue", None)
    return queue if callable(getattr(queue, "empty", None)) else None
