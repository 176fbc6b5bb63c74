"""The on-disk correlate table (``--store rocksdb://``) in real workers on the embedded
broker: SIGKILL and restart on the same datadir, and a rebalance between two workers,
checked against the simulator's oracle."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.dev.embedded import EmbeddedBroker
from pipeline.simulate.traffic import generate_traffic
from tests.integration.test_streams import (
    assert_matches_oracle,
    latest_states,
    processed,
    worker_args,
)
from tests.streams.oracle import expected_events
from tests.support.kafka import read_all
from tests.support.workers import WorkerProcess, kill_midway, produce_traffic, settle

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 9, tzinfo=UTC)
ON_DISK = ("--store", "rocksdb://")
CHANGELOG = "pectrack-pectrack-messages-changelog"


def restored_records(worker: WorkerProcess) -> int:
    """Changelog records faust's recovery read back, summed over its log lines."""
    return sum(int(n) for n in re.findall(r"Restored (\d+) records", worker.log_text()))


async def test_on_disk_worker_killed_and_restarted_reads_only_the_changelog_tail(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A lone worker on RocksDB SIGKILLed mid-stream and restarted on the same datadir:
    exactly the oracle's events after dedup and the same final states; the restart
    finds its table on disk (the database files survive and recovery does not replay the
    whole changelog)."""
    items = generate_traffic(34, 400, 10, START)
    want = expected_events(items)
    args = (*worker_args(tmp_path), *ON_DISK, "--log-level", "info")
    worker = WorkerProcess(broker, tmp_path / "w", *args).start()
    try:
        await produce_traffic(broker.bootstrap, items)
        # killed once its table has reached the changelog, mid-stream
        await kill_midway(worker, broker.bootstrap, after=100, topic=CHANGELOG)
        seen = len(await read_all(broker.bootstrap, "pec.state-changes"))
        assert 0 < seen < sum(want.values())  # killed mid-stream, not after the end
        tables = list((tmp_path / "w" / "state").rglob("*pectrack-messages-*.db"))
        assert tables, "no RocksDB partition on disk"
        written = len(await read_all(broker.bootstrap, CHANGELOG))  # all acknowledged
        worker.start()
        events = await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=240
        )
        assert_matches_oracle(items, events, await latest_states(broker.bootstrap))
        assert restored_records(worker) < written  # read the tail, not the whole changelog
    finally:
        worker.stop()


async def test_on_disk_workers_rebalance_and_take_partitions_back(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Two RocksDB workers share the partitions, each keeping a standby copy of the
    other's; one is SIGKILLed mid-stream (the other takes its partitions over), then it
    comes back on its old datadir and takes partitions back: nothing lost, nothing
    doubled after dedup."""
    items = generate_traffic(35, 600, 12, START)
    third = len(items) // 3
    args = (*worker_args(tmp_path), *ON_DISK, "--standby-replicas", "1")
    with (
        WorkerProcess(broker, tmp_path / "a", *args) as a,
        WorkerProcess(broker, tmp_path / "b", *args) as b,
    ):
        await produce_traffic(broker.bootstrap, items[:third])
        part = expected_events(items[:third])
        await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(part.values()), timeout=240
        )
        assert processed(a) > 0
        assert processed(b) > 0
        await produce_traffic(broker.bootstrap, items[third : 2 * third])
        await asyncio.sleep(1.0)
        a.kill()
        part = expected_events(items[: 2 * third])
        await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(part.values()), timeout=240
        )
        a.start()
        await produce_traffic(broker.bootstrap, items[2 * third :])
        want = expected_events(items)
        events = await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=240
        )
        assert_matches_oracle(items, events, await latest_states(broker.bootstrap))
        assert b.proc is not None
        assert b.proc.poll() is None
