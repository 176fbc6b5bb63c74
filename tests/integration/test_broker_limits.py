"""Known limitations of the embedded broker (Tansu 0.6) on durable S3 storage, pinned.

No pectrack code runs here: plain aiokafka clients against ``tansu broker`` on a
``moto_server`` store. Each test asserts what the broker does today, so it fails the day
the broker changes and the workaround can be reconsidered. What pectrack does about it
is in ``docs/reliability.md`` ("The embedded broker under SIGKILL").
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from pipeline.dev.embedded import EmbeddedBroker, LocalS3

pytestmark = pytest.mark.integration

TOPIC = "limits"
TP = TopicPartition(TOPIC, 0)
BATCH = 10


async def produce_batches(producer: AIOKafkaProducer, tag: str, batches: int) -> dict[int, bytes]:
    """``batches`` batches of ``BATCH`` records to partition 0, each acknowledged (acks=all)
    before the next is sent; returns offset -> value of every acknowledged record."""
    acked: dict[int, bytes] = {}
    for b in range(batches):
        values = [f"{tag}-{b}-{i}".encode() for i in range(BATCH)]
        sent = [await producer.send(TOPIC, v, partition=0) for v in values]
        for value, meta in zip(values, await asyncio.gather(*sent), strict=True):
            acked[meta.offset] = value
    return acked


async def read_back(bootstrap: str) -> tuple[dict[int, bytes], int | None, int]:
    """Every record of partition 0 (read until the fetch's high watermark), that high
    watermark, and what ListOffsets(latest) answers."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        listed = (await consumer.end_offsets([TP]))[TP]
        consumer.assign([TP])
        consumer.seek(TP, 0)
        got: dict[int, bytes] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for record in (await consumer.getmany(TP, timeout_ms=500)).get(TP, []):
                got[record.offset] = record.value or b""
            high = consumer.highwater(TP)
            if high is not None and await consumer.position(TP) >= high:
                break
        return got, consumer.highwater(TP), listed
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TP])
        return await consumer.committed(TP)
    finally:
        await consumer.stop()


async def test_s3_storage_keeps_acked_records_across_sigkill_but_list_offsets_stops_advancing() -> (
    None
):
    """One long-lived producer (acks=all, no idempotence) writes batches, the broker is
    SIGKILLed and restarted, the producer writes again. Every acknowledged record is read
    back unchanged, the fetch's high watermark is one past the last acknowledged offset,
    and a consumer group's committed offset survives the kill; but ListOffsets(latest)
    never answers the end: at best the last batch's base offset + 1, often an early value
    that stopped advancing (Apache Kafka answers the high watermark). Readers that stop
    at ListOffsets(latest) miss acknowledged records."""
    with LocalS3() as s3, EmbeddedBroker(s3=s3) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, linger_ms=20
        )
        await producer.start()
        try:
            acked = await produce_batches(producer, "before", 3)
            group = AIOKafkaConsumer(
                bootstrap_servers=broker.bootstrap, group_id="g", enable_auto_commit=False
            )
            await group.start()
            try:
                group.assign([TP])
                await group.commit({TP: OffsetAndMetadata(25, "")})
            finally:
                await group.stop()
            broker.kill()
            broker.start()
            acked |= await produce_batches(producer, "after", 3)
        finally:
            await producer.stop()
        got, high, listed = await read_back(broker.bootstrap)
        group_offset = await committed(broker.bootstrap, "g")
    end = max(acked) + 1
    assert {o: v for o, v in acked.items() if got.get(o) != v} == {}  # nothing acked lost
    assert high == end == 6 * BATCH
    assert group_offset == 25
    # the limitation: ListOffsets(latest) never answers the end: at best the last
    # batch's base offset + 1 (the memory storage's quirk too), and in most runs here an
    # earlier value that stopped advancing (e.g. 1 after 35 records; 51 of 60 in one CI run)
    assert listed <= end - BATCH + 1, listed
