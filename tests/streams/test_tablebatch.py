"""The batch-write helper both stateful processors use: changelog first, then the store."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from pipeline.core import NOTHING, Tally
from pipeline.streams.sink import Record, RecordingSink
from pipeline.streams.state import (
    Describe,
    Due,
    Entry,
    MemoryPartitions,
    PartitionState,
    TableStore,
    Write,
)
from pipeline.streams.tablebatch import BatchWork, TableWriter

CHANGELOG = "test-changelog"


def entry(value: int) -> Entry:
    """A value's bookkeeping: due at the value itself, one in flight per value."""
    return Entry(value, Tally(inflight=value))


def writer(store: TableStore) -> TableWriter[int]:
    return TableWriter(store, CHANGELOG, lambda v: str(v).encode(), int, entry)


@dataclass
class LoggedPartition:
    """A partition that records each write with the offset it was given."""

    number: int
    log: list[tuple[int, list[Write], int | None]]
    values: dict[bytes, bytes] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def write(self, writes: Sequence[Write], offset: int | None) -> None:
        self.log.append((self.number, list(writes), offset))

    def due(self, until: int, limit: int, after: Due | None = None) -> list[Due]:
        return []

    def forget(self, entries: Iterable[Due]) -> None:
        return None

    def tally(self) -> Tally:
        return NOTHING


@dataclass
class LoggedStore:
    describe: Describe | None = None
    log: list[tuple[int, list[Write], int | None]] = field(default_factory=list)
    stored: dict[int, dict[bytes, bytes]] = field(default_factory=dict)

    def partition(self, partition: int) -> PartitionState:
        return LoggedPartition(partition, self.log, self.stored.setdefault(partition, {}))

    def lookup(self, key: bytes) -> bytes | None:
        return None

    def local_partitions(self) -> Collection[int]:
        return list(self.stored)


class BrokenChangelog(RecordingSink):
    async def send_all(self, records: Sequence[Record]) -> list[int]:
        raise ConnectionError("broker gone")


async def test_only_changed_keys_go_to_their_partition_then_to_the_store() -> None:
    """One changelog record per changed key, to its own partition; then one store write
    per partition with the values, the tallies before and after, and the last offset."""
    store = LoggedStore(stored={1: {b"a": b"1"}})
    table = writer(store)
    work: BatchWork[int] = BatchWork()
    work.load(b"a", table.stored(b"a", 1), 1)
    work.load(b"b", None, 2)
    work.load(b"c", None, 1)
    work.load(b"same", 5, 2)
    work.working[b"a"] = 3
    work.working[b"b"] = 4
    work.working[b"c"] = 7
    sink = RecordingSink(sent={CHANGELOG: [(b"x", b"0", [])] * 10})  # offsets from 10 on

    written = await table.commit(work, sink)

    assert written == [b"a", b"b", b"c"]
    assert sink.sent[CHANGELOG][10:] == [(b"a", b"3", []), (b"b", b"4", []), (b"c", b"7", [])]
    assert sink.partitions[CHANGELOG] == [1, 2, 1]
    assert store.log == [
        (1, [Write(b"a", b"3", Tally(1), entry(3)), Write(b"c", b"7", NOTHING, entry(7))], 12),
        (2, [Write(b"b", b"4", NOTHING, entry(4))], 11),
    ]


async def test_a_key_that_leaves_is_a_tombstone_and_leaves_the_store() -> None:
    """A value gone (None) is a changelog tombstone and a delete in the store, whose tally
    loses what the old value counted."""
    store = MemoryPartitions()
    table = writer(store)
    first: BatchWork[int] = BatchWork()
    first.load(b"k", None, 0)
    first.working[b"k"] = 2
    await table.commit(first, RecordingSink())
    assert store.partition(0).tally() == Tally(2)

    second: BatchWork[int] = BatchWork()
    second.load(b"k", table.stored(b"k", 0), 0)
    assert second.original[b"k"] == 2
    second.working[b"k"] = None
    sink = RecordingSink()
    assert await table.commit(second, sink) == [b"k"]
    assert sink.sent[CHANGELOG] == [(b"k", None, [])]
    assert store.partition(0).get(b"k") is None
    assert store.partition(0).tally() == NOTHING


async def test_no_store_write_without_the_changelog_ack() -> None:
    """The changelog send fails: the store is not written (the batch is replayed)."""
    store = MemoryPartitions()
    work: BatchWork[int] = BatchWork()
    work.load(b"k", None, 0)
    work.working[b"k"] = 1
    with pytest.raises(ConnectionError):
        await writer(store).commit(work, BrokenChangelog())
    assert store.partition(0).get(b"k") is None


async def test_a_batch_that_changes_nothing_sends_nothing() -> None:
    """Loaded and left as it was: no changelog record, no store write."""
    store = LoggedStore(stored={0: {b"k": b"1"}})
    table = writer(store)
    work: BatchWork[int] = BatchWork()
    work.load(b"k", table.stored(b"k", 0), 0)
    assert work.holds(b"k")
    assert not work.holds(b"other")
    sink = RecordingSink()
    assert await table.commit(work, sink) == []
    assert sink.sent == {}
    assert store.log == []
