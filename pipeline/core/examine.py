"""One call for adapters: parse, verify and identify a raw message, sharing one MIME pass.

>>> examined = examine(raw, trust)                          # doctest: +SKIP
>>> examined.message.kind, examined.signature.integrity     # doctest: +SKIP
(<Kind.AVVENUTA_CONSEGNA: 'avvenuta-consegna'>, <Integrity.VALID: 'valid'>)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.core.lifecycle import Receipt, event_for
from pipeline.core.mime import canonical_crlf
from pipeline.core.model import Defect, Integrity, PecMessage, SignatureReport, Trust
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits, parse_layout, read_layout
from pipeline.core.smime import verify_layout
from pipeline.core.trust import TrustStore

# Quirks of real providers that leave a receipt's meaning intact. Every other defect
# (headers disagreeing with daticert, a replayed X-Riferimento-Message-ID, no daticert,
# broken MIME, ...) means the receipt is reported but never counted as evidence.
TOLERATED_DEFECTS = frozenset(
    {
        "daticert-unknown-recipient-type",
        "unknown-receipt-variant",
        "daticert-unknown-error",
        "daticert-bad-timestamp",
        "daticert-no-timestamp",
    }
)


@dataclass(frozen=True, slots=True)
class Examined:
    message: PecMessage
    signature: SignatureReport
    receipt_id: str

    @property
    def disqualifying_defects(self) -> tuple[Defect, ...]:
        """Why this message cannot count as evidence; empty when it can."""
        found = [d for d in self.message.defects if d.code not in TOLERATED_DEFECTS]
        found.extend(self.signature.defects)
        if self.signature.integrity is not Integrity.VALID:
            found.append(Defect(f"signature-{self.signature.integrity.value}"))
        elif self.signature.trust is not Trust.TRUSTED:
            found.append(Defect("signer-untrusted", self.signature.trust_reason or ""))
        return tuple(found)

    def as_receipt(self) -> Receipt | None:
        """The lifecycle input, only for receipts that count as evidence."""
        event = event_for(self.message)
        if event is None or self.disqualifying_defects:
            return None
        return Receipt(
            receipt_id=self.receipt_id,
            event=event,
            recipients=self.message.recipients,
            delivery_recipient=self.message.delivery_recipient,
            at=self.message.timestamp,
        )


def receipt_id(layout: Layout, raw: bytes) -> str:
    """A stable id for "this very message": the same whether stored with CRLF or LF.

    The signature blob is unique per signed message (it covers signingTime and the
    content digest); unsigned mail falls back to its canonicalised bytes.
    """
    basis = layout.signature if layout.signature is not None else canonical_crlf(raw)
    return hashlib.sha256(basis).hexdigest()[:32]


def examine(raw: bytes, trust: TrustStore, limits: Limits = DEFAULT_LIMITS) -> Examined:
    layout = read_layout(raw, limits)
    message = parse_layout(layout, limits)
    signature = verify_layout(layout, trust, fallback_time=message.timestamp)
    return Examined(message, signature, receipt_id(layout, raw))
