"""What a correct tracker must say about each simulated message: :class:`Truth`.

Also the shape of generated traffic (:class:`TrafficItem`, :class:`TrafficMix`) and the
helpers that derive a truth from a notice, a plain message or a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from pipeline.core.model import (
    ErrorCode,
    Integrity,
    Kind,
    ReceiptVariant,
    Recipient,
    Trust,
)
from pipeline.simulate.provider import (
    FORGERIES,
    Fault,
    Notice,
    Provider,
    expected_signature,
)
from pipeline.simulate.render import OriginalMessage

INBOX = "INBOX"
SENT = "Sent"


@dataclass(frozen=True, slots=True)
class Truth:
    """The parse and verification a correct tracker produces for one message.

    Fields mirror :class:`pipeline.core.model.PecMessage`; for ``not-pec`` mail ``msgid``
    is the message's own Message-ID. ``warning_hours`` is 12 or 24 for a
    preavviso-errore-consegna.
    """

    kind: Kind
    msgid: str | None
    identificativo: str | None
    provider: str | None
    sender: str | None
    recipients: tuple[Recipient, ...]
    delivery_recipient: str | None
    timestamp: datetime | None
    variant: ReceiptVariant | None
    error: ErrorCode | None
    error_detail: str | None
    virus: bool
    message_id: str | None
    integrity: Integrity
    trust: Trust
    fault: Fault | None = None
    duplicate: bool = False
    orphan: bool = False
    warning_hours: int | None = None

    @property
    def tampered(self) -> bool:
        return self.fault in (Fault.TAMPERED_BODY, Fault.MISSING_SIGNATURE)

    @property
    def forged(self) -> bool:
        return self.fault in FORGERIES

    @property
    def counts_as_evidence(self) -> bool:
        """Valid, trusted, consistent receipts only: the rest are reported, never counted."""
        return (
            self.kind.is_receipt
            and self.integrity is Integrity.VALID
            and self.trust is Trust.TRUSTED
            and self.fault is None
        )


@dataclass(frozen=True, slots=True)
class TrafficItem:
    """One message as it lands: ``mailbox`` is the box it is stored in (the sender's for
    receipts and Sent copies, the recipient's for envelopes and ordinary mail)."""

    mailbox: str
    folder: str
    raw: bytes = field(repr=False)
    arrival_order: int
    arrival_time: datetime
    truth: Truth

    @property
    def filename(self) -> str:
        """``000042-avvenuta-consegna.eml``."""
        return f"{self.arrival_order:06d}-{self.truth.kind}.eml"


@dataclass(frozen=True, slots=True)
class TrafficMix:
    """Proportions of each situation; per message unless said per recipient."""

    external_recipient: float = 0.15  # per recipient: an ordinary (esterno) mailbox
    extra_recipients: float = 0.35  # a message has 2-4 recipients
    internal_recipient: float = 0.15  # per recipient: another simulated mailbox
    rejected: float = 0.04  # non-accettazione (a third of them for a virus)
    failed: float = 0.06  # per recipient: errore-consegna (half reported as errore="altro")
    virus: float = 0.02  # per recipient: errore-consegna errore="virus"
    delayed_12h: float = 0.03  # per recipient: one warning, nothing else yet
    delayed_24h: float = 0.02  # per recipient: two warnings, nothing else yet
    late_delivery: float = 0.03  # per recipient: two warnings, then delivered
    final_warning: float = 0.02  # per recipient: a "5.4.1" warning that is final
    pending: float = 0.04  # per recipient: accepted, no receipt yet
    duplicate: float = 0.03  # per receipt: delivered twice
    out_of_order: float = 0.08  # acceptance (and the Sent copy) arrive after the receipts
    orphan: float = 0.03  # the Sent copy never arrives
    faulty: float = 0.04  # an extra tampered or forged receipt
    ordinary_mail: float = 0.03  # a non-PEC mail into the INBOX
    anomaly: float = 0.02  # a non-PEC mail wrapped in an "errore" envelope
    # per notice from the recipient's provider to the sender's (presa-in-carico,
    # rilevazione-virus): it also reaches the sender's INBOX (see scenario.py)
    provider_notices: float = 0.3
    variants: tuple[float, float, float] = (0.7, 0.15, 0.15)  # completa, breve, sintetica


def notice_truth(provider: Provider, notice: Notice, *, warning_hours: int | None = None) -> Truth:
    """The truth of ``provider.issue(notice)``."""
    original = notice.original
    return Truth(
        kind=notice.kind,
        msgid=original.msgid,
        identificativo=notice.identificativo,
        provider=provider.name,
        sender=original.sender,
        recipients=original.recipients,
        delivery_recipient=notice.delivery_recipient,
        timestamp=notice.at.astimezone(provider.zone).replace(microsecond=0),
        variant=notice.effective_variant,
        error=notice.error,
        error_detail=notice.error_detail,
        virus=notice.virus or notice.error is ErrorCode.VIRUS,
        message_id=notice.message_id or f"<{notice.identificativo}>",
        integrity=Integrity.VALID,
        trust=Trust.TRUSTED,
        warning_hours=warning_hours,
    )


def plain_truth(mail: OriginalMessage) -> Truth:
    """The truth of ordinary mail (a Sent copy, a newsletter): ``not-pec``, no signature."""
    return Truth(
        kind=Kind.NOT_PEC,
        msgid=mail.msgid,
        identificativo=None,
        provider=None,
        sender=mail.sender,
        recipients=mail.recipients,
        delivery_recipient=None,
        timestamp=mail.date,
        variant=None,
        error=None,
        error_detail=None,
        virus=False,
        message_id=mail.msgid,
        integrity=Integrity.MISSING,
        trust=Trust.UNKNOWN,
    )


def faulty_truth(truth: Truth, fault: Fault) -> Truth:
    """The truth of a message ``forge(..., fault)`` made from one whose truth is ``truth``."""
    integrity, trust = expected_signature(fault)
    truth = replace(truth, fault=fault, integrity=integrity, trust=trust)
    if fault is not Fault.MALFORMED_DATICERT:
        return truth
    return replace(  # what can be known without daticert: kind, msgid, Message-ID
        truth,
        identificativo=None,
        provider=None,
        sender=None,
        recipients=(),
        delivery_recipient=None,
        timestamp=None,
        variant=None,
        error=None,
        error_detail=None,
    )
