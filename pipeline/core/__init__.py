"""The PEC core: parse, verify, route, correlate, retain. Pure: no I/O, no clock, no
environment. The adapters (:mod:`pipeline.contracts`, :mod:`pipeline.streams`,
:mod:`agents`) import what they use from here::

    examine(raw, trust) -> Examined(message, signature, receipt_id)   one raw message
    observe_message(examined, mailbox, sent_copy=...) -> Routed         where it goes
    apply_observation(tracked, observation) -> (Tracked, events)         the tracker
    step(tracked, observation, ...) -> Step                              retention around it
    lifecycle.TRANSITIONS                                                the one table

Errors: none escape for bad input; malformed messages carry ``Defect`` values whose
``DefectCode`` says how much they matter. The only exceptions are programming errors and
``ValueError`` from ``TrustStore.from_bytes`` for a trust file that is not a certificate
(the caller's configuration, not message input).
"""

from pipeline.core import lifecycle, mime
from pipeline.core.correlate import (
    Deadlines,
    EventType,
    OverdueReason,
    SignatureVerdict,
    Suspect,
    Tracked,
    TrackEvent,
)
from pipeline.core.defects import DefectCode
from pipeline.core.examine import Examined, examine
from pipeline.core.keys import correlation_key, normalise_address, normalise_msgid
from pipeline.core.lifecycle import Event, MessageState, Receipt, RecipientState
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
from pipeline.core.observation import (
    DeadlineCheck,
    Evidence,
    Ignored,
    Observation,
    Routed,
    Submission,
    SuspectReceipt,
    Unroutable,
    apply_observation,
    observe_message,
    verdict_of_reason,
)
from pipeline.core.parse import Limits, parse
from pipeline.core.provenance import Provenance
from pipeline.core.retention import NOTHING, Fate, Retention, Tally, next_due, step, tally
from pipeline.core.smime import verify
from pipeline.core.trust import TrustStore, load_certificates

__all__ = [
    "NOTHING",
    "DeadlineCheck",
    "Deadlines",
    "Defect",
    "DefectCode",
    "DeliveryState",
    "ErrorCode",
    "Event",
    "EventType",
    "Evidence",
    "Examined",
    "Fate",
    "Ignored",
    "Integrity",
    "Kind",
    "Limits",
    "MessageState",
    "Observation",
    "OverdueReason",
    "PecMessage",
    "Provenance",
    "Receipt",
    "ReceiptVariant",
    "Recipient",
    "RecipientState",
    "RecipientType",
    "Retention",
    "Routed",
    "SignatureReport",
    "SignatureVerdict",
    "Submission",
    "Suspect",
    "SuspectReceipt",
    "Tally",
    "TrackEvent",
    "Tracked",
    "Trust",
    "TrustStore",
    "Unroutable",
    "apply_observation",
    "correlation_key",
    "examine",
    "lifecycle",
    "load_certificates",
    "mime",
    "next_due",
    "normalise_address",
    "normalise_msgid",
    "observe_message",
    "parse",
    "step",
    "tally",
    "verdict_of_reason",
    "verify",
]
