"""The table store (memory and RocksDB), the due-time index and retention in the
correlate processor, with the event clock (pipeline.streams.state, correlate, deadlines)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import rocksdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.contracts.codec import decode, dumps, observation_to_dict, tracked_from_dict
from pipeline.contracts.metrics import StreamMetrics
from pipeline.core.correlate import overdue_flags
from pipeline.core.lifecycle import Event, Receipt
from pipeline.core.model import Recipient, RecipientType
from pipeline.core.observation import Evidence, Observation, Submission
from pipeline.core.retention import is_expired
from pipeline.streams.clock import EventClock
from pipeline.streams.correlate import Correlator
from pipeline.streams.deadlines import DeadlineScanner
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from pipeline.streams.state import (
    DUE_PREFIX,
    Describe,
    MemoryPartitions,
    PartitionState,
    RocksPartition,
    TableStore,
)

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)
CERT = Recipient("mario@pec.example.it", RecipientType.CERTIFICATO)
DAY = 86400.0
CHANGELOG = "changelog"


@dataclass
class RocksPartitions:
    """The RocksDB partitions without faust: one rocksdict database per partition."""

    root: Path
    describe: Describe | None = None
    dbs: dict[int, Any] = field(default_factory=dict)

    def partition(self, partition: int) -> PartitionState:
        if partition not in self.dbs:
            path = str(self.root / f"p{partition}")
            self.dbs[partition] = rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))
        return RocksPartition(self.dbs[partition], b"__faust\0offset__")

    def local_partitions(self) -> Collection[int]:
        return list(self.dbs)

    def lookup(self, key: bytes) -> bytes | None:
        return next((v for db in self.dbs.values() if (v := db.get(key)) is not None), None)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TableStore]:
    if request.param == "memory":
        yield MemoryPartitions()
        return
    rocks = RocksPartitions(tmp_path)
    yield rocks
    rocks.close()


@dataclass
class Worker:
    correlator: Correlator
    scanner: DeadlineScanner
    sink: RecordingSink
    registry: CollectorRegistry

    @property
    def clock(self) -> EventClock:
        return self.correlator.clock

    def feed(self, *observations: Observation, partition: int = 0) -> None:
        batch = [(o.key.encode(), dumps(observation_to_dict(o)), partition) for o in observations]
        asyncio.run(self.correlator.handle_batch(batch))

    def tick(self) -> int:
        """One deadline scan, then the checks it sent applied (as pec.receipts would)."""
        sent = asyncio.run(self.scanner.scan())
        checks = self.sink.sent.pop("pec.receipts", [])
        asyncio.run(self.correlator.handle_batch([(k, v, 0) for k, v, _ in checks]))
        return sent

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v, _ in self.sink.sent.get("pec.state-changes", []) if v]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def worker(store: TableStore, **changes: Any) -> Worker:
    options: dict[str, Any] = {
        "deadline_clock": "event",
        "retention_seconds": 30 * DAY,
        "orphan_ttl_seconds": 7 * DAY,
        **changes,
    }
    config = StreamSettings(**options)
    sink, registry = RecordingSink(), CollectorRegistry()
    metrics = StreamMetrics(registry)
    clock = EventClock("event")
    correlator = Correlator(config, sink, metrics, store, clock, CHANGELOG)
    store.describe = correlator.describe
    return Worker(correlator, DeadlineScanner(config, sink, metrics, store, clock), sink, registry)


def sent(n: int, minutes: int = 0) -> Submission:
    key, msgid = f"box <m{n}@c>", f"<m{n}@c>"
    return Submission(key, "box", msgid, "me@pec.it", (CERT.address,), at(minutes))


def receipt(n: int, rid: str, event: Event, minutes: int) -> Evidence:
    key, msgid = f"box <m{n}@c>", f"<m{n}@c>"
    to = CERT.address if event not in (Event.ACCEPT, Event.REJECT) else None
    r = Receipt(f"{rid}{n}", event, (CERT,), to, at(minutes))
    return Evidence(key, "box", msgid, r, event.value, "Provider")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def delivered(n: int, minutes: int = 0) -> tuple[Observation, ...]:
    return (
        sent(n, minutes),
        receipt(n, "a", Event.ACCEPT, minutes + 1),
        receipt(n, "d", Event.DELIVER, minutes + 5),
    )


def test_a_finished_message_leaves_the_table_after_retention(store: TableStore) -> None:
    """30 days after its delivery (event clock) a check retires it to a marker (counted
    nowhere, the message state kept); 30 days later the marker goes (a tombstone)."""
    w = worker(store)
    w.feed(*delivered(1), sent(2))
    key = b"box <m1@c>"
    w.clock.advance(at(5) + timedelta(days=30))
    assert w.tick() == 1  # message 2: overdue for no acceptance (message 1 not yet due)
    assert orjson.loads(store.partition(0).get(key) or b"{}")["retired"] is False
    w.clock.advance(at(6) + timedelta(days=30))
    assert w.tick() == 1  # message 1 retired
    marker = orjson.loads(store.partition(0).get(key) or b"{}")
    assert (marker["retired"], marker["recipients"]) == (True, [])
    assert all(v is not None for _, v, _ in w.sink.sent["pec.message-state"])
    assert w.metric("pec_table_evictions_total", reason="finished") == 1
    assert store.partition(0).tally().inflight == 1  # message 2, still waiting
    assert w.tick() == 0  # nothing due any more: no repeated checks
    w.clock.advance(at(6) + timedelta(days=60))
    assert w.tick() == 1  # the marker's life ended
    assert store.partition(0).get(key) is None
    assert w.sink.sent[CHANGELOG][-1][:2] == (key, None)
    assert w.metric("pec_table_evictions_total", reason="finished") == 1


def test_message_state_retention_table_tombstones_the_final_state(store: TableStore) -> None:
    """With message_state_retention = table, pec.message-state gets a tombstone too."""
    w = worker(store, message_state_retention="table")
    w.feed(*delivered(1))
    w.clock.advance(at(10) + timedelta(days=30))
    w.tick()
    assert w.sink.sent["pec.message-state"][-1][:2] == (b"box <m1@c>", None)
    w.clock.advance(at(10) + timedelta(days=60))
    w.tick()  # the marker goes: no second tombstone
    assert len([v for _, v, _ in w.sink.sent["pec.message-state"] if v is None]) == 1


def test_an_orphan_expires_after_orphan_ttl(store: TableStore) -> None:
    """A receipt whose sent message never appears is dropped 7 days after it."""
    w = worker(store)
    w.feed(receipt(1, "a", Event.ACCEPT, 0))
    assert store.partition(0).tally().orphans == 1
    w.clock.advance(at(1) + timedelta(days=7))
    w.tick()
    assert store.lookup(b"box <m1@c>") is None
    assert w.metric("pec_table_evictions_total", reason="orphan") == 1
    assert store.partition(0).tally().orphans == 0


def test_a_receipt_after_eviction_does_not_bring_the_message_back(store: TableStore) -> None:
    """A re-published delivery receipt or Sent copy of a retired message is late: no
    new state, no event, counted in pec_late_observations_total."""
    w = worker(store)
    w.feed(*delivered(1))
    w.clock.advance(at(10) + timedelta(days=30))
    w.tick()
    key = b"box <m1@c>"
    marker = store.partition(0).get(key)
    before = len(w.events())
    w.feed(receipt(1, "d", Event.DELIVER, 5), sent(1))
    assert store.partition(0).get(key) == marker
    assert len(w.events()) == before
    assert w.metric("pec_late_observations_total", kind="deliver") == 1
    assert w.metric("pec_late_observations_total", kind="submission") == 1
    assert store.partition(0).tally().inflight == 0


def test_a_replayed_check_changes_nothing(store: TableStore) -> None:
    """At-least-once: the retiring check read again leaves the marker as it is; a check
    for a key the table does not hold is ignored."""
    w = worker(store)
    w.feed(*delivered(1))
    w.clock.advance(at(10) + timedelta(days=30))
    asyncio.run(w.scanner.scan())
    [(key, check, _)] = w.sink.sent.pop("pec.receipts")
    asyncio.run(w.correlator.handle_batch([(key, check, 0), (key, check, 0)]))
    assert orjson.loads(store.partition(0).get(key) or b"{}")["retired"] is True
    assert len([k for k, _, _ in w.sink.sent[CHANGELOG] if k == key]) == 2  # made, retired
    unknown = check.replace(b"m1@c", b"m9@c")
    asyncio.run(w.correlator.handle_batch([(b"box <m9@c>", unknown, 0)]))
    assert store.lookup(b"box <m9@c>") is None
    assert w.metric("pec_late_observations_total", kind="check") == 1


def test_one_message_state_and_one_changelog_record_per_key_per_batch(
    store: TableStore,
) -> None:
    """Three observations of one message in one batch: three events, one message state
    (the latest) and one changelog record."""
    w = worker(store)
    w.feed(*delivered(1))
    assert len(w.events()) == 3
    [(_, state, _)] = w.sink.sent["pec.message-state"]
    assert state is not None
    assert orjson.loads(state)["final"] is True
    assert len(w.sink.sent[CHANGELOG]) == 1


def test_the_scan_reads_only_what_is_due(store: TableStore) -> None:
    """1,000 finished messages and one overdue: the scan reads one index entry."""
    w = worker(store)
    for n in range(1000):
        w.feed(*delivered(n))
    w.feed(sent(5000))
    w.clock.advance(at(60))
    assert w.tick() == 1
    assert w.metric("pec_table_entries_due") == 1
    assert store.partition(0).tally().inflight == 1


def test_recovery_rebuilds_index_and_tally_from_the_changelog(
    store: TableStore, tmp_path: Path
) -> None:
    """The changelog a worker wrote, applied to an empty store as faust's recovery does
    (a batch at a time), gives the same values, gauges and due entries."""
    w = worker(store)
    for n in range(20):
        w.feed(*delivered(n)[: 1 + n % 3])
    w.feed(receipt(99, "a", Event.ACCEPT, 0))
    fresh = MemoryPartitions()
    fresh.describe = w.correlator.describe
    records = w.sink.sent[CHANGELOG]
    for start in range(0, len(records), 7):
        batch = [
            _changelog_event(k, v, start + i)
            for i, (k, v, _) in enumerate(records[start : start + 7])
        ]
        _apply(fresh, batch)
    assert fresh.partition(0).tally() == store.partition(0).tally()
    now = 10**18
    assert fresh.partition(0).due(now, 10**6) == store.partition(0).due(now, 10**6)


def _changelog_event(key: bytes, value: bytes | None, offset: int) -> Any:
    from types import SimpleNamespace  # noqa: PLC0415

    message = SimpleNamespace(key=key, value=value, partition=0, offset=offset)
    return SimpleNamespace(key=key, message=message)


def _apply(store: MemoryPartitions, batch: list[Any]) -> None:
    from pipeline.streams.state import _changelog_writes  # noqa: PLC0415

    assert store.describe is not None
    for partition, writes, _ in _changelog_writes(batch, store, store.describe):
        store.partitions[partition].write(writes, None)


MINUTES = st.integers(0, 3 * 24 * 60)
STEPS = st.lists(
    st.tuples(
        st.integers(0, 5),  # message
        st.sampled_from(["sent", "accept", "deliver", "warn", "fail"]),
        MINUTES,
    ),
    max_size=25,
)


@given(STEPS, st.lists(MINUTES, min_size=1, max_size=4))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_index_finds_exactly_what_a_full_scan_finds(
    store: TableStore, steps: list[tuple[int, str, int]], scans: list[int]
) -> None:
    """After any sequence of observations and scans (whose checks are applied), the keys
    the index-driven scan checks are exactly those a scan decoding every message would."""
    for partition in list(store.local_partitions()):  # hypothesis reuses the fixture
        state = store.partition(partition)
        state.forget(state.due(10**18, 10**6))
    if isinstance(store, MemoryPartitions):
        store.partitions.clear()
    else:
        for partition in list(store.local_partitions()):
            db = store.dbs[partition]
            for key in list(db.keys()):
                db.delete(key)
    w = worker(store, retention_seconds=2 * DAY, orphan_ttl_seconds=DAY)
    for n, what, minutes in steps:
        if what == "sent":
            w.feed(sent(n, minutes))
        else:
            w.feed(receipt(n, what[0], Event(what), minutes))
    for minutes in sorted(scans):
        w.clock.advance(at(minutes) + timedelta(days=1))
        now = w.clock.now()
        assert now is not None
        expected = set()
        for key, value in _values(store):
            tracked = tracked_from_dict(decode(value))
            flags_at = w.clock.deadline_now(tracked.mailbox)  # the mailbox's own clock
            flags = (
                overdue_flags(tracked, flags_at, w.correlator.deadlines) - tracked.overdue
                if flags_at is not None
                else frozenset()
            )
            if flags or is_expired(tracked, now, w.correlator.retention):
                expected.add(key)
        asyncio.run(w.scanner.scan())
        checks = w.sink.sent.pop("pec.receipts", [])
        assert {k for k, _, _ in checks} == expected
        asyncio.run(w.correlator.handle_batch([(k, v, 0) for k, v, _ in checks]))


def _values(store: TableStore) -> list[tuple[bytes, bytes]]:
    if isinstance(store, MemoryPartitions):
        return [(k, v) for part in store.partitions.values() for k, v in part.data.items()]
    assert isinstance(store, RocksPartitions)
    return [
        (k, v)
        for db in store.dbs.values()
        for k, v in db.items()
        if not k.startswith(b"\x00") and not k.startswith(b"__faust")
    ]


def test_due_entries_sort_by_time_on_disk(tmp_path: Path) -> None:
    """Index keys are big-endian times: RocksDB's key order is due order."""
    rocks = RocksPartitions(tmp_path)
    w = worker(rocks)
    w.feed(sent(1, 50), sent(2, 10), sent(3, 30))
    keys = [k for k in rocks.dbs[0].keys() if k.startswith(DUE_PREFIX)]  # noqa: SIM118 - an Rdict iterates items
    assert [k.rsplit(b"<", 1)[1] for k in keys] == [b"m2@c>", b"m3@c>", b"m1@c>"]
    rocks.close()


