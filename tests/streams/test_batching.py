"""Batcher over a fake faust stream: batches of what is queued, acks after the handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.streams.batching import Batcher

END = object()


@dataclass(frozen=True)
class Message:
    generation_id: int


@dataclass
class FakeStream:
    """A queue of events like a faust topic channel; ``noack()`` returns itself."""

    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    acked: list[int] = field(default_factory=list)
    clear_after: int | None = None  # a rebalance empties the queue once this one is taken

    @property
    def channel(self) -> Any:
        return SimpleNamespace(queue=self.queue)

    def noack(self) -> FakeStream:
        return self

    async def events(self) -> AsyncIterator[Any]:
        while True:
            await asyncio.sleep(0)  # as faust's stream loop does before each read
            event = await self.queue.get()
            if event is END:
                return
            yield event
            if event.offset == self.clear_after:
                while not self.queue.empty():
                    self.queue.get_nowait()

    async def ack(self, event: Any) -> None:
        self.acked.append(event.offset)

    def put(self, *offsets: int, generation: int = 1) -> None:
        for offset in offsets:
            message = Message(generation)
            self.queue.put_nowait(SimpleNamespace(offset=offset, message=message))


@dataclass
class Recorder:
    stream: FakeStream
    batches: list[list[int]] = field(default_factory=list)
    acked_before: list[list[int]] = field(default_factory=list)
    fail: int = 0

    async def __call__(self, events: Sequence[Any]) -> None:
        self.acked_before.append(list(self.stream.acked))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("broker said no")
        self.batches.append([e.offset for e in events])


def batcher(stream: FakeStream, handler: Recorder, size: int = 3, wait: float = 0.05) -> Batcher:
    return Batcher(SimpleNamespace(consumer_generation_id=1), stream, handler, size, wait)


async def test_queued_records_form_batches_of_at_most_max_size() -> None:
    stream = FakeStream()
    handler = Recorder(stream)
    stream.put(1, 2, 3, 4, 5)
    stream.queue.put_nowait(END)
    await batcher(stream, handler).run()
    # 1-3 fill a batch; 4 and 5 are handled when the stream ends (END was queued after them)
    assert handler.batches == [[1, 2, 3], [4, 5]]
    assert stream.acked == [1, 2, 3, 4, 5]
    assert handler.acked_before == [[], [1, 2, 3]]  # acks follow each handled batch


async def test_a_lone_record_is_handled_on_arrival() -> None:
    stream = FakeStream()
    handler = Recorder(stream)
    task = asyncio.create_task(batcher(stream, handler, size=100, wait=60).run())
    stream.put(7)
    for _ in range(100):
        await asyncio.sleep(0)
    assert handler.batches == [[7]]  # no wait for the batch to fill or for max_wait
    assert stream.acked == [7]
    stream.queue.put_nowait(END)
    await task


async def test_records_of_an_older_generation_are_neither_handled_nor_acked() -> None:
    """Fetched before a rebalance: left for whoever owns the partition now to read again
    from the committed offset, and no longer awaited by faust's consumer."""
    stream = FakeStream()
    handler = Recorder(stream)
    stale = SimpleNamespace(offset=1, message=Message(generation_id=0))
    unacked = {stale.message}
    stream.queue.put_nowait(stale)
    stream.put(2, 3)
    stream.queue.put_nowait(END)
    app = SimpleNamespace(consumer_generation_id=1, consumer=SimpleNamespace(unacked=unacked))
    await Batcher(app, stream, handler, 3, 0.05).run()
    assert handler.batches == [[2, 3]]
    assert stream.acked == [2, 3]
    assert unacked == set()


async def test_a_failed_batch_is_not_acked_and_the_error_reaches_the_agent() -> None:
    stream = FakeStream()
    handler = Recorder(stream, fail=1)
    stream.put(1)
    with pytest.raises(RuntimeError, match="broker said no"):
        await batcher(stream, handler).run()
    assert stream.acked == []


async def test_watchdog_handles_a_batch_left_waiting() -> None:
    """The queue looked non-empty, then emptied (a rebalance clears it): the buffered
    record is handled by the watchdog, not left unacknowledged while faust waits."""
    stream = FakeStream(clear_after=1)
    handler = Recorder(stream)
    stream.put(1, 2)
    task = asyncio.create_task(batcher(stream, handler, size=100, wait=0.05).run())
    await asyncio.sleep(0.01)
    assert handler.batches == []  # 1 buffered: 2 was queued when it was taken
    await asyncio.sleep(0.2)
    assert handler.batches == [[1]]
    assert stream.acked == [1]
    stream.queue.put_nowait(END)
    await task
