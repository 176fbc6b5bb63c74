"""Where each folder's ingest stands, and what to fetch next: pure, no I/O.

A folder's position is ``(UIDVALIDITY, last UID published)``. UIDs only grow while
UIDVALIDITY holds (RFC 3501 2.3.1.1), so "everything above ``last_uid``" is exactly what is
new. When the server reports another UIDVALIDITY the old UIDs mean nothing any more: the
folder is read again from UID 1 and downstream deduplicates by content key::

    >>> plan_folder(FolderCursor(uidvalidity=1700000000, last_uid=41),
    ...             FolderStatus(uidvalidity=1700000000, uidnext=45, exists=44))
    FolderPlan(first_uid=42, uidvalidity=1700000000, resync=False, lag=3)

Cursors are stored as records of a compacted topic, key ``mailbox-id/folder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = [
    "FolderCursor",
    "FolderPlan",
    "FolderStatus",
    "cursor_key",
    "decode_cursor",
    "encode_cursor",
    "plan_folder",
]


@dataclass(frozen=True, slots=True)
class FolderCursor:
    """The last UID of a folder whose record Kafka acknowledged, under one UIDVALIDITY."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What SELECT reported: UIDVALIDITY, UIDNEXT (next UID to be assigned), EXISTS."""

    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """Fetch UIDs ``>= first_uid``; ``resync`` when UIDVALIDITY changed; ``lag`` upper bound."""

    first_uid: int
    uidvalidity: int
    resync: bool
    lag: int

    @property
    def up_to_date(self) -> bool:
        return self.lag == 0


def plan_folder(cursor: FolderCursor | None, status: FolderStatus) -> FolderPlan:
    """Decide where to resume from the stored cursor and the server's SELECT answer."""
    newest = max(status.uidnext - 1, 0)
    if cursor is None or cursor.uidvalidity != status.uidvalidity:
        resync = cursor is not None
        lag = newest if status.exists else 0
        return FolderPlan(1, status.uidvalidity, resync=resync, lag=lag)
    lag = max(newest - cursor.last_uid, 0) if status.exists else 0
    return FolderPlan(cursor.last_uid + 1, status.uidvalidity, resync=False, lag=lag)


def cursor_key(mailbox_id: str, folder: str) -> bytes:
    """Record key of a folder's cursor (mailbox ids contain no ``/``)."""
    return f"{mailbox_id}/{folder}".encode()


def encode_cursor(cursor: FolderCursor) -> bytes:
    return orjson.dumps({"uidvalidity": cursor.uidvalidity, "last_uid": cursor.last_uid})


def decode_cursor(value: bytes) -> FolderCursor | None:
    """Parse a stored cursor; ``None`` for a record that is not one (never raises)."""
    try:
        data = orjson.loads(value)
        uidvalidity, last_uid = data["uidvalidity"], data["last_uid"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not (isinstance(uidvalidity, int) and isinstance(last_uid, int)):
        return None
    if uidvalidity <= 0 or last_uid < 0:
        return None
    return FolderCursor(uidvalidity, last_uid)