# --- the event clock on a replay (issue #20): deadlines by the mailbox's own receipts -----


def mail(box: str, n: int) -> tuple[str, str]:
    return f"{box} <m{n}@c>", f"<m{n}@c>"


def sent_in(box: str, n: int, minutes: float) -> Submission:
    key, msgid = mail(box, n)
    return Submission(key, box, msgid, "me@pec.it", (CERT.address,), at(minutes))


def receipt_in(box: str, n: int, event: Event, minutes: float) -> Evidence:
    key, msgid = mail(box, n)
    to = CERT.address if event is Event.DELIVER else None
    r = Receipt(f"{box}-{event.value}-{n}", event, (CERT,), to, at(minutes))
    return Evidence(key, box, msgid, r, event.value, "Provider")


def overdue_events(w: Worker) -> list[tuple[str, str]]:
    return [
        (e["data"]["msgid"], e["data"]["reason"])
        for e in w.events()
        if e["type"] == "it.pec.overdue"
    ]


def test_a_replayed_mailbox_raises_no_overdue_for_its_delivered_history(
    store: TableStore,
) -> None:
    """Two mailboxes backfilled one after the other, each Sent folder before its INBOX,
    a message a day for 60 days, the timer firing after every step: the newest time seen
    runs two months ahead of receipts not read yet, and no overdue flag is raised, but
    for the one message whose delivery receipt never came (flagged once)."""
    w = worker(store)
    day = 24 * 60
    for box in ("alpha", "beta"):
        w.feed(*(sent_in(box, n, n * day) for n in range(60)))
        assert w.tick() == 0  # receipts of this mailbox not read yet: everything waits
        for n in range(60):
            w.feed(receipt_in(box, n, Event.ACCEPT, n * day + 1))
            if n != 30:
                w.feed(receipt_in(box, n, Event.DELIVER, n * day + 2))
            w.tick()
    assert sorted(overdue_events(w)) == [("<m30@c>", "no-delivery")] * 2
    assert not [e for e in w.events() if e["type"] == "it.pec.overdue-cleared"]


