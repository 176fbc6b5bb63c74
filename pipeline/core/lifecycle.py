"""The delivery lifecycle of one (message, recipient) pair: one transition table.

Theory of operation. A sent message starts ``submitted`` for each recipient. The sender's
provider answers once for the whole message: ``accettazione`` (-> accepted) or
``non-accettazione`` (-> rejected). Then each *certified* recipient gets exactly one final
receipt from its provider: ``avvenuta-consegna`` (-> delivered) or ``errore-consegna``
(-> delivery-failed, or virus when ``errore="virus"``), possibly after a 12 h and a 24 h
``preavviso-errore-consegna`` (-> delayed-12h, delayed-24h). *External* recipients
(``<destinatari tipo="esterno">``) never get a delivery receipt: accepted is final.

Receipts arrive out of order (mailboxes are synced concurrently, receipts travel apart),
are re-ingested (same receipt twice) and sometimes contradict each other. So:

* every receipt is applied at most once per recipient (its id is remembered): DUPLICATE;
* the table is monotone — states are ranked and a transition never moves down — so the
  final state is the same whatever order the receipts came in (property-tested);
* nothing is dropped: a delivery seen before its acceptance is applied and flagged
  OUT_OF_ORDER, a late acceptance is recorded as STALE, a contradiction (a failure after
  a delivery) as CONFLICT. A signed delivery receipt is the strongest evidence, so
  delivered outranks every failure.

Quirk (pec-format.md): a warning whose errore-esteso starts "5.4.1" is a final failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from pipeline.core.model import DeliveryState, ErrorCode, Kind, PecMessage, Recipient, RecipientType


class Event(StrEnum):
    """What a receipt means for the lifecycle."""

    ACCEPT = "accept"
    REJECT = "reject"
    WARN = "warn"
    DELIVER = "deliver"
    FAIL = "fail"
    VIRUS = "virus"


class Outcome(StrEnum):
    ADVANCED = "advanced"  # the normal next step
    OUT_OF_ORDER = "out-of-order"  # applied, though an earlier step has not been seen yet
    STALE = "stale"  # recorded; the pair is already past this step
    CONFLICT = "conflict"  # contradicts a final state; recorded, higher rank kept
    DUPLICATE = "duplicate"  # this very receipt was applied before: nothing changes
    INVALID = "invalid"  # cannot be applied (e.g. a delivery receipt naming no recipient)


S, E, Out = DeliveryState, Event, Outcome
TRANSITIONS: Final[Mapping[tuple[DeliveryState, Event], tuple[DeliveryState, Outcome]]] = {
    # accettazione: the sender's provider took the message for all its recipients
    (S.SUBMITTED, E.ACCEPT): (S.ACCEPTED, Out.ADVANCED),
    (S.ACCEPTED, E.ACCEPT): (S.ACCEPTED, Out.STALE),
    (S.DELAYED_12H, E.ACCEPT): (S.DELAYED_12H, Out.STALE),
    (S.DELAYED_24H, E.ACCEPT): (S.DELAYED_24H, Out.STALE),
    (S.REJECTED, E.ACCEPT): (S.REJECTED, Out.CONFLICT),
    (S.DELIVERY_FAILED, E.ACCEPT): (S.DELIVERY_FAILED, Out.STALE),
    (S.VIRUS, E.ACCEPT): (S.VIRUS, Out.STALE),
    (S.DELIVERED, E.ACCEPT): (S.DELIVERED, Out.STALE),
    # non-accettazione: refused by the sender's provider (format, size, virus)
    (S.SUBMITTED, E.REJECT): (S.REJECTED, Out.ADVANCED),
    (S.ACCEPTED, E.REJECT): (S.REJECTED, Out.CONFLICT),
    (S.DELAYED_12H, E.REJECT): (S.REJECTED, Out.CONFLICT),
    (S.DELAYED_24H, E.REJECT): (S.REJECTED, Out.CONFLICT),
    (S.REJECTED, E.REJECT): (S.REJECTED, Out.STALE),
    (S.DELIVERY_FAILED, E.REJECT): (S.DELIVERY_FAILED, Out.CONFLICT),
    (S.VIRUS, E.REJECT): (S.VIRUS, Out.CONFLICT),
    (S.DELIVERED, E.REJECT): (S.DELIVERED, Out.CONFLICT),
    # preavviso-errore-consegna: the 12 h, then the 24 h warning
    (S.SUBMITTED, E.WARN): (S.DELAYED_12H, Out.OUT_OF_ORDER),
    (S.ACCEPTED, E.WARN): (S.DELAYED_12H, Out.ADVANCED),
    (S.DELAYED_12H, E.WARN): (S.DELAYED_24H, Out.ADVANCED),
    (S.DELAYED_24H, E.WARN): (S.DELAYED_24H, Out.STALE),
    (S.REJECTED, E.WARN): (S.REJECTED, Out.CONFLICT),
    (S.DELIVERY_FAILED, E.WARN): (S.DELIVERY_FAILED, Out.STALE),
    (S.VIRUS, E.WARN): (S.VIRUS, Out.STALE),
    (S.DELIVERED, E.WARN): (S.DELIVERED, Out.STALE),
    # avvenuta-consegna: in the recipient's mailbox (may come after the 24 h warning)
    (S.SUBMITTED, E.DELIVER): (S.DELIVERED, Out.OUT_OF_ORDER),
    (S.ACCEPTED, E.DELIVER): (S.DELIVERED, Out.ADVANCED),
    (S.DELAYED_12H, E.DELIVER): (S.DELIVERED, Out.ADVANCED),
    (S.DELAYED_24H, E.DELIVER): (S.DELIVERED, Out.ADVANCED),
    (S.REJECTED, E.DELIVER): (S.DELIVERED, Out.CONFLICT),
    (S.DELIVERY_FAILED, E.DELIVER): (S.DELIVERED, Out.CONFLICT),
    (S.VIRUS, E.DELIVER): (S.DELIVERED, Out.CONFLICT),
    (S.DELIVERED, E.DELIVER): (S.DELIVERED, Out.STALE),
    # errore-consegna: not delivered (no such mailbox, domain, timeout, ...)
    (S.SUBMITTED, E.FAIL): (S.DELIVERY_FAILED, Out.OUT_OF_ORDER),
    (S.ACCEPTED, E.FAIL): (S.DELIVERY_FAILED, Out.ADVANCED),
    (S.DELAYED_12H, E.FAIL): (S.DELIVERY_FAILED, Out.ADVANCED),
    (S.DELAYED_24H, E.FAIL): (S.DELIVERY_FAILED, Out.ADVANCED),
    (S.REJECTED, E.FAIL): (S.DELIVERY_FAILED, Out.CONFLICT),
    (S.DELIVERY_FAILED, E.FAIL): (S.DELIVERY_FAILED, Out.STALE),
    (S.VIRUS, E.FAIL): (S.VIRUS, Out.STALE),
    (S.DELIVERED, E.FAIL): (S.DELIVERED, Out.CONFLICT),
    # errore-consegna errore="virus" / rilevazione-virus: refused for a virus
    (S.SUBMITTED, E.VIRUS): (S.VIRUS, Out.OUT_OF_ORDER),
    (S.ACCEPTED, E.VIRUS): (S.VIRUS, Out.ADVANCED),
    (S.DELAYED_12H, E.VIRUS): (S.VIRUS, Out.ADVANCED),
    (S.DELAYED_24H, E.VIRUS): (S.VIRUS, Out.ADVANCED),
    (S.REJECTED, E.VIRUS): (S.VIRUS, Out.CONFLICT),
    (S.DELIVERY_FAILED, E.VIRUS): (S.VIRUS, Out.ADVANCED),
    (S.VIRUS, E.VIRUS): (S.VIRUS, Out.STALE),
    (S.DELIVERED, E.VIRUS): (S.DELIVERED, Out.CONFLICT),
}
del S, E, Out

FINAL_STATES: Final = frozenset(
    {
        DeliveryState.REJECTED,
        DeliveryState.DELIVERED,
        DeliveryState.DELIVERY_FAILED,
        DeliveryState.VIRUS,
    }
)
_MESSAGE_WIDE = frozenset({Event.ACCEPT, Event.REJECT})


@dataclass(frozen=True, slots=True)
class RecipientState:
    address: str
    type: RecipientType
    state: DeliveryState
    receipts: frozenset[str]  # ids of the receipts applied to this pair
    changed_at: datetime | None  # daticert time of the receipt that set ``state``

    @property
    def is_final(self) -> bool:
        """No further receipt is expected (external recipients stop at accepted)."""
        return self.state in FINAL_STATES or (
            self.type is RecipientType.ESTERNO and self.state is not DeliveryState.SUBMITTED
        )


@dataclass(frozen=True, slots=True)
class MessageState:
    """Everything known about one sent message, keyed by its original Message-ID."""

    msgid: str
    sender: str | None
    submitted_at: datetime | None
    accepted_at: datetime | None
    recipients: tuple[RecipientState, ...]
    submitted: bool = False  # the sent message itself was seen (not only its receipts)

    def recipient(self, address: str) -> RecipientState | None:
        return next((r for r in self.recipients if r.address == address), None)

    @property
    def is_final(self) -> bool:
        return bool(self.recipients) and all(r.is_final for r in self.recipients)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt as the lifecycle sees it: which event, for whom, when, which receipt."""

    receipt_id: str
    event: Event
    recipients: tuple[Recipient, ...]  # message-wide events: the daticert destinatari
    delivery_recipient: str | None  # per-recipient events: daticert <consegna>
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Transition:
    recipient: str
    before: DeliveryState
    after: DeliveryState
    event: Event
    outcome: Outcome
    receipt_id: str
    at: datetime | None

    @property
    def changed(self) -> bool:
        return self.before is not self.after


