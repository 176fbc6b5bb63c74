"""KafkaPublisher: a mailbox's records as whole batches land where send() puts that key."""

from __future__ import annotations

import pytest

from agents.config import KafkaSettings
from agents.publish import BATCH_PATH_MAX_RECORD, KafkaPublisher
from agents.records import OutRecord
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration


async def test_batches_and_single_records_of_a_key_share_its_partition_in_order(
    broker: EmbeddedBroker,
) -> None:
    settings = KafkaSettings(bootstrap=broker.bootstrap, idempotence=False, partitions=6)
    publisher = KafkaPublisher(settings, max_record_bytes=2 * BATCH_PATH_MAX_RECORD)
    await publisher.start()
    sent: dict[bytes, list[bytes]] = {}
    try:
        for round_ in range(3):
            for n in range(8):
                key = f"box-{n}".encode()
                small = [f"{key.decode()}-{round_}-{i}".encode() * 50 for i in range(7)]
                big = f"{key.decode()}-{round_}-big".encode().ljust(BATCH_PATH_MAX_RECORD + 1, b".")
                for values in (small, [big]):  # a batch, then the record-by-record path
                    headers = (("mailbox", key),)
                    await publisher.publish(
                        [OutRecord(settings.topic, key, v, headers) for v in values]
                    )
                    sent.setdefault(key, []).extend(values)
    finally:
        await publisher.stop()
    records = await read_all(broker.bootstrap, settings.topic)
    for key, values in sent.items():
        mine = [r for r in records if r.key == key]
        assert len({r.partition for r in mine}) == 1, key
        assert [r.value for r in mine] == values
        assert all(dict(r.headers)["mailbox"] == key for r in mine)
    assert len({r.partition for r in records}) > 1  # the keys spread over the partitions
