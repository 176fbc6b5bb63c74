"""What the correlate processor does with one observation, as a pure function.

An *observation* is a submission (the Sent-folder copy, or a record on
``pec.submissions``), a receipt that counts as evidence, a *suspect* receipt (bad
signature, untrusted signer, headers disagreeing with daticert), or a deadline check.
:func:`observe` folds it into the :class:`Tracked` state of one sent message and returns
the :class:`TrackEvent` values to publish. Event ids are derived from what happened, not
when, so a replay after a crash produces the same ids and consumers can dedupe on them.

Deadlines: a message with no acceptance ``acceptance_timeout`` after submission, and a
certified recipient with no final receipt ``delivery_window`` (legally 24 h) after
acceptance, are *overdue*; the flag is cleared when the receipt finally arrives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline.core import lifecycle
from pipeline.core.lifecycle import MessageState, Outcome, Receipt, Transition
from pipeline.core.model import DeliveryState, RecipientType
from pipeline.core.provenance import Provenance

MESSAGE_WIDE = "*"


class EventType(StrEnum):
    STATE_CHANGE = "state-change"
    CONFLICT = "receipt-conflict"  # a receipt contradicting a final state (recorded)
    SIGNATURE_INVALID = "signature-invalid"
    UNTRUSTED_SIGNER = "untrusted-signer"
    RECEIPT_REJECTED = "receipt-rejected"  # valid signature, but disqualifying defects
    OVERDUE = "overdue"
    OVERDUE_CLEARED = "overdue-cleared"

    @property
    def reports_suspect(self) -> bool:
        """The event of a receipt reported but never applied (a suspect receipt)."""
        return self in _SUSPECT_EVENTS


_SUSPECT_EVENTS = frozenset(
    {EventType.SIGNATURE_INVALID, EventType.UNTRUSTED_SIGNER, EventType.RECEIPT_REJECTED}
)


class SignatureVerdict(StrEnum):
    """What a receipt's signature check found, as published on its event."""

    VALID_TRUSTED = "valid-trusted"  # also a receipt rejected for a defect outside it
    INVALID = "invalid"  # does not verify (tampered, malformed)
    MISSING = "missing"  # not signed
    UNTRUSTED = "untrusted"  # verifies, but no chain to a trusted provider at signing time
    SIGNER_MISMATCH = "signer-mismatch"  # trusted, but not the provider the receipt names


class OverdueReason(StrEnum):
    NO_ACCEPTANCE = "no-acceptance"
    NO_DELIVERY = "no-delivery"


@dataclass(frozen=True, slots=True)
class Deadlines:
    acceptance_timeout: timedelta = timedelta(minutes=30)
    delivery_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Suspect:
    """A receipt reported but never applied; ``event`` says why."""

    receipt_id: str
    event: EventType
    kind: str
    recipient: str | None
    reason: str
    at: datetime | None
    signature: SignatureVerdict


@dataclass(frozen=True, slots=True)
class Tracked:
    """Everything kept per correlation key (one faust table entry)."""

    key: str
    mailbox: str
    message: MessageState
    overdue: frozenset[tuple[str, OverdueReason]] = frozenset()
    suspects: frozenset[str] = frozenset()  # receipt ids already reported
    providers: tuple[str, ...] = ()  # providers seen on receipts (for bounded metrics labels)
    # The newest data time (daticert, submission) of anything applied: retention counts
    # from it (pipeline.core.retention).
    seen_at: datetime | None = None
    # A finished message past its retention leaves only this marker (no recipients), so a
    # receipt or Sent copy read again later is recognised as late instead of starting the
    # message over (pipeline.core.retention).
    retired: bool = False
    # Where each receipt (and the Sent copy) applied was read from and archived, once
    # per SHA-256 of its bytes (pipeline.core.provenance).
    evidence: tuple[Provenance, ...] = ()

    @property
    def is_orphan(self) -> bool:
        """Receipts seen, but the sent message itself not (yet)."""
        return not self.message.submitted


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """One published event. ``latency`` is seconds since submission (acceptance) for
    acceptance (final) transitions, when both times are known."""

    event_id: str
    type: EventType
    key: str
    mailbox: str
    msgid: str
    recipient: str | None
    before: DeliveryState | None
    after: DeliveryState | None
    receipt_kind: str | None
    receipt_id: str | None
    provider: str | None
    at: datetime | None
    latency: float | None = None
    latency_from: str | None = None  # "submission" | "acceptance"
    outcome: str | None = None
    reason: str | None = None
    signature: SignatureVerdict | None = None  # None: not about a receipt
    provenance: Provenance | None = None  # the receipt (or Sent copy) that caused it


