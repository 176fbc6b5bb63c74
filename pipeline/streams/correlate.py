"""The correlate processor: ``pec.receipts`` -> lifecycle -> events and message state.

Stateful: one table entry per correlation key (a faust Table backed by its changelog).
Order of effects, for at-least-once with idempotent state: the events and the new
message state are sent and acknowledged first, then the table's changelog record, and
only then does the handler return (and faust may commit the source offset). A crash
before the changelog ack replays the record: the state does not have it yet, so the
same events (same ids) and message state are sent again, and a consumer deduping on
``id`` sees each event once. A crash after it replays a record whose receipt id the
restored state already holds: nothing is sent twice.

The changelog record is written here, awaited, rather than by faust's
``table[key] = value``: faust buffers that write and its pre-commit flush gives up after
100 ms without progress, so under load a source offset could be committed while the
state change was still in a buffer — and a SIGKILL then lost it (seen in the failover
test as transitions that skipped a state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.codec import (
    SUSPECT_EVENTS,
    DecodeError,
    decode,
    dumps,
    event_to_dict,
    message_state_to_dict,
    observation_from_dict,
    tracked_from_dict,
    tracked_to_dict,
)
from pipeline.core.model import DeliveryState
from pipeline.core.observation import Evidence, apply_observation
from pipeline.core.tracker import Deadlines, EventType, Tracked, TrackEvent
from pipeline.metrics import StreamMetrics
from pipeline.settings import StreamSettings
from pipeline.streams.sink import Record, Sink, dead_letter

log = logging.getLogger(__name__)

# (Kafka key, value, partition) of one pec.receipts record
Item = tuple[bytes | None, bytes | None, int | None]

FAILED = (DeliveryState.DELIVERY_FAILED, DeliveryState.VIRUS, DeliveryState.REJECTED)
# pec_delivery_latency_seconds{phase}: the transitions that end a phase
PHASES = {DeliveryState.ACCEPTED: "acceptance", DeliveryState.DELIVERED: "delivery"}


@dataclass
class EventClock:
    """``now`` for deadlines: the wall clock, or the newest daticert time seen ("event")."""

    mode: str
    wall: Callable[[], datetime] | None = field(default=None, repr=False)
    newest: datetime | None = None

    def observe(self, at: datetime | None) -> None:
        if at is not None and (self.newest is None or at > self.newest):
            self.newest = at

    def now(self) -> datetime | None:
        if self.mode == "event":
            return self.newest
        return self.wall() if self.wall is not None else None


@dataclass
class KeyPartitions:
    """The partition of each key in this worker's local table store.

    faust's memory store forgets, once a rebalance's recovery completes, only the keys it
    restored from the changelog; the keys the correlator wrote itself (see the module
    docstring) stay when their partition moves to another worker. Without this index
    the old owner's deadline scan would go on counting them in its gauges and asking for
    checks of messages it no longer owns.
    """

    of: dict[bytes, int] = field(default_factory=dict)

    def record(self, key: bytes, partition: int | None) -> None:
        if partition is not None:
            self.of[key] = partition

    async def on_changelog_event(self, event: Any) -> None:
        """faust's ``Table(on_changelog_event=...)``: a key restored from the changelog."""
        if event.message.value is None:
            self.of.pop(event.key, None)
        else:
            self.record(event.key, event.message.partition)

    def owned(self, key: bytes, assigned: Collection[int] | None) -> bool:
        """``assigned`` None: every key (no consumer group, as in unit tests)."""
        partition = self.of.get(key)
        return assigned is None or partition is None or partition in assigned

    def purge(self, store: MutableMapping[bytes, bytes], assigned: Collection[int]) -> int:
        """Drop the keys of partitions no longer assigned; returns how many."""
        moved = [key for key, partition in self.of.items() if partition not in assigned]
        for key in moved:
            store.pop(key, None)
            del self.of[key]
        return len(moved)


