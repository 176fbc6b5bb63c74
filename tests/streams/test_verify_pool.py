"""The verify processor with a process pool: the same records, in the same order, as without."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import signal
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from pectrack.cli import worker as cli
from pipeline.contracts.metrics import StreamMetrics
from pipeline.core.examine import examine
from pipeline.core.trust import TrustStore
from pipeline.simulate.traffic import TrafficItem, generate_traffic
from pipeline.streams.settings import StreamSettings, from_arguments, from_environment
from pipeline.streams.sink import RecordingSink
from pipeline.streams.verify import RawItem, Verifier
from tests.factories import anchor_pem

Sent = tuple[dict[str, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]], list[str]]


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(11, 40, 4, datetime(2024, 3, 1, 9, tzinfo=UTC))


def items_of(traffic: Sequence[TrafficItem]) -> list[RawItem]:
    """Simulator traffic as verify reads it, plus records that become dead letters."""
    items: list[RawItem] = [
        (t.mailbox.encode(), t.raw, {"mailbox": t.mailbox.encode(), "folder": t.folder.encode()})
        for t in traffic
    ]
    items.insert(3, (None, b"From: x@y\r\n\r\nhi\r\n", {}))  # no mailbox: a dead letter
    items.insert(7, (b"box", None, {"mailbox": b"box"}))  # no value: a dead letter
    return items


def verifier(processes: int, sink: RecordingSink) -> Verifier:
    settings = StreamSettings(verify_processes=processes, metrics_port=None)
    trust = TrustStore.from_bytes(anchor_pem())
    return Verifier(settings, trust, sink, StreamMetrics(CollectorRegistry()))


async def run(processes: int, items: Sequence[RawItem], batch_size: int) -> Sent:
    sink = RecordingSink()
    v = verifier(processes, sink)
    try:
        for start in range(0, len(items), batch_size):
            await v.handle_batch(items[start : start + batch_size])
    finally:
        v.close()
    return sink.sent, sink.order


async def test_pool_sends_what_the_event_loop_sends(traffic: list[TrafficItem]) -> None:
    """Two processes, batches of every shape: the records and their order are unchanged."""
    items = items_of(traffic)
    expected = await run(0, items, 200)
    assert {"pec.receipts", "pec.dlq"} <= set(expected[0])
    for batch_size in (1, 3, 64, 200, len(items)):
        assert await run(2, items, batch_size) == expected


async def test_pool_counts_as_the_event_loop_does(traffic: list[TrafficItem]) -> None:
    """Processed, ignored and dead-letter counters are kept by the worker, not the pool."""
    items = items_of(traffic)
    counts = []
    for processes in (0, 2):
        v = verifier(processes, RecordingSink())
        try:
            await v.handle_batch(items)
        finally:
            v.close()
        samples = v.metrics.processed.collect() + v.metrics.ignored.collect()
        samples += v.metrics.dlq.collect()
        counts.append(
            sorted(
                (s.name, sorted(s.labels.items()), s.value)
                for m in samples
                for s in m.samples
                if s.name.endswith("_total")
            )
        )
    assert counts[0] == counts[1]


async def test_close_stops_the_pool_processes(traffic: list[TrafficItem]) -> None:
    """After close() no pool process is left; closing again is harmless."""
    v = verifier(2, RecordingSink())
    await v.handle_batch(items_of(traffic)[:10])
    assert multiprocessing.active_children()
    v.close()
    v.close()
    assert multiprocessing.active_children() == []


async def test_a_broken_pool_falls_back_and_is_replaced(
    traffic: list[TrafficItem], caplog: pytest.LogCaptureFixture
) -> None:
    """A pool process killed mid-life: that batch is verified in the event loop, the next
    one by a new pool, and nothing is lost."""
    items = items_of(traffic)[:20]
    expected = await run(0, items, 10)
    sink = RecordingSink()
    v = verifier(1, sink)
    try:
        await v.handle_batch(items[:10])
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join()
        await v.handle_batch(items[10:])
        await v.handle_batch([])
        assert "verify pool broken" in caplog.text
        assert (sink.sent, sink.order) == expected
        await v.handle_batch(items[:1])
        assert multiprocessing.active_children()  # a new pool
    finally:
        v.close()


def test_examined_messages_pickle(traffic: list[TrafficItem]) -> None:
    """What a pool process returns survives pickling unchanged (frozen values, no views)."""
    trust = TrustStore.from_bytes(anchor_pem())
    for item in traffic:
        examined = examine(item.raw, trust)
        assert pickle.loads(pickle.dumps(examined)) == examined


def test_verify_processes_setting() -> None:
    """PECTRACK_VERIFY_PROCESSES sets the pool size; 0 is the default; negative is refused."""
    assert StreamSettings().verify_processes == 0
    assert from_environment(env={"PECTRACK_VERIFY_PROCESSES": "2"}).verify_processes == 2
    with pytest.raises(ValueError, match="verify_processes"):
        StreamSettings(verify_processes=-1).validate()


def test_verify_processes_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pectrack worker --verify-processes 3`` overrides the environment."""
    monkeypatch.setenv("PECTRACK_VERIFY_PROCESSES", "1")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["worker", "--verify-processes", "3"])
    assert from_arguments(args).verify_processes == 3
    assert from_arguments(parser.parse_args(["worker"])).verify_processes == 1
