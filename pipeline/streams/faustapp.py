"""The faust app with two corrections the pipeline depends on.

* :class:`KeepQueuedOnResume`: records fetched after a post-rebalance seek are not
  discarded (they were lost until the next restart).
* :func:`true_end_offsets`: the embedded broker (Tansu) answers ListOffsets(latest) with
  its last record batch's *base* offset + 1. Faust's table recovery reads a changelog up
  to that offset and stops, so the rest of the last batch (several records whenever a
  batch of state changes was written together) never reached the table: state regressed
  after a rebalance. The end offset is checked by reading that last batch.
* ``fetch_wait_ms``: faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. The
  embedded broker (Tansu) holds a fetch over several partitions for the whole wait even
  when one of them has data (measured: ~480 ms per record at 500 ms on a 4-partition
  topic, ~2 ms on one partition), which made every hop of the pipeline wait up to 1.5 s.
  Apache Kafka answers as soon as data arrives, so a short wait only costs a few more
  empty fetches per second there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent


class KeepQueuedOnResume(FlowControlEvent):
    """Faust's flow control, except that resuming a flow that is already running keeps
    what the queues hold.

    Faust clears every stream queue on ``resume()``. After a rebalance it resumes flow to
    read the changelogs, then resumes the stream partitions, seeks them to the committed
    offsets and calls ``resume()`` again: records fetched between that seek and that
    call were discarded while the fetch position had already moved past them, so they
    were never handled nor committed — the partition lost them until the next restart
    replayed them (seen in the two-worker SIGKILL test as missing events and a
    committed offset stuck behind them). Clearing when flow was suspended is kept: those
    records were fetched before the seek that follows every suspension.
    """

    def resume(self) -> None:
        if not self.is_active():
            super().resume()


async def true_end_offsets(
    bootstrap: Any, ends: Mapping[TP, int], timeout: float = 10.0
) -> dict[TP, int]:
    """``ends`` (from ListOffsets) raised to one past the last record actually stored.

    Reads each non-empty partition from ``end - 1``: with Apache Kafka that is the last
    record (no change); with Tansu it is the first record of the last batch, and the
    fetch returns the whole batch.
    """
    result = dict(ends)
    todo = {tp: end for tp, end in ends.items() if end and end > 0}
    if not todo:
        return result
    reader = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100
    )
    await reader.start()
    try:
        reader.assign(list(todo))
        for tp, end in todo.items():
            reader.seek(tp, end - 1)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batch = await reader.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                if records:
                    result[tp] = max(result[tp], records[-1].offset + 1)
                    todo.pop(tp, None)
    finally:
        await reader.stop()
    return result


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return ends
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        return await true_end_offsets(bootstrap, ends)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by its fetcher at start()
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class PipelineApp(faust.App):
    """``faust.App`` with :class:`KeepQueuedOnResume` and a configurable fetch wait."""

    def __init__(self, *args: Any, fetch_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    def active_partitions(self, topic: str) -> set[int] | None:
        """The partitions of ``topic`` this worker's consumer is assigned now; ``None``
        when no consumer runs (processors driven directly, as in unit tests)."""
        consumer = self.consumer
        if not consumer.started:
            return None
        return {tp.partition for tp in consumer.assignment() if tp.topic == topic}

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuedOnResume(loop=self.loop)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
