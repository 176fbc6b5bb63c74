"""The faust app with two corrections the pipeline depends on.

* :class:`KeepQueuedOnResume`: records fetched after a post-rebalance seek are not
  discarded (they were lost until the next restart).
* :func:`true_end_offsets`: the embedded broker (Tansu) answers ListOffsets(latest) with
  its last record batch's *base* offset + 1, and on S3 storage with a value that stops
  advancing altogether. Faust's table recovery reads a changelog up to that offset and
  stops, so the records after it never reached the table: state regressed after a
  rebalance. The end offset is checked against the high watermark of a fetch and by
  reading the last record.
* :meth:`PipelineApp.consumer_lag`: records waiting per assigned partition, from one
  ListOffsets request and faust's committed offsets (faust exports no such figure).
* :meth:`PipelineApp.kafka_producer`: the aiokafka producer faust started, for the
  processors' sink to send record batches through (see ``pipeline.streams.sink``).
* ``fetch_wait_ms``: faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. The
  embedded broker (Tansu) holds a fetch over several partitions for the whole wait even
  when one of them has data (measured: ~480 ms per record at 500 ms on a 4-partition
  topic, ~2 ms on one partition), which made every hop of the pipeline wait up to 1.5 s.
  Apache Kafka answers as soon as data arrives, so a short wait only costs a few more
  empty fetches per second there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Coroutine, Generator, Iterable, Mapping
from typing import Any, cast

import aiokafka
import faust
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP
from mode.services import WaitResults
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
    replayed them (missing events, and a committed offset stuck behind them). Clearing
    when flow was suspended is kept: those records were fetched before the seek that
    follows every suspension.
    """

    def resume(self) -> None:
        if not self.is_active():
            super().resume()


log = logging.getLogger(__name__)

# Empty fetches at the high watermark - 1 before taking it for a never-written offset
# (the embedded broker answers some fetches empty although records are there).
_EMPTY_AT_TAIL = 3


async def true_end_offsets(
    bootstrap: Any,
    ends: Mapping[TP, int],
    timeout: float = 60.0,
    client: Mapping[str, Any] | None = None,
) -> dict[TP, int]:
    """``ends`` (from ListOffsets) raised to one past the last record actually stored.

    Two quirks of the embedded broker make ListOffsets(latest) too low: on any storage it
    is the last batch's base offset + 1, and on S3 storage it stops advancing altogether
    (it keeps answering an early value while producers go on writing, across restarts).
    The high watermark in a fetch response is right, so this reads each non-empty
    partition from ``end - 1``, and where the fetch's high watermark says more records
    follow, jumps to the last one (``high watermark - 1``) and reads it. The answer is
    the last record read + 1: a tail offset the broker numbered but never wrote (a batch
    cut short by a broker crash) is not waited for. With Apache Kafka the first fetch
    returns the last record and nothing changes.
    """
    result = dict(ends)
    todo = {tp: end for tp, end in ends.items() if end and end > 0}
    if not todo:
        return result
    reader = aiokafka.AIOKafkaConsumer(
        **(client or {}),  # TLS options, as the worker's own clients use
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=100,
    )
    await reader.start()
    try:
        reader.assign(list(todo))
        for tp, end in todo.items():
            reader.seek(tp, end - 1)
        jumped: dict[TP, int] = {}  # partition -> empty fetches since the jump
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batch = await reader.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                if records:
                    result[tp] = max(result[tp], records[-1].offset + 1)
            for tp in list(todo):
                high = reader.highwater(tp)
                if high is None:
                    continue  # no fetch answered for it yet
                if tp in jumped and not batch.get(tp):
                    jumped[tp] += 1
                if result[tp] >= high or jumped.get(tp, 0) >= _EMPTY_AT_TAIL:
                    todo.pop(tp)  # at the end, or the tail is offsets never written
                elif tp not in jumped and await reader.position(tp) < high - 1:
                    reader.seek(tp, high - 1)
                    jumped[tp] = 0
    finally:
        await reader.stop()
    if todo:  # a slow broker (S3 storage under load): recovery may stop short of the end
        log.warning(
            "end offsets of %d changelog partitions not confirmed within %.0f s: %s",
            len(todo), timeout, sorted(f"{tp.topic}/{tp.partition}" for tp in todo),
        )  # fmt: skip
    return result


