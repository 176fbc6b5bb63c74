"""``read_to_end``: to the fetch's high watermark, whatever ListOffsets(latest) says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from pipeline.kafka.read import read_to_end

TP = TopicPartition("t", 0)


@dataclass
class FakeConsumer:
    """A partition holding records at ``stored`` offsets (fetched ``per_fetch`` at a
    time, ``empty_every``-th fetch answered empty as the embedded broker sometimes
    does), a fetch high watermark ``high`` and a ListOffsets answer ``listed``."""

    stored: list[int]
    high: int
    listed: int
    per_fetch: int = 2
    empty_every: int = 0
    position_: int = 0
    fetches: int = 0
    seen_high: int | None = field(default=None)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.listed)

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        self.seen_high = self.high
        if self.empty_every and self.fetches % self.empty_every == 0:
            return {}
        batch = [o for o in self.stored if o >= self.position_][: self.per_fetch]
        if not batch:
            return {}
        self.position_ = batch[-1] + 1
        return {TP: [Record(o) for o in batch]}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.seen_high

    async def position(self, tp: TopicPartition) -> int:
        return self.position_


@dataclass(frozen=True)
class Record:
    offset: int


async def test_reads_past_a_list_offsets_answer_that_lags() -> None:
    """ListOffsets says 1 (frozen, as on S3 storage) while 10 records are stored: all 10
    are read, through empty fetches on the way."""
    consumer = FakeConsumer(stored=list(range(10)), high=10, listed=1, empty_every=3)
    records = await read_to_end(consumer, [TP])
    assert [r.offset for r in records] == list(range(10))


async def test_a_never_written_offset_at_the_end_stops_the_read_after_quiet_fetches() -> None:
    """Offsets 8 and 9 were numbered but never written (the broker was killed writing
    them): the read returns the 8 records after ``quiet_fetches`` empty fetches."""
    consumer = FakeConsumer(stored=list(range(8)), high=10, listed=10)
    records = await read_to_end(consumer, [TP], quiet_fetches=3)
    assert [r.offset for r in records] == list(range(8))
    assert consumer.fetches == 4 + 3  # four with records, then three empty


class BrokerGone(FakeConsumer):
    """Fetches answer nothing (aiokafka logs the errors and returns empty) and a
    ListOffsets request fails, as when the broker went away mid-read."""

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        return {}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.fetches:
            raise KafkaTimeoutError
        return dict.fromkeys(tps, self.listed)


async def test_a_broker_gone_mid_read_is_an_error_not_the_end_of_the_topic() -> None:
    """Empty fetches because the broker is down end in the broker's error, never in a
    short read that the agent would take for all of its cursors."""
    consumer = BrokerGone(stored=list(range(8)), high=10, listed=10)
    with pytest.raises(KafkaTimeoutError):
        await read_to_end(consumer, [TP], quiet_fetches=3)


class SlowFirstFetch(FakeConsumer):
    """The first fetches come back empty before any fetch response set the high
    watermark (a fetch still under way, a broker busy after a SIGKILL nearby)."""

    async def getmany(self, *tps: TopicPartition, **kw: Any) -> dict[TopicPartition, list[Any]]:
        if self.fetches < 5:
            self.fetches += 1
            return {}
        return await super().getmany(*tps, **kw)


async def test_empty_fetches_before_any_answer_are_not_the_end_of_the_topic() -> None:
    """Five empty fetches with no high watermark yet, then the records: all are read
    (a read that stopped there returned nothing: seen as an empty changelog in a test)."""
    consumer = SlowFirstFetch(stored=list(range(6)), high=6, listed=6)
    records = await read_to_end(consumer, [TP], quiet_fetches=3)
    assert [r.offset for r in records] == list(range(6))


class NeverAnswers(FakeConsumer):
    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        return {}


async def test_no_fetch_answering_at_all_is_an_error() -> None:
    """A broker that answers ListOffsets but no fetch: a timeout, not an empty topic."""
    consumer = NeverAnswers(stored=list(range(6)), high=6, listed=6)
    with pytest.raises(KafkaTimeoutError):
        await read_to_end(consumer, [TP], quiet_fetches=3)
    assert consumer.fetches == 60
