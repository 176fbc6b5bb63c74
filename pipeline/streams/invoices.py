"""The invoices processor: ``sdi.notifications`` -> per-invoice SdI state -> ``sdi.invoice-states``.

Stateful: one table entry per invoice sent, keyed ``<mailbox> <NomeFile>`` like its
source records (a second faust table with its own changelog, stored by
:mod:`pipeline.streams.state` as the correlate table is: due at its expiry, nothing to
tally). An invoice leaves the table as a message does (:mod:`pipeline.core.sdi_retention`):
the deadline timer sends a check to the invoice's partition of ``sdi.checks`` (read here
with ``sdi.notifications``), which retires it to a marker past its retention and deletes
the marker later; a notification that finds a marker is late (ignored, counted).
Each SdI notification about the invoice is applied with
:func:`pipeline.core.sdi_lifecycle.apply`::

    RC  sent -> delivered            advanced      -> it.pec.sdi-invoice-state
    NE  delivered -> accepted        advanced      -> it.pec.sdi-invoice-state
    Sent copy (invio) sent -> sent   advanced      -> it.pec.sdi-invoice-state (its start)
    NS  accepted -> accepted         conflict      -> it.pec.sdi-invoice-state
    RC  again (same SdI MessageId)   duplicate     -> nothing
    RC  after the NE                 stale         -> nothing (its id is remembered)

Not applied, counted (``pec_sdi_invoice_ignored_total{reason}``): ``it.pec.invoice-received``
records (an invoice received has no lifecycle here), notifications that are not
evidence (not a valid, trusted envelope certified as sent by the SdI: a forgery must not
move an invoice), and an NE whose Esito is neither EC01 nor EC02. An
``it.pec.invoice-sent`` record (the organisation's own Sent copy, never evidence) is
applied: it moves no state, it records when and in which PEC message the file left.

Order of effects, as in :mod:`pipeline.streams.correlate` (at-least-once, idempotent
state): the events are sent and acknowledged first, then each changed invoice's
changelog record, written here and awaited, then the local store; only then does the
handler return and faust may commit the source offset. A crash before the changelog ack
replays the record onto the state without it: the same transitions with the same ids are
sent again (a consumer deduplicates on ``id``). A crash after it replays a record whose
notification id the restored state holds: DUPLICATE, nothing sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.codec import DecodeError, decode, dumps
from pipeline.contracts.inbound import INVOICE_RECEIVED, INVOICE_SENT
from pipeline.contracts.invoices import (
    INVOICE_CHECK_HEADER,
    InvoiceEntry,
    NotificationRecord,
    decode_invoice_check,
    decode_notification_record,
    encode_invoice_check,
    encode_invoice_state,
    invoice_entry_from_dict,
    invoice_entry_to_dict,
    published,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import SDI_INVOICE_STATE
from pipeline.core import NOTHING, Fate
from pipeline.core.sdi_lifecycle import apply, new_invoice
from pipeline.core.sdi_retention import InvoiceRetention, check_invoice, invoice_expires_at
from pipeline.streams.clock import EventClock, micros
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record, Sink, dead_letter
from pipeline.streams.state import Entry, TableStore
from pipeline.streams.tablebatch import BatchWork, TableWriter

log = logging.getLogger(__name__)

# (Kafka key, value, headers, partition) of one sdi.notifications record
NotificationItem = tuple[bytes | None, bytes | None, Mapping[str, bytes], int | None]

NO_ENTRY = Entry(None, NOTHING)  # not due (no time known, or corrupt); no tally


@dataclass
class InvoiceTracker:
    """``store`` is the invoices table's local storage; ``changelog`` the topic that
    backs it, written through ``sink`` to the record's own partition."""

    settings: StreamSettings
    sink: Sink
    metrics: StreamMetrics
    store: TableStore
    changelog: str
    clock: EventClock | None = None  # data times of notifications move it (event clock)
    mode: Mode = field(init=False)
    dataschema: str = field(init=False)
    retention: InvoiceRetention = field(init=False)
    table: TableWriter[InvoiceEntry] = field(init=False)

    def __post_init__(self) -> None:
        self.mode = Mode(self.settings.cloudevents_mode)
        self.dataschema = SDI_INVOICE_STATE.uri(self.settings.schema_base)
        self.retention = self.settings.invoice_retention
        self.table = TableWriter(
            self.store,
            self.changelog,
            lambda entry: dumps(invoice_entry_to_dict(entry)),
            lambda raw: invoice_entry_from_dict(decode(raw)),
            self.entry,
        )

    def describe(self, value: bytes) -> Entry:
        """The store's bookkeeping for a table value (also for changelog recovery)."""
        try:
            return self.entry(invoice_entry_from_dict(decode(value)))
        except DecodeError as exc:  # its records are dead-lettered meanwhile
            log.error("invoice table entry does not decode: %s", exc)
            return NO_ENTRY

    def entry(self, entry: InvoiceEntry) -> Entry:
        """Due at its expiry (:mod:`pipeline.core.sdi_retention`); no tally."""
        expiry = invoice_expires_at(entry.track, self.retention)
        return Entry(micros(expiry) if expiry is not None else None, NOTHING)

    def check_for(self, stored: bytes, due: int, now: datetime) -> Record | None:
        """The deadline timer's check of an index entry due before ``now``, to the
        invoice's own partition of the checks topic; ``None`` when the entry is stale
        (the invoice's due time moved, or it does not decode)."""
        try:
            entry = invoice_entry_from_dict(decode(stored))
        except DecodeError as exc:
            log.error("invoice table entry does not decode: %s", exc)
            return None
        expiry = invoice_expires_at(entry.track, self.retention)
        if expiry is None or micros(expiry) != due:
            return None
        value, headers = encode_invoice_check(entry.key, now)
        return Record(self.settings.sdi_checks_topic, entry.key.encode(), value, headers)

    def lookup(self, key: str) -> InvoiceEntry | None:
        """The invoice, if a local partition holds it (:class:`DecodeError` if corrupt)."""
        stored = self.store.lookup(key.encode())
        return invoice_entry_from_dict(decode(stored)) if stored is not None else None

    async def handle_batch(self, batch: Sequence[NotificationItem]) -> None:
        """Apply records in order; publish their events (one wait for all acks), then one
        changelog record per changed invoice (a second wait), then the local store. A
        record that does not decode, or whose Kafka key is not its invoice key, is a dead
        letter (``bad-sdi-record``)."""
        work: BatchWork[InvoiceEntry] = BatchWork()
        for record_key, value, headers, partition in batch:
            if INVOICE_CHECK_HEADER in headers:
                self._check(work, record_key, value, headers, partition)
            else:
                self._apply(work, record_key, value, headers, partition)
        await self.sink.send_all(work.outputs)
        await self.table.commit(work, self.sink)
        self.metrics.invoiced.inc(len(batch))

    def _apply(
        self,
        work: BatchWork[InvoiceEntry],
        record_key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        partition: int | None,
    ) -> None:
        try:
            record = decode_notification_record(headers, value)
            key = record.key.encode()
            if record_key != key:
                raise DecodeError("the record key is not the invoice key")
        except DecodeError as exc:
            bad = "bad-sdi-record"
            work.outputs.append(self._dead_letter(record_key, value, headers, bad, exc))
            return
        reason = _ignored(record)
        if reason is not None:
            self.metrics.labelled(self.metrics.invoice_ignored, reason).inc()
            return
        assert record.event is not None
        assert record.notification_id is not None
        if self.clock is not None:
            self.clock.observe(record.at)
        if not self._load(work, key, value, headers, partition):
            return
        entry = work.working[key]
        if entry is not None and entry.track.retired:  # past its retention: never restarts
            self.metrics.labelled(self.metrics.late, record.type).inc()
            return
        track = entry.track if entry is not None else new_invoice(record.nome_file)
        after, transition = apply(
            track,
            record.event,
            record.notification_id,
            record.at,
            record.identificativo_sdi,
            sent_msgid=record.msgid,
        )
        self.metrics.invoice_transition(transition.after, transition.outcome)
        if published(transition):
            value_out, headers_out = encode_invoice_state(
                record,
                transition,
                after,
                mode=self.mode,
                dataschema=self.dataschema,
                processed_at=datetime.now(UTC),
            )
            work.outputs.append(
                Record(self.settings.invoice_states_topic, key, value_out, headers_out)
            )
        if after != track or entry is None:
            work.working[key] = InvoiceEntry(record.key, record.mailbox, after)

    def _check(
        self,
        work: BatchWork[InvoiceEntry],
        record_key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        partition: int | None,
    ) -> None:
        """A retention check (:func:`pipeline.core.sdi_retention.check_invoice`)."""
        try:
            key_text, now = decode_invoice_check(value)
            key = key_text.encode()
            if record_key != key:
                raise DecodeError("the record key is not the invoice key")
        except DecodeError as exc:
            work.outputs.append(self._dead_letter(record_key, value, headers, "bad-check", exc))
            return
        if not self._load(work, key, value, headers, partition):
            return
        entry = work.working[key]
        track, fate = check_invoice(entry.track if entry else None, now, self.retention)
        if fate is Fate.LATE:
            self.metrics.labelled(self.metrics.late, "invoice-check").inc()
        elif fate is Fate.RETIRED:
            assert entry is not None
            assert track is not None
            self.metrics.labelled(self.metrics.evictions, "invoice").inc()
            work.working[key] = InvoiceEntry(entry.key, entry.mailbox, track)
        elif fate is Fate.EXPIRED:
            work.working[key] = None

    def _load(
        self,
        work: BatchWork[InvoiceEntry],
        key: bytes,
        value: bytes | None,
        headers: Mapping[str, bytes],
        partition: int | None,
    ) -> bool:
        """Load ``key`` into the batch once; False (and a dead letter) if it is corrupt."""
        if work.holds(key):
            return True
        try:
            work.load(key, self.table.stored(key, partition), partition)
        except DecodeError as exc:  # a corrupted changelog: keep the partition moving
            log.error("invoice table entry %r does not decode: %s", key, exc)
            work.outputs.append(self._dead_letter(key, value, headers, "bad-table-value", exc))
            return False
        return True

    def _dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        reason: str,
        exc: DecodeError,
    ) -> Record:
        self.metrics.labelled(self.metrics.dlq, reason).inc()
        return dead_letter(self.settings.dlq_topic, key, value, reason, str(exc), source=headers)


def _ignored(record: NotificationRecord) -> str | None:
    """Why a record is not applied to an invoice's lifecycle (a bounded label), or None."""
    if record.type == INVOICE_RECEIVED:
        return "invoice-received"
    if record.type == INVOICE_SENT:  # the organisation's own copy: applied, never evidence
        return None if record.event is not None and record.notification_id else "no-event"
    if not record.evidence:
        return "not-evidence"
    if record.event is None or not record.notification_id:
        return "no-event"
    return None
