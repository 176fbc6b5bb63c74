"""The correlate processor: ``pec.receipts`` -> lifecycle -> events and message state.

Stateful: one table entry per correlation key (a faust Table backed by its changelog,
stored by :mod:`pipeline.streams.state`). A deadline check retires a finished message
past its retention to a small marker and deletes orphans and old markers; observations
of a retired message are ignored as late (:mod:`pipeline.core.retention`).
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
state change was still in a buffer, and a SIGKILL would lose it (consumers would see
transitions that skip a state).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.contracts.codec import (
    DecodeError,
    decode,
    dumps,
    observation_from_dict,
    tracked_from_dict,
    tracked_to_dict,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import Publication
from pipeline.core import (
    NOTHING,
    DeadlineCheck,
    Deadlines,
    DeliveryState,
    EventType,
    Evidence,
    Fate,
    Observation,
    Retention,
    Submission,
    Tracked,
    TrackEvent,
    next_due,
    step,
    tally,
)
from pipeline.streams.clock import EventClock, micros
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record, Sink, dead_letter
from pipeline.streams.state import Entry, TableStore
from pipeline.streams.tablebatch import BatchWork, TableWriter

log = logging.getLogger(__name__)

# (Kafka key, value, partition) of one pec.receipts record
ReceiptItem = tuple[bytes | None, bytes | None, int | None]  # key, value, offset

FAILED = (DeliveryState.DELIVERY_FAILED, DeliveryState.VIRUS, DeliveryState.REJECTED)
# pec_delivery_latency_seconds{phase}: the transitions that end a phase
PHASES = {DeliveryState.ACCEPTED: "acceptance", DeliveryState.DELIVERED: "delivery"}


@dataclass
class _Work(BatchWork[Tracked]):
    """One batch in progress, and the latest message state of each key it changed."""

    states: dict[bytes, Record] = field(default_factory=dict)


@dataclass
class Correlator:
    """``store`` is the table's local storage (:mod:`pipeline.streams.state`);
    ``changelog`` the name of the topic that backs it, written through ``sink`` to the
    record's own partition."""

    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    store: TableStore
    clock: EventClock
    changelog: str
    deadlines: Deadlines = field(init=False)
    retention: Retention = field(init=False)
    publication: Publication = field(init=False)
    table: TableWriter[Tracked] = field(init=False)

    def __post_init__(self) -> None:
        self.deadlines = self.settings.deadlines
        self.retention = self.settings.retention
        self.publication = self.settings.publication
        self.table = TableWriter(
            self.store,
            self.changelog,
            lambda tracked: dumps(tracked_to_dict(tracked)),
            lambda raw: tracked_from_dict(decode(raw)),
            self.entry,
        )

    def describe(self, value: bytes) -> Entry:
        """The store's bookkeeping for a table value (also for changelog recovery)."""
        try:
            return self.entry(tracked_from_dict(decode(value)))
        except DecodeError as exc:  # correlate dead-letters this key's records meanwhile
            log.error("table entry does not decode: %s", exc)
            return Entry(None, NOTHING)

    def entry(self, tracked: Tracked) -> Entry:
        due = next_due(tracked, self.deadlines, self.retention)
        return Entry(micros(due) if due is not None else None, tally(tracked))

    async def handle(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        await self.handle_batch([(key, value, partition)])

    async def handle_batch(self, batch: Sequence[ReceiptItem]) -> None:
        """Apply records in order; publish their events and each changed key's latest
        message state (one wait for all acks), then one changelog record per changed
        key (a second wait), then the local store. Records of one key in a batch are
        applied one after the other. A record that does not decode, or whose Kafka key
        is not its correlation key, is a dead letter (``bad-observation``)."""
        work = _Work()
        for record_key, value, partition in batch:
            self._apply(work, record_key, value, partition)
        await self.sink.send_all([*work.outputs, *work.states.values()])
        await self.table.commit(work, self.sink)
        self.metrics.correlated.inc(len(batch))

    def _apply(
        self, work: _Work, record_key: bytes | None, value: bytes | None, partition: int | None
    ) -> None:
        try:
            observation = observation_from_dict(decode(value))
            key = observation.key.encode()
            if record_key != key:
                raise DecodeError("the record key is not the observation's correlation key")
        except DecodeError as exc:
            work.outputs.append(self._dead_letter(record_key, value, "bad-observation", exc))
            return
        if isinstance(observation, Evidence):  # verified: moves its mailbox's deadline clock
            self.clock.observe_receipt(observation.mailbox, observation.receipt.at)
        if not work.holds(key):
            try:
                work.load(key, self.table.stored(key, partition), partition)
            except DecodeError as exc:
                # Only a corrupted changelog gets here: keep the partition moving and
                # the receipt itself, to be replayed once the entry is repaired.
                log.error("table entry %r does not decode: %s", key, exc)
                work.outputs.append(self._dead_letter(key, value, "bad-table-value", exc))
                return
        tracked = work.working[key]
        result = step(tracked, observation, self.deadlines, self.retention)
        if result.fate is Fate.LATE:
            self.metrics.labelled(self.metrics.late, _kind(observation)).inc()
            return
        for event in result.events:
            self.clock.observe(event.at)
            encoded, headers = self.publication.state_change(event)
            work.outputs.append(Record(self.settings.state_changes_topic, key, encoded, headers))
            self._count(event)
        if result.tracked == tracked:
            return
        work.working[key] = result.tracked
        if isinstance(observation, Evidence):
            provider = self.metrics.provider_label(observation.provider)
            self.metrics.labelled(self.metrics.receipts, observation.kind, provider).inc()
        if result.fate is Fate.KEPT:
            assert result.tracked is not None
            state = self.publication.message_state(result.tracked)
            work.states[key] = Record(self.settings.message_state_topic, key, state)
            return
        assert tracked is not None  # only a held message is retired or expires
        if tracked.retired:  # a marker's life ended: nothing to report
            return
        self.metrics.labelled(
            self.metrics.evictions, "orphan" if tracked.is_orphan else "finished"
        ).inc()
        if self.settings.message_state_retention == "table":
            work.states[key] = Record(self.settings.message_state_topic, key, None)
        else:
            work.states.pop(key, None)

    def _dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, exc: DecodeError
    ) -> Record:
        self.metrics.labelled(self.metrics.dlq, reason).inc()
        return dead_letter(self.settings.dlq_topic, key, value, reason, str(exc))

    def _count(self, event: TrackEvent) -> None:
        metrics = self.metrics
        if event.type.reports_suspect:
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


def _kind(observation: Observation | DeadlineCheck) -> str:
    """A bounded label for an observation: submission, check, suspect, or a receipt kind."""
    if isinstance(observation, Submission):
        return "submission"
    if isinstance(observation, DeadlineCheck):
        return "check"
    if isinstance(observation, Evidence):
        return observation.kind
    return "suspect"
