"""Cursor plan: resume above the last published UID; resync on a new UIDVALIDITY."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.cursor import (
    FolderCursor,
    FolderStatus,
    cursor_key,
    decode_cursor,
    encode_cursor,
    plan_folder,
)


def test_first_sync_starts_at_uid_one() -> None:
    """No cursor yet: fetch from UID 1, not a resync."""
    plan = plan_folder(None, FolderStatus(uidvalidity=7, uidnext=11, exists=10))
    assert (plan.first_uid, plan.uidvalidity, plan.resync, plan.lag) == (1, 7, False, 10)


def test_resume_above_the_cursor() -> None:
    """Same UIDVALIDITY: start right after the last published UID."""
    plan = plan_folder(FolderCursor(7, 41), FolderStatus(7, uidnext=45, exists=44))
    assert (plan.first_uid, plan.resync, plan.lag) == (42, False, 3)


def test_up_to_date_folder_has_no_lag() -> None:
    """Nothing above the cursor: up to date."""
    assert plan_folder(FolderCursor(7, 44), FolderStatus(7, uidnext=45, exists=44)).up_to_date


def test_uidvalidity_change_resyncs_from_one() -> None:
    """A different UIDVALIDITY voids the old UIDs: resync from 1 under the new value."""
    plan = plan_folder(FolderCursor(7, 500), FolderStatus(9, uidnext=4, exists=3))
    assert (plan.first_uid, plan.uidvalidity, plan.resync) == (1, 9, True)


def test_empty_folder_has_no_lag_even_if_uidnext_moved() -> None:
    """All messages expunged: UIDNEXT is high but nothing is there to fetch."""
    assert plan_folder(FolderCursor(7, 3), FolderStatus(7, uidnext=90, exists=0)).lag == 0


@given(st.integers(1, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_cursor_codec_round_trips(uidvalidity: int, last_uid: int) -> None:
    """encode/decode is lossless for every valid cursor."""
    cursor = FolderCursor(uidvalidity, last_uid)
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_garbage_cursor_records_are_ignored() -> None:
    """A record that is not a cursor decodes to None instead of raising."""
    for value in [b"", b"not json", b"[]", b'{"uidvalidity": "7", "last_uid": 1}', b"{}"]:
        assert decode_cursor(value) is None


def test_cursor_key_is_mailbox_and_folder() -> None:
    """Keys are ``mailbox/folder`` so compaction keeps one cursor per folder."""
    assert cursor_key("comune-x", "Posta inviata") == b"comune-x/Posta inviata"