def event_for(message: PecMessage) -> Event | None:
    """The lifecycle event a parsed message means, or ``None`` (envelopes, ordinary mail)."""
    kind = message.kind
    if kind is Kind.ACCETTAZIONE:
        return Event.ACCEPT
    if kind is Kind.NON_ACCETTAZIONE:
        return Event.REJECT
    if kind is Kind.AVVENUTA_CONSEGNA:
        return Event.DELIVER
    if kind is Kind.ERRORE_CONSEGNA:
        return Event.VIRUS if message.error is ErrorCode.VIRUS else Event.FAIL
    if kind is Kind.RILEVAZIONE_VIRUS:
        return Event.VIRUS
    if kind is Kind.PREAVVISO_ERRORE_CONSEGNA:
        detail = (message.error_detail or "").lstrip()
        return Event.FAIL if detail.startswith("5.4.1") else Event.WARN
    return None


def new_message(msgid: str, sender: str | None = None) -> MessageState:
    return MessageState(msgid, sender, None, None, ())


def record_submission(
    state: MessageState, sender: str | None, recipients: tuple[str, ...], at: datetime | None
) -> MessageState:
    """Register the sent message (Sent-folder copy or submission record).

    Recipients not yet known are added as certified; types already set by an acceptance
    (which knows ``esterno``) are kept, so the order of the two does not matter.
    """
    known = {r.address for r in state.recipients}
    added = tuple(
        RecipientState(address, RecipientType.CERTIFICATO, DeliveryState.SUBMITTED, frozenset(), at)
        for address in dict.fromkeys(recipients)
        if address not in known
    )
    submitted_at = state.submitted_at
    if at is not None:
        submitted_at = at if submitted_at is None else min(submitted_at, at)
    return replace(
        state,
        submitted=True,
        sender=state.sender or sender,
        submitted_at=submitted_at,
        recipients=_sorted(state.recipients + added),
    )


