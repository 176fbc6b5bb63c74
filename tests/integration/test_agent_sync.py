"""The agent against real Dovecot and the embedded broker: sync, IDLE, flags, sharding."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.records import content_key
from pipeline.contracts.metrics import IMAP_ERROR_KINDS
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import header, read_all, wait_for_count
from tests.support.mail import message

from .conftest import box, in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration

PUBLISHED = {"outcome": "published"}


async def first_record_keyed(
    bootstrap: str, topic: str, key: str, timeout: float
) -> ConsumerRecord[bytes, bytes]:
    """The first record of ``topic`` with ``key``, read incrementally (not re-read per poll)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"{topic} does not exist"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(*tps, timeout_ms=200)).values():
                for record in records:
                    if record.key == key.encode():
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"no record keyed {key} in {topic} after {timeout}s")


async def test_initial_sync_publishes_every_message_byte_exact(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """200 mailboxes x (4 INBOX + 1 Sent): every message lands once, raw bytes untouched."""
    users = fresh_users(200)
    sent: dict[tuple[str, str, str], bytes] = {}
    for index in users:
        user = dovecot.user(index)
        inbox = [message(f"{user}-in-{n}") for n in range(4)]
        inbox[0] = inbox[0].replace(b"\r\n\r\n", b"\r\nX-Bytes: \xe8\xff caf\xc3\xa9\r\n\r\n", 1)
        outbox = [message(f"{user}-out-0")]
        for folder, raws in (("INBOX", inbox), ("Sent", outbox)):
            uids = dovecot.append_many(user, folder, raws)
            for uid, raw in zip(uids, raws, strict=True):
                sent[(f"box-{index:04d}", folder, str(uid))] = raw
    flags_before = {i: dovecot.flags(dovecot.user(i), "INBOX") for i in users[:5]}
    config = write_config(tmp_path, broker, dovecot, users)

    async with in_process_agent(config) as agent:
        records = await wait_for_count(broker.bootstrap, "pec.raw", len(sent), timeout=90)
        await wait_until(
            lambda: agent.metric("pec_imap_connected_mailboxes") == 200, 20, "connections"
        )
        # the counters move after Kafka's ack, so they may trail the records a reader sees
        await wait_until(
            lambda: agent.metric("pec_ingest_messages_total", PUBLISHED) == 1000,
            10,
            "1000 published",
        )
        first = f"box-{users[0]:04d}"
        lag = {"mailbox": first, "folder": "INBOX"}
        await wait_until(
            lambda: agent.metric("pec_ingest_cursor_lag_messages", lag) == 0, 10, "lag 0"
        )
        synced = agent.metric("pec_ingest_last_sync_timestamp_seconds", {"mailbox": first})
        assert synced > time.time() - 120

    assert len(records) == len(sent)
    got = {(r.key.decode(), header(r, "folder"), header(r, "uid")): r for r in records}
    assert set(got) == set(sent)
    for where, raw in sent.items():
        record = got[where]
        assert record.value == raw
        assert header(record, "mailbox") == where[0]
        assert header(record, "content-key") == content_key(raw)
        assert int(header(record, "uidvalidity")) > 0
        assert header(record, "internal-date").startswith("20")
    for index, flags in flags_before.items():
        after = dovecot.flags(dovecot.user(index), "INBOX")
        assert after == flags
        assert all("\\Seen" not in f for f in after.values())


async def test_mail_appended_during_idle_arrives_within_seconds(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A message APPENDed while the agent IDLEs reaches Kafka within seconds."""
    users = fresh_users(3)
    config = write_config(tmp_path, broker, dovecot, users)
    async with in_process_agent(config) as agent:
        await wait_until(
            lambda: agent.metric("pec_imap_connected_mailboxes") == 3, 20, "connections"
        )
        await asyncio.sleep(0.5)  # let the workers enter IDLE
        delays = []
        for n, index in enumerate(users):
            started = time.monotonic()
            await asyncio.to_thread(
                dovecot.append, dovecot.user(index), "INBOX", message(f"idle-{index}")
            )
            await wait_for_count(broker.bootstrap, "pec.raw", n + 1, timeout=15)
            delays.append(time.monotonic() - started)
        assert max(delays) < 8, delays  # ~0.6 s idle machine; Dovecot alone waits 0.5 s
    records = await read_all(broker.bootstrap, "pec.raw")
    assert sorted(r.key.decode() for r in records) == [f"box-{i:04d}" for i in users]


async def test_idle_is_renewed_and_still_delivers_after_several_cycles(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """With idle_seconds = 2, IDLE is ended and re-issued on one connection; mail
    APPENDed after several cycles (at different phases of one) still arrives in seconds."""
    (index,) = fresh_users(1)
    config = write_config(tmp_path, broker, dovecot, [index], folders=("INBOX",), idle_seconds=2)
    async with in_process_agent(config) as agent:
        await wait_until(
            lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box(index)}) == 1,
            20,
            "the mailbox to be synced",
        )
        await asyncio.sleep(7)  # three IDLE cycles
        delays = []
        for n in range(3):
            started = time.monotonic()
            await asyncio.to_thread(
                dovecot.append, dovecot.user(index), "INBOX", message(f"re-idle-{index}-{n}")
            )
            await wait_for_count(broker.bootstrap, "pec.raw", n + 1, timeout=10)
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.7)  # the next append lands at another phase of the cycle
        assert max(delays) < 6, delays  # polling (poll_seconds = 60) would take a minute
        errors = sum(
            agent.metric("pec_imap_errors_total", {"kind": kind}) for kind in IMAP_ERROR_KINDS
        )
        assert errors == 0, "IDLE renewal broke the connection"
        assert agent.metric("pec_imap_connected_mailboxes") == 1


async def test_sent_folder_is_polled_while_inbox_idles(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A copy saved into Sent after the initial sync is picked up by the periodic poll."""
    (index,) = fresh_users(1)
    config = write_config(tmp_path, broker, dovecot, [index], poll_seconds=1)
    async with in_process_agent(config) as agent:
        await wait_until(
            lambda: agent.metric("pec_imap_connected_mailboxes") == 1, 20, "connection"
        )
        raw = message(f"sent-copy-{index}")
        await asyncio.to_thread(dovecot.append, dovecot.user(index), "Sent", raw)
        (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=10)
    assert header(record, "folder") == "Sent"
    assert record.value == raw


async def test_server_without_idle_is_polled(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Without the IDLE capability the agent polls every poll_seconds and still gets mail."""
    with Dovecot(users=1, extra_conf="imap_capability = IMAP4rev1 LITERAL+ UIDPLUS") as server:
        config = write_config(tmp_path, broker, server, [1], poll_seconds=1)
        async with in_process_agent(config) as agent:
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 1, 20, "connection"
            )
            started = time.monotonic()
            raw = message("polled")
            await asyncio.to_thread(server.append, server.user(1), "INBOX", raw)
            (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=15)
            assert time.monotonic() - started < 8
    assert record.value == raw


async def test_sent_folder_found_by_special_use(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """``folders = ["INBOX", "\\\\Sent"]`` ingests the folder the server marks \\Sent."""
    (index,) = fresh_users(1)
    raw = message(f"special-use-{index}")
    dovecot.append(dovecot.user(index), "Sent", raw)
    config = write_config(tmp_path, broker, dovecot, [index], folders=("INBOX", "\\Sent"))
    async with in_process_agent(config):
        (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
    assert header(record, "folder") == "Sent"
    assert record.value == raw


async def test_new_mail_is_served_while_a_large_first_sync_holds_the_only_slot(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """One sync slot, a 4,000-message first sync in 5-message batches: mail APPENDed to
    another, idling mailbox reaches Kafka before that sync is over."""
    big, small = fresh_users(2)
    total = 4000
    bulk = [message(f"bulk-{big}-{n}", body_bytes=50) for n in range(total)]
    dovecot.deliver(dovecot.user(big), "INBOX", bulk)
    config = write_config(
        tmp_path, broker, dovecot, [big, small], folders=("INBOX",),
        max_concurrent_syncs=1, batch_max_messages=5,
    )  # fmt: skip
    last_sync = "pec_ingest_last_sync_timestamp_seconds"
    async with in_process_agent(config) as agent:
        await wait_until(
            lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box(small)}) == 1,
            30,
            "the small mailbox to be synced and idling",
        )
        await asyncio.sleep(0.5)  # into IDLE
        assert agent.metric("pec_ingest_messages_total", PUBLISHED) > 0, "big sync not begun"
        raw = message(f"urgent-{small}")
        await asyncio.to_thread(dovecot.append, dovecot.user(small), "INBOX", raw)
        record = await first_record_keyed(broker.bootstrap, "pec.raw", box(small), timeout=30)
        big_synced = agent.metric(last_sync, {"mailbox": box(big)})
    assert record.value == raw
    assert big_synced == 0, "the new mail waited for the whole large sync"


async def test_configured_folder_missing_on_the_server_is_logged_and_skipped(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A folder Dovecot does not have is named in one ``folder.missing`` warning; INBOX
    still flows and the mailbox is up. Without a Sent folder, start-up warns too."""
    caplog.set_level(logging.INFO)
    (index,) = fresh_users(1)
    raw = message(f"missing-folder-{index}")
    dovecot.append(dovecot.user(index), "INBOX", raw)
    config = write_config(
        tmp_path, broker, dovecot, [index], folders=("INBOX", "Posta inviata"), poll_seconds=1
    )
    async with in_process_agent(config) as agent:
        (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
        await asyncio.sleep(2.5)  # two more full syncs: the warning is not repeated
        assert agent.metric("pec_imap_mailbox_up", {"mailbox": box(index)}) == 1
        errors = agent.metric("pec_imap_errors_total", {"kind": "protocol"})
    assert record.value == raw
    assert errors == 0
    events = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    missing = [fields for event, fields in events if event == "folder.missing"]
    assert [f["folder"] for f in missing] == ["Posta inviata"]
    assert "does not exist on the server" in missing[0]["error"]
    assert not [f for event, f in events if event == "config.no_sent_folder"]
    inbox_only = write_config(tmp_path, broker, dovecot, [index], folders=("INBOX",))
    async with in_process_agent(inbox_only):
        pass
    warned = [r for r in caplog.records if r.getMessage() == "config.no_sent_folder"]
    assert [r.fields["mailbox"] for r in warned] == [box(index)]  # type: ignore[attr-defined]


async def test_preset_flags_are_left_exactly_as_they_were_in_inbox_and_sent(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Messages already \\Flagged, \\Answered or \\Seen keep exactly those flags, in INBOX
    and Sent, through the first sync, an IDLE fetch and a poll; new mail stays unseen."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    preset = {
        "INBOX": ["\\Flagged", "\\Answered \\Seen", "\\Seen", "", "\\Flagged \\Seen"],
        "Sent": ["\\Seen", "\\Answered", "", "\\Flagged \\Seen"],
    }
    for folder, flag_sets in preset.items():
        for n, flags in enumerate(flag_sets):
            dovecot.append(user, folder, message(f"flags-{index}-{folder}-{n}"), flags=flags)
    before = {folder: dovecot.flags(user, folder) for folder in preset}
    assert "\\Flagged" in before["Sent"][4]  # the flags really were set
    config = write_config(tmp_path, broker, dovecot, [index], poll_seconds=1)
    async with in_process_agent(config) as agent:
        await wait_for_count(broker.bootstrap, "pec.raw", 9, timeout=20)
        await wait_until(
            lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box(index)}) == 1,
            10,
            "the first sync",
        )
        await asyncio.sleep(0.5)  # into IDLE
        new_inbox = await asyncio.to_thread(
            dovecot.append, user, "INBOX", message(f"new-in-{index}")
        )
        new_sent = await asyncio.to_thread(
            dovecot.append, user, "Sent", message(f"new-out-{index}")
        )
        await wait_for_count(broker.bootstrap, "pec.raw", 11, timeout=15)
    after = {folder: dovecot.flags(user, folder) for folder in preset}
    for folder, new_uid in (("INBOX", new_inbox), ("Sent", new_sent)):
        assert "\\Seen" not in after[folder].pop(new_uid), f"{folder}: fetching set \\Seen"
        assert after[folder] == before[folder], folder
