"""Read partitions to their end without trusting ListOffsets(latest).

::

    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    records = await read_to_end(consumer, tps)

The embedded broker (Tansu 0.6) answers ListOffsets(latest) with the last batch's base
offset + 1, and on S3 storage with a value that stops advancing while producers keep
writing (``tests/integration/test_broker_limits.py``). A reader that stops there misses
acknowledged records: the agent then resumed from an old cursor, and the chaos test
counted records as lost that were in the topic. The high watermark a fetch response
carries is right on both brokers, so the end is the larger of the two. An offset the
broker numbered but never wrote (a batch cut short by a broker crash) can sit at the
very end; ``quiet_fetches`` empty fetches in a row with no progress end the read there,
once a fetch has answered (it set the high watermark) and a ListOffsets request shows
the broker is still answering (aiokafka's fetches return nothing, without an error,
while the broker is down or before the first fetch response: that must not pass for
the end of the topic; with no fetch answered for 30 s the read is a
``KafkaTimeoutError``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

__all__ = ["read_to_end"]

# Empty fetches (of up to 0.5 s each) with no fetch response at all before giving up.
NO_ANSWER_FETCHES = 60


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    *,
    quiet_fetches: int = 6,
    max_records: int | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record from the assigned partitions' positions to their end, in fetch order."""
    listed = await consumer.end_offsets(list(tps))
    out: list[ConsumerRecord[bytes, bytes]] = []
    quiet = 0
    while True:
        batch = await consumer.getmany(*tps, timeout_ms=500, max_records=max_records)
        for records in batch.values():
            out.extend(records)
        behind = False
        for tp in tps:
            high = consumer.highwater(tp)
            end = max(listed[tp], high if high is not None else 0)
            if high is None or await consumer.position(tp) < end:
                behind = True
        if not behind:
            return out
        quiet = 0 if any(batch.values()) else quiet + 1
        # Only a fetch that answered (it set the high watermark) can show a numbered but
        # never-written tail; before that, empty fetches are fetches still under way.
        answered = all(consumer.highwater(tp) is not None for tp in tps)
        if quiet >= quiet_fetches and (answered or quiet >= NO_ANSWER_FETCHES):
            await consumer.end_offsets(list(tps))  # raises KafkaError if the broker is gone
            if not answered:
                raise KafkaTimeoutError(f"no fetch answered for {len(tps)} partitions")
            return out


async def read_topic(
    consumer: AIOKafkaConsumer, topic: str, *, max_records: int | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic``, partition by partition, read by a started consumer
    that is not subscribed (empty if the topic does not exist)."""
    await consumer.topics()  # refreshes metadata
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return []
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return await read_to_end(consumer, tps, max_records=max_records)
