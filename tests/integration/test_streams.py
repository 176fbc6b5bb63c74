"""The whole topology on the embedded broker, checked against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.dev.embedded import EmbeddedBroker, free_port
from pipeline.simulate.traffic import TrafficItem, generate_traffic
from tests.factories import write_anchor
from tests.streams.oracle import EventShape, expected_events, final_states
from tests.support.kafka import read_all
from tests.support.workers import WorkerProcess, kill_midway, produce_traffic, settle

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 9, tzinfo=UTC)


def worker_args(tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return (
        "--trust", str(write_anchor(tmp_path)),
        "--deadline-clock", "event",
        "--acceptance-timeout-seconds", "1e9",  # deadlines are covered by unit tests
        "--delivery-window-seconds", "1e9",
        "--session-timeout-seconds", "6",
        *extra,
    )  # fmt: skip


def shapes(values: list[bytes]) -> tuple[Counter[EventShape], int]:
    """Events deduplicated on their id, as a consumer would; and how many were repeats."""
    by_id: dict[str, Any] = {}
    for value in values:
        event = orjson.loads(value)
        by_id.setdefault(event["id"], event)
    counted: Counter[EventShape] = Counter(
        (
            e["data"]["key"],
            e["data"]["recipient"],
            e["type"].removeprefix("it.pec."),
            e["data"]["from_state"],
            e["data"]["to_state"],
        )
        for e in by_id.values()
    )
    return counted, len(values) - len(by_id)


def processed(worker: WorkerProcess) -> float:
    """Records the worker's correlate processor handled, from its /metrics."""
    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pec_processed_records_total" and sample.labels == {
                "processor": "correlate"
            }:
                return sample.value
    return 0.0


async def latest_states(
    bootstrap: str, client: Mapping[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    latest: dict[str, dict[str, str]] = {}
    for record in await read_all(bootstrap, "pec.message-state", client=client):
        state = orjson.loads(record.value)
        latest[state["key"]] = {r["address"]: r["state"] for r in state["recipients"]}
    return latest


def assert_matches_oracle(
    items: list[TrafficItem], events: list[bytes], states: dict[str, dict[str, str]]
) -> int:
    got, repeats = shapes(events)
    want = expected_events(items)
    unexpected, missing = got - want, want - got
    assert unexpected == Counter(), f"{sum(unexpected.values())} unexpected: {list(unexpected)[:5]}"
    assert missing == Counter(), f"{sum(missing.values())} missing: {list(missing)[:5]}"
    expected = final_states(items)
    # orphans never get a Sent copy; their state is still tracked from the receipts
    assert {k: v for k, v in states.items() if k in expected} == expected
    return repeats


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(21, 1000, 24, START)


async def test_topology_matches_ground_truth(
    broker: EmbeddedBroker, tmp_path: Path, traffic: list[TrafficItem]
) -> None:
    """Thousands of simulated messages (every receipt kind, out of order, duplicates,
    forgeries, orphans, late deliveries): exact final states and exact event multiset."""
    want = expected_events(traffic)
    with WorkerProcess(broker, tmp_path / "w1", *worker_args(tmp_path)) as worker:
        await produce_traffic(broker.bootstrap, traffic)
        try:
            events = await settle(
                broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=240
            )
        except AssertionError:
            print(worker.log_text())
            raise
        repeats = assert_matches_oracle(traffic, events, await latest_states(broker.bootstrap))
    assert repeats == 0  # no crash, no replay: not even a duplicate before dedup
    assert len(traffic) > 3000
    kinds = Counter(item.truth.kind for item in traffic)
    assert len(kinds) >= 7
    dead = await read_all(broker.bootstrap, "pec.dlq")
    assert dead == []


async def test_two_workers_share_and_survive_a_kill(
    broker: EmbeddedBroker, tmp_path: Path, traffic: list[TrafficItem]
) -> None:
    """Two workers in one group; one is SIGKILLed mid-stream; the survivor takes its
    partitions and table state: nothing lost, nothing doubled after dedup on event id."""
    half = len(traffic) // 2
    args = worker_args(tmp_path)
    first_half = expected_events(traffic[:half])
    with (
        WorkerProcess(broker, tmp_path / "a", *args) as a,
        WorkerProcess(broker, tmp_path / "b", *args) as b,
    ):
        await produce_traffic(broker.bootstrap, traffic[:half])
        await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(first_half.values()), timeout=240
        )
        assert processed(a) > 0  # both members of the group did work
        assert processed(b) > 0
        await produce_traffic(broker.bootstrap, traffic[half:])
        await asyncio.sleep(1.0)  # mid-stream: a is processing the second half
        a.kill()
        want = expected_events(traffic)
        events = await settle(
            broker.bootstrap,
            "pec.state-changes",
            expected=sum(want.values()),
            timeout=240,
            fail=False,
        )
        print(b.log_text())  # shown only if the comparison below fails
        assert_matches_oracle(traffic, events, await latest_states(broker.bootstrap))
        assert b.proc is not None
        assert b.proc.poll() is None


def lookup(worker: WorkerProcess, key: str) -> tuple[int, dict[str, Any]]:
    query = urllib.parse.urlencode({"key": key})
    url = f"http://127.0.0.1:{worker.web_port}/message/?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_lookup_is_routed_to_the_owner(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Any worker answers a Message-ID lookup, proxying to the worker owning the key."""
    items = generate_traffic(8, 30, 4, START)
    args = worker_args(tmp_path)
    with (
        WorkerProcess(broker, tmp_path / "a", *args) as a,
        WorkerProcess(broker, tmp_path / "b", *args) as b,
    ):
        await produce_traffic(broker.bootstrap, items)
        want = expected_events(items)
        await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=120
        )
        states = await latest_states(broker.bootstrap)
        assert len(states) >= 30
        assert processed(a) > 0  # each owns part of the keys: half the lookups are proxied
        assert processed(b) > 0
        for key, recipients in states.items():
            for worker in (a, b):
                status, body = lookup(worker, key)
                assert status == 200, body
                assert {r["address"]: r["state"] for r in body["recipients"]} == recipients
        status, body = lookup(a, "nobody <no-such-message@x>")
        assert status == 404
        assert body["error"] == "unknown message"


