"""From an examined mailbox message to what the correlate processor observes.

The verify processor calls :func:`observe_message` for each raw record::

    headers: mailbox=comune-x folder=Posta inviata     -> Submission (the Sent copy)
    X-Ricevuta: avvenuta-consegna, valid and trusted    -> Evidence (applied to the lifecycle)
    X-Ricevuta: avvenuta-consegna, self-signed          -> Suspect (reported, never applied)
    a receipt without any Message-ID to correlate on    -> Unroutable (dead letter)
    a message that could not be read (broken MIME, ...) -> Unroutable (dead letter)
    incoming envelopes and ordinary inbox mail          -> Ignored (not about sent mail)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pipeline.core.correlate import (
    Deadlines,
    EventType,
    SignatureVerdict,
    Suspect,
    Tracked,
    TrackEvent,
    check_deadlines,
    new_tracked,
    receive,
    report_suspect,
    seen,
    submit,
)
from pipeline.core.defects import DefectCode
from pipeline.core.examine import Examined
from pipeline.core.keys import correlation_key
from pipeline.core.lifecycle import Receipt
from pipeline.core.model import DeliveryState, Integrity, Kind, PecMessage, Trust
from pipeline.core.provenance import MAX_EVIDENCE, Provenance

NOT_A_MESSAGE = "not-rfc5322"  # none of the header fields every mail has


@dataclass(frozen=True, slots=True)
class Submission:
    key: str
    mailbox: str
    msgid: str
    sender: str | None
    recipients: tuple[str, ...]
    at: datetime | None
    provenance: Provenance | None = None  # the Sent copy read from IMAP


@dataclass(frozen=True, slots=True)
class Evidence:
    key: str
    mailbox: str
    msgid: str
    receipt: Receipt
    kind: str
    provider: str | None
    provenance: Provenance | None = None


@dataclass(frozen=True, slots=True)
class SuspectReceipt:
    key: str
    mailbox: str
    msgid: str
    suspect: Suspect
    provenance: Provenance | None = None


@dataclass(frozen=True, slots=True)
class Unroutable:
    """A dead letter: ``reason`` is a short, bounded code; ``detail`` says what was seen."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


Observation = Submission | Evidence | SuspectReceipt
Routed = Observation | Unroutable | Ignored  # what observe_message makes of a message


def observe_message(
    examined: Examined,
    mailbox: str,
    *,
    sent_copy: bool,
    received_at: datetime | None = None,
) -> Routed:
    """Route one examined message read from ``mailbox``. ``sent_copy``: it was read from
    a folder of the user's sent copies (the ``pec.raw`` contract says which). A Sent
    copy is dated by ``received_at`` (its IMAP INTERNALDATE, when it was stored) or else
    by its Date header. Only a message that was read is ignored: an unreadable one is
    :func:`unreadable`."""
    outcome = _route(examined, mailbox, sent_copy, received_at)
    if isinstance(outcome, Ignored):
        return unreadable(examined.message) or outcome
    return outcome


def unreadable(message: PecMessage) -> Unroutable | None:
    """Why ``message`` could not be read, or ``None``::

    Content-Type: multipart/mixed  (no boundary)  -> Unroutable("mime-malformed", ...)
    a PNG, or a line of text (no header fields)   -> Unroutable("not-rfc5322", ...)
    """
    for defect in message.defects:
        if defect.code.unreadable:
            return Unroutable(defect.code, defect.detail)
    if message.kind is Kind.NOT_PEC and not (
        message.sender
        or message.timestamp
        or message.message_id
        or message.recipients
        or message.subject
    ):
        return Unroutable(NOT_A_MESSAGE, "no From, Date, Message-ID, To, Cc or Subject")
    return None


def _route(examined: Examined, mailbox: str, sent: bool, received_at: datetime | None) -> Routed:
    message = examined.message
    if message.kind is Kind.NOT_PEC:
        if not sent:
            return Ignored("ordinary-mail")
        if message.msgid is None:
            return Unroutable("sent-message-without-message-id")
        return Submission(
            key=correlation_key(mailbox, message.msgid),
            mailbox=mailbox,
            msgid=message.msgid,
            sender=message.sender,
            recipients=tuple(r.address for r in message.recipients),
            at=received_at or message.timestamp,
        )
    if not message.kind.is_receipt or message.kind.value == "presa-in-carico":
        return Ignored(f"{message.kind.value}")
    if message.msgid is None:
        return Unroutable("receipt-without-msgid")
    key = correlation_key(mailbox, message.msgid)
    receipt = examined.as_receipt()
    if receipt is not None:
        return Evidence(key, mailbox, message.msgid, receipt, message.kind.value, message.provider)
    return SuspectReceipt(key, mailbox, message.msgid, _suspect(examined))


