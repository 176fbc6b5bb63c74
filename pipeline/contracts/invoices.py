"""The per-invoice SdI state on the wire: what the invoices processor reads, keeps and
publishes.

* **in** — an ``sdi.notifications`` record (:mod:`pipeline.contracts.inbound`, either
  binding mode) read back as a :class:`NotificationRecord`: only what the lifecycle needs;
* **kept** — the invoices table's value, one :class:`InvoiceEntry` per
  ``<mailbox> <NomeFile>`` (schema ``pectrack.invoice/1``)::

      {"schema": "pectrack.invoice/1", "key": "amministrazione IT01234567890_0A1B2.xml",
       "mailbox": "amministrazione", "nome_file": "IT01234567890_0A1B2.xml",
       "identificativo_sdi": "4000007", "state": "accepted",
       "notifications": ["NE:531245", "RC:120974"], "changed_at": "2024-03-01T11:00:00+01:00"}

* **out** — ``sdi.invoice-states``, key ``<mailbox> <NomeFile>``: one CloudEvent
  ``it.pec.sdi-invoice-state`` per notification that moved the invoice's state, or
  contradicted it (outcome ``conflict``)::

      {"specversion": "1.0", "id": "6d1e…", "type": "it.pec.sdi-invoice-state",
       "source": "pectrack/amministrazione", "subject": "IT01234567890_0A1B2.xml",
       "time": "2024-03-01T11:00:00+01:00", …,
       "data": {"key": "amministrazione IT01234567890_0A1B2.xml", "before": "delivered",
                "after": "accepted", "event": "accettazione", "outcome": "advanced",
                "notification_id": "NE:531245", "notification_type": "NE", …}}

  ``id`` is derived from the key and the notification's id: the same notification applied
  again (a replay after a crash) gives the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.contracts.cloudevents import TYPE_PREFIX, Mode, encode_cloudevent, read_cloudevent
from pipeline.contracts.codec import (
    DecodeError,
    decode,
    dumps,
    iso,
    read_enum,
    read_opt_enum,
    read_opt_str,
    read_str,
    read_time,
)
from pipeline.contracts.headers import Headers
from pipeline.contracts.inbound import INVOICE_RECEIVED, INVOICE_SENT, SDI_NOTIFICATION
from pipeline.core.sdi_lifecycle import (
    InvoiceState,
    InvoiceTrack,
    SdiEvent,
    SdiOutcome,
    SdiTransition,
)

INVOICE_SCHEMA = "pectrack.invoice/1"
INVOICE_STATE = "sdi-invoice-state"  # it.pec.sdi-invoice-state
_TYPES = {
    f"{TYPE_PREFIX}{name}": name for name in (SDI_NOTIFICATION, INVOICE_RECEIVED, INVOICE_SENT)
}


# --- in: sdi.notifications ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """What the invoices processor needs of one ``sdi.notifications`` record."""

    event_id: str  # the sdi.notifications event's id
    type: str  # "sdi-notification", "invoice-received" or "invoice-sent"
    key: str  # "<mailbox> <NomeFile>", also the Kafka key
    mailbox: str
    nome_file: str
    evidence: bool  # from a valid, trusted envelope the SdI sent
    notification_type: str | None  # RC, NS, MC, NE, DT, AT
    event: SdiEvent | None  # None: no lifecycle event (an invoice received, an odd Esito)
    notification_id: str | None
    identificativo_sdi: str | None
    at: datetime | None  # the envelope's daticert time; for a sending, when it was sent
    msgid: str | None = None  # invoice-sent: the PEC message that carried the file


def decode_notification_record(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]], value: bytes | None
) -> NotificationRecord:
    """An ``sdi.notifications`` record in either binding mode; :class:`DecodeError` for
    anything else."""
    attributes, data = read_cloudevent(headers, value)
    if not isinstance(data, dict):
        raise DecodeError("data: expected a JSON object")
    kind = _TYPES.get(read_str(attributes, "type"))
    if kind is None:
        raise DecodeError(f"type: not an sdi.notifications event: {attributes['type'][:40]!r}")
    if kind == INVOICE_SENT:
        return _sending(read_str(attributes, "id", non_empty=True), data)
    envelope = data.get("envelope")
    if not isinstance(envelope, dict):
        raise DecodeError("envelope: expected an object")
    evidence = data.get("evidence")
    if not isinstance(evidence, bool):
        raise DecodeError("evidence: expected a boolean")
    notification = data.get("notification") if kind == SDI_NOTIFICATION else None
    if kind == SDI_NOTIFICATION and not isinstance(notification, dict):
        raise DecodeError("notification: expected an object")
    return NotificationRecord(
        event_id=read_str(attributes, "id", non_empty=True),
        type=kind,
        key=read_str(data, "key", non_empty=True),
        mailbox=read_str(data, "mailbox", non_empty=True),
        nome_file=read_str(data, "nome_file", non_empty=True),
        evidence=evidence,
        notification_type=read_opt_str(notification, "type") if notification else None,
        event=read_opt_enum(SdiEvent, data, "lifecycle_event"),
        notification_id=read_opt_str(data, "notification_id") or None,
        identificativo_sdi=read_opt_str(data, "identificativo_sdi") or None,
        at=read_time(envelope, "daticert_time"),
    )


def _sending(event_id: str, data: dict[str, Any]) -> NotificationRecord:
    """An ``it.pec.invoice-sent`` record: the organisation's own Sent copy."""
    return NotificationRecord(
        event_id=event_id,
        type=INVOICE_SENT,
        key=read_str(data, "key", non_empty=True),
        mailbox=read_str(data, "mailbox", non_empty=True),
        nome_file=read_str(data, "nome_file", non_empty=True),
        evidence=False,
        notification_type=None,
        event=read_enum(SdiEvent, data, "lifecycle_event"),
        notification_id=read_str(data, "notification_id", non_empty=True),
        identificativo_sdi=None,
        at=read_time(data, "sent_at"),
        msgid=read_str(data, "msgid", non_empty=True),
    )