async def test_worker_killed_and_restarted_ends_in_the_same_state(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A lone worker SIGKILLed mid-stream and restarted: same final state, and after
    dedup on event id exactly the oracle's events (replays only repeat ids)."""
    items = generate_traffic(33, 400, 10, START)
    want = expected_events(items)
    args = worker_args(tmp_path)
    worker = WorkerProcess(broker, tmp_path / "w", *args).start()
    try:
        await produce_traffic(broker.bootstrap, items)
        seen = await kill_midway(worker, broker.bootstrap, after=50)
        assert 0 < seen < sum(want.values())  # killed mid-stream, not after the end
        worker.start()
        events = await settle(
            broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=240
        )
        assert_matches_oracle(items, events, await latest_states(broker.bootstrap))
    finally:
        worker.stop()


async def test_deadline_timer_flags_overdue(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A sent message never accepted is flagged overdue by a running worker's timer,
    once its mailbox's own receipts show that time moved on (the event clock)."""
    items = [i for i in generate_traffic(4, 6, 2, START) if i.folder == "Sent"]
    late = generate_traffic(5, 4, 2, START.replace(day=3))  # daticert time moves on 2 days
    # in every mailbox that sent: a mailbox's deadlines follow its own receipts
    assert {i.mailbox for i in items} <= {i.mailbox for i in late if i.folder == "INBOX"}
    args = (
        "--trust", str(write_anchor(tmp_path)),
        "--deadline-clock", "event",
        "--acceptance-timeout-seconds", "3600",
        "--deadline-interval-seconds", "1",
    )  # fmt: skip
    with WorkerProcess(broker, tmp_path / "w", *args):
        await produce_traffic(broker.bootstrap, items + late)
        deadline = asyncio.get_running_loop().time() + 90
        overdue: set[str] = set()
        while asyncio.get_running_loop().time() < deadline and len(overdue) < len(items):
            await asyncio.sleep(1)
            for record in await read_all(broker.bootstrap, "pec.state-changes"):
                event = orjson.loads(record.value)
                if event["type"] == "it.pec.overdue":
                    assert event["data"]["reason"] == "no-acceptance"
                    overdue.add(event["data"]["msgid"])
    assert overdue == {item.truth.msgid for item in items}


async def test_worker_started_before_the_broker_waits_for_it(tmp_path: Path) -> None:
    """A worker started before Kafka retries instead of exiting, then processes records."""
    port = free_port()
    worker = WorkerProcess(
        EmbeddedBroker(port=port), tmp_path / "w", *worker_args(tmp_path)
    ).start()
    try:
        # until it has found the broker missing (a fixed sleep raced a slow start under load)
        for _ in range(300):
            if "unreachable" in worker.log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        assert worker.proc is not None
        assert worker.proc.poll() is None  # still waiting, not exited
        with EmbeddedBroker(port=port) as broker:
            items = generate_traffic(9, 10, 2, START)
            await produce_traffic(broker.bootstrap, items)
            want = expected_events(items)
            events = await settle(
                broker.bootstrap, "pec.state-changes", expected=sum(want.values()), timeout=120
            )
            assert_matches_oracle(items, events, await latest_states(broker.bootstrap))
        assert "unreachable" in worker.log.read_text(errors="replace")
    finally:
        worker.stop()
