"""History limits on real Dovecot: ``since`` bounds a folder's first read, not what follows."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import TopicTail, header
from tests.support.mail import message

from .conftest import box, in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration


def _at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, 0, tzinfo=UTC)


async def test_backfill_limited_by_since_publishes_exactly_the_messages_since(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    limited, whole = fresh_users(2)
    user = dovecot.user(limited)
    expected: set[tuple[str, str, int]] = set()
    skipped: set[tuple[str, str, int]] = set()
    # INBOX: old, new, then an old message APPENDed last (the highest UID is old mail)
    for tag, when in (("old-1", _at(2024, 6, 1)), ("new-1", _at(2025, 1, 2)),
                      ("old-2", _at(2024, 12, 30)), ("new-2", _at(2025, 3, 1)),
                      ("old-3", _at(2023, 1, 1))):  # fmt: skip
        uid = dovecot.append_at(user, "INBOX", message(f"{user}-{tag}"), when)
        (expected if tag.startswith("new") else skipped).add((box(limited), "INBOX", uid))
    for tag, when in (("sent-old", _at(2024, 11, 1)), ("sent-new", _at(2025, 2, 1))):
        uid = dovecot.append_at(user, "Sent", message(f"{user}-{tag}"), when)
        (expected if tag.endswith("new") else skipped).add((box(limited), "Sent", uid))
    # the same kind of history in a mailbox without a limit: all of it
    uid = dovecot.append_at(dovecot.user(whole), "INBOX", message("whole-old"), _at(2020, 1, 1))
    expected.add((box(whole), "INBOX", uid))
    config = write_config(
        tmp_path, broker, dovecot, [limited, whole], extra={limited: ["since = 2025-01-01"]}
    )

    raw: TopicTail

    def published() -> set[tuple[str, str, int]]:
        return {  # the tail is opened once the topic exists (the consumer's metadata)
            (header(r, "mailbox"), header(r, "folder"), int(header(r, "uid"))) for r in raw.records
        }

    async with contextlib.AsyncExitStack() as stack, in_process_agent(config) as agent:
        await wait_until(
            lambda: (
                agent.metric("pec_imap_mailbox_up", {"mailbox": box(limited)}) == 1
                and agent.metric("pec_imap_mailbox_up", {"mailbox": box(whole)}) == 1
            ),
            60,
            "both mailboxes synced",
        )
        raw = await stack.enter_async_context(TopicTail(broker.bootstrap, "pec.raw"))
        # Mail arriving after the first sync is read whatever its INTERNALDATE: an old
        # message appended now (moved in from an archive) is published. It also marks
        # the end: records of one mailbox keep their order in the partition.
        late = dovecot.append_at(user, "INBOX", message(f"{user}-late-old"), _at(2020, 5, 5))
        expected.add((box(limited), "INBOX", late))
        for _ in range(100):
            await raw.read()
            if (box(limited), "INBOX", late) in published():
                break
        assert published() == expected
        assert not published() & skipped
        assert len(raw.records) == len(expected)  # each once