def event_id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def new_tracked(key: str, mailbox: str, msgid: str) -> Tracked:
    return Tracked(key, mailbox, lifecycle.new_message(msgid))


def seen(tracked: Tracked, at: datetime | None) -> Tracked:
    """``tracked`` with ``at`` counted in its newest data time."""
    if at is None or (tracked.seen_at is not None and tracked.seen_at >= at):
        return tracked
    return replace(tracked, seen_at=at)


def submit(
    tracked: Tracked,
    sender: str | None,
    recipients: tuple[str, ...],
    at: datetime | None,
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """Register the sent message; new recipients appear as ``submitted``."""
    before = {r.address for r in tracked.message.recipients}
    message = lifecycle.record_submission(tracked.message, sender, recipients, at)
    events = tuple(
        _event(
            tracked,
            EventType.STATE_CHANGE,
            r.address,
            "submission",
            before=None,
            after=DeliveryState.SUBMITTED,
            at=at,
        )
        for r in message.recipients
        if r.address not in before
    )
    return replace(tracked, message=message), events


def receive(
    tracked: Tracked, receipt: Receipt, kind: str, provider: str | None
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """Apply a receipt that counts as evidence; then clear overdue flags it settles."""
    message, transitions = lifecycle.apply(tracked.message, receipt)
    providers = tracked.providers
    if provider and provider not in providers:
        providers = (*providers, provider)
    updated = replace(tracked, message=message, providers=providers)
    events = [
        _transition_event(updated, t, kind, provider)
        for t in transitions
        if t.changed or t.outcome in (Outcome.CONFLICT, Outcome.INVALID)
    ]
    updated, cleared = _reconcile(updated, None, Deadlines())
    return updated, (*events, *cleared)


def report_suspect(tracked: Tracked, suspect: Suspect) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """A receipt that must not count: one event per receipt id, then nothing."""
    if suspect.receipt_id in tracked.suspects:
        return tracked, ()
    event = _event(
        tracked,
        suspect.event,
        suspect.recipient,
        suspect.receipt_id,
        receipt_kind=suspect.kind,
        receipt_id=suspect.receipt_id,
        at=suspect.at,
        reason=suspect.reason,
        signature=suspect.signature,
    )
    return replace(tracked, suspects=tracked.suspects | {suspect.receipt_id}), (event,)


def check_deadlines(
    tracked: Tracked, now: datetime, deadlines: Deadlines
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    """Raise and clear overdue flags as of ``now`` (the caller's clock)."""
    return _reconcile(tracked, now, deadlines)


def overdue_flags(
    tracked: Tracked, now: datetime, deadlines: Deadlines
) -> frozenset[tuple[str, OverdueReason]]:
    """The flags that should be raised at ``now``."""
    message = tracked.message
    flags: set[tuple[str, OverdueReason]] = set()
    waiting = [r for r in message.recipients if r.state is DeliveryState.SUBMITTED]
    if (
        message.submitted_at is not None
        and message.accepted_at is None
        and waiting
        and len(waiting) == len(message.recipients)
        and now - message.submitted_at > deadlines.acceptance_timeout
    ):
        flags.add((MESSAGE_WIDE, OverdueReason.NO_ACCEPTANCE))
    if message.accepted_at is not None and now - message.accepted_at > deadlines.delivery_window:
        flags.update(
            (r.address, OverdueReason.NO_DELIVERY)
            for r in message.recipients
            if r.type is RecipientType.CERTIFICATO and not r.is_final
        )
    return frozenset(flags)


def _still_due(tracked: Tracked, flag: tuple[str, OverdueReason]) -> bool:
    """Does the basis of a raised flag still hold (independent of the clock)?"""
    address, reason = flag
    message = tracked.message
    if reason is OverdueReason.NO_ACCEPTANCE:
        return all(r.state is DeliveryState.SUBMITTED for r in message.recipients)
    recipient = message.recipient(address)
    return recipient is not None and not recipient.is_final


def _reconcile(
    tracked: Tracked, now: datetime | None, deadlines: Deadlines
) -> tuple[Tracked, tuple[TrackEvent, ...]]:
    keep = {flag for flag in tracked.overdue if _still_due(tracked, flag)}
    raised = set(overdue_flags(tracked, now, deadlines)) - keep if now is not None else set()
    cleared = tracked.overdue - keep
    if not raised and not cleared:
        return tracked, ()
    events = [_overdue_event(tracked, flag, EventType.OVERDUE, now) for flag in sorted(raised)] + [
        _overdue_event(tracked, flag, EventType.OVERDUE_CLEARED, now) for flag in sorted(cleared)
    ]
    return replace(tracked, overdue=frozenset(keep | raised)), tuple(events)


def _overdue_event(
    tracked: Tracked, flag: tuple[str, OverdueReason], type_: EventType, now: datetime | None
) -> TrackEvent:
    address, reason = flag
    recipient = None if address == MESSAGE_WIDE else address
    state = tracked.message.recipient(address) if recipient else None
    return _event(
        tracked,
        type_,
        recipient,
        f"{reason.value}",
        before=state.state if state else None,
        after=state.state if state else None,
        at=now,
        reason=reason.value,
    )


def _transition_event(
    tracked: Tracked, transition: Transition, kind: str, provider: str | None
) -> TrackEvent:
    message = tracked.message
    latency, since = None, None
    if transition.changed and transition.at is not None:
        start, since = (
            (message.submitted_at, "submission")
            if transition.after in (DeliveryState.ACCEPTED, DeliveryState.REJECTED)
            else (message.accepted_at, "acceptance")
        )
        if start is not None and transition.at >= start:
            latency = (transition.at - start).total_seconds()
        else:
            since = None
    type_ = EventType.STATE_CHANGE if transition.changed else EventType.CONFLICT
    return _event(
        tracked,
        type_,
        transition.recipient or None,
        transition.receipt_id,
        before=transition.before,
        after=transition.after,
        receipt_kind=kind,
        receipt_id=transition.receipt_id,
        provider=provider,
        at=transition.at,
        latency=latency,
        latency_from=since,
        outcome=transition.outcome.value,
        # only receipts that verified and chain to a trusted provider become evidence
        signature=None if kind == "submission" else SignatureVerdict.VALID_TRUSTED,
    )


def _event(
    tracked: Tracked,
    type_: EventType,
    recipient: str | None,
    cause: str,
    *,
    before: DeliveryState | None = None,
    after: DeliveryState | None = None,
    receipt_kind: str | None = None,
    receipt_id: str | None = None,
    provider: str | None = None,
    at: datetime | None = None,
    latency: float | None = None,
    latency_from: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    signature: SignatureVerdict | None = None,
) -> TrackEvent:
    # The id names what happened (to whom, caused by what), never when it was processed.
    eid = event_id(tracked.key, recipient or MESSAGE_WIDE, type_.value, cause, after or "")
    return TrackEvent(
        event_id=eid,
        type=type_,
        key=tracked.key,
        mailbox=tracked.mailbox,
        msgid=tracked.message.msgid,
        recipient=recipient,
        before=before,
        after=after,
        receipt_kind=receipt_kind,
        receipt_id=receipt_id,
        provider=provider,
        at=at,
        latency=latency,
        latency_from=latency_from,
        outcome=outcome,
        reason=reason,
        signature=signature,
    )
