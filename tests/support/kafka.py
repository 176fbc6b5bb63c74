"""The embedded Kafka-protocol broker for tests, and helpers to read what landed in it.

::

    with running_broker() as broker:
        records = await read_all(broker.bootstrap, "pec.raw")
        await wait_for_count(broker.bootstrap, "pec.raw", 1200, timeout=60)

``header(record, "uid")`` decodes one Kafka header of a consumed record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.dev.embedded import EmbeddedBroker
from pipeline.kafka.read import read_to_end, read_topic

__all__ = ["TopicTail", "header", "read_all", "running_broker", "wait_for_count"]


@contextmanager
def running_broker(log_path: Path | None = None) -> Iterator[EmbeddedBroker]:
    """A memory-storage broker on a free port, stopped (and reaped) on exit."""
    broker = EmbeddedBroker(log_path=log_path).start()
    try:
        yield broker
    finally:
        broker.stop()


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    """The value of Kafka header ``name`` (``KeyError`` if absent)."""
    for key, value in record.headers:
        if key == name:
            return bytes(value).decode()
    raise KeyError(name)


async def read_all(
    bootstrap: str, topic: str, *, client: Mapping[str, Any] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in ``topic`` (empty if the topic does not exist), read to
    the fetch's high watermark (:func:`pipeline.kafka.read.read_to_end`); ``client``:
    extra aiokafka options (TLS)."""
    consumer = AIOKafkaConsumer(
        **(client or {}), bootstrap_servers=bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await read_topic(consumer, topic, max_records=5000)
    finally:
        await consumer.stop()


class TopicTail:
    """Every record of ``topic`` so far, read incrementally: each ``read()`` fetches only
    what arrived since the last one (a poll loop that re-read a whole topic every half
    second loaded the embedded broker's S3 storage as much as the pipeline did).

    ::

        async with TopicTail(bootstrap, "pec.raw") as raw:
            records = await raw.read()     # everything so far, in fetch order
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read(self) -> list[ConsumerRecord[bytes, bytes]]:
        if not self._tps:  # the topic may appear later
            await self._consumer.topics()
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
            self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not self._tps:
                return self.records
            self._consumer.assign(self._tps)
            await self._consumer.seek_to_beginning(*self._tps)
        self.records += await read_to_end(self._consumer, self._tps, max_records=5000)
        return self.records


async def wait_for_count(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    timeout: float,
    client: Mapping[str, Any] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Poll ``topic`` until it holds at least ``count`` records; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    records: list[ConsumerRecord[bytes, bytes]] = []
    while time.monotonic() < deadline:
        records = await read_all(bootstrap, topic, client=client)
        if len(records) >= count:
            return records
        await asyncio.sleep(0.2)
    raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, expected {count}")