def apply(state: MessageState, receipt: Receipt) -> tuple[MessageState, tuple[Transition, ...]]:
    """Apply one receipt; returns the new state and one transition per recipient touched."""
    recipients = {r.address: r for r in state.recipients}
    if receipt.event in _MESSAGE_WIDE:
        for listed in receipt.recipients:
            current = recipients.get(listed.address)
            if current is None:
                recipients[listed.address] = RecipientState(
                    listed.address, listed.type, DeliveryState.SUBMITTED, frozenset(), None
                )
            elif current.type is not listed.type:
                recipients[listed.address] = replace(current, type=listed.type)
        targets = tuple(recipients)
    elif receipt.delivery_recipient is not None:
        targets = (receipt.delivery_recipient,)
        if receipt.delivery_recipient not in recipients:
            recipients[receipt.delivery_recipient] = RecipientState(
                receipt.delivery_recipient,
                RecipientType.CERTIFICATO,
                DeliveryState.SUBMITTED,
                frozenset(),
                None,
            )
    else:
        certified = [a for a, r in recipients.items() if r.type is RecipientType.CERTIFICATO]
        if len(certified) != 1:
            invalid = Transition(
                "", DeliveryState.SUBMITTED, DeliveryState.SUBMITTED, receipt.event,
                Outcome.INVALID, receipt.receipt_id, receipt.at,
            )  # fmt: skip
            return state, (invalid,)
        targets = (certified[0],)

    transitions = []
    for address in targets:
        recipients[address], transition = _step(recipients[address], receipt)
        transitions.append(transition)
    accepted_at = state.accepted_at
    if receipt.event is Event.ACCEPT and receipt.at is not None:
        accepted_at = receipt.at if accepted_at is None else min(accepted_at, receipt.at)
    new_state = replace(
        state, accepted_at=accepted_at, recipients=_sorted(tuple(recipients.values()))
    )
    return new_state, tuple(transitions)


def _step(current: RecipientState, receipt: Receipt) -> tuple[RecipientState, Transition]:
    if receipt.receipt_id in current.receipts:
        after, outcome = current.state, Outcome.DUPLICATE
        updated = current
    else:
        after, outcome = TRANSITIONS[(current.state, receipt.event)]
        changed_at = receipt.at if after is not current.state else current.changed_at
        updated = replace(
            current,
            state=after,
            receipts=current.receipts | {receipt.receipt_id},
            changed_at=changed_at,
        )
    transition = Transition(
        current.address, current.state, after, receipt.event, outcome, receipt.receipt_id,
        receipt.at,
    )  # fmt: skip
    return updated, transition


def _sorted(recipients: tuple[RecipientState, ...]) -> tuple[RecipientState, ...]:
    return tuple(sorted(recipients, key=lambda r: r.address))
