"""Real servers for the agent's integration tests: Dovecot and the embedded broker.

One Dovecot with hundreds of users serves the whole session; each test takes fresh users
from :func:`fresh_users` so tests never see each other's mail. Each test gets its own
broker (it starts in milliseconds). Agents run in-process (:class:`InProcessAgent`) or as
a real ``pectrack agent`` subprocess (:class:`AgentProcess`) when a test must SIGKILL it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.agent import run_agent
from agents.config import AgentConfig, load_config
from agents.shard import Shard
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.agent import write_config
from tests.support.dovecot import Dovecot
from tests.support.kafka import running_broker

SESSION_USERS = 400

__all__ = [
    "AgentProcess",
    "InProcessAgent",
    "box",
    "in_process_agent",
    "wait_until",
    "write_config",
]


def box(index: int) -> str:
    """The mailbox id ``write_config`` gives Dovecot user ``index``."""
    return f"box-{index:04d}"


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot shared by the session (fails with `make system-deps` advice if missing)."""
    with Dovecot(users=SESSION_USERS) as server:
        yield server


_counter = itertools.count(1)


@pytest.fixture
def fresh_users() -> Any:
    """``fresh_users(n)`` -> n user indices no other test of the session has used."""

    def take(n: int) -> list[int]:
        picked = [next(_counter) for _ in range(n)]
        assert picked[-1] <= SESSION_USERS, "raise SESSION_USERS"
        return picked

    return take


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with running_broker(tmp_path / "broker.log") as running:
        yield running


class InProcessAgent:
    """``run_agent`` in a task of the test's loop, with its own metrics registry."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()


@asynccontextmanager
async def in_process_agent(
    config_path: Path, shard: Shard | None = None
) -> AsyncIterator[InProcessAgent]:
    """Run an agent for the duration of the block; stop it cleanly after."""
    agent = InProcessAgent(load_config(config_path))
    agent.task = asyncio.create_task(
        run_agent(
            agent.config, registry=agent.registry, stop=agent.stop, shard=shard, grace_seconds=5
        )
    )
    try:
        yield agent
    finally:
        agent.stop.set()
        await asyncio.wait_for(agent.task, 20)


class AgentProcess:
    """``python -m pectrack agent --config FILE`` as a child process."""

    def __init__(self, config_path: Path, log_path: Path, *extra_args: str) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pectrack", "agent"),
                    *("--config", str(self.config_path), *self.extra_args),
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to flush or commit anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM: the agent finishes its in-flight batch and exits 0."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def agent_processes() -> Iterator[list[AgentProcess]]:
    """Collects subprocess agents of a test and kills any still running at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.cleanup()
