"""The demo's embedded IMAP server (pymap) speaking to aioimaplib and to the real agent."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import aioimaplib
import pytest
from prometheus_client import CollectorRegistry

from agents.agent import run_agent
from agents.config import load_config
from pipeline.dev.demo.imapserver import DemoImapServer
from pipeline.dev.embedded import free_port
from pipeline.simulate import generate_traffic
from tests.support.kafka import header, running_broker, wait_for_count

pytestmark = pytest.mark.integration

USERS = {"mario.rossi@pec.aruba.it": "pw-1", "giulia.bianchi@postecert.it": "pw-2"}
MAIL = b"From: a@b.it\r\nSubject: prova\r\nMessage-ID: <x1@b.it>\r\n\r\ncorpo\r\n"


async def test_idle_client_is_told_of_a_delivery_and_fetches_it_by_uid() -> None:
    """An idling client gets EXISTS within a second of deliver(); UID FETCH returns the bytes."""
    port = free_port()
    async with DemoImapServer(USERS, port=port) as server:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=10)
        await client.wait_hello_from_server()
        login = await client.login("mario.rossi@pec.aruba.it", "pw-1")
        assert login.result == "OK"
        assert "IDLE" in client.protocol.capabilities
        selected = await client.select("INBOX")
        assert any(b"UIDVALIDITY" in bytes(line) for line in selected.lines)
        idle = await client.idle_start(timeout=10)
        await asyncio.sleep(0.1)
        sent_at = time.monotonic()
        await server.deliver("mario.rossi@pec.aruba.it", "INBOX", MAIL, datetime.now(UTC))
        pushed = await client.wait_server_push()
        assert time.monotonic() - sent_at < 1.0
        assert any(b"EXISTS" in bytes(line) for line in pushed)
        client.idle_done()
        await asyncio.wait_for(idle, 10)
        fetched = await client.uid("fetch", "1:*", "(BODY.PEEK[])")
        assert fetched.result == "OK"
        assert bytes(fetched.lines[1]) == MAIL
        await client.logout()


async def test_prune_expunges_old_mail_and_uids_keep_growing() -> None:
    """prune() removes what was delivered before the cut; later UIDs are never reused."""
    port = free_port()
    user = "giulia.bianchi@postecert.it"
    async with DemoImapServer(USERS, port=port) as server:
        uids = [
            await server.deliver(user, "Sent", MAIL, datetime.now(UTC), at=at) for at in (1, 2, 3)
        ]
        assert await server.prune(2.5) == 2
        assert await server.deliver(user, "Sent", MAIL, datetime.now(UTC), at=4) > uids[-1]
        client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=10)
        await client.wait_hello_from_server()
        await client.login(user, "pw-2")
        await client.select("Sent")
        found = await client.uid_search("ALL")
        await client.logout()
    assert [int(uid) for uid in bytes(found.lines[0]).split()] == [uids[-1], uids[-1] + 1]


async def test_wrong_password_is_refused() -> None:
    """LOGIN with another user's password fails: the server checks credentials."""
    port = free_port()
    async with DemoImapServer(USERS, port=port):
        client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=10)
        await client.wait_hello_from_server()
        login = await client.login("mario.rossi@pec.aruba.it", "pw-2")
        assert login.result == "NO"
        await client.logout()


async def test_the_agent_ingests_inbox_and_sent_from_the_demo_server(tmp_path: Path) -> None:
    """The real agent logs in to every mailbox and publishes each stored message to pec.raw."""
    items = generate_traffic(4, 12, 2, datetime.now(UTC).replace(microsecond=0))
    boxes = sorted({item.mailbox for item in items})
    (tmp_path / "password").write_text("secret-pw\n")
    lines = [
        "[kafka]",
        'bootstrap = "{bootstrap}"',
        "idempotence = false",
        "partitions = 2",
        "[limits]",
        "poll_seconds = 1",
        "command_timeout = 10",
        "[mailbox_defaults]",
        'host = "127.0.0.1"',
        "port = {port}",
        'tls = "plain"',
        'folders = ["INBOX", "Sent"]',
        'password_file = "password"',
    ]
    for box in boxes:
        lines += ["[[mailbox]]", f'id = "{box}"', f'user = "{box}"']
    port = free_port()
    with running_broker(tmp_path / "broker.log") as broker:
        text = "\n".join(lines).replace("{bootstrap}", broker.bootstrap)
        (tmp_path / "agent.toml").write_text(text.replace("{port}", str(port)) + "\n")
        config = load_config(tmp_path / "agent.toml")
        async with DemoImapServer(dict.fromkeys(boxes, "secret-pw"), port=port) as server:
            stop = asyncio.Event()
            agent = asyncio.create_task(
                run_agent(config, registry=CollectorRegistry(), stop=stop, grace_seconds=5)
            )
            try:
                half = len(items) // 2
                for item in items[:half]:  # some before the agent's first sync ...
                    await server.deliver(item.mailbox, item.folder, item.raw, item.arrival_time)
                await asyncio.sleep(1.0)
                for item in items[half:]:  # ... the rest while it idles or polls
                    await server.deliver(item.mailbox, item.folder, item.raw, item.arrival_time)
                records = await wait_for_count(broker.bootstrap, "pec.raw", len(items), timeout=30)
            finally:
                stop.set()
                await asyncio.wait_for(agent, 20)
    assert len(records) == len(items)
    assert sorted(bytes(r.value or b"") for r in records) == sorted(i.raw for i in items)
    assert {(header(r, "mailbox"), header(r, "folder")) for r in records} == {
        (i.mailbox, i.folder) for i in items
    }
