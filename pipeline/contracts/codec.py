"""The one place where domain values become wire data (JSON via orjson).

Field names are the documented ones of ``pectrack inspect --json``; the stream
processors' event schema builds on the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import orjson

from pipeline.core import (
    DeadlineCheck,
    DeliveryState,
    Event,
    EventType,
    Evidence,
    Examined,
    MessageState,
    Observation,
    OverdueReason,
    PecMessage,
    Provenance,
    Receipt,
    Recipient,
    RecipientState,
    RecipientType,
    SignatureReport,
    SignatureVerdict,
    Submission,
    Suspect,
    SuspectReceipt,
    Tracked,
    TrackEvent,
    correlation_key,
    normalise_address,
    normalise_msgid,
    verdict_of_reason,
)

_EnumT = TypeVar("_EnumT", bound=Enum)


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 with its offset, as every record writes it; ``None`` stays."""
    return value.isoformat() if value is not None else None


def signature_to_dict(report: SignatureReport) -> dict[str, Any]:
    return {
        "integrity": report.integrity.value,
        "trust": report.trust.value,
        "trust_reason": report.trust_reason,
        "signer": report.signer,
        "signer_email": report.signer_email,
        "signing_time": iso(report.signing_time),
        "digest": report.digest,
    }


def message_to_dict(message: PecMessage) -> dict[str, Any]:
    return {
        "kind": message.kind.value,
        "msgid": message.msgid,
        "identificativo": message.identificativo,
        "provider": message.provider,
        "sender": message.sender,
        "recipient": message.delivery_recipient,
        "recipients": [{"address": r.address, "type": r.type.value} for r in message.recipients],
        "timestamp": iso(message.timestamp),
        "variant": message.variant.value if message.variant else None,
        "error": message.error.value if message.error else None,
        "error_detail": message.error_detail,
        "virus": message.virus,
        "subject": message.subject,
    }


def examined_to_dict(examined: Examined) -> dict[str, Any]:
    """``pectrack inspect --json`` output for one message (without the ``file`` key)."""
    data = message_to_dict(examined.message)
    data["signature"] = signature_to_dict(examined.signature)
    data["receipt_id"] = examined.receipt_id
    data["defects"] = [str(d) for d in examined.message.defects + examined.signature.defects]
    return data


def dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


# --- pec.receipts: what verify sends to correlate (schema "pectrack.observation/1") -------

OBSERVATION_SCHEMA = "pectrack.observation/1"
TRACKED_SCHEMA = "pectrack.tracked/1"


class DecodeError(ValueError):
    """A record on a pectrack topic that does not follow its schema.

    Every ``*_from_dict`` decoder takes any JSON value (what :func:`decode` returns) and
    raises only this: a poison record is a dead letter, never a crashed processor.
    """


def decode(data: bytes | None) -> Any:
    """A record value as JSON; an absent value (tombstone) or invalid JSON is a DecodeError."""
    if data is None:
        raise DecodeError("no value")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc


# Shape checks. Each names the field it refused, so the dead letter's reason says why.


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object, not {type(value).__name__}")
    return value


