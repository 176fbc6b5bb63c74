"""The PEC core: parse, verify, correlate. Pure: no I/O, no clock, no environment.

Public API::

    examine(raw, trust) -> Examined(message: PecMessage, signature: SignatureReport, receipt_id)
    parse(raw) -> PecMessage                 verify(raw, trust) -> SignatureReport
    TrustStore.from_bytes(pem)               correlation_key(mailbox, msgid)
    lifecycle.apply(state, receipt)          lifecycle.TRANSITIONS

Errors: none escape for bad input; malformed messages carry ``Defect`` values. The only
exceptions are programming errors and ``ValueError`` from ``TrustStore.from_bytes`` for a
trust file that is not a certificate (the caller's configuration, not message input).
"""

from pipeline.core.examine import Examined, examine
from pipeline.core.keys import correlation_key, normalise_msgid
from pipeline.core.model import (
    Defect,
    DeliveryState,
    ErrorCode,
    Integrity,
    Kind,
    PecMessage,
    ReceiptVariant,
    Recipient,
    RecipientType,
    SignatureReport,
    Trust,
)
from pipeline.core.parse import Limits, parse
from pipeline.core.smime import verify
from pipeline.core.trust import TrustStore

__all__ = [
    "Defect",
    "DeliveryState",
    "ErrorCode",
    "Examined",
    "Integrity",
    "Kind",
    "Limits",
    "PecMessage",
    "ReceiptVariant",
    "Recipient",
    "RecipientType",
    "SignatureReport",
    "Trust",
    "TrustStore",
    "correlation_key",
    "examine",
    "normalise_msgid",
    "parse",
    "verify",
]
