"""Read aioimaplib responses (pure): SELECT status, UID SEARCH, FETCH items.

aioimaplib hands back a list of lines with the leading ``* `` removed, a literal as a
``bytearray`` of its own, and the tagged completion text last::

    [b'1 FETCH (UID 1 INTERNALDATE "26-Nov-2026 12:12:37 +0000" BODY[] {39}',
     bytearray(b'Subject: a\\r\\n...'), b')', b'Fetch completed (0.001 + 0.000 secs).']

Unsolicited ``FETCH (FLAGS ...)`` lines (another client changed flags) may be mixed in:
items without a literal are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agents.cursor import FolderStatus
from agents.records import FetchedMessage

__all__ = [
    "FetchItem",
    "ParseError",
    "fetch_items",
    "folder_status",
    "listed_folders",
    "messages",
    "search_uids",
    "sizes",
    "special_use_folders",
]

_FETCH = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_DATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_CODE = {
    "uidvalidity": re.compile(rb"\[UIDVALIDITY (\d+)\]"),
    "uidnext": re.compile(rb"\[UIDNEXT (\d+)\]"),
}
_EXISTS = re.compile(rb"^(\d+) EXISTS$")
_LIST = re.compile(
    rb'^\((?P<attributes>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) '
    rb'(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<atom>\S+))$'
)

Lines = Sequence[bytes | bytearray]


class ParseError(ValueError):
    """The server's answer lacks something the agent needs (e.g. no UIDVALIDITY)."""


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One ``FETCH`` response: its text outside literals and its first literal, if any."""

    text: bytes
    literal: bytes | None


def folder_status(lines: Lines) -> FolderStatus:
    """UIDVALIDITY / UIDNEXT / EXISTS from a SELECT answer."""
    found: dict[str, int] = {}
    exists = 0
    for line in lines:
        if isinstance(line, bytearray):
            continue
        for name, pattern in _CODE.items():
            match = pattern.search(line)
            if match:
                found[name] = int(match.group(1))
        match = _EXISTS.match(line)
        if match:
            exists = int(match.group(1))
    if "uidvalidity" not in found:
        raise ParseError("SELECT answer without UIDVALIDITY")
    # UIDNEXT is optional in old servers; without it, "something may be new" is the safe guess.
    uidnext = found.get("uidnext", 2**32)
    return FolderStatus(found["uidvalidity"], uidnext, exists)


def special_use_folders(lines: Lines) -> dict[str, str]:
    """``{attribute: folder}`` from a LIST answer, e.g. ``{"\\Sent": "Posta inviata"}``.

    Lines look like ``(\\HasNoChildren \\Sent) "/" "Posta inviata"``; a name may be
    quoted (with ``\\"`` escapes) or an atom. The first folder with an attribute wins.
    """
    found: dict[str, str] = {}
    for attributes, folder in _list_entries(lines):
        for attribute in attributes:
            found.setdefault("\\" + attribute.lstrip("\\").capitalize(), folder)
    return found


def listed_folders(lines: Lines) -> list[str]:
    """Folder names of a LIST answer (``[]`` when ``LIST "" "Archivio"`` found nothing)."""
    return [folder for _attributes, folder in _list_entries(lines)]


def _list_entries(lines: Lines) -> Iterator[tuple[list[str], str]]:
    for line in lines[:-1]:
        if isinstance(line, bytearray):
            continue
        match = _LIST.match(line)
        if match is None:
            continue
        name = match.group("quoted")
        folder = (
            re.sub(rb"\\(.)", rb"\1", name).decode("utf-8", "replace")
            if name is not None
            else match.group("atom").decode("utf-8", "replace")
        )
        yield match.group("attributes").decode("ascii", "replace").split(), folder


def search_uids(lines: Lines, first_uid: int) -> list[int]:
    """UIDs of a ``UID SEARCH UID n:*`` answer, keeping only ``>= first_uid``.

    ``n:*`` with ``n`` above the highest UID still matches the highest UID (RFC 3501
    6.4.8), hence the filter.
    """
    uids: set[int] = set()
    for line in lines[:-1]:
        if isinstance(line, bytearray):
            continue
        if not (line.startswith(b"SEARCH") or line[:1].isdigit()):
            continue
        words = line.split()
        uids.update(int(word) for word in words if word.isdigit())
    return sorted(uid for uid in uids if uid >= first_uid)


def fetch_items(lines: Lines) -> list[FetchItem]:
    """Split a FETCH answer (completion text excluded) into its items."""
    items: list[FetchItem] = []
    text: list[bytes] = []
    literal: bytes | None = None
    started = False
    for line in lines[:-1]:
        if isinstance(line, bytearray):
            if started and literal is None:
                literal = bytes(line)
            continue
        if _FETCH.match(line):
            if started:
                items.append(FetchItem(b" ".join(text), literal))
            text, literal, started = [line], None, True
        elif started:
            text.append(line)
    if started:
        items.append(FetchItem(b" ".join(text), literal))
    return items


def sizes(lines: Lines) -> list[tuple[int, int]]:
    """``(uid, RFC822.SIZE)`` pairs of a ``UID FETCH set (RFC822.SIZE)`` answer."""
    out: list[tuple[int, int]] = []
    for item in fetch_items(lines):
        uid, size = _UID.search(item.text), _SIZE.search(item.text)
        if uid and size:
            out.append((int(uid.group(1)), int(size.group(1))))
    return out


def messages(lines: Lines) -> list[FetchedMessage]:
    """Messages of a ``UID FETCH set (UID INTERNALDATE BODY.PEEK[])`` answer."""
    out: list[FetchedMessage] = []
    for item in fetch_items(lines):
        uid = _UID.search(item.text)
        if uid is None or item.literal is None:
            continue
        date = _DATE.search(item.text)
        out.append(
            FetchedMessage(
                int(uid.group(1)), date.group(1).decode() if date else None, item.literal
            )
        )
    return out
