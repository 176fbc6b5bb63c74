"""The deadline timer: find messages that became overdue, ask their owner to flag them.

A timer cannot write a faust table (writes belong to the stream that owns the key), so
it sends a ``check`` observation to the key's own partition of ``pec.receipts``; the
correlate processor applies it like any other observation. The same scan refreshes
the in-flight, overdue and orphan gauges.

Only keys of partitions the worker is assigned now are scanned: after a rebalance the
local store may still hold keys of partitions another worker owns (see
:class:`~pipeline.streams.correlate.KeyPartitions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.codec import DecodeError, decode, dumps, observation_to_dict, tracked_from_dict
from pipeline.core.observation import DeadlineCheck
from pipeline.core.tracker import Deadlines, Tracked, overdue_flags
from pipeline.metrics import StreamMetrics
from pipeline.settings import StreamSettings
from pipeline.streams.correlate import EventClock, KeyPartitions, summarize
from pipeline.streams.sink import Record, Sink

log = logging.getLogger(__name__)


@dataclass
class DeadlineScanner:
    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    table: Mapping[bytes, bytes]
    clock: EventClock
    partitions: KeyPartitions = field(default_factory=KeyPartitions)
    # The partitions of pec.receipts (and of the table) assigned now; None: all keys.
    assigned: Callable[[], Collection[int] | None] = field(default=lambda: None)

    async def scan(self) -> int:
        """One pass over this worker's keys; returns how many checks were requested."""
        now = self.clock.now()
        deadlines = Deadlines(self.settings.acceptance_timeout, self.settings.delivery_window)
        assigned = self.assigned()
        owned = [v for k, v in list(self.table.items()) if self.partitions.owned(k, assigned)]
        values = list(_decoded(owned))
        checks = [
            DeadlineCheck(tracked.key, tracked.mailbox, tracked.message.msgid, now)
            for tracked in values
            if now is not None and overdue_flags(tracked, now, deadlines) - tracked.overdue
        ]
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
        requested = len(checks)
        inflight, overdue, orphans = summarize(values)
        self.metrics.inflight.set(inflight)
        self.metrics.overdue.set(overdue)
        self.metrics.orphans.set(orphans)
        return requested


def _decoded(stored: Iterable[bytes]) -> Iterable[Tracked]:
    for value in stored:
        try:
            yield tracked_from_dict(decode(value))
        except DecodeError as exc:  # correlate dead-letters this key's records meanwhile
            log.error("table entry does not decode: %s", exc)
