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
from pipeline.core.model import PecMessage, SignatureReport
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits, parse_layout, read_layout
from pipeline.core.smime import verify_layout
from pipeline.core.trust import TrustStore


@dataclass(frozen=True, slots=True)
class Examined:
    message: PecMessage
    signature: SignatureReport
    receipt_id: str

    def as_receipt(self) -> Receipt | None:
        """The lifecycle input, only for receipts whose signature counts as evidence."""
        event = event_for(self.message)
        if event is None or not self.signature.counts_as_evidence:
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
