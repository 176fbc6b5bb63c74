"""The one place where domain values become wire data (JSON via orjson).

Field names are the documented ones of ``pectrack inspect --json``; the stream
processors' event schema builds on the same functions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from pipeline.core.correlate import correlation_key, normalise_address, normalise_msgid
from pipeline.core.examine import Examined
from pipeline.core.lifecycle import Event, MessageState, Receipt, RecipientState
from pipeline.core.model import (
    DeliveryState,
    PecMessage,
    Recipient,
    RecipientType,
    SignatureReport,
)
from pipeline.core.observation import (
    DeadlineCheck,
    Evidence,
    Observation,
    Submission,
    SuspectReceipt,
)
from pipeline.core.tracker import EventType, OverdueReason, Suspect, Tracked, TrackEvent


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def signature_to_dict(report: SignatureReport) -> dict[str, Any]:
    return {
        "integrity": report.integrity.value,
        "trust": report.trust.value,
        "trust_reason": report.trust_reason,
        "signer": report.signer,
        "signer_email": report.signer_email,
        "signing_time": _iso(report.signing_time),
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
        "timestamp": _iso(message.timestamp),
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
EVENT_SCHEMA = "pectrack.state-change/1"
STATE_SCHEMA = "pectrack.message-state/1"
TRACKED_SCHEMA = "pectrack.tracked/1"


class DecodeError(ValueError):
    """A record on a pectrack topic that does not follow its schema."""


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def observation_to_dict(observation: Observation | DeadlineCheck) -> dict[str, Any]:
    base = {
        "schema": OBSERVATION_SCHEMA,
        "key": observation.key,
        "mailbox": observation.mailbox,
        "msgid": observation.msgid,
    }
    if isinstance(observation, DeadlineCheck):
        return base | {"type": "check", "now": _iso(observation.now)}
    if isinstance(observation, Submission):
        return base | {
            "type": "submission",
            "sender": observation.sender,
            "recipients": list(observation.recipients),
            "at": _iso(observation.at),
        }
    if isinstance(observation, Evidence):
        receipt = observation.receipt
        return base | {
            "type": "evidence",
            "kind": observation.kind,
            "provider": observation.provider,
            "receipt_id": receipt.receipt_id,
            "event": receipt.event.value,
            "recipients": [
                {"address": r.address, "type": r.type.value} for r in receipt.recipients
            ],
            "recipient": receipt.delivery_recipient,
            "at": _iso(receipt.at),
        }
    suspect = observation.suspect
    return base | {
        "type": "suspect",
        "kind": suspect.kind,
        "receipt_id": suspect.receipt_id,
        "event": suspect.event.value,
        "recipient": suspect.recipient,
        "reason": suspect.reason,
        "at": _iso(suspect.at),
    }


def observation_from_dict(data: dict[str, Any]) -> Observation | DeadlineCheck:
    try:
        if data.get("schema") != OBSERVATION_SCHEMA:
            raise DecodeError(f"unknown schema {data.get('schema')!r}")
        key, mailbox, msgid = data["key"], data["mailbox"], data["msgid"]
        kind = data["type"]
        if kind == "check":
            now = _dt(data["now"])
            if now is None:
                raise DecodeError("check without now")
            return DeadlineCheck(key, mailbox, msgid, now)
        if kind == "submission":
            return Submission(
                key, mailbox, msgid, data["sender"], tuple(data["recipients"]), _dt(data["at"])
            )
        if kind == "evidence":
            receipt = Receipt(
                receipt_id=data["receipt_id"],
                event=Event(data["event"]),
                recipients=tuple(
                    Recipient(r["address"], RecipientType(r["type"])) for r in data["recipients"]
                ),
                delivery_recipient=data["recipient"],
                at=_dt(data["at"]),
            )
            return Evidence(key, mailbox, msgid, receipt, data["kind"], data["provider"])
        if kind == "suspect":
            suspect = Suspect(
                receipt_id=data["receipt_id"],
                event=EventType(data["event"]),
                kind=data["kind"],
                recipient=data["recipient"],
                reason=data["reason"],
                at=_dt(data["at"]),
            )
            return SuspectReceipt(key, mailbox, msgid, suspect)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"bad observation: {exc}") from exc
    raise DecodeError(f"unknown observation type {kind!r}")


def submission_from_dict(data: dict[str, Any]) -> Submission:
    """A record of ``pec.submissions`` (schema in schemas/submission.schema.json)."""
    try:
        mailbox = str(data["mailbox"])
        msgid = normalise_msgid(str(data["msgid"]))
        if not mailbox or msgid is None:
            raise DecodeError("mailbox and msgid are required")
        recipients = tuple(
            address
            for value in data.get("recipients", [])
            if (address := normalise_address(str(value)))
        )
        return Submission(
            key=correlation_key(mailbox, msgid),
            mailbox=mailbox,
            msgid=msgid,
            sender=normalise_address(data.get("sender")),
            recipients=recipients,
            at=_dt(data.get("submitted_at")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"bad submission: {exc}") from exc


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
        "submitted_at": _iso(message.submitted_at),
        "accepted_at": _iso(message.accepted_at),
        "recipients": [
            {
                "address": r.address,
                "type": r.type.value,
                "state": r.state.value,
                "receipts": sorted(r.receipts),
                "changed_at": _iso(r.changed_at),
            }
            for r in message.recipients
        ],
        "overdue": sorted([address, reason.value] for address, reason in tracked.overdue),
        "suspects": sorted(tracked.suspects),
        "providers": list(tracked.providers),
    }


def tracked_from_dict(data: dict[str, Any]) -> Tracked:
    try:
        recipients = tuple(
            RecipientState(
                address=r["address"],
                type=RecipientType(r["type"]),
                state=DeliveryState(r["state"]),
                receipts=frozenset(r["receipts"]),
                changed_at=_dt(r["changed_at"]),
            )
            for r in data["recipients"]
        )
        message = MessageState(
            msgid=data["msgid"],
            sender=data["sender"],
            submitted_at=_dt(data["submitted_at"]),
            accepted_at=_dt(data["accepted_at"]),
            recipients=recipients,
            submitted=bool(data["submitted"]),
        )
        return Tracked(
            key=data["key"],
            mailbox=data["mailbox"],
            message=message,
            overdue=frozenset((a, OverdueReason(r)) for a, r in data["overdue"]),
            suspects=frozenset(data["suspects"]),
            providers=tuple(data["providers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"bad table value: {exc}") from exc


# --- outputs: pec.state-changes and pec.message-state --------------------------------------


def event_to_dict(event: TrackEvent) -> dict[str, Any]:
    """One ``pec.state-changes`` record; CloudEvents attribute names where they fit."""
    return {
        "specversion": "1.0",
        "id": event.event_id,
        "source": f"pectrack/{event.mailbox}",
        "type": f"it.pec.{event.type.value}",
        "subject": event.msgid,
        "time": _iso(event.at),
        "datacontenttype": "application/json",
        "dataschema": EVENT_SCHEMA,
        "data": {
            "key": event.key,
            "mailbox": event.mailbox,
            "msgid": event.msgid,
            "recipient": event.recipient,
            "from_state": event.before.value if event.before else None,
            "to_state": event.after.value if event.after else None,
            "receipt_kind": event.receipt_kind,
            "receipt_id": event.receipt_id,
            "provider": event.provider,
            "daticert_time": _iso(event.at),
            "latency_seconds": event.latency,
            "latency_from": event.latency_from,
            "outcome": event.outcome,
            "reason": event.reason,
            "signature": "valid-trusted"
            if event.type in (EventType.STATE_CHANGE, EventType.CONFLICT)
            and event.receipt_id
            and event.receipt_kind != "submission"
            else None,
        },
    }


def message_state_to_dict(tracked: Tracked) -> dict[str, Any]:
    """One ``pec.message-state`` record (compacted topic: the latest wins)."""
    data = tracked_to_dict(tracked)
    data["schema"] = STATE_SCHEMA
    for recipient in data["recipients"]:
        recipient["final"] = tracked.message.recipient(recipient["address"]).is_final  # type: ignore[union-attr]
    data["final"] = tracked.message.is_final
    data["orphan"] = tracked.is_orphan
    return data


def loads(data: bytes) -> Any:
    return orjson.loads(data)