# --- kept: the invoices table -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceEntry:
    """One invoice as the table holds it: its key and mailbox, and its track."""

    key: str
    mailbox: str
    track: InvoiceTrack


def invoice_track_to_dict(track: InvoiceTrack) -> dict[str, Any]:
    return {
        "nome_file": track.nome_file,
        "identificativo_sdi": track.identificativo_sdi,
        "state": track.state.value,
        "final": track.is_final,
        "notifications": sorted(track.notifications),
        "changed_at": iso(track.changed_at),
        "sent_at": iso(track.sent_at),
        "sent_msgid": track.sent_msgid,
        "seen_at": iso(track.seen_at),
        "retired": track.retired,
    }


def invoice_track_from_dict(value: object) -> InvoiceTrack:
    if not isinstance(value, dict):
        raise DecodeError(f"invoice: expected an object, not {type(value).__name__}")
    notifications = value.get("notifications")
    if not (isinstance(notifications, list) and all(isinstance(n, str) for n in notifications)):
        raise DecodeError("notifications: expected an array of strings")
    retired = value.get("retired", False)
    if not isinstance(retired, bool):
        raise DecodeError("retired: expected a boolean")
    changed_at, sent_at = read_time(value, "changed_at"), read_time(value, "sent_at")
    known = [t for t in (changed_at, sent_at) if t is not None]
    return InvoiceTrack(
        nome_file=read_str(value, "nome_file", non_empty=True),
        identificativo_sdi=read_opt_str(value, "identificativo_sdi"),
        state=read_enum(InvoiceState, value, "state"),
        notifications=frozenset(notifications),
        changed_at=changed_at,
        sent_at=sent_at,
        sent_msgid=read_opt_str(value, "sent_msgid"),
        # entries written before seen_at was kept: the newest time they hold
        seen_at=read_time(value, "seen_at") if "seen_at" in value else max(known, default=None),
        retired=retired,
    )


def invoice_entry_to_dict(entry: InvoiceEntry) -> dict[str, Any]:
    return {
        "schema": INVOICE_SCHEMA,
        "key": entry.key,
        "mailbox": entry.mailbox,
        **invoice_track_to_dict(entry.track),
    }


