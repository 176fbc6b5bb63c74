"""The deadline timer: find messages that became overdue, ask their owner to flag them.

A timer cannot write a faust table (writes belong to the stream that owns the key), so
it sends a ``check`` observation to the key's own partition of ``pec.receipts``; the
correlate processor applies it like any other observation. The same scan refreshes
the in-flight, overdue and orphan gauges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.codec import DecodeError, decode, dumps, observation_to_dict, tracked_from_dict
from pipeline.core.observation import DeadlineCheck
from pipeline.core.tracker import Deadlines, Tracked, overdue_flags
from pipeline.metrics import StreamMetrics
from pipeline.settings import StreamSettings
from pipeline.streams.correlate import EventClock, summarize
from pipeline.streams.sink import Record, Sink

log = logging.getLogger(__name__)


@dataclass
class DeadlineScanner:
    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    table: Mapping[bytes, bytes]
    clock: EventClock

    async def scan(self) -> int:
        """One pass over this worker's keys; returns how many checks were requested."""
        now = self.clock.now()
        deadlines = Deadlines(self.settings.acceptance_timeout, self.settings.delivery_window)
        values = list(_decoded(list(self.table.values())))
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