def suspect_event(integrity: Integrity, trust: Trust) -> EventType:
    """How a receipt that does not count is reported: the first check it failed."""
    if integrity is not Integrity.VALID:
        return EventType.SIGNATURE_INVALID
    if trust is not Trust.TRUSTED:
        return EventType.UNTRUSTED_SIGNER
    return EventType.RECEIPT_REJECTED


def signature_verdict(examined: Examined) -> SignatureVerdict:
    """The signature outcome a suspect receipt's event reports (see :class:`SignatureVerdict`)."""
    integrity = examined.signature.integrity
    if integrity is Integrity.MISSING:
        return SignatureVerdict.MISSING
    if integrity is not Integrity.VALID:
        return SignatureVerdict.INVALID
    if examined.signature.trust is not Trust.TRUSTED:
        return SignatureVerdict.UNTRUSTED
    if any(d.code.about_signer for d in examined.disqualifying_defects):
        return SignatureVerdict.SIGNER_MISMATCH
    return SignatureVerdict.VALID_TRUSTED


def verdict_of_reason(event: EventType, reason: str) -> SignatureVerdict:
    """The verdict of a suspect receipt recorded without one (its ``reason`` lists the
    defect codes, ``"code: detail; code: detail"``): records of pec.receipts written
    before suspects carried their verdict."""
    codes = {piece.split(":", 1)[0].strip() for piece in reason.split("; ")}
    if event is EventType.SIGNATURE_INVALID:
        missing = DefectCode.SIGNATURE_MISSING in codes
        return SignatureVerdict.MISSING if missing else SignatureVerdict.INVALID
    if event is EventType.UNTRUSTED_SIGNER:
        return SignatureVerdict.UNTRUSTED
    if any(code in _ABOUT_SIGNER for code in codes):
        return SignatureVerdict.SIGNER_MISMATCH
    return SignatureVerdict.VALID_TRUSTED


_ABOUT_SIGNER = frozenset(code.value for code in DefectCode if code.about_signer)


def _suspect(examined: Examined) -> Suspect:
    event = suspect_event(examined.signature.integrity, examined.signature.trust)
    reason = "; ".join(str(d) for d in examined.disqualifying_defects)[:500]
    return Suspect(
        receipt_id=examined.receipt_id,
        event=event,
        kind=examined.message.kind.value,
        recipient=examined.message.delivery_recipient,
        reason=reason or "not-evidence",
        at=examined.message.timestamp,
        signature=signature_verdict(examined),
    )


@dataclass(frozen=True, slots=True)
class DeadlineCheck:
    """Sent by a worker's timer to the key's own partition: re-evaluate deadlines at ``now``."""

    key: str
    mailbox: str
    msgid: str
    now: datetime


def observed_at(observation: Observation) -> datetime | None:
    """The data time an observation carries: when the message was sent, or the receipt's
    daticert time."""
    if isinstance(observation, Submission):
        return observation.at
    if isinstance(observation, Evidence):
        return observation.receipt.at
    return observation.suspect.at


def apply_observation(
    tracked: Tracked | None, observation: Observation | DeadlineCheck, deadlines: Deadlines
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """Fold one observation into the state of its message (new state if ``None``)."""
    current = tracked or new_tracked(observation.key, observation.mailbox, observation.msgid)
    if isinstance(observation, DeadlineCheck):
        return check_deadlines(current, observation.now, deadlines)
    updated, events = _apply(current, observation)
    updated, events = with_provenance(updated, events, observation.provenance)
    return seen(updated, observed_at(observation)), events


def _apply(current: Tracked, observation: Observation) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    if isinstance(observation, Submission):
        return submit(current, observation.sender, observation.recipients, observation.at)
    if isinstance(observation, Evidence):
        return receive(current, observation.receipt, observation.kind, observation.provider)
    return report_suspect(current, observation.suspect)


def with_provenance(
    tracked: Tracked, events: tuple[TrackEvent, ...], provenance: Provenance | None
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """``tracked`` remembering ``provenance`` (once per SHA-256), and the events that
    message caused carrying it: those of its receipt id, or for a Sent copy
    (``receipt_id`` ``None``) its recipients' ``submitted`` transitions."""
    if provenance is None:
        return tracked, events
    known = {p.sha256 for p in tracked.evidence}
    if provenance.sha256 not in known and len(tracked.evidence) < MAX_EVIDENCE:
        tracked = replace(tracked, evidence=(*tracked.evidence, provenance))
    cause = provenance.receipt_id

    def caused(event: TrackEvent) -> bool:
        if cause is not None:
            return event.receipt_id == cause
        return event.receipt_id is None and event.after is DeliveryState.SUBMITTED

    return tracked, tuple(replace(e, provenance=provenance) if caused(e) else e for e in events)
