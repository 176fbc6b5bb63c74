"""Where a receipt came from and where its signed copy is kept (pure values).

Every record a receipt causes carries its :class:`Provenance`: the receipt's own
identifiers (``identificativo``, Message-ID), the IMAP location it was read from (mailbox
id, folder, UIDVALIDITY, UID), the SHA-256 of its raw bytes and the URI of its archived
copy (``None`` when the worker runs without an evidence archive). The verify adapter
builds it; the tracker keeps one per distinct message (by SHA-256) and attaches it to the
events the receipt causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# A tracked message keeps at most this many provenance entries: an acceptance, one
# delivery or failure per recipient and a few warnings; a flood of copies of a receipt is
# bounded (the first ones are kept: they are the evidence).
MAX_EVIDENCE = 256


@dataclass(frozen=True, slots=True)
class Provenance:
    sha256: str  # lower-case hex of the raw bytes as read from IMAP
    size: int
    kind: str  # the PEC kind (accettazione, avvenuta-consegna, ...) or "sent"
    mailbox: str
    folder: str
    uidvalidity: int | None
    uid: int | None
    identificativo: str | None = None
    message_id: str | None = None  # the receipt's own Message-ID
    receipt_id: str | None = None
    recipient: str | None = None  # the recipient a receipt is about; None: message-wide
    signature: str | None = None  # the signature verdict (SignatureVerdict value)
    stored_at: datetime | None = None  # IMAP INTERNALDATE
    archive: str | None = None  # URI of the archived copy
