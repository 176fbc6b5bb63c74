"""Where processors send records: the worker's Kafka producer, a recording fake in tests."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.partitioner import murmur2

from pipeline.contracts.headers import Headers
from pipeline.contracts.raw import DeadLetterHeader


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone
    headers: Headers | None = None
    partition: int | None = None


def dead_letter(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str = "",
    *,
    source: Mapping[str, bytes] | None = None,
) -> Record:
    """A record for ``pec.dlq``: the input unchanged, its ``source`` headers (those of the
    input record) and ``reason`` (a bounded code, the ``pec_dlq_total`` label) and
    ``detail`` (what exactly was wrong), replacing any a replayed dead letter carried."""
    replaced = (DeadLetterHeader.REASON, DeadLetterHeader.DETAIL)
    headers: list[tuple[str, bytes]] = [
        (name, data) for name, data in (source or {}).items() if name not in replaced
    ]
    headers.append((DeadLetterHeader.REASON.value, reason.encode()))
    if detail:
        headers.append((DeadLetterHeader.DETAIL.value, detail[:200].encode()))
    return Record(topic, key or b"", value or b"", headers)


class Sink(Protocol):
    async def send_all(self, records: Sequence[Record]) -> list[int]:
        """Send records in order; return once the broker acknowledged every one, with
        the offset each got."""


class KafkaSink:
    """Sends through the worker's aiokafka producer (the one faust configured and started:
    acks=all, TLS) and waits for every acknowledgement.

    Records are appended to one record batch per partition (a new one when a batch is
    full) and each batch is handed to the producer whole: one produce request and one
    future per partition instead of faust's ``topic.send`` per record (a FutureMessage,
    sensors, a debug log line and an accumulator append each). Records of one partition
    keep their order within a call, and a call returns only once all are acknowledged,
    so calls never overtake each other. A record without a partition goes where
    aiokafka's default partitioner (murmur2 of the key, as the Java client) puts it.

    This also keeps faust's attachments out of the way (what ``topic.send(force=True)``
    did before): a record sent inside an agent is published now, not at the next offset
    commit, so the correlator's events are acknowledged before its table write.
    """

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer  # the started aiokafka.AIOKafkaProducer

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        if not records:
            return []
        producer = self._producer()
        cluster = producer.client.cluster
        batches: dict[tuple[str, int], list[Any]] = {}
        partitions: dict[str, list[int]] = {}
        places: list[tuple[Any, int]] = []  # each record's batch and position in it
        for r in records:
            partition = r.partition
            if partition is None:
                choices = partitions.get(r.topic)
                if choices is None:
                    await producer.client._wait_on_metadata(r.topic)
                    choices = partitions[r.topic] = list(cluster.partitions_for_topic(r.topic))
                partition = choices[key_hash(r.key) % len(choices)]
            builders = batches.setdefault((r.topic, partition), [])
            headers = r.headers or []
            if not builders or not _append(builders[-1], r.key, r.value, headers):
                builders.append(producer.create_batch())
                _append(builders[-1], r.key, r.value, headers)  # a first record always fits
            places.append((builders[-1], builders[-1].record_count() - 1))
        pending = [
            await producer.send_batch(builder, topic, partition=partition)
            for (topic, partition), builders in batches.items()
            for builder in builders
        ]
        acknowledged = await asyncio.gather(*pending)
        base = {
            id(builder): metadata.offset
            for builder, metadata in zip(
                (b for bs in batches.values() for b in bs), acknowledged, strict=True
            )
        }
        return [base[id(builder)] + position for builder, position in places]


def _append(builder: Any, key: bytes, value: bytes | None, headers: Headers) -> bool:
    return builder.append(timestamp=None, key=key, value=value, headers=headers) is not None


@functools.lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """aiokafka's (and the Java client's) partition hash of a key, before ``% partitions``.
    Cached: a message's correlation key comes back with each of its receipts."""
    return int(murmur2(key)) & 0x7FFFFFFF


@dataclass
class RecordingSink:
    """A fake at the boundary: keeps what was sent, per topic."""

    sent: dict[str, list[tuple[bytes, bytes | None, Headers]]] = field(default_factory=dict)
    partitions: dict[str, list[int | None]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # topics in the order sent

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        offsets = []
        for r in records:
            sent = self.sent.setdefault(r.topic, [])
            offsets.append(len(sent))  # one offset sequence per topic
            sent.append((r.key, r.value, list(r.headers or [])))
            self.partitions.setdefault(r.topic, []).append(r.partition)
            self.order.append(r.topic)
        return offsets
