"""The ``pectrack agent`` command: /metrics served and lint-clean, JSON logs, sharding,
Kafka not yet up at start-up."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.shard import Shard
from pipeline.dev.embedded import EmbeddedBroker, free_port
from tests.support.dovecot import Dovecot
from tests.support.kafka import read_all, wait_for_count
from tests.support.mail import message

from .conftest import AgentProcess, in_process_agent, write_config

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


async def test_agent_command_serves_lint_clean_metrics_and_json_logs(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    """--metrics-port serves promtool-clean metrics; stderr is JSON lines; no secret leaks."""
    users = fresh_users(2)
    for index in users:
        dovecot.append(dovecot.user(index), "INBOX", message(f"proc-{index}"))
    config = write_config(tmp_path, broker, dovecot, users, wrong_password={users[1]})
    port = free_port()
    log = tmp_path / "agent.log"
    agent = AgentProcess(config, log, "--metrics-port", str(port))
    agent_processes.append(agent.start())
    await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
    deadline = time.monotonic() + 20
    while 'pec_imap_errors_total{kind="auth"} 0.0' in (text := await _scrape(port)):
        assert time.monotonic() < deadline, "auth failure never counted"
        await asyncio.sleep(0.2)
    assert "pec_imap_connected_mailboxes 1.0" in text
    assert agent.terminate() == 0

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make system-deps`"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    assert {"agent.start", "mailbox.error", "agent.stop"} <= events
    for index in users:
        assert dovecot.password(index) not in text
        assert dovecot.password(index) not in log.read_text()


async def _scrape(port: int) -> str:
    for _ in range(50):
        try:
            return await asyncio.to_thread(scrape, port)
        except OSError:
            await asyncio.sleep(0.2)
    raise AssertionError("/metrics never answered")


async def test_two_shards_split_the_mailboxes_without_overlap(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Shards 1/2 and 2/2 over one config ingest every mailbox exactly once."""
    users = fresh_users(10)
    for index in users:
        dovecot.append(dovecot.user(index), "INBOX", message(f"shard-{index}"))
    config = write_config(tmp_path, broker, dovecot, users)
    async with (
        in_process_agent(config, shard=Shard(1, 2)) as first,
        in_process_agent(config, shard=Shard(2, 2)) as second,
    ):
        records = await wait_for_count(broker.bootstrap, "pec.raw", 10, timeout=20)
        owned = (
            first.metric("pec_ingest_mailboxes"),
            second.metric("pec_ingest_mailboxes"),
        )
    assert sum(owned) == 10
    assert all(n > 0 for n in owned)
    assert sorted(r.key.decode() for r in records) == sorted(f"box-{i:04d}" for i in users)


async def test_shard_option_of_the_agent_command_splits_the_mailboxes(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    """Two ``pectrack agent --shard K/2`` processes on one config: each owns exactly its
    CRC-32 share (per its /metrics), together every mailbox once, no record twice."""
    users = fresh_users(8)
    while len({Shard(1, 2).owns(f"box-{i:04d}") for i in users}) < 2:
        users += fresh_users(1)  # both shares must own a mailbox
    for index in users:
        dovecot.append(dovecot.user(index), "INBOX", message(f"cli-shard-{index}"))
    config = write_config(tmp_path, broker, dovecot, users)
    ids = [f"box-{i:04d}" for i in users]
    owned: dict[int, set[str]] = {}
    starts: dict[int, dict[str, Any]] = {}
    ports = {k: free_port() for k in (1, 2)}
    agents = {
        k: AgentProcess(
            config, tmp_path / f"agent-{k}.log", "--shard", f"{k}/2", "--metrics-port", str(port)
        ).start()
        for k, port in ports.items()
    }
    agent_processes.extend(agents.values())
    await wait_for_count(broker.bootstrap, "pec.raw", len(users), timeout=30)
    for k, port in ports.items():
        text = await _scrape(port)
        owned[k] = set(re.findall(r'pec_imap_mailbox_up\{mailbox="([^"]+)"\}', text))
    for k, agent in agents.items():
        assert agent.terminate() == 0
        lines = [orjson.loads(x) for x in agent.log_path.read_text().splitlines() if x.strip()]
        starts[k] = next(line for line in lines if line["event"] == "agent.start")
    for k in (1, 2):
        assert owned[k] == {i for i in ids if Shard(k, 2).owns(i)}
        assert (starts[k]["shard"], starts[k]["mailboxes"]) == (f"{k}/2", len(owned[k]))
    assert owned[1] | owned[2] == set(ids)
    assert not owned[1] & owned[2]
    records = await read_all(broker.bootstrap, "pec.raw")
    assert sorted(r.key.decode() for r in records) == sorted(ids)


def test_agent_command_rejects_a_malformed_shard(tmp_path: Path) -> None:
    """``--shard 3/2`` is a usage error (exit 2) before anything starts."""
    result = subprocess.run(
        [sys.executable, "-m", "pectrack", "agent", "--config", str(tmp_path / "agent.toml"),
         "--shard", "3/2"],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"--shard" in result.stderr


async def test_agent_waits_for_kafka_then_ingests(
    dovecot: Dovecot, fresh_users: Any, tmp_path: Path
) -> None:
    """Started before the broker exists, the agent retries and ingests once it is up."""
    (index,) = fresh_users(1)
    dovecot.append(dovecot.user(index), "INBOX", message(f"late-kafka-{index}"))
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    config = write_config(tmp_path, broker, dovecot, [index])
    try:
        async with in_process_agent(config):
            await asyncio.sleep(1.5)
            broker.start()
            await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
        assert len(await read_all(broker.bootstrap, "pec.raw")) == 1
    finally:
        broker.stop()
