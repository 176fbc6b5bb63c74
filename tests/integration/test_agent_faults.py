"""Faults against real servers: dropped connections, server restart, UIDVALIDITY reset,
bad credentials, oversized messages, responses too large for aioimaplib's parser."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from agents.publish import read_cursors
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import header, read_all, wait_for_count
from tests.support.mail import message

from .conftest import box, in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration


async def test_connection_dropped_by_server_reconnects_and_resumes(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """After the server kicks an idling mailbox, the agent reconnects and gets new mail."""
    users = fresh_users(2)
    config = write_config(tmp_path, broker, dovecot, users)
    async with in_process_agent(config) as agent:
        await wait_until(
            lambda: agent.metric("pec_imap_connected_mailboxes") == 2, 20, "connections"
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(dovecot.kick, dovecot.user(users[0]))
        await wait_until(
            lambda: agent.metric("pec_imap_errors_total", {"kind": "dropped"}) >= 1,
            10,
            "the drop to be counted",
        )
        raw = message(f"after-kick-{users[0]}")
        await asyncio.to_thread(dovecot.append, dovecot.user(users[0]), "INBOX", raw)
        (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=15)
    assert record.value == raw


async def test_server_restart_reconnects_every_mailbox(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Dovecot going away and coming back on the same port: both mailboxes flow again."""
    with Dovecot(users=2) as server:
        config = write_config(tmp_path, broker, server, [1, 2])
        async with in_process_agent(config) as agent:
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 2, 20, "connections"
            )
            server.stop()
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 0, 10, "the drop"
            )
            await asyncio.sleep(1.0)  # reconnect attempts fail meanwhile ("connect")
            server.start()
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 2, 20, "reconnect"
            )
            for index in (1, 2):
                await asyncio.to_thread(
                    server.append, server.user(index), "INBOX", message(f"r{index}")
                )
            records = await wait_for_count(broker.bootstrap, "pec.raw", 2, timeout=15)
            assert agent.metric("pec_imap_errors_total", {"kind": "connect"}) >= 1
    assert sorted(r.key.decode() for r in records) == [box(1), box(2)]


