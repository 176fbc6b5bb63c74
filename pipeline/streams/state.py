"""The correlate table's local storage: one partition at a time, with a due-time index.

The table (faust ``Table``, backed by its changelog topic) holds one encoded
:class:`~pipeline.core.correlate.Tracked` per correlation key. Beside each partition's
values this module keeps, written in the same batch:

* a **due-time index**: ``(due, key)`` entries from :func:`pipeline.core.retention.next_due`,
  so the deadline timer reads only what is due instead of decoding every message. Entries
  are never updated in place: a write adds the key's new entry and the timer drops
  entries it finds stale (their key's due time moved, or the key left);
* the partition's **tally** (in flight, overdue, orphans) for the gauges, adjusted by
  every write, so no scan counts them;
* with RocksDB, faust's persisted changelog offset: a restarted worker reads only the
  changelog records written after its last local write.

Two faust stores carry this: ``memory://`` (:class:`MemoryTableStore`, recovered from the
whole changelog at each start) and ``rocksdb://`` (:class:`RocksTableStore`, on disk
under the worker's datadir via rocksdict). Changelog records read back by faust's
recovery (after a restart, a rebalance, or as a standby) go through the same
bookkeeping, described by the ``describe`` function the application sets.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import faust
from faust.stores import memory as faust_memory
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from pipeline.core import NOTHING, Tally

DUE_PREFIX = b"\x00pectrack-due\x00"  # correlation keys never start with NUL
TALLY_KEY = b"\x00pectrack-tally"
_DUE_BYTES = 8  # microseconds since the epoch, big-endian: byte order is time order


@dataclass(frozen=True, slots=True)
class Entry:
    """What the store keeps about a value besides its bytes."""

    due: int | None  # microseconds since the epoch; None: never due
    tally: Tally


@dataclass(frozen=True, slots=True)
class Write:
    key: bytes
    value: bytes | None  # None: the key leaves the table
    before: Tally  # what the key's old value counted
    after: Entry | None  # None with value None


Describe = Callable[[bytes], Entry]
Due = tuple[int, bytes]


class PartitionState(Protocol):
    """One partition of the table, as the correlator and the deadline timer use it."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, writes: Sequence[Write], offset: int | None) -> None:
        """Apply ``writes`` (and, on disk, remember changelog ``offset``) atomically."""

    def due(self, until: int, limit: int, after: Due | None = None) -> list[Due]:
        """Index entries due before ``until`` (oldest first, at most ``limit``), those
        after ``after`` only when given (a scan resuming where the last one stopped)."""

    def forget(self, entries: Iterable[Due]) -> None: ...

    def tally(self) -> Tally: ...


class TableStore(Protocol):
    """What both faust stores add: the state of one partition; ``describe`` for recovery."""

    describe: Describe | None

    def partition(self, partition: int) -> PartitionState: ...

    def lookup(self, key: bytes) -> bytes | None:
        """The key's value in whichever local partition holds it."""

    def local_partitions(self) -> Collection[int]:
        """The partitions held here (active and standby)."""


# --- memory -------------------------------------------------------------------------------


@dataclass
class MemoryPartition:
    data: dict[bytes, bytes] = field(default_factory=dict)
    heap: list[Due] = field(default_factory=list)
    indexed: set[Due] = field(default_factory=set)
    totals: Tally = NOTHING

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, writes: Sequence[Write], offset: int | None) -> None:
        for w in writes:
            if w.value is None:
                self.data.pop(w.key, None)
            else:
                self.data[w.key] = w.value
            after = w.after.tally if w.after is not None else NOTHING
            self.totals = self.totals + after - w.before
            if w.after is not None and w.after.due is not None:
                entry = (w.after.due, w.key)
                if entry not in self.indexed:
                    self.indexed.add(entry)
                    heapq.heappush(self.heap, entry)

    def due(self, until: int, limit: int, after: Due | None = None) -> list[Due]:
        found: list[Due] = []
        popped: list[Due] = []
        while self.heap and self.heap[0][0] < until and len(found) < limit:
            entry = heapq.heappop(self.heap)
            if entry in self.indexed:  # else forgotten: gone from the heap for good
                popped.append(entry)
                if after is None or entry > after:
                    found.append(entry)
        for entry in popped:
            heapq.heappush(self.heap, entry)
        return found

    def forget(self, entries: Iterable[Due]) -> None:
        self.indexed.difference_update(entries)

    def tally(self) -> Tally:
        return self.totals


@dataclass
class MemoryPartitions:
    """Every partition in memory: the table store of unit tests, and the heart of
    :class:`MemoryTableStore`."""

    describe: Describe | None = None
    partitions: dict[int, MemoryPartition] = field(
        default_factory=lambda: defaultdict(MemoryPartition)
    )

    def partition(self, partition: int) -> PartitionState:
        return self.partitions[partition]

    def local_partitions(self) -> Collection[int]:
        return list(self.partitions)

    def lookup(self, key: bytes) -> bytes | None:
        for part in self.partitions.values():
            value = part.get(key)
            if value is not None:
                return value
        return None