def _field(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise DecodeError(f"missing field {name!r}")
    return data[name]


def read_str(data: Mapping[str, Any], name: str, *, non_empty: bool = False) -> str:
    """A field of a decoded JSON object that must be a string (``DecodeError`` if not)."""
    value = _field(data, name)
    if not isinstance(value, str):
        raise DecodeError(f"{name}: expected a string, not {type(value).__name__}")
    if non_empty and not value:
        raise DecodeError(f"{name}: expected a non-empty string")
    return value


def read_opt_str(data: Mapping[str, Any], name: str) -> str | None:
    """A string field that may be missing or null."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"{name}: expected a string or null, not {type(value).__name__}")
    return value


def _list(data: dict[str, Any], name: str, *, default: list[Any] | None = None) -> list[Any]:
    value = _field(data, name) if default is None else data.get(name, default)
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected an array, not {type(value).__name__}")
    return value


def _strings(data: dict[str, Any], name: str, *, default: list[Any] | None = None) -> list[str]:
    values = _list(data, name, default=default)
    if not all(isinstance(v, str) for v in values):
        raise DecodeError(f"{name}: expected an array of strings")
    return values


def read_time(data: Mapping[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (naive times cannot be compared with the
    daticert times the lifecycle holds); missing, null or empty: ``None``."""
    value = read_opt_str(data, name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is not None:
            parsed.astimezone(UTC)  # out of range once shifted to UTC: refused here
    except (ValueError, OverflowError) as exc:
        raise DecodeError(f"{name}: not an ISO 8601 time: {value[:40]!r}") from exc
    if parsed.utcoffset() is None:
        raise DecodeError(f"{name}: time without a UTC offset: {value[:40]!r}")
    return parsed


def read_opt_enum(cls: type[_EnumT], data: Mapping[str, Any], name: str) -> _EnumT | None:
    """An enum field that may be missing or null."""
    return None if data.get(name) is None else read_enum(cls, data, name)


def read_enum(cls: type[_EnumT], data: Mapping[str, Any], name: str) -> _EnumT:
    """An enum field, by value (``DecodeError`` naming the field for an unknown one)."""
    value = read_str(data, name)
    member: _EnumT | None = cls._value2member_map_.get(value)  # type: ignore[assignment]
    if member is not None:  # Enum's own lookup, without EnumType.__call__ per field
        return member
    try:
        return cls(value)
    except ValueError as exc:
        raise DecodeError(f"{name}: unknown value {value[:40]!r}") from exc


def provenance_to_dict(provenance: Provenance) -> dict[str, Any]:
    """Where a receipt (or Sent copy) was read from and archived (``evidence`` fields)."""
    return {
        "sha256": provenance.sha256,
        "size": provenance.size,
        "kind": provenance.kind,
        "identificativo": provenance.identificativo,
        "message_id": provenance.message_id,
        "receipt_id": provenance.receipt_id,
        "recipient": provenance.recipient,
        "signature": provenance.signature,
        "mailbox": provenance.mailbox,
        "folder": provenance.folder,
        "uidvalidity": provenance.uidvalidity,
        "uid": provenance.uid,
        "stored_at": iso(provenance.stored_at),
        "archive": provenance.archive,
    }


def _opt_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DecodeError(f"{name}: expected an integer or null")
    return value


def provenance_from_dict(value: object) -> Provenance:
    data = _object(value, "evidence")
    sha256 = read_str(data, "sha256")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise DecodeError("sha256: expected 64 lower-case hex digits")
    size = _opt_int(data, "size")
    return Provenance(
        sha256=sha256,
        size=size or 0,
        kind=read_str(data, "kind"),
        mailbox=read_str(data, "mailbox"),
        folder=read_str(data, "folder"),
        uidvalidity=_opt_int(data, "uidvalidity"),
        uid=_opt_int(data, "uid"),
        identificativo=read_opt_str(data, "identificativo"),
        message_id=read_opt_str(data, "message_id"),
        receipt_id=read_opt_str(data, "receipt_id"),
        recipient=read_opt_str(data, "recipient"),
        signature=read_opt_str(data, "signature"),
        stored_at=read_time(data, "stored_at"),
        archive=read_opt_str(data, "archive"),
    )


def _opt_provenance(data: dict[str, Any]) -> Provenance | None:
    value = data.get("provenance")
    return None if value is None else provenance_from_dict(value)


def _with_provenance(data: dict[str, Any], provenance: Provenance | None) -> dict[str, Any]:
    if provenance is not None:
        data["provenance"] = provenance_to_dict(provenance)
    return data


def observation_to_dict(observation: Observation | DeadlineCheck) -> dict[str, Any]:
    base = {
        "schema": OBSERVATION_SCHEMA,
        "key": observation.key,
        "mailbox": observation.mailbox,
        "msgid": observation.msgid,
    }
    if isinstance(observation, DeadlineCheck):
        return base | {"type": "check", "now": iso(observation.now)}
    if isinstance(observation, Submission):
        submission = base | {
            "type": "submission",
            "sender": observation.sender,
            "recipients": list(observation.recipients),
            "at": iso(observation.at),
        }
        return _with_provenance(submission, observation.provenance)
    if isinstance(observation, Evidence):
        receipt = observation.receipt
        evidence = base | {
            "type": "evidence",
            "kind": observation.kind,
            "provider": observation.provider,
            "receipt_id": receipt.receipt_id,
            "event": receipt.event.value,
            "recipients": [
                {"address": r.address, "type": r.type.value} for r in receipt.recipients
            ],
            "recipient": receipt.delivery_recipient,
            "at": iso(receipt.at),
        }
        return _with_provenance(evidence, observation.provenance)
    suspect = observation.suspect
    record = base | {
        "type": "suspect",
        "kind": suspect.kind,
        "receipt_id": suspect.receipt_id,
        "event": suspect.event.value,
        "recipient": suspect.recipient,
        "reason": suspect.reason,
        "at": iso(suspect.at),
        "signature": suspect.signature.value,
    }
    return _with_provenance(record, observation.provenance)


def observation_from_dict(value: object) -> Observation | DeadlineCheck:
    """A ``pec.receipts`` record. Its key must be the correlation key of its mailbox and
    (normalised) msgid: that is the partition, and the table entry, it is applied to."""
    data = _object(value, "observation")
    if data.get("schema") != OBSERVATION_SCHEMA:
        raise DecodeError(f"unknown schema {str(data.get('schema'))[:40]!r}")
    key, mailbox, msgid = read_str(data, "key"), read_str(data, "mailbox"), read_str(data, "msgid")
    if normalise_msgid(msgid) != msgid or key != correlation_key(mailbox, msgid):
        raise DecodeError("key, mailbox and msgid do not form a correlation key")
    kind = read_str(data, "type")
    if kind == "check":
        now = read_time(data, "now")
        if now is None:
            raise DecodeError("check without now")
        return DeadlineCheck(key, mailbox, msgid, now)
    if kind == "submission":
        recipients = tuple(_strings(data, "recipients"))
        return Submission(
            key,
            mailbox,
            msgid,
            read_opt_str(data, "sender"),
            recipients,
            read_time(data, "at"),
            _opt_provenance(data),
        )
    if kind == "evidence":
        listed = [_object(r, "recipients[]") for r in _list(data, "recipients")]
        receipt = Receipt(
            receipt_id=read_str(data, "receipt_id"),
            event=read_enum(Event, data, "event"),
            recipients=tuple(
                Recipient(read_str(r, "address"), read_enum(RecipientType, r, "type"))
                for r in listed
            ),
            delivery_recipient=read_opt_str(data, "recipient"),
            at=read_time(data, "at"),
        )
        provider = read_opt_str(data, "provider")
        return Evidence(
            key, mailbox, msgid, receipt, read_str(data, "kind"), provider, _opt_provenance(data)
        )
    if kind == "suspect":
        event = read_enum(EventType, data, "event")
        if not event.reports_suspect:
            raise DecodeError(f"event: {event.value!r} is not a suspect receipt's event")
        reason = read_str(data, "reason")
        signature = (
            read_enum(SignatureVerdict, data, "signature")
            if data.get("signature") is not None
            else verdict_of_reason(event, reason)
        )
        suspect = Suspect(
            receipt_id=read_str(data, "receipt_id"),
            event=event,
            kind=read_str(data, "kind"),
            recipient=read_opt_str(data, "recipient"),
            reason=reason,
            at=read_time(data, "at"),
            signature=signature,
        )
        return SuspectReceipt(key, mailbox, msgid, suspect, _opt_provenance(data))
    raise DecodeError(f"unknown observation type {kind[:40]!r}")


def submission_from_dict(value: object) -> Submission:
    """A record of ``pec.submissions`` (schema in schemas/submission.schema.json)::

    {"mailbox": "ufficio-legale", "msgid": "<20240301.42@erp.example.it>",
     "sender": "ufficio@pec.example.it", "recipients": ["giulia.bianchi@postecert.it"],
     "submitted_at": "2024-03-01T10:00:00+01:00"}
    """
    data = _object(value, "submission")
    mailbox = read_str(data, "mailbox")
    msgid = normalise_msgid(read_str(data, "msgid"))
    if not mailbox.strip() or msgid is None:
        raise DecodeError("mailbox and msgid are required")
    recipients = tuple(
        address
        for raw in _strings(data, "recipients", default=[])
        if (address := normalise_address(raw))
    )
    return Submission(
        key=correlation_key(mailbox, msgid),
        mailbox=mailbox,
        msgid=msgid,
        sender=normalise_address(read_opt_str(data, "sender")),
        recipients=recipients,
        at=read_time(data, "submitted_at"),
    )


# --- the faust table value: one Tracked per correlation key --------------------------------


def tracked_to_dict(tracked: Tracked) -> dict[str, Any]:
    message = tracked.message
    return {
        "schema": TRACKED_SCHEMA,
        "key": tracked.key,
        "mailbox": tracked.mailbox,
        "msgid": message.msgid,
        "sender": message.sender,
        "submitted": message.submitted,
        "submitted_at": iso(message.submitted_at),
        "accepted_at": iso(message.accepted_at),
        "recipients": [
            {
                "address": r.address,
                "type": r.type.value,
                "state": r.state.value,
                "receipts": sorted(r.receipts),
                "changed_at": iso(r.changed_at),
            }
            for r in message.recipients
        ],
        "overdue": sorted([address, reason.value] for address, reason in tracked.overdue),
        "suspects": sorted(tracked.suspects),
        "providers": list(tracked.providers),
        "seen_at": iso(tracked.seen_at),
        "retired": tracked.retired,
        "evidence": [provenance_to_dict(p) for p in tracked.evidence],
    }


def _recipient_state(value: object) -> RecipientState:
    r = _object(value, "recipients[]")
    return RecipientState(
        address=read_str(r, "address"),
        type=read_enum(RecipientType, r, "type"),
        state=read_enum(DeliveryState, r, "state"),
        receipts=frozenset(_strings(r, "receipts")),
        changed_at=read_time(r, "changed_at"),
    )


def _overdue_flag(value: object) -> tuple[str, OverdueReason]:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        raise DecodeError("overdue: expected [address, reason] pairs")
    return value[0], read_enum(OverdueReason, {"reason": value[1]}, "reason")


def _flag(data: dict[str, Any], name: str) -> bool:
    """An optional boolean: missing or null is false."""
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DecodeError(f"{name}: expected a boolean")
    return value


def tracked_from_dict(value: object) -> Tracked:
    data = _object(value, "table value")
    submitted = _field(data, "submitted")
    if not isinstance(submitted, bool):
        raise DecodeError("submitted: expected a boolean")
    message = MessageState(
        msgid=read_str(data, "msgid"),
        sender=read_opt_str(data, "sender"),
        submitted_at=read_time(data, "submitted_at"),
        accepted_at=read_time(data, "accepted_at"),
        recipients=tuple(_recipient_state(r) for r in _list(data, "recipients")),
        submitted=submitted,
    )
    return Tracked(
        key=read_str(data, "key"),
        mailbox=read_str(data, "mailbox"),
        message=message,
        overdue=frozenset(_overdue_flag(flag) for flag in _list(data, "overdue")),
        suspects=frozenset(_strings(data, "suspects")),
        providers=tuple(_strings(data, "providers")),
        seen_at=read_time(data, "seen_at"),  # absent in older writers' values
        retired=_flag(data, "retired"),
        evidence=tuple(
            provenance_from_dict(p) for p in _list(data, "evidence", default=[])
        ),  # absent in older writers' values
    )


# --- outputs: pec.state-changes and pec.message-state --------------------------------------


def event_to_dict(event: TrackEvent) -> dict[str, Any]:
    """The ``data`` of one ``pec.state-changes`` event (:mod:`pipeline.contracts.cloudevents`
    adds the CloudEvents attributes and the Kafka binding)."""
    return {
        "key": event.key,
        "mailbox": event.mailbox,
        "msgid": event.msgid,
        "recipient": event.recipient,
        "from_state": event.before.value if event.before else None,
        "to_state": event.after.value if event.after else None,
        "receipt_kind": event.receipt_kind,
        "receipt_id": event.receipt_id,
        "provider": event.provider,
        "daticert_time": iso(event.at),
        "latency_seconds": event.latency,
        "latency_from": event.latency_from,
        "outcome": event.outcome,
        "reason": event.reason,
        "signature": signature_outcome(event),
        "evidence": provenance_to_dict(event.provenance) if event.provenance else None,
    }


def signature_outcome(event: TrackEvent) -> str | None:
    """The event's ``signature`` field: the verdict the core put on it
    (:class:`pipeline.core.correlate.SignatureVerdict`), ``None`` when the event is not about
    a receipt (submission, overdue)."""
    return event.signature.value if event.signature is not None else None


def message_state_to_dict(tracked: Tracked, schema: str) -> dict[str, Any]:
    """One ``pec.message-state`` record (compacted topic: the latest wins); ``schema`` is
    the URI of the version it follows (:mod:`pipeline.contracts.schemas`)."""
    data = tracked_to_dict(tracked)
    data["schema"] = schema
    del data["seen_at"], data["retired"]  # the table's own bookkeeping
    for recipient in data["recipients"]:
        recipient["final"] = tracked.message.recipient(recipient["address"]).is_final  # type: ignore[union-attr]
        recipient["evidence"] = [  # the receipts about it: its own, and message-wide ones
            p.sha256
            for p in tracked.evidence
            if p.kind != "sent" and p.recipient in (None, recipient["address"])
        ]
    data["final"] = tracked.message.is_final
    data["orphan"] = tracked.is_orphan
    return data


def loads(data: bytes) -> Any:
    return orjson.loads(data)
