"""End offsets as faust's table recovery needs them, on the embedded broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.kafka.tls import KafkaTls, client_options
from pipeline.streams.faustapp import true_end_offsets
from tests.support.kafka import running_broker
from tests.support.proxy import ProxiedBroker
from tests.support.tls import TlsPki

pytestmark = pytest.mark.integration


@contextmanager
def kafka(tls: bool, directory: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A broker's bootstrap and the client options to reach it: plaintext, or only
    through a TLS front end that wants a client certificate."""
    if not tls:
        with running_broker() as broker:
            yield broker.bootstrap, {}
        return
    pki = TlsPki(directory)
    with ProxiedBroker(tls=pki.server_context(require_client=True)) as broker:
        yield broker.bootstrap, client_options(KafkaTls(pki.ca, pki.client_cert, pki.client_key))


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
async def test_end_offsets_count_every_record_of_the_last_batch(tls: bool, tmp_path: Path) -> None:
    """Ten records written as one batch: the broker's ListOffsets says 1 (the batch's
    base offset + 1); the corrected end is 10, and an empty partition stays 0. Over TLS
    the extra reader uses the worker's TLS options."""
    with kafka(tls, tmp_path) as (bootstrap, client):
        admin = AIOKafkaAdminClient(**client, bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("changelog", 2, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            **client, bootstrap_servers=bootstrap, linger_ms=50, enable_idempotence=False
        )
        await producer.start()
        try:
            sent = [await producer.send("changelog", b"v%d" % n, partition=0) for n in range(10)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        tps = [TopicPartition("changelog", 0), TopicPartition("changelog", 1)]
        consumer = AIOKafkaConsumer(**client, bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            reported = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        corrected = await true_end_offsets(bootstrap, reported, client=client)
    assert reported[tps[0]] < 10  # the quirk this corrects (Apache Kafka would say 10)
    assert corrected == {tps[0]: 10, tps[1]: 0}