def invoice_entry_from_dict(value: object) -> InvoiceEntry:
    track = invoice_track_from_dict(value)
    assert isinstance(value, dict)  # checked by invoice_track_from_dict
    if value.get("schema") != INVOICE_SCHEMA:
        raise DecodeError(f"schema: expected {INVOICE_SCHEMA!r}")
    return InvoiceEntry(
        key=read_str(value, "key", non_empty=True),
        mailbox=read_str(value, "mailbox", non_empty=True),
        track=track,
    )


# --- the deadline timer's check of one invoice: sdi.checks ----------------------------------

# The header that marks a check: the invoices processor reads sdi.checks together with
# sdi.notifications (the two are co-partitioned by the invoice key).
INVOICE_CHECK_HEADER = "pectrack-invoice-check"


def encode_invoice_check(key: str, now: datetime) -> tuple[bytes, Headers]:
    """A retention check of the invoice ``key`` at ``now`` (the timer's clock)::

    {"type": "invoice-check", "key": "amministrazione IT01234567890_0A1B2.xml",
     "now": "2024-04-02T09:00:00+00:00"}
    """
    value = dumps({"type": "invoice-check", "key": key, "now": iso(now)})
    return value, [(INVOICE_CHECK_HEADER, b"1")]


def decode_invoice_check(value: bytes | None) -> tuple[str, datetime]:
    """``(key, now)`` of a check; :class:`DecodeError` for anything else."""
    data = decode(value)
    if not isinstance(data, dict) or data.get("type") != "invoice-check":
        raise DecodeError("check: expected an object of type invoice-check")
    now = read_time(data, "now")
    if now is None:
        raise DecodeError("check without now")
    return read_str(data, "key", non_empty=True), now


# --- out: sdi.invoice-states --------------------------------------------------------------


def published(transition: SdiTransition) -> bool:
    """Whether a transition is an event: it changed the state, it is a conflict, or it is
    the sending of an invoice not answered yet (its start: ``sent``). (Stale and
    duplicate notifications change nothing anyone needs to hear about.)"""
    return (
        transition.changed
        or transition.outcome is SdiOutcome.CONFLICT
        or (transition.event is SdiEvent.INVIO and transition.outcome is SdiOutcome.ADVANCED)
    )


def invoice_state_id(key: str, notification_id: str) -> str:
    """The event's id: one per invoice and notification, whatever the replay."""
    parts = (INVOICE_STATE, key, notification_id)
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def invoice_state_data(
    record: NotificationRecord, transition: SdiTransition, track: InvoiceTrack
) -> dict[str, Any]:
    """The ``data`` of one ``it.pec.sdi-invoice-state`` event; ``track`` is the invoice
    after the notification."""
    return {
        "key": record.key,
        "mailbox": record.mailbox,
        "nome_file": track.nome_file,
        "identificativo_sdi": track.identificativo_sdi,
        "before": transition.before.value,
        "after": transition.after.value,
        "final": track.is_final,
        "event": transition.event.value,
        "outcome": transition.outcome.value,
        "notification_id": transition.notification_id,
        "notification_type": record.notification_type,
        "notification_event_id": record.event_id,
        "daticert_time": iso(transition.at) if record.type != INVOICE_SENT else None,
        "sent_at": iso(track.sent_at),
        "sent_msgid": track.sent_msgid,
    }


def encode_invoice_state(
    record: NotificationRecord,
    transition: SdiTransition,
    track: InvoiceTrack,
    *,
    mode: Mode,
    dataschema: str,
    processed_at: datetime,
) -> tuple[bytes, Headers]:
    """One ``sdi.invoice-states`` record's value and headers in ``mode``; ``time`` is the
    notification's envelope daticert time (the processing time only without one)."""
    return encode_cloudevent(
        event_id=invoice_state_id(record.key, transition.notification_id),
        mailbox=record.mailbox,
        type_name=INVOICE_STATE,
        subject=track.nome_file,
        time=transition.at or processed_at,
        key=record.key,
        data=invoice_state_data(record, transition, track),
        mode=mode,
        dataschema=dataschema,
    )
