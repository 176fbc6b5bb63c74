"""The ``pec.raw`` record: what an agent writes and the workers read back.

Key: the mailbox id. Value: the message exactly as IMAP returned it. Headers say where
it was read::

    mailbox: comune-x   folder: INBOX   uid: 42   uidvalidity: 1700000000
    internal-date: 2026-11-26T12:12:37+00:00   content-key: 9f2c...(sha256 hex)
    folder-role: inbox | sent | archive

``folder-role`` tells the workers where the user's sent copies are (:func:`folder_role`).
A dead letter (``pec.raw.deadletter`` from the agent, ``pec.dlq`` from the workers)
keeps the headers of the record it replaces and adds :class:`DeadLetterHeader` ones.
Header names are written as plain ``str`` (``.value``): aiokafka's record builder
refuses a ``str`` subclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pipeline.contracts.headers import Headers

__all__ = [
    "DeadLetterHeader",
    "FolderRole",
    "RawHeader",
    "RawOrigin",
    "dead_letter_headers",
    "folder_role",
    "header_text",
    "raw_headers",
    "read_origin",
]


class RawHeader(StrEnum):
    MAILBOX = "mailbox"
    FOLDER = "folder"
    UID = "uid"
    UIDVALIDITY = "uidvalidity"
    INTERNAL_DATE = "internal-date"  # IMAP INTERNALDATE, ISO 8601; empty if unknown
    CONTENT_KEY = "content-key"  # sha256 of Message-ID + bytes: equal for the same message
    FOLDER_ROLE = "folder-role"


class DeadLetterHeader(StrEnum):
    REASON = "reason"  # a bounded code (the metric label)
    DETAIL = "detail"  # what exactly was wrong, for a person (at most 200 bytes)
    SIZE = "size"  # the whole message's size, when the value is not the whole message
    TRUNCATED = "truncated"  # "header-section": the value is the header section only


class FolderRole(StrEnum):
    INBOX = "inbox"  # receipts and received mail
    SENT = "sent"  # the user's own copies of what was sent
    ARCHIVE = "archive"  # a ``\\Archive`` folder: ordinary mail, not sent copies


def folder_role(folder: str, special_use: str | None = None) -> FolderRole:
    """INBOX is ``inbox``; a folder found by its ``\\Archive`` attribute is ``archive``;
    every other configured folder holds sent copies."""
    if folder.strip().upper() == "INBOX":
        return FolderRole.INBOX
    return FolderRole.ARCHIVE if special_use == "\\Archive" else FolderRole.SENT


@dataclass(frozen=True, slots=True)
class RawOrigin:
    """Where a raw message was read, as its headers say (absent values: empty / 0)."""

    mailbox: str
    folder: str
    uid: int = 0
    uidvalidity: int = 0
    internal_date: datetime | None = None
    content_key: str = ""
    role: FolderRole | None = None

    @property
    def holds_sent_copies(self) -> bool:
        """The folder holds the user's sent copies. Without a ``folder-role`` header
        (another producer) every folder but INBOX does."""
        if self.role is not None:
            return self.role is FolderRole.SENT
        return folder_role(self.folder) is FolderRole.SENT


# The header names as plain str, read once: an enum's ``.value`` costs two Python calls,
# seven per record on the agent's hot path (bench/README.md, issue #20).
_MAILBOX, _FOLDER, _UID, _UIDVALIDITY = (
    RawHeader.MAILBOX.value, RawHeader.FOLDER.value, RawHeader.UID.value,
    RawHeader.UIDVALIDITY.value,
)  # fmt: skip
_INTERNAL_DATE, _CONTENT_KEY, _FOLDER_ROLE = (
    RawHeader.INTERNAL_DATE.value, RawHeader.CONTENT_KEY.value, RawHeader.FOLDER_ROLE.value,
)  # fmt: skip


def raw_headers(origin: RawOrigin) -> Headers:
    """The headers of a ``pec.raw`` record (the writer's side of :func:`read_origin`)."""
    role = origin.role or folder_role(origin.folder)
    return (
        *_location(origin),
        (_INTERNAL_DATE, _iso(origin.internal_date).encode()),
        (_CONTENT_KEY, origin.content_key.encode()),
        (_FOLDER_ROLE, str.encode(role)),
    )


def dead_letter_headers(origin: RawOrigin, reason: str, size: int) -> Headers:
    """The headers of an agent dead letter: where the message is, why, and its size."""
    return (
        *_location(origin),
        (DeadLetterHeader.REASON.value, reason.encode()),
        (DeadLetterHeader.SIZE.value, str(size).encode()),
    )


def read_origin(key: bytes | None, headers: Mapping[str, bytes]) -> RawOrigin:
    """The origin of a ``pec.raw`` record; the mailbox falls back to the record key, the
    folder to INBOX. Never raises: values that do not parse are left out."""
    role = header_text(headers.get(RawHeader.FOLDER_ROLE))
    return RawOrigin(
        mailbox=header_text(headers.get(RawHeader.MAILBOX)) or header_text(key),
        folder=header_text(headers.get(RawHeader.FOLDER)) or "INBOX",
        uid=_number(headers.get(RawHeader.UID)),
        uidvalidity=_number(headers.get(RawHeader.UIDVALIDITY)),
        internal_date=_instant(header_text(headers.get(RawHeader.INTERNAL_DATE))),
        content_key=header_text(headers.get(RawHeader.CONTENT_KEY)),
        role=FolderRole(role) if role in _ROLES else None,
    )


def header_text(value: bytes | str | None) -> str:
    """A header value as stripped text (bad UTF-8 replaced); ``""`` when absent."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return value.strip()


def _location(origin: RawOrigin) -> Sequence[tuple[str, bytes]]:
    return (
        (_MAILBOX, origin.mailbox.encode()),
        (_FOLDER, origin.folder.encode()),
        (_UID, str(origin.uid).encode()),
        (_UIDVALIDITY, str(origin.uidvalidity).encode()),
    )


_ROLES = frozenset(role.value for role in FolderRole)


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at is not None else ""


def _number(value: bytes | None) -> int:
    text = header_text(value)
    return int(text) if text.isdigit() and len(text) <= 20 else 0


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
