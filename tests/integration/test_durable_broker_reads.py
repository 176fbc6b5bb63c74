"""pectrack's readers see every acknowledged record on the embedded broker's S3 storage.

ListOffsets(latest) stops advancing there (``test_broker_limits.py``); the agent's cursor
load and the worker's changelog end offsets must not stop at it.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.config import KafkaSettings
from agents.cursor import FolderCursor
from agents.publish import CursorStore, KafkaPublisher, read_cursors
from agents.records import OutRecord
from pipeline.dev.embedded import EmbeddedBroker, LocalS3
from pipeline.streams.faustapp import true_end_offsets

pytestmark = pytest.mark.integration


async def test_agent_reads_its_last_cursor_after_a_broker_sigkill() -> None:
    """The agent's long-lived producer commits 60 cursors per folder, the broker is
    SIGKILLed and restarted half-way: a restarted agent reads the last cursor of each
    folder, not an older one. (A reader stopping at ListOffsets(latest) gets here only
    because this topic fits in one fetch; the agent now reads to the fetch's high
    watermark, so a larger cursor topic is read to its end too.)"""
    with LocalS3() as s3, EmbeddedBroker(s3=s3) as broker:
        settings = KafkaSettings(bootstrap=broker.bootstrap, idempotence=False, partitions=1)
        publisher = KafkaPublisher(settings, max_record_bytes=1024 * 1024)
        await publisher.start()
        try:
            store = CursorStore(publisher, {})
            for uid in range(1, 61):
                if uid == 31:
                    broker.kill()
                    broker.start()
                for folder in ("INBOX", "Sent"):
                    await store.commit("box-1", folder, FolderCursor(7, uid))
        finally:
            await publisher.stop()
        cursors = await read_cursors(broker.bootstrap, settings.cursor_topic)
    assert cursors == {b"box-1/INBOX": FolderCursor(7, 60), b"box-1/Sent": FolderCursor(7, 60)}


async def test_changelog_end_offsets_reach_the_last_acknowledged_record_after_a_sigkill() -> None:
    """A worker's long-lived producer writes 40 batches of 10 changelog records (20 KB
    each, more than one fetch holds), with a broker SIGKILL half-way: the end offset the
    table recovery reads to is the last acknowledged record + 1 (it was the end of the
    first fetch after a stale ListOffsets(latest), so the table lost the rest)."""
    tp = TopicPartition("changelog", 0)
    with LocalS3() as s3, EmbeddedBroker(s3=s3) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("changelog", 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=20
        )
        await producer.start()
        last = -1
        try:
            for batch in range(40):
                if batch == 20:
                    broker.kill()
                    broker.start()
                sent = [
                    await producer.send("changelog", b"x" * 20_000, partition=0) for _ in range(10)
                ]
                last = max(meta.offset for meta in await asyncio.gather(*sent))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            listed = await consumer.end_offsets([tp])
        finally:
            await consumer.stop()
        corrected = await true_end_offsets(broker.bootstrap, listed)
    assert corrected == {tp: last + 1}


def stored_batches(s3: LocalS3, topic: str, partition: int) -> int:
    """How many record batches the embedded broker stored for one partition (one S3
    object each, ``.../topics/<topic>/partitions/<partition>/records/<offset>.batch``)."""
    import boto3  # noqa: PLC0415 - comes with moto[server], needed by this test only

    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id="embedded",
        aws_secret_access_key="embedded",
        region_name="eu-south-1",
    )
    marker = f"/topics/{topic}/partitions/{partition:010d}/records/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
    return sum(1 for page in pages for o in page.get("Contents", []) if marker in o["Key"])


async def test_agent_publishes_an_imap_batch_as_one_stored_batch() -> None:
    """Twenty 18 KB messages published together (one IMAP batch) are stored as one
    record batch, not one per message: the embedded broker's S3 storage reads a
    partition slower the more batch objects it holds (600 single-record batches: the
    last 40 records took over 60 s to read; 30 batches of 20: one fetch)."""
    with LocalS3() as s3, EmbeddedBroker(s3=s3) as broker:
        settings = KafkaSettings(bootstrap=broker.bootstrap, idempotence=False, partitions=1)
        publisher = KafkaPublisher(settings, max_record_bytes=1024 * 1024)
        await publisher.start()
        try:
            records = [
                OutRecord(settings.topic, b"box-1", bytes([n]) * 18_000, ()) for n in range(20)
            ]
            await publisher.publish(records)
        finally:
            await publisher.stop()
        assert stored_batches(s3, settings.topic, 0) == 1
