"""When an invoice leaves the invoices table: the rule of :mod:`pipeline.core.retention`.

A worker holds one :class:`~pipeline.core.sdi_lifecycle.InvoiceTrack` per invoice sent;
large users send thousands a day, so the table must end:

* an invoice in a final state (rejected, refused, accepted, deadline-passed) is *retired*
  ``InvoiceRetention.finished`` after its newest data time (``InvoiceTrack.seen_at``:
  the newest daticert or sending time of anything applied to it);
* an invoice that is not final (sent, delivered, not-delivered) is retired
  ``InvoiceRetention.open`` after it. A B2B invoice ends ``delivered`` (only the public
  administration answers with an NE or a DT, within 15 days of delivery) and an MC
  leaves it ``not-delivered`` for good: without this bound those would stay for ever;
* a retired invoice leaves a small marker (its state, ids and times, no notification
  ids) for one more ``finished``; then it is deleted.

A notification that finds a marker is *late* (:class:`~pipeline.core.retention.Fate`
``LATE``): ignored and counted, it never starts the invoice again (an RC read again
would publish a ``delivered`` for an invoice long accepted). Lateness is decided by the
marker, never by a clock. Once the marker is gone, a notification starts a new entry.
An invoice nothing applied to carried a time (``seen_at`` None) is never due.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pipeline.core.retention import Fate
from pipeline.core.sdi_lifecycle import InvoiceTrack


@dataclass(frozen=True, slots=True)
class InvoiceRetention:
    finished: timedelta = timedelta(days=30)  # a final invoice, after its newest data time
    open: timedelta = timedelta(days=90)  # an invoice not final, after its newest data time


def invoice_expires_at(track: InvoiceTrack, retention: InvoiceRetention) -> datetime | None:
    """When the invoice is retired (or, for a marker, deleted); ``None``: never, unless
    it changes. This is also its due time in the table's index."""
    if track.seen_at is None:
        return None
    life = retention.finished if track.is_final else retention.open
    if track.retired:
        return track.seen_at + life + retention.finished
    return track.seen_at + life


def retire_invoice(track: InvoiceTrack) -> InvoiceTrack:
    """The marker a retired invoice leaves: its state, ids and times; not the
    notification ids (the bulk of an entry)."""
    return replace(track, notifications=frozenset(), retired=True)


def check_invoice(
    track: InvoiceTrack | None, now: datetime, retention: InvoiceRetention
) -> tuple[InvoiceTrack | None, Fate]:
    """A deadline check at ``now`` (the check's own time: a replay decides the same):
    retire an invoice past its retention, delete a marker past its own; a check for an
    invoice no longer held is late."""
    if track is None:
        return None, Fate.LATE
    expiry = invoice_expires_at(track, retention)
    if expiry is None or now <= expiry:
        return track, Fate.KEPT
    if track.retired:
        return None, Fate.EXPIRED
    return retire_invoice(track), Fate.RETIRED
