"""One call for adapters: parse, verify and identify a raw message, sharing one MIME pass.

>>> examined = examine(raw, trust)                          # doctest: +SKIP
>>> examined.message.kind, examined.signature.integrity     # doctest: +SKIP
(<Kind.AVVENUTA_CONSEGNA: 'avvenuta-consegna'>, <Integrity.VALID: 'valid'>)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from pipeline.core.defects import DefectCode
from pipeline.core.lifecycle import Receipt, event_for
from pipeline.core.mime import canonical_crlf
from pipeline.core.model import Defect, Integrity, Kind, PecMessage, SignatureReport, Trust
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits, parse_layout, read_layout
from pipeline.core.smime import same_provider_domain, verify_layout
from pipeline.core.trust import TrustStore


@dataclass(frozen=True, slots=True)
class Examined:
    message: PecMessage
    signature: SignatureReport
    receipt_id: str

    @property
    def disqualifying_defects(self) -> tuple[Defect, ...]:
        """Why this message cannot count as evidence; empty when it can."""
        found = [d for d in self.message.defects if not d.code.tolerated]
        found.extend(self.signature.defects)
        if self.signature.integrity is not Integrity.VALID:
            missing = self.signature.integrity is Integrity.MISSING
            code = DefectCode.SIGNATURE_MISSING if missing else DefectCode.SIGNATURE_INVALID
            found.append(Defect(code))
        elif self.signature.trust is not Trust.TRUSTED:
            found.append(Defect(DefectCode.SIGNER_UNTRUSTED, self.signature.trust_reason or ""))
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


# Kinds the SENDER's provider signs, about a submission it gave its own identificativo.
ISSUER_SIGNED_KINDS = frozenset(
    {
        Kind.POSTA_CERTIFICATA,
        Kind.ACCETTAZIONE,
        Kind.NON_ACCETTAZIONE,
        Kind.PREAVVISO_ERRORE_CONSEGNA,
    }
)


def issuer_defects(message: PecMessage, signature: SignatureReport) -> tuple[Defect, ...]:
    """The signer must be the provider that minted the daticert ``identificativo``.

    The check against the From header (:mod:`pipeline.core.smime`) reads an unsigned
    header: an attacker holding another provider's valid certificate rewrites From to that
    provider's address and it passes. daticert is signed, and for the kinds of
    :data:`ISSUER_SIGNED_KINDS` its identificativo is minted by the sender's provider,
    the one that signs them::

        <identificativo>opec288.20181113163926.12345.67.1.59@pec.aruba.it</identificativo>
        signed by posta-certificata@pec.aruba.it             -> no defect
        signed by posta-certificata@pec.altrogestore.it      -> signer-not-issuer

    Domains match as in :func:`same_provider_domain` (a label-boundary suffix either way).
    The other kinds cannot be tied to a provider from signed data offline: avvenuta-consegna,
    presa-in-carico, rilevazione-virus and errore (anomaly envelopes) are signed by the
    recipient's provider, whose domain appears nowhere signed (the recipient's address is
    no proof: a provider hosts other domains); errore-consegna is signed by either
    provider. No identificativo (or one without a domain): no check, other defects say it.
    """
    if message.kind not in ISSUER_SIGNED_KINDS or signature.signer_email is None:
        return ()
    ident = message.identificativo or ""
    issuer = ident.rpartition("@")[2] if "@" in ident else ""
    signer = signature.signer_email.rpartition("@")[2]
    if not issuer or same_provider_domain(signer, issuer):
        return ()
    detail = f"signed by {signature.signer_email}, identificativo minted by {issuer}"
    return (Defect(DefectCode.SIGNER_NOT_ISSUER, detail[:200]),)


def examine(raw: bytes, trust: TrustStore, limits: Limits = DEFAULT_LIMITS) -> Examined:
    layout = read_layout(raw, limits)
    message = parse_layout(layout, limits)
    signature = verify_layout(layout, trust, fallback_time=message.timestamp)
    found = issuer_defects(message, signature)
    if found:
        signature = replace(signature, defects=signature.defects + found)
    return Examined(message, signature, receipt_id(layout, raw))
