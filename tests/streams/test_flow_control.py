"""The faust app corrections: flow control that keeps queued records, the fetch wait,
the consumer lag faust does not export."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP
from mode.utils.queues import FlowControlQueue
from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import StreamMetrics
from pipeline.streams.app import build
from pipeline.streams.faustapp import consumer_lag
from pipeline.streams.settings import StreamSettings


async def test_resume_keeps_queued_records_while_flowing_and_clears_after_a_suspension() -> None:
    app = build(StreamSettings(metrics_port=None, web_port=16067, store="memory://")).app
    flow = app.flow_control
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.resume()
    queue.put_nowait(1)
    flow.resume()  # faust's second resume after seeking the stream partitions
    assert queue.qsize() == 1
    flow.suspend()  # a rebalance: what is queued was fetched before the next seek
    flow.resume()
    assert queue.qsize() == 0


async def test_worker_consumer_fetch_wait_comes_from_settings() -> None:
    """faust hard-codes 1500 ms; the pipeline's consumer waits ``fetch_wait_ms``."""
    app = build(
        StreamSettings(metrics_port=None, web_port=16068, fetch_wait_ms=77, store="memory://")
    ).app
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 77
    finally:
        await consumer.stop()
        thread.thread_loop.close()


CHANGELOG = "pectrack-pectrack-messages-changelog"


def test_consumer_lag_is_end_minus_committed_and_changelogs_what_is_left_to_restore() -> None:
    """Per assigned partition: end offset - committed offset (none committed: from 0);
    a changelog counts only what recovery has still to restore; no end offset: left out."""
    raw0, raw1, receipts0, receipts1 = (
        TP("pec.raw", 0),
        TP("pec.raw", 1),
        TP("pec.receipts", 0),
        TP("pec.receipts", 1),
    )
    changelog0, changelog1 = TP(CHANGELOG, 0), TP(CHANGELOG, 1)
    lag = consumer_lag(
        assigned={raw0, raw1, receipts0, receipts1, changelog0, changelog1},
        ends={raw0: 120, raw1: 7, receipts0: 40, changelog0: 9999},
        committed={raw0: 100, raw1: None, receipts0: 41},
        restoring={changelog0: 250},
        changelogs={CHANGELOG},
    )
    assert lag == {raw0: 20, raw1: 7, receipts0: 0, changelog0: 250, changelog1: 0}


def test_consumer_lag_gauge_forgets_partitions_no_longer_assigned() -> None:
    """pec_consumer_lag_records{topic,partition}: a partition that moved loses its series,
    at the next measurement or as soon as the new assignment is known."""
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)

    def lag(topic: str, partition: int) -> float | None:
        labels = {"topic": topic, "partition": str(partition)}
        return registry.get_sample_value("pec_consumer_lag_records", labels)

    metrics.set_consumer_lag({("pec.raw", 0): 5, ("pec.raw", 1): 3, ("pec.receipts", 1): 2})
    assert (lag("pec.raw", 0), lag("pec.raw", 1), lag("pec.receipts", 1)) == (5, 3, 2)
    metrics.set_consumer_lag({("pec.raw", 0): 4, ("pec.receipts", 1): 0})
    assert (lag("pec.raw", 0), lag("pec.raw", 1), lag("pec.receipts", 1)) == (4, None, 0)
    metrics.drop_consumer_lag({("pec.raw", 0), ("pec.raw", 2)})
    assert (lag("pec.raw", 0), lag("pec.receipts", 1)) == (4, None)
    metrics.set_consumer_lag({("pec.raw", 2): 1})
    assert (lag("pec.raw", 0), lag("pec.raw", 2)) == (None, 1)


async def test_consumer_lag_is_not_measured_without_a_running_consumer() -> None:
    """Processors driven directly (no consumer group): no figure, the gauge is left alone."""
    app = build(StreamSettings(metrics_port=None, web_port=16069, store="memory://")).app
    try:
        assert await app.consumer_lag() is None
    finally:
        app.consumer._thread.thread_loop.close()


async def _handed_over(app: Any, handler: Any) -> Any:
    consumer = app.consumer
    try:
        return await consumer.wait_first(handler, consumer.suspend_flow.wait())
    finally:
        consumer._thread.thread_loop.close()


async def test_record_handed_over_at_once_without_tasks() -> None:
    """The conductor's callback that does not suspend runs to its end in the fetch loop's
    own step: its result, no task created."""
    app = build(StreamSettings(metrics_port=None, web_port=16069)).app
    tasks: list[int] = []

    async def handler() -> str:
        tasks.append(len(asyncio.all_tasks()))
        return "queued"

    before = len(asyncio.all_tasks())
    result = await _handed_over(app, handler())
    assert result.results == ["queued"]
    assert not result.stopped
    assert tasks == [before]


async def test_record_handler_that_suspends_finishes_raced_with_flow() -> None:
    """A callback that suspends (a full stream queue) is continued where it stopped: sends,
    results and exceptions reach it as if faust's own wait_first had run it."""
    app = build(StreamSettings(metrics_port=None, web_port=16070)).app
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler() -> int:
        await asyncio.sleep(0)
        return await ready

    async def failing() -> int:
        value = await handler()
        raise RuntimeError(value)

    asyncio.get_running_loop().call_later(0.01, ready.set_result, 42)
    with pytest.raises(RuntimeError, match="42"):
        await asyncio.wait_for(_handed_over(app, failing()), 1.0)


async def test_record_handler_waiting_when_flow_is_suspended_is_cancelled() -> None:
    """A rebalance suspends the flow while the callback waits: the callback is cancelled
    and the fetch loop goes on, as with faust's wait_first."""
    app = build(StreamSettings(metrics_port=None, web_port=16071)).app
    cancelled: list[bool] = []

    async def handler() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    asyncio.get_running_loop().call_later(0.01, app.consumer.suspend_flow.set)
    await asyncio.wait_for(_handed_over(app, handler()), 1.0)
    assert cancelled == [True]
