"""What can be wrong with a message: every defect code, and what each one means.

A defect is recorded, never raised (:class:`pipeline.core.model.Defect`). Its code says
how much it matters, like the classes of the ``email`` package's defects:

- **tolerated**: a quirk of real providers that leaves a receipt's meaning intact (the
  signed daticert is the authority and is what is used); the receipt still counts;
- **unreadable**: the message itself could not be read (over a size cap, broken MIME):
  it is never dropped as ordinary mail but dead-lettered, the code its reason;
- every other code **disqualifies**: the receipt is reported (a suspect receipt, its
  reason the codes) but never counted as evidence.

The values are stable kebab-case identifiers: they appear in events and metric labels.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DefectCode"]


class DefectCode(StrEnum):
    # The message as a whole
    MESSAGE_TOO_LARGE = "message-too-large"
    HEADERS_TOO_LARGE = "headers-too-large"
    MIME_MALFORMED = "mime-malformed"
    # Unsigned headers
    HEADER_CONFLICT = "header-conflict"  # both X-Trasporto and X-Ricevuta
    HEADER_UNKNOWN_KIND = "header-unknown-kind"
    HEADER_DATICERT_MISMATCH = "header-daticert-mismatch"  # the kind they name
    HEADER_VARIANT_MISMATCH = "header-variant-mismatch"  # X-TipoRicevuta vs <ricevuta tipo>
    HEADER_SENDER_MISMATCH = "header-sender-mismatch"  # X-Mittente vs <mittente>
    MSGID_MISMATCH = "msgid-mismatch"  # X-Riferimento-Message-ID vs daticert <msgid>
    # daticert.xml
    DATICERT_MISSING = "daticert-missing"
    DATICERT_TOO_LARGE_OR_UNDECODABLE = "daticert-too-large-or-undecodable"
    DATICERT_MALFORMED = "daticert-malformed"
    DATICERT_TOO_DEEP = "daticert-too-deep"
    DATICERT_ENTITY_FORBIDDEN = "daticert-entity-forbidden"
    DATICERT_EXTERNAL_REFERENCE = "daticert-external-reference"
    DATICERT_UNKNOWN_KIND = "daticert-unknown-kind"
    DATICERT_NO_MSGID = "daticert-no-msgid"
    DATICERT_NO_TIMESTAMP = "daticert-no-timestamp"
    DATICERT_BAD_TIMESTAMP = "daticert-bad-timestamp"
    DATICERT_UNKNOWN_ERROR = "daticert-unknown-error"
    DATICERT_UNKNOWN_RECIPIENT_TYPE = "daticert-unknown-recipient-type"
    UNKNOWN_RECEIPT_VARIANT = "unknown-receipt-variant"
    POSTACERT_MISSING = "postacert-missing"  # the signed daticert still says what happened
    # The signature (S/MIME structure and integrity)
    SIGNATURE_MISSING = "signature-missing"  # a PEC message that is not multipart/signed
    SIGNATURE_PART_MISSING = "signature-part-missing"  # multipart/signed without smime.p7s
    SIGNATURE_UNDECODABLE = "signature-undecodable"  # smime.p7s is not valid base64
    SIGNATURE_INVALID = "signature-invalid"  # the signature does not verify
    CMS_MALFORMED = "cms-malformed"
    NOT_SIGNED_DATA = "not-signed-data"
    NO_SIGNER_INFO = "no-signer-info"
    NO_SIGNER_CERTIFICATE = "no-signer-certificate"
    UNSUPPORTED_DIGEST = "unsupported-digest"
    # The signer
    SIGNER_UNTRUSTED = "signer-untrusted"
    SIGNER_NOT_ISSUER = "signer-not-issuer"  # not the provider the receipt names
    SIGNER_WITHOUT_EMAIL = "signer-without-email"
    SIGNER_DOMAIN_UNVERIFIABLE = "signer-domain-unverifiable"
    SIGNER_DOMAIN_MISMATCH = "signer-domain-mismatch"

    @property
    def tolerated(self) -> bool:
        """A quirk that leaves the receipt's meaning intact: it still counts."""
        return self in _TOLERATED

    @property
    def unreadable(self) -> bool:
        """The message could not be read: a dead letter, not ordinary mail."""
        return self in _UNREADABLE

    @property
    def about_signer(self) -> bool:
        """About who signed (untrusted, or not the provider the receipt names)."""
        return self.value.startswith("signer-")


_TOLERATED = frozenset(
    {
        DefectCode.DATICERT_UNKNOWN_RECIPIENT_TYPE,
        DefectCode.UNKNOWN_RECEIPT_VARIANT,
        DefectCode.DATICERT_UNKNOWN_ERROR,
        DefectCode.DATICERT_BAD_TIMESTAMP,
        DefectCode.DATICERT_NO_TIMESTAMP,
        DefectCode.HEADER_VARIANT_MISMATCH,
        DefectCode.HEADER_SENDER_MISMATCH,
        DefectCode.POSTACERT_MISSING,
    }
)
# Not signature-part-missing: PGP/MIME mail is multipart/signed too.
_UNREADABLE = frozenset(
    {DefectCode.MESSAGE_TOO_LARGE, DefectCode.HEADERS_TOO_LARGE, DefectCode.MIME_MALFORMED}
)
