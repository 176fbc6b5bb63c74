"""IMAP-side faults: a slow, flapping server behind a proxy; a server failing one mailbox.

The agent must back off and recover on its own, lose nothing, and show the incident in
its metrics (``pec_imap_errors_total{kind}``, ``pec_imap_mailbox_up``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from agents.config import parse_config
from agents.imap.session import ImapError, ImapSession
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import header, read_all, wait_for_count
from tests.support.mail import message
from tests.support.proxy import TcpProxy

from .conftest import InProcessAgent, box, in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration


def imap_errors(agent: InProcessAgent) -> dict[str, float]:
    """``pec_imap_errors_total`` by kind."""
    out: dict[str, float] = {}
    for family in agent.registry.collect():
        for s in family.samples:
            if s.name == "pec_imap_errors_total":
                out[s.labels["kind"]] = s.value
    return out


async def test_slow_flapping_server_loses_nothing_and_shows_the_drops(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a proxy adding latency and cutting every connection again and again, new
    mail keeps arriving: all of it is published once per UID, the drops are counted and
    every mailbox is up again after the flapping stops. A drop in IDLE leaves no
    "Task exception was never retrieved" behind (the IDLE command's task)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    users = fresh_users(3)
    with TcpProxy(dovecot.host, dovecot.port) as proxy:
        proxy.delay = 0.05
        extra = {index: [f"port = {proxy.port}"] for index in users}
        config = write_config(
            tmp_path, broker, dovecot, users, extra=extra, poll_seconds=1, command_timeout=5
        )
        sent: list[bytes] = []
        async with in_process_agent(config) as agent:
            await wait_until(
                lambda: agent.metric("pec_imap_connected_mailboxes") == 3, 20, "connections"
            )
            cuts = 0
            for cycle in range(6):
                for index in users:
                    raws = [message(f"flap-{index}-{cycle}-{n}") for n in range(3)]
                    await asyncio.to_thread(dovecot.append_many, dovecot.user(index), "INBOX", raws)
                    sent += raws
                await asyncio.sleep(0.4 + 0.2 * (cycle % 3))
                cuts += await asyncio.to_thread(proxy.cut)
            calm = time.monotonic()
            records = await wait_for_count(broker.bootstrap, "pec.raw", len(sent), timeout=60)
            recovery = time.monotonic() - calm

            def up() -> list[float]:
                return [agent.metric("pec_imap_mailbox_up", {"mailbox": box(i)}) for i in users]

            # connected counts logged-in sessions; up waits for each one's first full sync
            await wait_until(lambda: up() == [1, 1, 1], 20, "every mailbox up again")
            errors = imap_errors(agent)
            connected = agent.metric("pec_imap_connected_mailboxes")
        await asyncio.sleep(1.0)  # anything published twice would show up by now
        records = await read_all(broker.bootstrap, "pec.raw")
    gc.collect()  # a task is reported when it is freed
    print(f"\nflapping: {cuts} connections cut, errors {errors}, recovered in {recovery:.1f} s")
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not unretrieved, unretrieved[0].getMessage()
    uids = [(r.key, header(r, "uid")) for r in records]
    assert sorted(r.value for r in records if r.value) == sorted(sent)
    assert len(set(uids)) == len(uids) == len(sent)
    assert cuts >= 6
    assert errors.get("dropped", 0) >= 3, errors
    assert connected == 3


async def test_server_errors_on_one_mailbox_leave_the_others_flowing_then_it_recovers(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A mailbox whose folders the server cannot open fails (counted, marked down) while
    the others flow; once the server is repaired it catches up with no restart."""
    users = fresh_users(3)
    bad = users[0]
    for index in users:
        await asyncio.to_thread(
            dovecot.append_many, dovecot.user(index), "INBOX",
            [message(f"err-{index}-{n}") for n in range(2)],
        )  # fmt: skip
    maildir = dovecot.maildir(dovecot.user(bad))
    mode = maildir.stat().st_mode
    maildir.chmod(0)  # Dovecot's mail processes (uid mail) can no longer open it
    try:
        config = write_config(tmp_path, broker, dovecot, users, poll_seconds=1)
        async with in_process_agent(config) as agent:
            good = await wait_for_count(broker.bootstrap, "pec.raw", 4, timeout=20)
            await wait_until(lambda: sum(imap_errors(agent).values()) >= 2, 15, "errors counted")
            during = imap_errors(agent)
            assert agent.metric("pec_imap_mailbox_up", {"mailbox": box(bad)}) == 0
            maildir.chmod(mode)
            repaired = time.monotonic()
            records = await wait_for_count(broker.bootstrap, "pec.raw", 6, timeout=30)
            recovery = time.monotonic() - repaired
            await wait_until(
                lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box(bad)}) == 1,
                15,
                "the repaired mailbox up",
            )
    finally:
        maildir.chmod(mode)
    print(f"\none mailbox failing: errors {during}, recovered in {recovery:.1f} s")
    assert sorted({r.key.decode() for r in good}) == sorted(box(i) for i in users[1:])
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in users for _ in "ab")


async def test_connection_cut_between_greeting_and_capability_fails_fast(tmp_path: Path) -> None:
    """A server that greets, then hangs up before answering CAPABILITY: opening the
    session fails with a connection error within the command timeout, never hangs."""
    writers: list[asyncio.StreamWriter] = []

    async def greet_then_cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await writer.drain()
        await reader.readline()  # the client's CAPABILITY, sent while holding its state lock
        writer.transport.abort()

    server = await asyncio.start_server(greet_then_cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = tmp_path / "secret"
    secret.write_text("pw")
    config = parse_config(
        {
            "kafka": {"bootstrap": "127.0.0.1:1"},
            "mailbox": [
                {
                    "id": "cut",
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": "plain",
                    "user": "u",
                    "password_file": str(secret),
                }
            ],
        },
        {},
    )
    started = time.monotonic()
    try:
        with pytest.raises(ImapError):
            await asyncio.wait_for(ImapSession.open(config.mailboxes[0], 2.0), 10)
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()
    assert time.monotonic() - started < 5