class MemoryTableStore(faust_memory.Store[bytes, bytes]):
    """faust's memory store, partitioned: a revoked partition is dropped whole (it is
    recovered from the start of the changelog if it comes back)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.local = MemoryPartitions()

    @property
    def describe(self) -> Describe | None:
        return self.local.describe

    @describe.setter
    def describe(self, describe: Describe | None) -> None:
        self.local.describe = describe

    @property
    def partitions(self) -> dict[int, MemoryPartition]:
        return self.local.partitions

    def partition(self, partition: int) -> PartitionState:
        return self.local.partition(partition)

    def local_partitions(self) -> Collection[int]:
        return self.local.local_partitions()

    def lookup(self, key: bytes) -> bytes | None:
        return self.local.lookup(key)

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        for partition, writes, _offset in _changelog_writes(batch, self, _needed(self.describe)):
            self.partitions[partition].write(writes, None)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        for tp in revoked:
            if tp.topic in self.table.changelog_topic.topics:
                self.partitions.pop(tp.partition, None)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        keep = {tp.partition for tp in active_tps | standby_tps}
        for partition in [p for p in self.partitions if p not in keep]:
            del self.partitions[partition]


def _needed(describe: Describe | None) -> Describe:
    if describe is None:
        raise RuntimeError("the table store needs describe() before recovery")
    return describe


# --- RocksDB ------------------------------------------------------------------------------


def _due_key(due: int, key: bytes) -> bytes:
    return DUE_PREFIX + max(0, due).to_bytes(_DUE_BYTES, "big") + key


def _tally_bytes(value: Tally) -> bytes:
    return f"{value.inflight} {value.overdue} {value.orphans}".encode()


def _tally_of(raw: bytes | None) -> Tally:
    if not raw:
        return NOTHING
    inflight, overdue, orphans = (int(n) for n in raw.split())
    return Tally(inflight, overdue, orphans)


@dataclass
class RocksPartition:
    db: Any  # rocksdict.Rdict in raw mode
    offset_key: bytes

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def write(self, writes: Sequence[Write], offset: int | None) -> None:
        import rocksdict  # noqa: PLC0415 - only with the on-disk store

        batch = rocksdict.WriteBatch(raw_mode=True)
        totals = self.tally()
        for w in writes:
            if w.value is None:
                batch.delete(w.key)
            else:
                batch.put(w.key, w.value)
            after = w.after.tally if w.after is not None else NOTHING
            totals = totals + after - w.before
            if w.after is not None and w.after.due is not None:
                batch.put(_due_key(w.after.due, w.key), b"")
        batch.put(TALLY_KEY, _tally_bytes(totals))
        if offset is not None:
            batch.put(self.offset_key, str(offset).encode())
        self.db.write(batch)

    def due(self, until: int, limit: int, after: Due | None = None) -> list[Due]:
        end = DUE_PREFIX + max(0, until).to_bytes(_DUE_BYTES, "big")
        start = DUE_PREFIX if after is None else _due_key(*after)
        found: list[Due] = []
        for raw in self.db.keys(from_key=start):
            if raw >= end or len(found) >= limit:
                break
            if raw == start and after is not None:
                continue
            stamp = raw[len(DUE_PREFIX) : len(DUE_PREFIX) + _DUE_BYTES]
            found.append((int.from_bytes(stamp, "big"), raw[len(DUE_PREFIX) + _DUE_BYTES :]))
        return found

    def forget(self, entries: Iterable[Due]) -> None:
        import rocksdict  # noqa: PLC0415

        batch = rocksdict.WriteBatch(raw_mode=True)
        for due, key in entries:
            batch.delete(_due_key(due, key))
        self.db.write(batch)

    def tally(self) -> Tally:
        return _tally_of(self.db.get(TALLY_KEY))


class RocksTableStore(faust_rocksdb.Store):
    """faust's RocksDB store (rocksdict driver), with the index and tally in each
    partition's database. faust opens and closes the databases as partitions move,
    and recovers from the persisted offset."""

    describe: Describe | None = None

    def partition(self, partition: int) -> PartitionState:
        return RocksPartition(self._db_for_partition(partition), self.offset_key)

    def local_partitions(self) -> Collection[int]:
        return list(self._dbs)

    def lookup(self, key: bytes) -> bytes | None:
        for db in list(self._dbs.values()):
            value: bytes | None = db.get(key)
            if value is not None:
                return value
        return None

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        for partition, writes, offset in _changelog_writes(batch, self, _needed(self.describe)):
            self.partition(partition).write(writes, offset)


def _changelog_writes(
    batch: Iterable[Any], store: TableStore, describe: Describe
) -> Iterable[tuple[int, list[Write], int]]:
    """Changelog records as writes per partition, in order, with the last offset: each
    record's old value is what the store holds, or an earlier record of the batch."""
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for event in batch:
        by_partition[event.message.partition].append(event.message)
    for partition, messages in by_partition.items():
        state = store.partition(partition)
        pending: dict[bytes, bytes | None] = {}
        writes: list[Write] = []
        for message in messages:
            key: bytes = message.key
            old = pending[key] if key in pending else state.get(key)
            value: bytes | None = message.value
            before = describe(old).tally if old is not None else NOTHING
            writes.append(Write(key, value, before, describe(value) if value else None))
            pending[key] = value
        yield partition, writes, max(m.offset for m in messages)


STORES = {"memory": MemoryTableStore, "rocksdb": RocksTableStore}


class TrackedTable(faust.Table[bytes, bytes]):
    """A faust table whose store is one of :data:`STORES` (by the URL's scheme)."""

    @property
    def store(self) -> TableStore:
        return cast(TableStore, self.data)

    def _new_store_by_url(self, url: Any) -> Any:
        scheme = str(url).split(":", 1)[0]
        try:
            store_class = STORES[scheme]
        except KeyError:
            raise ValueError(f"store must be memory:// or rocksdb://, not {url!r}") from None
        return store_class(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
