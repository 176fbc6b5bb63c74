"""KafkaPublisher: a mailbox's records as whole batches land where send() puts that key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch

from agents.config import KafkaSettings
from agents.cursor import FolderCursor
from agents.publish import BATCH_PATH_MAX_RECORD, CursorStore, KafkaPublisher, read_cursors
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


async def test_concurrent_mailboxes_on_one_partition_hand_over_one_batch_at_a_time(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 mailboxes publishing at once to a one-partition topic: every record lands, each
    mailbox's in order, and a batch waits for at most one drain before it is queued
    (aiokafka woke every waiting publisher at each drain: ~n^2/2 wake-ups)."""
    waits = 0
    original = MessageBatch.wait_drain

    async def counted(self: MessageBatch, timeout: float | None = None) -> None:
        nonlocal waits
        waits += 1
        await original(self, timeout)

    monkeypatch.setattr(MessageBatch, "wait_drain", counted)
    settings = KafkaSettings(bootstrap=broker.bootstrap, idempotence=False, partitions=1)
    publisher = KafkaPublisher(settings, max_record_bytes=BATCH_PATH_MAX_RECORD)
    await publisher.start()
    sent = {
        f"box-{n}".encode(): [f"box-{n}-{i}".encode() * 100 for i in range(5)] for n in range(30)
    }

    async def mailbox(key: bytes, values: list[bytes]) -> None:
        for value in values:  # one publish per record: many hand-overs per mailbox
            await publisher.publish([OutRecord(settings.topic, key, value, ())])

    try:
        await asyncio.gather(*(mailbox(key, values) for key, values in sent.items()))
    finally:
        await publisher.stop()
    records = await read_all(broker.bootstrap, settings.topic)
    for key, values in sent.items():
        assert [r.value for r in records if r.key == key] == values
    assert len(records) == 150
    assert waits <= 150


async def test_concurrent_cursor_commits_share_kafka_batches(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single record (a folder's cursor) goes through the producer's own accumulator,
    so the commits of mailboxes finishing together share batches and produce requests
    (one batch each on the batch path: ~2 produce requests per mailbox); every cursor is
    stored and read back."""
    batches = 0
    original = MessageAccumulator._append_batch

    def counted(self: MessageAccumulator, builder: Any, tp: Any) -> Any:
        nonlocal batches
        if tp.topic == settings.cursor_topic:
            batches += 1
        return original(self, builder, tp)

    monkeypatch.setattr(MessageAccumulator, "_append_batch", counted)
    settings = KafkaSettings(bootstrap=broker.bootstrap, idempotence=False, partitions=1)
    publisher = KafkaPublisher(settings, max_record_bytes=BATCH_PATH_MAX_RECORD)
    await publisher.start()
    store = CursorStore(publisher, {})
    try:
        await asyncio.gather(
            *(store.commit(f"box-{n}", "INBOX", FolderCursor(7, n + 1)) for n in range(30))
        )
    finally:
        await publisher.stop()
    assert batches < 30
    cursors = await read_cursors(broker.bootstrap, settings.cursor_topic)
    assert cursors == {f"box-{n}/INBOX".encode(): FolderCursor(7, n + 1) for n in range(30)}
