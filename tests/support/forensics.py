"""Where a lost message or a doubled event went: what the chaos test prints on failure.

::

    ends = await end_offsets(bootstrap)            # before a broker SIGKILL ...
    moved = offsets_moved_back(ends, await end_offsets(bootstrap))   # ... and after

Everything here reads Kafka as a consumer would, and describes; nothing asserts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from tests.support.kafka import header

__all__ = [
    "cursor_history",
    "end_offsets",
    "event_lines",
    "missing_uids",
    "offset_gaps",
    "offsets_moved_back",
]

Partition = tuple[str, int]


async def end_offsets(bootstrap: str, timeout: float = 20.0) -> dict[Partition, int]:
    """The high watermark of every partition of every topic, as a fetch reports it
    (ListOffsets(latest) lags on the embedded broker); empty when the broker does not
    answer within ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(_end_offsets(bootstrap), timeout)
    except TimeoutError:
        return {}


async def _end_offsets(bootstrap: str, timeout_ms: int = 10_000) -> dict[Partition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in sorted(await consumer.topics())
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return {}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        await consumer.getmany(*tps, timeout_ms=1000, max_records=1)
        highs = {tp: consumer.highwater(tp) for tp in tps}
        return {(tp.topic, tp.partition): h for tp, h in highs.items() if h is not None}
    except KafkaError:
        return {}
    finally:
        await consumer.stop()


def offsets_moved_back(
    before: Mapping[Partition, int], after: Mapping[Partition, int]
) -> list[str]:
    """Partitions whose end offset is lower after than before (records or offsets gone)."""
    return [
        f"{topic}/{p}: {before[(topic, p)]} -> {after.get((topic, p))}"
        for topic, p in sorted(before)
        if after.get((topic, p), -1) < before[(topic, p)]
    ]


def offset_gaps(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """Holes and repeats in the offsets read from each partition of one topic."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    topic = ""
    for record in records:
        topic = record.topic
        by_partition[record.partition].append(record.offset)
    out = []
    for partition, offsets in sorted(by_partition.items()):
        repeated = sorted(o for o, n in Counter(offsets).items() if n > 1)
        if repeated:
            out.append(f"{topic}/{partition}: offsets read twice {repeated[:10]}")
        ordered = sorted(set(offsets))
        holes = [(a, b) for a, b in itertools.pairwise(ordered) if b != a + 1]
        if holes:
            out.append(f"{topic}/{partition}: holes {holes[:10]}")
    return out


def missing_uids(
    in_imap: Mapping[tuple[str, str], Iterable[int]],
    raw: Iterable[ConsumerRecord[bytes, bytes]],
) -> dict[tuple[str, str], list[int]]:
    """(mailbox, folder) -> UIDs Dovecot holds that no ``pec.raw`` record carries."""
    published: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in raw:
        published[(header(r, "mailbox"), header(r, "folder"))].add(int(header(r, "uid")))
    out = {}
    for folder, uids in in_imap.items():
        gone = sorted(set(uids) - published[folder])
        if gone:
            out[folder] = gone
    return out


def cursor_history(
    records: Iterable[ConsumerRecord[bytes, bytes]], mailbox: str, folder: str
) -> list[str]:
    """Every cursor record of one folder, in offset order: ``offset:last_uid``."""
    key = f"{mailbox}/{folder}".encode()
    return [
        f"{r.offset}:{orjson.loads(r.value).get('last_uid')}"
        for r in records
        if r.key == key and r.value
    ]


def event_lines(values: Iterable[bytes], keys: set[str]) -> list[str]:
    """Every state-change event (with its id) about one of ``keys``, as read."""
    out = []
    for value in values:
        event = orjson.loads(value)
        data = event["data"]
        if data["key"] in keys:
            out.append(
                f"{event['id']} {data['key']} {data.get('recipient')} "
                f"{event['type']} {data['from_state']}->{data['to_state']} "
                f"receipt={data.get('receipt_id') or data.get('receipt')}"
            )
    return out
