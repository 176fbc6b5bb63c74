"""Stream workers as real ``pectrack worker`` processes, and traffic in and out of Kafka.

with WorkerProcess(broker, tmp_path / "w1") as worker:
    await produce_traffic(broker.bootstrap, items)
    events = await settle(broker.bootstrap, "pec.state-changes", expected=1400)
    worker.kill()                                      # SIGKILL, for failover tests
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer

from pipeline.dev.embedded import EmbeddedBroker, free_port
from pipeline.simulate.traffic import TrafficItem
from tests.support.kafka import read_all

__all__ = ["WorkerProcess", "kill_midway", "produce_traffic", "settle"]


class WorkerProcess:
    """One ``pectrack worker`` subprocess with its own data dir, web and metrics ports."""

    def __init__(self, broker: EmbeddedBroker, directory: Path, *extra: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.argv = [
            sys.executable, "-m", "pectrack", "worker",
            "--broker", broker.bootstrap,
            "--datadir", str(directory / "state"),
            "--metrics-port", str(self.metrics_port),
            "--web-port", str(self.web_port),
            "--log-level", "info",
            "--partitions", "4",  # fewer than the default 12: faster group joins in tests
            *extra,
        ]  # fmt: skip
        self.log = directory / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def produce_traffic(
    bootstrap: str,
    items: list[TrafficItem],
    topic: str = "pec.raw",
    *,
    client: Mapping[str, Any] | None = None,
) -> None:
    """What the agents would publish: raw bytes keyed by mailbox, with mailbox/folder headers."""
    producer = AIOKafkaProducer(
        **(client or {}), bootstrap_servers=bootstrap, acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        for item in items:
            headers = [("mailbox", item.mailbox.encode()), ("folder", item.folder.encode())]
            await producer.send(topic, item.raw, key=item.mailbox.encode(), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def settle(
    bootstrap: str,
    topic: str,
    *,
    expected: int,
    timeout: float,
    quiet: float = 3.0,
    fail: bool = True,
    client: Mapping[str, Any] | None = None,
) -> list[bytes]:
    """Values in ``topic`` once at least ``expected`` distinct ones arrived and ``quiet``
    seconds passed without new records (so extra records would be seen too). After
    ``timeout``: an AssertionError, or with ``fail=False`` whatever arrived."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    values: list[bytes] = []
    while time.monotonic() < deadline:
        records = await read_all(bootstrap, topic, client=client)
        values = [record.value for record in records if record.value]
        now = time.monotonic()
        if len(values) != last_count:
            last_count, last_change = len(values), now
        elif len(set(values)) >= expected and now - last_change >= quiet:
            return values
        await asyncio.sleep(0.5)
    if not fail:  # let the caller compare what did arrive, for a precise failure message
        return values
    raise AssertionError(f"{topic}: {len(values)} records after {timeout}s, expected {expected}")


async def kill_midway(
    worker: WorkerProcess, bootstrap: str, after: int, topic: str = "pec.state-changes"
) -> int:
    """SIGKILL ``worker`` once more than ``after`` records are on ``topic`` (or after
    40 s); returns how many there were."""
    seen = 0
    for _ in range(200):
        await asyncio.sleep(0.2)
        seen = len(await read_all(bootstrap, topic))
        if seen > after:
            break
    worker.kill()
    return seen
