"""The app's flow control: resuming a running flow keeps what the stream queues hold."""

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
