"""End offsets as faust's table recovery needs them, on the embedded broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.streams.faustapp import true_end_offsets
from tests.support.kafka import running_broker

pytestmark = pytest.mark.integration


async def test_end_offsets_count_every_record_of_the_last_batch() -> None:
    """Ten records written as one batch: the broker's ListOffsets says 1 (the batch's
    base offset + 1); the corrected end is 10, and an empty partition stays 0."""
    with running_broker() as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("changelog", 2, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, linger_ms=50, enable_idempotence=False
        )
        await producer.start()
        try:
            sent = [await producer.send("changelog", b"v%d" % n, partition=0) for n in range(10)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        tps = [TopicPartition("changelog", 0), TopicPartition("changelog", 1)]
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            reported = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        corrected = await true_end_offsets(broker.bootstrap, reported)
    assert reported[tps[0]] < 10  # the quirk this corrects (Apache Kafka would say 10)
    assert corrected == {tps[0]: 10, tps[1]: 0}
