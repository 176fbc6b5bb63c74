"""The deadline timer: find messages that are due, ask their owner to look at them.

A timer cannot write the table (writes belong to the stream that owns the key), so it
sends a ``check`` observation to the key's own partition of ``pec.receipts``; the
correlate processor applies it like any other observation: it raises overdue flags,
retires a finished message past its retention and deletes orphans and old markers
(:func:`pipeline.core.retention.step`).

The timer reads only the due-time index (:mod:`pipeline.streams.state`) of the
partitions this worker is assigned now: its work grows with what is due, not with the
number of tracked messages. An index entry whose key's due time has moved since (or
whose key left) is stale and dropped. The gauges come from each partition's tally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.contracts.codec import (
    DecodeError,
    decode,
    dumps,
    observation_to_dict,
    tracked_from_dict,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.core import NOTHING, DeadlineCheck, Deadlines, Retention, next_due
from pipeline.streams.clock import EventClock, micros
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
    deadlines: Deadlines = field(init=False)
    retention: Retention = field(init=False)

    def __post_init__(self) -> None:
        self.deadlines = self.settings.deadlines
        self.retention = self.settings.retention

    async def scan(self) -> int:
        """One pass over this worker's due entries; returns how many checks were sent."""
        now = self.clock.now()
        assigned = self.assigned()
        partitions = self.store.local_partitions() if assigned is None else assigned
        totals = NOTHING
        checks: list[DeadlineCheck] = []
        read = 0
        for partition in sorted(partitions):
            state = self.store.partition(partition)
            totals = totals + state.tally()
            if now is None:
                continue
            due = state.due(micros(now), MAX_DUE_PER_SCAN)
            read += len(due)
            stale: list[Due] = []
            for entry in due:
                check = self._check(state, entry, now)
                if check is None:
                    stale.append(entry)
                else:
                    checks.append(check)
            state.forget(stale)
        await self.sink.send_all(
            [
                Record(
                    self.settings.receipts_topic,
                    check.key.encode(),
                    dumps(observation_to_dict(check)),
                )
                for check in checks
            ]
        )
        self.metrics.due.set(read)
        self.metrics.inflight.set(totals.inflight)
        self.metrics.overdue.set(totals.overdue)
        self.metrics.orphans.set(totals.orphans)
        return len(checks)

    def _check(self, state: PartitionState, entry: Due, now: datetime) -> DeadlineCheck | None:
        """The check an index entry asks for, or ``None`` when the entry is stale."""
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
        return DeadlineCheck(tracked.key, tracked.mailbox, tracked.message.msgid, now)