def test_another_mailboxs_receipts_do_not_move_this_mailboxs_deadlines(
    store: TableStore,
) -> None:
    """A receipt far later in mailbox beta makes beta's messages due, not alpha's; a
    later receipt in alpha itself does."""
    w = worker(store)
    w.feed(sent_in("alpha", 1, 0), sent_in("beta", 1, 0))
    w.feed(receipt_in("beta", 2, Event.ACCEPT, 24 * 60))  # an orphan receipt, a day later
    assert w.tick() == 1
    assert overdue_events(w) == [("<m1@c>", "no-acceptance")]
    assert w.scanner.waiting == 1  # alpha's message: due by the newest time, not its own
    assert w.metric("pec_table_entries_waiting") == 1
    w.feed(receipt_in("alpha", 2, Event.ACCEPT, 24 * 60))
    assert w.tick() == 1
    assert overdue_events(w) == [("<m1@c>", "no-acceptance")] * 2
    assert w.scanner.waiting == 0


def test_a_sent_copy_does_not_move_the_deadline_clock(store: TableStore) -> None:
    """Only verified receipts move a mailbox's deadline clock: a Sent copy a day later
    does not make its earlier message overdue."""
    w = worker(store)
    w.feed(sent_in("alpha", 1, 0), receipt_in("alpha", 9, Event.ACCEPT, 0))
    w.feed(sent_in("alpha", 2, 24 * 60))
    assert w.tick() == 0
    assert overdue_events(w) == []
    assert w.clock.deadline_now("alpha") == at(0)


