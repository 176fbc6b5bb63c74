"""``pectrack agent --once``: every folder synced to its end, then exit 0; progress logged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import read_all
from tests.support.mail import message

from .conftest import AgentProcess, box, write_config

pytestmark = pytest.mark.integration


async def test_once_syncs_every_folder_then_exits_zero(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    users = fresh_users(3)
    expected: set[tuple[str, str, int]] = set()
    for index in users:
        user = dovecot.user(index)
        for folder, count in (("INBOX", 7), ("Sent", 3)):
            raws = [message(f"{user}-once-{folder}-{n}") for n in range(count)]
            for uid in dovecot.append_many(user, folder, raws):
                expected.add((box(index), folder, uid))
    config = write_config(tmp_path, broker, dovecot, users, progress_every=5,
                          progress_seconds=0.2)  # fmt: skip
    log = tmp_path / "agent.log"
    agent = AgentProcess(config, log, "--once", "--log-level", "info")
    agent_processes.append(agent.start())
    assert agent.proc is not None
    code = await asyncio.to_thread(agent.proc.wait, 60)
    assert code == 0, log.read_text()[-2000:]
    records = await read_all(broker.bootstrap, "pec.raw")
    published = {
        (dict(r.headers)["mailbox"].decode(), dict(r.headers)["folder"].decode(),
         int(dict(r.headers)["uid"]))
        for r in records
    }  # fmt: skip
    assert published == expected  # everything, before the exit
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    progress = [line for line in lines if line.get("event") == "backfill.progress"]
    assert progress, "no backfill.progress line"
    assert progress[-1]["todo"] == 0
    assert progress[-1]["done"] == len(expected)
    assert progress[-1]["mailboxes_synced"] == 3
    assert not [line for line in lines if line.get("event") == "agent.once_incomplete"]


async def test_once_exits_non_zero_when_stopped_before_every_mailbox_synced(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    (index,) = fresh_users(1)
    config = write_config(tmp_path, broker, dovecot, [index], wrong_password={index})
    agent = AgentProcess(config, tmp_path / "agent.log", "--once")
    agent_processes.append(agent.start())
    await asyncio.sleep(3)  # it keeps retrying the refused login; never synced
    assert agent.terminate() == 1
