"""The pec.raw contract: what the agent writes is what the workers read."""

from __future__ import annotations

from datetime import UTC

from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.raw import (
    FolderRole,
    RawOrigin,
    folder_role,
    raw_headers,
    read_origin,
)

texts = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")), min_size=1, max_size=30)


origins = st.builds(
    RawOrigin,
    mailbox=texts,
    folder=texts,
    uid=st.integers(1, 2**32 - 1),
    uidvalidity=st.integers(1, 2**32 - 1),
    internal_date=st.none() | st.datetimes(timezones=st.just(UTC)),
    content_key=st.just("ab" * 32),
    role=st.sampled_from(FolderRole),
)


@given(origins)
def test_read_origin_reads_back_what_raw_headers_wrote(origin: RawOrigin) -> None:
    headers = raw_headers(origin)
    assert read_origin(b"other-key", dict(headers)) == origin
    # aiokafka's record builder takes names of exactly str, not a str subclass
    assert all(type(name) is str for name, _ in headers)


def test_sent_copies_follow_the_agents_folder_role() -> None:
    """``folder-role`` wins over the folder's name; without it, every folder but INBOX."""
    assert RawOrigin("m", "Archivio", role=FolderRole.SENT).holds_sent_copies
    assert not RawOrigin("m", "Archivio", role=FolderRole.ARCHIVE).holds_sent_copies
    assert not RawOrigin("m", "Posta inviata", role=FolderRole.INBOX).holds_sent_copies
    assert RawOrigin("m", "Archivio").holds_sent_copies
    assert not RawOrigin("m", " inbox ").holds_sent_copies


def test_folder_role_of_the_agent() -> None:
    assert folder_role(" Inbox ") is FolderRole.INBOX
    assert folder_role("Archivio", "\\Archive") is FolderRole.ARCHIVE
    assert folder_role("Posta inviata", "\\Sent") is FolderRole.SENT
    assert folder_role("Elementi inviati") is FolderRole.SENT


def test_read_origin_never_raises_on_foreign_headers() -> None:
    """Another producer's record: missing or garbage values are left out, the key names
    the mailbox, the folder is INBOX."""
    origin = read_origin(
        b"box-7",
        {"uid": b"-1", "uidvalidity": b"x" * 50, "internal-date": b"ieri", "folder-role": b"?"},
    )
    assert origin == RawOrigin("box-7", "INBOX")
