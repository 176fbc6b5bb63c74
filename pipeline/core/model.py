"""PEC domain values: small, frozen, typed.

A parsed mailbox message is a :class:`PecMessage`; what the signature check found is a
:class:`SignatureReport`. Nothing here does I/O. The vocabulary follows daticert.xml::

    <postacert tipo="avvenuta-consegna" errore="nessuno">
      <intestazione><destinatari tipo="certificato">to@pec.other.it</destinatari>...
      <dati><ricevuta tipo="completa"/><consegna>to@pec.other.it</consegna>...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pipeline.core.defects import DefectCode


class Kind(StrEnum):
    """What a message in a PEC mailbox is: daticert ``postacert@tipo``, or ``not-pec``."""

    POSTA_CERTIFICATA = "posta-certificata"
    ERRORE = "errore"
    ACCETTAZIONE = "accettazione"
    NON_ACCETTAZIONE = "non-accettazione"
    PRESA_IN_CARICO = "presa-in-carico"
    AVVENUTA_CONSEGNA = "avvenuta-consegna"
    ERRORE_CONSEGNA = "errore-consegna"
    PREAVVISO_ERRORE_CONSEGNA = "preavviso-errore-consegna"
    RILEVAZIONE_VIRUS = "rilevazione-virus"
    NOT_PEC = "not-pec"

    @property
    def is_envelope(self) -> bool:
        """Transport envelopes (``X-Trasporto``) rather than receipts (``X-Ricevuta``)."""
        return self in (Kind.POSTA_CERTIFICATA, Kind.ERRORE)

    @property
    def is_receipt(self) -> bool:
        return self not in (Kind.POSTA_CERTIFICATA, Kind.ERRORE, Kind.NOT_PEC)


class RecipientType(StrEnum):
    """``<destinatari tipo=...>``: a PEC box gets a delivery receipt, an ordinary box never."""

    CERTIFICATO = "certificato"
    ESTERNO = "esterno"


class ReceiptVariant(StrEnum):
    """``<ricevuta tipo=...>``, asked for by the sender with ``X-TipoRicevuta``."""

    COMPLETA = "completa"
    BREVE = "breve"
    SINTETICA = "sintetica"


class ErrorCode(StrEnum):
    """``<postacert errore=...>``."""

    NESSUNO = "nessuno"
    NO_DEST = "no-dest"
    NO_DOMINIO = "no-dominio"
    VIRUS = "virus"
    ALTRO = "altro"


class DeliveryState(StrEnum):
    """Where one (message, recipient) pair stands. ``lifecycle.TRANSITIONS`` moves it."""

    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DELAYED_12H = "delayed-12h"
    DELAYED_24H = "delayed-24h"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery-failed"
    VIRUS = "virus"


@dataclass(frozen=True, slots=True)
class Defect:
    """Something wrong with a message, recorded instead of raised.

    ``code`` says what is wrong and how much it matters (:class:`DefectCode`);
    ``detail`` says what was seen, for a person.
    """

    code: DefectCode
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    type: RecipientType


@dataclass(frozen=True, slots=True)
class PecMessage:
    """Everything the tracker reads from one message of a PEC mailbox.

    ``msgid`` is the ORIGINAL client Message-ID the message is about (daticert ``<msgid>``,
    falling back to ``X-Riferimento-Message-ID``), normalised, with angle brackets. For
    ``not-pec`` mail (e.g. a Sent-folder copy of what the user submitted) it is the
    message's own Message-ID. ``delivery_recipient`` is daticert ``<consegna>``.
    ``timestamp`` is the daticert time, or for ``not-pec`` mail its ``Date`` header.
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
    subject: str | None
    message_id: str | None
    virus: bool
    defects: tuple[Defect, ...]


class Integrity(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"


class Trust(StrEnum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SignatureReport:
    """The S/MIME outcome. Integrity and trust are different facts and reported apart.

    ``trust_reason`` says why trust was not established (``expired-at-signing-time``,
    ``no-path-to-anchor``, ...); ``defects`` carry signer/provider disagreements.
    """

    integrity: Integrity
    trust: Trust
    signer: str | None
    signer_email: str | None
    signing_time: datetime | None
    digest: str | None
    trust_reason: str | None
    defects: tuple[Defect, ...]

    @property
    def counts_as_evidence(self) -> bool:
        """Only a valid, trusted signature by the right provider makes a receipt evidence."""
        return (
            self.integrity is Integrity.VALID and self.trust is Trust.TRUSTED and not self.defects
        )