def test_waiting_entries_do_not_hide_the_due_ones_behind_them(
    store: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More waiting entries than one scan reads: the next scan resumes after them, so a
    finished message behind them is still retired on time."""
    monkeypatch.setattr("pipeline.streams.deadlines.MAX_DUE_PER_SCAN", 3)
    w = worker(store, retention_seconds=DAY, orphan_ttl_seconds=DAY / 2)
    w.feed(*(sent_in("waiting", n, n) for n in range(7)))  # never any receipt
    w.feed(sent_in("done", 1, 100), receipt_in("done", 1, Event.ACCEPT, 101))
    w.feed(receipt_in("done", 1, Event.DELIVER, 102))
    w.clock.observe(at(102) + timedelta(days=2))  # the newest data time, not a receipt
    sent_checks = [w.tick() for _ in range(4)]
    assert sum(sent_checks) == 1  # the retirement, once the scans reached it
    assert w.metric("pec_table_evictions_total", reason="finished") == 1
    assert overdue_events(w) == []


def test_with_the_wall_clock_every_mailbox_has_the_same_now() -> None:
    wall = EventClock("wall", lambda: T0)
    wall.observe_receipt("alpha", T0 + timedelta(days=3))
    assert wall.now() == wall.deadline_now("alpha") == wall.deadline_now("beta") == T0
    event = EventClock("event")
    event.observe_receipt("alpha", T0 + timedelta(days=3))
    event.observe(T0 + timedelta(days=5))
    assert (event.now(), event.deadline_now("alpha"), event.deadline_now("beta")) == (
        T0 + timedelta(days=5), T0 + timedelta(days=3), None,
    )  # fmt: skip
    event.advance(T0 + timedelta(days=4))
    assert (event.deadline_now("alpha"), event.deadline_now("beta")) == (
        T0 + timedelta(days=4), T0 + timedelta(days=4),
    )  # fmt: skip