async def test_uidvalidity_reset_resyncs_with_the_same_content_keys(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A new UIDVALIDITY re-reads the folder; the content keys match the first copies."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    dovecot.append_many(user, "INBOX", [message(f"uv-{index}-{n}") for n in range(3)])
    config = write_config(tmp_path, broker, dovecot, [index])
    async with in_process_agent(config):
        first = await wait_for_count(broker.bootstrap, "pec.raw", 3, timeout=20)
    old_validity = dovecot.uidvalidity(user, "INBOX")
    dovecot.reset_uidvalidity(user, "INBOX")
    new_validity = dovecot.uidvalidity(user, "INBOX")
    assert new_validity != old_validity
    async with in_process_agent(config):
        records = await wait_for_count(broker.bootstrap, "pec.raw", 6, timeout=20)
    second = records[3:]
    assert {header(r, "uidvalidity") for r in first} == {str(old_validity)}
    assert {header(r, "uidvalidity") for r in second} == {str(new_validity)}
    assert {header(r, "content-key") for r in second} == {header(r, "content-key") for r in first}
    cursors = await read_cursors(broker.bootstrap, "pec.agent.cursors")
    assert cursors[f"{box(index)}/INBOX".encode()].uidvalidity == new_validity


async def test_wrong_password_on_one_mailbox_never_stalls_the_others(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One mailbox fails login; the others flow; no password in logs or metrics."""
    caplog.set_level(logging.DEBUG)
    users = fresh_users(4)
    bad = users[1]
    for index in users:
        dovecot.append(dovecot.user(index), "INBOX", message(f"cred-{index}"))
    config = write_config(tmp_path, broker, dovecot, users, wrong_password={bad})
    async with in_process_agent(config) as agent:
        records = await wait_for_count(broker.bootstrap, "pec.raw", 3, timeout=20)
        await wait_until(
            lambda: agent.metric("pec_imap_errors_total", {"kind": "auth"}) >= 2,
            10,
            "repeated auth failures",
        )
        await wait_until(
            lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box(users[0])}) == 1,
            10,
            "a good mailbox up",
        )
        assert agent.metric("pec_imap_mailbox_up", {"mailbox": box(bad)}) == 0
        metrics_text = agent.metrics_text()
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in users if i != bad)
    failures = [r for r in caplog.records if getattr(r, "fields", {}).get("kind") == "auth"]
    assert failures
    assert all(r.fields["mailbox"] == box(bad) for r in failures)  # type: ignore[attr-defined]
    logged = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    for index in users:
        secret = dovecot.password(index)
        assert secret not in logged
        assert secret not in metrics_text


async def test_oversized_message_goes_to_the_dead_letter_topic(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A message over max_message_bytes is dead-lettered with its reason; the rest flows."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    small = [message(f"small-{index}-{n}") for n in range(2)]
    big = message(f"big-{index}", body_bytes=20_000)
    dovecot.append_many(user, "INBOX", [small[0], big, small[1]])
    config = write_config(tmp_path, broker, dovecot, [index], max_message_bytes=5000)
    async with in_process_agent(config) as agent:
        published = await wait_for_count(broker.bootstrap, "pec.raw", 2, timeout=20)
        (dead,) = await wait_for_count(broker.bootstrap, "pec.raw.deadletter", 1, timeout=20)
        await wait_until(
            lambda: agent.metric("pec_ingest_messages_total", {"outcome": "dead_letter"}) == 1,
            10,
            "the dead letter counted",
        )
    assert [r.value for r in published] == small
    assert header(dead, "uid") == "2"
    assert header(dead, "reason").startswith("too-large")
    assert int(header(dead, "size")) == len(big)
    assert dead.value == big.split(b"\r\n\r\n")[0] + b"\r\n\r\n"


async def test_a_fetch_answer_of_thousands_of_lines_is_read_in_one_go(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """1,500 messages in one FETCH answer: aioimaplib's own reader raised RecursionError
    (a parser fault, then smaller batches); agents.imap.protocol reads it in a loop."""
    (index,) = fresh_users(1)
    raws = [message(f"tiny-{index}-{n}", body_bytes=20) for n in range(1500)]
    dovecot.deliver(dovecot.user(index), "INBOX", raws)
    config = write_config(
        tmp_path, broker, dovecot, [index], batch_max_messages=5000, batch_max_bytes=10**8
    )
    async with in_process_agent(config) as agent:
        records = await wait_for_count(broker.bootstrap, "pec.raw", 1500, timeout=60)
        assert agent.metric("pec_imap_errors_total", {"kind": "parser"}) == 0
        assert agent.metric("pec_ingest_fetch_duration_seconds_count") == 1  # one batch
    assert sorted(r.value for r in records) == sorted(raws)
    assert len(await read_all(broker.bootstrap, "pec.raw")) == 1500


async def test_frozen_server_process_hits_the_command_timeout(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A server process that stops answering (SIGSTOP) is a timeout; the agent reconnects."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    config = write_config(
        tmp_path, broker, dovecot, [index], folders=("INBOX",), poll_seconds=1, command_timeout=2
    )
    frozen: list[int] = []
    try:
        async with in_process_agent(config) as agent:
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 1, 20, "connection"
            )
            frozen = dovecot.imap_pids(user)
            assert len(frozen) == 1
            os.kill(frozen[0], signal.SIGSTOP)
            await wait_until(
                lambda: agent.metric("pec_imap_errors_total", {"kind": "timeout"}) >= 1,
                15,
                "a command timeout",
            )
            raw = message(f"after-freeze-{index}")
            await asyncio.to_thread(dovecot.append, user, "INBOX", raw)
            (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
    assert record.value == raw


async def test_servers_that_never_answer_do_not_starve_the_other_mailboxes(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Two mailboxes on a silent server wait out their timeout; the others sync meanwhile."""
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # accept, then never send the IMAP greeting

    blackhole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    users = fresh_users(4)
    for index in users[2:]:
        dovecot.append(dovecot.user(index), "INBOX", message(f"starve-{index}"))
    extra = {index: [f"port = {port}"] for index in users[:2]}
    config = write_config(
        tmp_path, broker, dovecot, users, extra=extra,
        command_timeout=10, max_concurrent_syncs=1, max_concurrent_connects=4,
    )  # fmt: skip
    try:
        async with in_process_agent(config) as agent:
            records = await wait_for_count(broker.bootstrap, "pec.raw", 2, timeout=20)
            timeouts = agent.metric("pec_imap_errors_total", {"kind": "timeout"})
            assert timeouts == 0, "good mailboxes waited for the silent ones"
            await wait_until(
                lambda: agent.metric("pec_imap_errors_total", {"kind": "timeout"}) >= 2,
                20,
                "the silent server's timeouts",
            )
    finally:
        blackhole.close()
        for writer in writers:
            writer.close()
        await blackhole.wait_closed()
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in users[2:])
