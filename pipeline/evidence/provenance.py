"""From a ``pec.raw`` record and its verification to its provenance and archive entry.

The agent's headers say where the message was read (mailbox, folder, UIDVALIDITY, UID,
INTERNALDATE: :class:`pipeline.contracts.raw.RawOrigin`); the worker adds
the SHA-256 of the bytes, the message's identifiers, the signature verdict and the URI of
the archived copy.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pipeline.contracts.raw import RawOrigin
from pipeline.core import (
    Evidence,
    Examined,
    Ignored,
    Kind,
    Provenance,
    Routed,
    Submission,
    SuspectReceipt,
)
from pipeline.core.observation import signature_verdict
from pipeline.evidence.archive import Archive
from pipeline.evidence.writer import ArchiveItem

ARCHIVE_KINDS = ("receipts", "envelopes", "sent")


def parse_kinds(text: str) -> frozenset[str]:
    """``"receipts,envelopes"`` -> the kinds of message the archive keeps."""
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = kinds - set(ARCHIVE_KINDS)
    if unknown:
        raise ValueError(f"archive kinds are {', '.join(ARCHIVE_KINDS)}, not {sorted(unknown)}")
    return kinds


def archive_kind(outcome: Routed, examined: Examined) -> str | None:
    """Which archive kind a routed message is: a receipt (applied, suspect, or one the
    lifecycle does not use such as presa in carico), the Sent copy, an inbound envelope
    (posta-certificata in the inbox); ordinary mail and dead letters: ``None``."""
    if isinstance(outcome, Evidence | SuspectReceipt):
        return "receipts"
    if isinstance(outcome, Submission):
        return "sent"
    if isinstance(outcome, Ignored) and examined.message.kind is not Kind.NOT_PEC:
        return "envelopes" if examined.message.kind is Kind.POSTA_CERTIFICATA else "receipts"
    return None


def provenance_of(
    raw: bytes, origin: RawOrigin, examined: Examined, *, kind: str, archive: Archive | None
) -> Provenance:
    sha256 = hashlib.sha256(raw).hexdigest()
    message = examined.message
    is_sent = kind == "sent"
    return Provenance(
        sha256=sha256,
        size=len(raw),
        kind="sent" if is_sent else message.kind.value,
        mailbox=origin.mailbox,
        folder=origin.folder,
        uidvalidity=origin.uidvalidity or None,  # 0: the header was absent
        uid=origin.uid or None,
        identificativo=None if is_sent else message.identificativo,
        message_id=message.message_id,
        receipt_id=None if is_sent else examined.receipt_id,
        recipient=None if is_sent else message.delivery_recipient,
        signature=None if is_sent else signature_verdict(examined).value,
        stored_at=origin.internal_date,
        archive=archive.location(sha256) if archive is not None else None,
    )


def archive_item(raw: bytes, provenance: Provenance, msgid: str | None) -> ArchiveItem:
    """The object and its metadata (all text; absent values are empty)."""
    meta = {
        "mailbox": provenance.mailbox,
        "folder": provenance.folder,
        "uidvalidity": str(provenance.uidvalidity or ""),
        "uid": str(provenance.uid or ""),
        "kind": provenance.kind,
        "identificativo": provenance.identificativo or "",
        "msgid": msgid or "",
        "message-id": provenance.message_id or "",
        "signature": provenance.signature or "",
        "read-at": datetime.now(UTC).isoformat(),
    }
    return ArchiveItem(raw, meta)
