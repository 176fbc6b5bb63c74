"""The deadline timer: find messages that are due, ask their owner to look at them.

A timer cannot write the table (writes belong to the stream that owns the key), so it
sends a ``check`` observation to the key's own partition of ``pec.receipts``; the
correlate processor applies it like any other observation: it raises overdue flags,
retires a finished message past its retention and deletes orphans and old markers
(:func:`pipeline.core.retention.step`).

The invoices table is scanned the same way: a due invoice gets a check on its partition
of ``sdi.checks``, applied by the invoices processor (:mod:`pipeline.streams.invoices`).

The timer reads only the due-time index (:mod:`pipeline.streams.state`) of the
partitions this worker is assigned now: its work grows with what is due, not with the
number of tracked messages. An index entry whose key's due time has moved since (or
whose key left) is stale and dropped. The gauges come from each partition's tally.

With ``--deadline-clock event`` a message's overdue flags are judged by its mailbox's
own receipt clock (:mod:`pipeline.streams.clock`), its expiry by the newest data time: an
entry due by the latter but not yet by the former *waits* (no check is sent, the entry
stays). A scan reads at most ``MAX_DUE_PER_SCAN`` entries per partition; when it read
that many, the next scan resumes after the last one, so entries that wait (a replay can
hold millions while their receipts are still being read) never hide the ones behind
them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Final

from pipeline.contracts.codec import (
    DecodeError,
    decode,
    dumps,
    observation_to_dict,
    tracked_from_dict,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.core import NOTHING, DeadlineCheck, Deadlines, Retention, Tracked, next_due
from pipeline.core.retention import expires_at
from pipeline.streams.clock import EventClock, micros
from pipeline.streams.invoices import InvoiceTracker
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record, Sink
from pipeline.streams.state import Due, PartitionState, TableStore

log = logging.getLogger(__name__)

# At most this many due messages per partition per scan; the rest wait for the next one
# (a replay can make a million messages due at once).
MAX_DUE_PER_SCAN = 20_000


@dataclass
class DeadlineScanner:
    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    store: TableStore
    clock: EventClock
    # The partitions of pec.receipts (and of the table) assigned now; None: every
    # partition the store holds (no consumer group, as in unit tests).
    assigned: Callable[[], Collection[int] | None] = field(default=lambda: None)
    # The invoices table (its own index, its checks on sdi.checks) and its partitions.
    invoices: InvoiceTracker | None = None
    invoices_assigned: Callable[[], Collection[int] | None] = field(default=lambda: None)
    deadlines: Deadlines = field(init=False)
    retention: Retention = field(init=False)
    # per partition: where the next scan resumes (the last entry of a full read)
    resume: dict[int, Due] = field(init=False, default_factory=dict)
    invoices_resume: dict[int, Due] = field(init=False, default_factory=dict)
    waiting: int = field(init=False, default=0)  # entries the last scan left waiting

    def __post_init__(self) -> None:
        self.deadlines = self.settings.deadlines
        self.retention = self.settings.retention

    async def scan(self) -> int:
        """One pass over this worker's due entries; returns how many checks were sent."""
        now = self.clock.now()
        totals = NOTHING
        records: list[Record] = []
        read = waiting = 0
        for state, due in self._due(self.store, self.assigned(), self.resume, now):
            totals = totals + state.tally()
            read += len(due)
            stale: list[Due] = []
            for entry in due:
                assert now is not None  # nothing is due without a clock
                check = self._check(state, entry, now)
                if check is None:
                    stale.append(entry)
                elif check is not WAIT:
                    records.append(self._record(check))
                else:
                    waiting += 1
            state.forget(stale)
        if self.invoices is not None:
            invoices = self.invoices
            partitions = self.invoices_assigned()
            for state, due in self._due(invoices.store, partitions, self.invoices_resume, now):
                read += len(due)
                stale = []
                for due_at, key in due:
                    stored = state.get(key)
                    assert now is not None
                    record = invoices.check_for(stored, due_at, now) if stored else None
                    if record is None:
                        stale.append((due_at, key))
                    else:
                        records.append(record)
                state.forget(stale)
        self.waiting = waiting
        self.metrics.waiting.set(waiting)
        await self.sink.send_all(records)
        self.metrics.due.set(read)
        self.metrics.inflight.set(totals.inflight)
        self.metrics.overdue.set(totals.overdue)
        self.metrics.orphans.set(totals.orphans)
        return len(records)

    def _due(
        self,
        store: TableStore,
        assigned: Collection[int] | None,
        resume: dict[int, Due],
        now: datetime | None,
    ) -> Iterator[tuple[PartitionState, list[Due]]]:
        """Each partition held (``assigned``, or all the store holds) with its index
        entries due before ``now`` (none without a clock): at most ``MAX_DUE_PER_SCAN``,
        resuming after the last entry of a full read."""
        partitions = store.local_partitions() if assigned is None else assigned
        for partition in sorted(partitions):
            state = store.partition(partition)
            if now is None:
                yield state, []
                continue
            due = state.due(micros(now), MAX_DUE_PER_SCAN, resume.pop(partition, None))
            if len(due) == MAX_DUE_PER_SCAN:
                resume[partition] = due[-1]
            yield state, due

    def _record(self, check: DeadlineCheck) -> Record:
        value = dumps(observation_to_dict(check))
        return Record(self.settings.receipts_topic, check.key.encode(), value)

    def _check(
        self, state: PartitionState, entry: Due, now: datetime
    ) -> DeadlineCheck | Wait | None:
        """The check an index entry asks for, ``WAIT`` when its mailbox's clock has not
        reached it yet, or ``None`` when the entry is stale."""
        due, key = entry
        stored = state.get(key)
        if stored is None:
            return None
        try:
            tracked = tracked_from_dict(decode(stored))
        except DecodeError as exc:  # correlate dead-letters this key's records meanwhile
            log.error("table entry does not decode: %s", exc)
            return None
        current = next_due(tracked, self.deadlines, self.retention)
        if current is None or micros(current) != due:
            return None
        at = self._check_time(tracked, now)
        if at is None or due >= micros(at):
            return WAIT
        return DeadlineCheck(tracked.key, tracked.mailbox, tracked.message.msgid, at)

    def _check_time(self, tracked: Tracked, now: datetime) -> datetime | None:
        """``now`` for an entry past its expiry, else its mailbox's deadline clock (the
        same as ``now`` with the wall clock)."""
        expiry = expires_at(tracked, self.retention)
        if expiry is not None and now > expiry:
            return now
        return self.clock.deadline_now(tracked.mailbox)


class Wait(Enum):
    WAIT = "wait"


WAIT: Final = Wait.WAIT