@dataclass
class Correlator:
    """``store`` is the table's local data (faust ``Table.data``); ``changelog`` the name
    of the topic that backs it, written through ``sink`` to the record's own partition."""

    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    store: MutableMapping[bytes, bytes]
    clock: EventClock
    changelog: str
    partitions: KeyPartitions = field(default_factory=KeyPartitions)

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(self.settings.acceptance_timeout, self.settings.delivery_window)

    async def handle(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        await self.handle_batch([(key, value, partition)])

    async def handle_batch(self, batch: Sequence[Item]) -> None:
        """Apply records in order; publish their events and message states (one wait
        for all acks), then their table changelog records (a second wait), then the
        local store. Records of one key in a batch are applied one after the other.
        A record that does not decode, or whose Kafka key is not its correlation key,
        is a dead letter (``bad-observation``)."""
        outputs: list[Record] = []
        changes: dict[bytes, tuple[bytes, int | None]] = {}
        working: dict[bytes, Tracked | None] = {}
        for record_key, value, partition in batch:
            try:
                observation = observation_from_dict(decode(value))
                key = observation.key.encode()
                if record_key != key:
                    raise DecodeError("the record key is not the observation's correlation key")
            except DecodeError as exc:
                outputs.append(self._dead_letter(record_key, value, "bad-observation", exc))
                continue
            if key in working:
                tracked = working[key]
            else:
                try:
                    tracked = self._stored(key)
                except DecodeError as exc:
                    # Only a corrupted changelog gets here: keep the partition moving and
                    # the receipt itself, to be replayed once the entry is repaired.
                    log.error("table entry %r does not decode: %s", key, exc)
                    outputs.append(self._dead_letter(key, value, "bad-table-value", exc))
                    continue
            updated, events = apply_observation(tracked, observation, self.deadlines)
            for event in events:
                self.clock.observe(event.at)
                outputs.append(
                    Record(self.settings.state_changes_topic, key, dumps(event_to_dict(event)))
                )
                self._count(event)
            working[key] = updated
            if updated != tracked:
                if isinstance(observation, Evidence):
                    provider = self.metrics.provider_label(observation.provider)
                    self.metrics.labelled(self.metrics.receipts, observation.kind, provider).inc()
                state = dumps(message_state_to_dict(updated))
                outputs.append(Record(self.settings.message_state_topic, key, state))
                changes[key] = (dumps(tracked_to_dict(updated)), partition)
        await self.sink.send_all(outputs)
        await self.sink.send_all(
            [Record(self.changelog, k, v, partition=part) for k, (v, part) in changes.items()]
        )
        for key, (encoded, partition) in changes.items():
            self.store[key] = encoded  # last: see the module docstring
            self.partitions.record(key, partition)
        self.metrics.correlated.inc(len(batch))

    def _stored(self, key: bytes) -> Tracked | None:
        stored = self.store.get(key)
        return tracked_from_dict(decode(stored)) if stored is not None else None

    def _dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, exc: DecodeError
    ) -> Record:
        self.metrics.labelled(self.metrics.dlq, reason).inc()
        return dead_letter(self.settings.dlq_topic, key, value, reason, str(exc))

    def _count(self, event: TrackEvent) -> None:
        metrics = self.metrics
        if event.type in SUSPECT_EVENTS:
            metrics.labelled(metrics.signature_failures, event.type.value).inc()
            return
        if event.type is not EventType.STATE_CHANGE or event.after is None:
            return
        metrics.labelled(metrics.state_changes, event.after.value).inc()
        if event.after in FAILED:
            metrics.labelled(metrics.failures, event.after.value).inc()
        if event.latency is None:
            return
        phase = PHASES.get(event.after)
        if phase is not None:
            provider = metrics.provider_label(event.provider)  # the receipt ending the phase
            metrics.labelled(metrics.latency, phase, provider).observe(event.latency)


def summarize(values: list[Tracked]) -> tuple[int, int, int]:
    """(in flight, overdue, orphan) counts for this worker's gauges."""
    inflight = sum(1 for t in values if not t.message.is_final)
    overdue = sum(1 for t in values if t.overdue)
    orphans = sum(1 for t in values if t.is_orphan)
    return inflight, overdue, orphans
