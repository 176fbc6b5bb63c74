"""Published records: raw bytes untouched, provenance headers, content key."""

from __future__ import annotations

from agents.records import (
    FetchedMessage,
    content_key,
    dead_letter_record,
    header_section,
    internaldate,
    message_id,
    raw_record,
)

RAW = (
    b"Received: from a\r\n\tby b\r\n"
    b"Message-ID:\r\n <opec288.20181113163926.1@pec.aruba.it>\r\n"
    b"Subject: POSTA CERTIFICATA: fattura\r\n\r\n"
    b"Message-ID: <in-body@not-a-header>\r\n\xe8\xff binary\r\n"
)


def test_message_id_is_unfolded_from_the_header_section_only() -> None:
    """A folded Message-ID is unfolded; the same text in the body is ignored."""
    assert message_id(RAW) == b"<opec288.20181113163926.1@pec.aruba.it>"
    assert message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") is None


def test_content_key_depends_on_bytes_not_on_uid() -> None:
    """The same bytes give the same key; one changed byte gives another."""
    assert content_key(RAW) == content_key(bytes(RAW))
    assert content_key(RAW) != content_key(RAW.replace(b"fattura", b"fatturA"))
    assert len(content_key(RAW)) == 64


def test_raw_record_keeps_bytes_and_carries_provenance() -> None:
    """Value = raw bytes as fetched; key = mailbox id; headers say where it came from."""
    fetched = FetchedMessage(42, "26-Nov-2026 12:12:37 +0100", RAW)
    record = raw_record("pec.raw", "comune-x", "INBOX", 1700000000, fetched)
    assert record.value is RAW
    assert record.key == b"comune-x"
    assert dict(record.headers) == {
        "mailbox": b"comune-x",
        "folder": b"INBOX",
        "uid": b"42",
        "uidvalidity": b"1700000000",
        "internal-date": b"2026-11-26T12:12:37+01:00",
        "content-key": content_key(RAW).encode(),
        "folder-role": b"inbox",
    }


def test_dead_letter_record_has_reason_and_size() -> None:
    """A dead letter carries the header section, the reason and the size."""
    record = dead_letter_record(
        "dlq", "m", "Sent", 5, 9, reason="too-large", size=99, header_section=b"H: v\r\n\r\n"
    )
    headers = dict(record.headers)
    assert (headers["reason"], headers["size"], headers["uid"]) == (b"too-large", b"99", b"9")
    assert record.value == b"H: v\r\n\r\n"


def test_internaldate_tolerates_garbage() -> None:
    """Unknown or malformed INTERNALDATE is no time (an empty header), not an exception."""
    assert internaldate(None) is None
    assert internaldate("yesterday") is None
    parsed = internaldate(" 1-Jan-2026 00:00:00 +0000")
    assert parsed is not None
    assert parsed.isoformat() == "2026-01-01T00:00:00+00:00"
    record = raw_record("t", "m", "INBOX", 1, FetchedMessage(1, "yesterday", RAW))
    assert dict(record.headers)["internal-date"] == b""


def test_header_section_stops_at_the_blank_line_and_is_bounded() -> None:
    """Dead letters carry headers only; a message without a blank line is cut at the limit."""
    assert header_section(b"A: 1\r\nB: 2\r\n\r\nbody") == b"A: 1\r\nB: 2\r\n\r\n"
    assert header_section(b"x" * 100, limit=10) == b"x" * 10