def consumer_lag(
    assigned: Iterable[TP],
    ends: Mapping[TP, int],
    committed: Mapping[TP, int | None],
    restoring: Mapping[TP, int],
    changelogs: Collection[str],
) -> dict[TP, int]:
    """Records waiting in each assigned partition.

    A source partition: its end offset minus the group's committed offset (the next
    record to handle; none committed yet: everything from offset 0, the consumer starts
    at the earliest record). A partition with no known end offset is left out. A table
    changelog partition is read only to restore the table: the records left to restore
    (0 once restored, although the worker keeps appending to it).
    """
    lag: dict[TP, int] = {}
    for tp in assigned:
        if tp.topic in changelogs:
            lag[tp] = max(0, restoring.get(tp, 0))
            continue
        end = ends.get(tp)
        if end is None:
            continue
        position = committed.get(tp) or 0
        lag[tp] = max(0, end - max(0, position))  # Tansu's end offsets may be a batch short
    return lag


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return ends
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        conf = self.app.conf  # TLS options exactly as faust's own consumer gets them
        client = faust_kafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
        return await true_end_offsets(bootstrap, ends, client=client)

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        """ListOffsets(latest) as the broker answers it: no correction, it is cheap."""
        ends = await self.call_thread(self._ensure_consumer().end_offsets, partitions)
        return {TP(tp.topic, tp.partition): end for tp, end in ends.items()}

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by its fetcher at start()
        return consumer


class _Resume:
    """A coroutine that already ran its first step (which yielded ``yielded``), made
    awaitable again: the Task that awaits this passes ``yielded`` on and then relays every
    send and throw, as ``await`` does between nested coroutines."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # thrown in by the Task (a cancellation)
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resume(coro, yielded)


_FLOW_WAIT = asyncio.Event.wait.__code__


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """faust's fetch loop hands every record to the conductor as
        ``wait_first(callback(message), self.suspend_flow.wait())``: four tasks and an
        ``asyncio.wait`` per record, although the callback (decode, put on the stream's
        queue) almost never suspends. Here its first step runs at once; only when it
        suspends (a full queue) does the rest race flow suspension, stop and crash as
        before. Any other call is mode's own."""
        if (
            len(coros) != 2
            or timeout is not None
            or not isinstance(handled := coros[0], Coroutine)
            or not isinstance(flow := coros[1], Coroutine)
            or flow.cr_code is not _FLOW_WAIT  # type: ignore[attr-defined]
            or self.suspend_flow.is_set()
            or self.should_stop
        ):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            yielded = handled.send(None)
        except StopIteration as done:
            flow.close()
            return WaitResults([handled], [done.value], False)
        except BaseException:
            flow.close()
            raise
        return await super().wait_first(_resume(handled, yielded), flow)

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return await cast(_ConsumerThread, self._thread).end_offsets(partitions)

    def committed_offsets(self) -> dict[TP, int | None]:
        """What this consumer last committed (or found committed when assigned)."""
        return dict(self._committed_offset)


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

    async def consumer_lag(self, timeout: float = 10.0) -> dict[TP, int] | None:
        """Records waiting per assigned partition (:func:`consumer_lag`); ``None`` while
        no consumer runs or partitions are moving (the assignment is about to change)."""
        consumer = cast(_Consumer, self.consumer)
        if not consumer.started or self.rebalancing:
            return None
        leader = f"{self.conf.id}-__assignor-__leader"  # faust's election: never written
        assigned = {tp for tp in consumer.assignment() if tp.topic != leader}
        changelogs = {table.changelog_topic.get_topic_name() for table in self.tables.values()}
        sources = [tp for tp in assigned if tp.topic not in changelogs]
        ends = await asyncio.wait_for(consumer.end_offsets(sources), timeout) if sources else {}
        return consumer_lag(
            assigned,
            ends,
            consumer.committed_offsets(),
            cast(TableManager, self.tables).recovery.active_remaining(),
            changelogs,
        )

    def kafka_producer(self) -> aiokafka.AIOKafkaProducer:
        """The aiokafka producer faust started for this app (its acks, TLS, batch size)."""
        producer: aiokafka.AIOKafkaProducer = self.producer._ensure_producer()  # type: ignore[attr-defined]
        return producer

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuedOnResume(loop=self.loop)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
