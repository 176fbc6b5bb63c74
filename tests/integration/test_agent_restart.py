"""The agent process SIGKILLed mid-sync, restarted, then stopped cleanly and restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agents.publish import read_cursors
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import header, read_all, wait_for_count
from tests.support.mail import message

from .conftest import AgentProcess, write_config

pytestmark = pytest.mark.integration

TOTAL = 4000


def published_uids(records: list[Any]) -> list[int]:
    return [int(header(r, "uid")) for r in records]


async def test_sigkill_mid_batch_then_restarts_lose_nothing_and_repeat_nothing(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    """Cursor never ahead of Kafka; all messages at least once; none again after SIGTERM."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    dovecot.deliver(
        user, "INBOX", [message(f"k-{index}-{n}", body_bytes=1500) for n in range(TOTAL)]
    )
    config = write_config(
        tmp_path, broker, dovecot, [index], folders=("INBOX",), batch_max_messages=10
    )
    key = f"box-{index:04d}/INBOX".encode()
    log = tmp_path / "agent.log"

    first = AgentProcess(config, log).start()
    agent_processes.append(first)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cursors = await read_cursors(broker.bootstrap, "pec.agent.cursors")
        if key in cursors and cursors[key].last_uid >= 50:
            break
        await asyncio.sleep(0.05)
    first.kill()

    cursor = (await read_cursors(broker.bootstrap, "pec.agent.cursors"))[key]
    uids = set(published_uids(await read_all(broker.bootstrap, "pec.raw")))
    assert 0 < cursor.last_uid < TOTAL, "the kill must land mid-sync"
    assert set(range(1, cursor.last_uid + 1)) <= uids, "cursor ahead of what Kafka holds"

    second = AgentProcess(config, log).start()
    agent_processes.append(second)
    records = await wait_for_count(broker.bootstrap, "pec.raw", TOTAL, timeout=90)
    deadline = time.monotonic() + 30
    while set(published_uids(records)) != set(range(1, TOTAL + 1)):
        assert time.monotonic() < deadline, "not every message was published"
        await asyncio.sleep(0.2)
        records = await read_all(broker.bootstrap, "pec.raw")
    await _wait_cursor(broker, key, TOTAL)
    assert second.terminate() == 0
    before = len(await read_all(broker.bootstrap, "pec.raw"))

    third = AgentProcess(config, log).start()
    agent_processes.append(third)
    raw = message(f"after-restart-{index}")
    await asyncio.sleep(1.0)
    new_uid = await asyncio.to_thread(dovecot.append, user, "INBOX", raw)
    records = await wait_for_count(broker.bootstrap, "pec.raw", before + 1, timeout=20)
    await asyncio.sleep(1.0)  # room for any (wrong) re-publication to show up
    records = await read_all(broker.bootstrap, "pec.raw")
    assert third.terminate() == 0
    fresh = records[before:]  # one mailbox key: one partition, in order
    assert published_uids(fresh) == [new_uid]
    assert fresh[0].value == raw


async def _wait_cursor(broker: EmbeddedBroker, key: bytes, uid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        cursors = await read_cursors(broker.bootstrap, "pec.agent.cursors")
        if key in cursors and cursors[key].last_uid >= uid:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("cursor did not reach the last UID")
