"""KafkaSink over a fake aiokafka producer: record batches per partition, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given
from hypothesis import strategies as st

from pipeline.streams.sink import KafkaSink, Record, key_hash


@dataclass
class FakeProducer:
    """What KafkaSink uses of ``aiokafka.AIOKafkaProducer``; batches of ``batch_size``."""

    partitions: dict[str, int]
    batch_size: int = 16384
    sent: list[tuple[str, int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]]] = field(
        default_factory=list
    )
    ends: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset

    @property
    def client(self) -> Any:
        async def wait_on_metadata(_topic: str) -> None:
            return None

        cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(self.partitions[t])))
        return SimpleNamespace(cluster=cluster, _wait_on_metadata=wait_on_metadata)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        records = DefaultRecordBatch(bytes(batch._build()))
        self.sent.append(
            (topic, partition, [(r.key, r.value, list(r.headers)) for r in records])  # type: ignore[misc]
        )
        base = self.ends.get((topic, partition), 0)
        self.ends[topic, partition] = base + len(self.sent[-1][2])
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=base))  # RecordMetadata: the batch's base
        return done


@given(st.binary(max_size=80), st.integers(1, 12))
def test_key_partition_is_aiokafkas_default_partitioner(key: bytes, partitions: int) -> None:
    """A keyed record goes to the partition aiokafka's own send() would choose."""
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key, all_partitions, all_partitions)
    assert all_partitions[key_hash(key) % partitions] == expected


async def test_one_batch_per_partition_in_order() -> None:
    """Records of one partition share a batch, in the order given; explicit partitions kept."""
    producer = FakeProducer({"out": 2, "log": 4})
    keys = [b"k%d" % n for n in range(10)]
    records = [Record("out", k, b"v" + k) for k in keys]
    records.append(Record("log", b"x", b"y", [("reason", b"r")], partition=3))
    await KafkaSink(lambda: producer).send_all(records)
    by_tp = {(topic, part): rows for topic, part, rows in producer.sent}
    assert by_tp[("log", 3)] == [(b"x", b"y", [("reason", b"r")])]
    for part in (0, 1):
        expected = [k for k in keys if key_hash(k) % 2 == part]
        assert [k for k, _, _ in by_tp[("out", part)]] == expected
    assert len(producer.sent) == 3


async def test_full_batches_continue_in_a_new_one() -> None:
    """A batch that is full is sent as is and the next records start another, in order;
    a record larger than the batch size goes alone."""
    producer = FakeProducer({"out": 1}, batch_size=1000)
    values = [bytes([65 + n]) * 300 for n in range(7)] + [b"L" * 5000, b"end"]
    await KafkaSink(lambda: producer).send_all([Record("out", b"k", v) for v in values])
    assert len(producer.sent) > 2
    assert [v for _, _, rows in producer.sent for _, v, _ in rows] == values
    assert any(rows == [(b"k", b"L" * 5000, [])] for _, _, rows in producer.sent)


async def test_nothing_to_send_touches_no_producer() -> None:
    """An empty call returns at once (the producer may not have started)."""

    def absent() -> Any:
        raise AssertionError("no producer wanted")

    await KafkaSink(absent).send_all([])


async def test_each_record_gets_its_own_offset() -> None:
    """send_all returns the offset of every record, in the order given: the batch's base
    offset plus the record's place in it (the correlator stores the changelog's)."""
    producer = FakeProducer({"out": 2}, batch_size=1000)
    sink = KafkaSink(lambda: producer)
    await sink.send_all([Record("out", b"k", b"x", partition=1)])
    values = [bytes([65 + n]) * 300 for n in range(7)]
    records = [Record("out", b"k", v, partition=1) for v in values]
    records.insert(3, Record("out", b"j", b"other", partition=0))
    offsets = await sink.send_all(records)
    assert offsets == [1, 2, 3, 0, 4, 5, 6, 7]
    assert len(producer.sent) > 3  # several full batches on partition 1
