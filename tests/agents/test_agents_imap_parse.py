"""Parsing aioimaplib's response lines (as Dovecot 2.3 sends them)."""

from __future__ import annotations

import pytest

from agents.imap.parse import (
    ParseError,
    folder_status,
    listed_folders,
    messages,
    search_uids,
    sizes,
    special_use_folders,
)

SELECT = [
    b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
    b"OK [PERMANENTFLAGS ()] Read-only mailbox.",
    b"2 EXISTS",
    b"0 RECENT",
    b"OK [UIDVALIDITY 1795695157] UIDs valid",
    b"OK [UIDNEXT 3] Predicted next UID",
    b"[READ-ONLY] Examine completed (0.001 + 0.000 secs).",
]


def test_folder_status_from_examine() -> None:
    """UIDVALIDITY, UIDNEXT and EXISTS come from the untagged lines."""
    status = folder_status(SELECT)
    assert (status.uidvalidity, status.uidnext, status.exists) == (1795695157, 3, 2)


def test_folder_status_requires_uidvalidity() -> None:
    """Without UIDVALIDITY no cursor can be trusted: a ParseError."""
    with pytest.raises(ParseError):
        folder_status([b"2 EXISTS", b"Select completed."])


def test_search_filters_the_star_quirk() -> None:
    """``UID SEARCH UID 10:*`` answers the highest UID even when below 10: filtered out."""
    assert search_uids([b"2", b"Search completed."], 10) == []
    assert search_uids([b"3 5 4", b"Search completed."], 4) == [4, 5]
    assert search_uids([b"", b"Search completed."], 1) == []


def test_sizes() -> None:
    """(uid, RFC822.SIZE) pairs from a size FETCH."""
    lines = [b"1 FETCH (UID 7 RFC822.SIZE 39)", b"2 FETCH (UID 9 RFC822.SIZE 21)", b"done"]
    assert sizes(lines) == [(7, 39), (9, 21)]


def test_messages_keep_literal_bytes_and_skip_flag_updates() -> None:
    """Literal bytes are returned as-is; an unsolicited FLAGS FETCH is ignored."""
    lines: list[bytes | bytearray] = [
        b'1 FETCH (UID 1 INTERNALDATE "26-Nov-2026 12:12:37 +0000" BODY[] {6}',
        bytearray(b"a\r\n\xffb"),
        b")",
        b"5 FETCH (FLAGS (\\Seen))",
        b"2 FETCH (BODY[] {1}",
        bytearray(b"z"),
        b' UID 2 INTERNALDATE "26-Nov-2026 12:12:38 +0000")',
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    got = messages(lines)
    assert [(m.uid, m.raw) for m in got] == [(1, b"a\r\n\xffb"), (2, b"z")]
    assert got[1].internaldate == "26-Nov-2026 12:12:38 +0000"
    assert isinstance(got[0].raw, bytes)


def test_special_use_folders_from_list() -> None:
    """Attributes map to folder names: quoted, escaped, atom, NIL delimiter, any case."""
    lines = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren \\sent) "/" "Posta inviata"',
        b'(\\Archive) NIL "Old \\"2019\\""',
        b'(\\HasChildren \\Sent) "." Sent',
        b"List completed (0.001 + 0.000 secs).",
    ]
    found = special_use_folders(lines)
    assert found["\\Sent"] == "Posta inviata"  # the first \Sent wins
    assert found["\\Archive"] == 'Old "2019"'
    assert found["\\Haschildren"] == "Sent"


def test_listed_folders_from_list() -> None:
    """``LIST "" name`` answers the folder if it exists, nothing (but completion) if not."""
    found = [b'(\\HasNoChildren \\Sent) "/" "Posta inviata"', b"List completed (0.001 secs)."]
    assert listed_folders(found) == ["Posta inviata"]
    assert listed_folders([b"List completed (0.001 + 0.000 secs)."]) == []
