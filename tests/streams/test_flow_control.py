"""The faust app corrections: flow control that keeps queued records, the fetch wait."""

from __future__ import annotations

from mode.utils.queues import FlowControlQueue

from pipeline.settings import StreamSettings
from pipeline.streams.app import build


async def test_resume_keeps_queued_records_while_flowing_and_clears_after_a_suspension() -> None:
    app = build(StreamSettings(metrics_port=None, web_port=16067)).app
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
    app = build(StreamSettings(metrics_port=None, web_port=16068, fetch_wait_ms=77)).app
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 77
    finally:
        await consumer.stop()
        thread.thread_loop.close()
