"""What the agent publishes: raw bytes plus Kafka headers, and the content key (pure).

A ``pec.raw`` record is keyed by mailbox id; its value is the message exactly as IMAP
returned it. Headers carry where it came from::

    mailbox: comune-x   folder: INBOX   uid: 42   uidvalidity: 1700000000
    internal-date: 2026-11-26T12:12:37+00:00   content-key: 9f2c...(sha256 hex)
    folder-role: inbox | sent | archive

``folder-role`` tells the workers where the user's sent copies are: ``archive`` is a
folder found by its ``\\Archive`` attribute, whose ordinary mail is not a sent message.

The content key is the same for the same message whatever its UID, so a UIDVALIDITY
resync re-publishes records that downstream recognises as already seen.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from pipeline.core import mime

__all__ = [
    "FetchedMessage",
    "OutRecord",
    "content_key",
    "dead_letter_record",
    "folder_role",
    "header_section",
    "internaldate_iso",
    "message_id",
    "raw_record",
]

Headers = tuple[tuple[str, bytes], ...]

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as fetched: UID, INTERNALDATE text (IMAP form) and the raw bytes."""

    uid: int
    internaldate: str | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A Kafka record to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers


def message_id(raw: bytes) -> bytes | None:
    """The top-level ``Message-ID`` value (unfolded, stripped), if the header has one."""
    end = _HEADER_END.search(raw)
    head = raw[: end.start()] if end else raw
    match = _MESSAGE_ID.search(head)
    if match is None:
        return None
    return re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip() or None


def header_section(raw: bytes, limit: int = 64 * 1024) -> bytes:
    """The header section up to and including the empty line, at most ``limit`` bytes."""
    return mime.header_section(raw, limit)


def content_key(raw: bytes) -> str:
    """sha256 over the Message-ID and the raw bytes: equal for the same message anywhere."""
    digest = hashlib.sha256()
    digest.update(message_id(raw) or b"")
    digest.update(b"\n")
    digest.update(raw)
    return digest.hexdigest()


def internaldate_iso(text: str | None) -> str:
    """``"26-Nov-2026 12:12:37 +0000"`` -> ``"2026-11-26T12:12:37+00:00"``; ``""`` if unknown."""
    if not text:
        return ""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z").isoformat()
    except ValueError:
        return ""


def _origin(mailbox: str, folder: str, uid: int, uidvalidity: int) -> list[tuple[str, bytes]]:
    return [
        ("mailbox", mailbox.encode()),
        ("folder", folder.encode()),
        ("uid", str(uid).encode()),
        ("uidvalidity", str(uidvalidity).encode()),
    ]


def raw_record(
    topic: str,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    message: FetchedMessage,
    *,
    role: str | None = None,
) -> OutRecord:
    """The ``pec.raw`` record of a fetched message (value untouched)."""
    headers = _origin(mailbox, folder, message.uid, uidvalidity)
    headers += [
        ("internal-date", internaldate_iso(message.internaldate).encode()),
        ("content-key", content_key(message.raw).encode()),
        ("folder-role", (role or folder_role(folder)).encode()),
    ]
    return OutRecord(topic, mailbox.encode(), message.raw, tuple(headers))


def folder_role(folder: str, special_use: str | None = None) -> str:
    """``inbox``, ``archive`` (found as ``\\Archive``) or ``sent`` (every other folder)."""
    if folder.strip().upper() == "INBOX":
        return "inbox"
    return "archive" if special_use == "\\Archive" else "sent"


def dead_letter_record(
    topic: str,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    uid: int,
    *,
    reason: str,
    size: int,
    header_section: bytes,
) -> OutRecord:
    """A message the agent will not publish whole: its header section and the reason."""
    headers = _origin(mailbox, folder, uid, uidvalidity)
    headers += [("reason", reason.encode()), ("size", str(size).encode())]
    return OutRecord(topic, mailbox.encode(), header_section, tuple(headers))
