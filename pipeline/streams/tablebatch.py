"""One batch of changes to a table, and its commit: the changelog first, then the store.

Both stateful processors (correlate, invoices) apply a batch of records to the values
they load from their table, publish what the batch caused, then make the changes
durable in the same order (see the order of effects in
:mod:`pipeline.streams.correlate`):

1. one changelog record per changed key, to the key's own partition, all sent before
   one wait for the acknowledgements;
2. then, per partition, one atomic store write holding the changed values (with their
   due-time index entry and tally change, :mod:`pipeline.streams.state`) and the last
   changelog offset written.

:class:`BatchWork` is the batch in progress (what each key held before it and holds now);
:class:`TableWriter` reads values from the store and commits a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline.core import NOTHING
from pipeline.streams.sink import Record, Sink
from pipeline.streams.state import Entry, TableStore, Write

V = TypeVar("V")


@dataclass
class BatchWork(Generic[V]):
    """One batch in progress: what each key held before it and holds now."""

    outputs: list[Record] = field(default_factory=list)  # events and dead letters, in order
    original: dict[bytes, V | None] = field(default_factory=dict)
    working: dict[bytes, V | None] = field(default_factory=dict)
    partition_of: dict[bytes, int | None] = field(default_factory=dict)

    def holds(self, key: bytes) -> bool:
        """Whether ``key``'s value was loaded in this batch."""
        return key in self.working

    def load(self, key: bytes, value: V | None, partition: int | None) -> None:
        """``key``'s value as the store holds it before the batch, in ``partition``."""
        self.original[key] = self.working[key] = value
        self.partition_of[key] = partition

    def changed(self) -> list[bytes]:
        return [key for key, now in self.working.items() if now != self.original[key]]


@dataclass(frozen=True)
class TableWriter(Generic[V]):
    """A table's local ``store`` and its ``changelog`` topic, seen as values of one
    type: ``encode``/``decode`` are its codec, ``entry`` what the store keeps about a
    value besides its bytes (due time, tally)."""

    store: TableStore
    changelog: str
    encode: Callable[[V], bytes]
    decode: Callable[[bytes], V]  # raises DecodeError for a corrupt value
    entry: Callable[[V], Entry]

    def stored(self, key: bytes, partition: int | None) -> V | None:
        """The value the store holds for ``key`` (:class:`DecodeError` if corrupt)."""
        raw = self.store.partition(partition or 0).get(key)
        return self.decode(raw) if raw is not None else None

    async def commit(self, work: BatchWork[V], sink: Sink) -> list[bytes]:
        """Write the batch's changed keys: their changelog records through ``sink`` (one
        wait for every acknowledgement), then each partition's store with the last offset
        written. Returns the keys written."""
        changed = work.changed()
        encoded = {
            key: self.encode(value) if (value := work.working[key]) is not None else None
            for key in changed
        }
        offsets = await sink.send_all(
            [Record(self.changelog, k, encoded[k], partition=work.partition_of[k]) for k in changed]
        )
        writes: dict[int, list[Write]] = {}
        last: dict[int, int] = {}
        for key, offset in zip(changed, offsets, strict=True):
            partition = work.partition_of[key] or 0
            before, after = work.original[key], work.working[key]
            writes.setdefault(partition, []).append(
                Write(
                    key,
                    encoded[key],
                    self.entry(before).tally if before is not None else NOTHING,
                    self.entry(after) if after is not None else None,
                )
            )
            last[partition] = offset
        for partition, partition_writes in writes.items():
            self.store.partition(partition).write(partition_writes, last[partition])
        return changed
