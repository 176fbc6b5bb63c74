"""/livez and /readyz of real agent and worker processes (what the Kubernetes probes ask)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.embedded import EmbeddedBroker, free_port
from tests.factories import write_anchor
from tests.support.dovecot import Dovecot
from tests.support.workers import WorkerProcess

from .conftest import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration


def probe(port: int, path: str) -> tuple[int, dict[str, Any]] | None:
    """``(status, body)``, or ``None`` while nothing answers on the port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return None


async def test_agent_is_live_at_once_and_ready_once_kafka_answers(
    dovecot: Dovecot,
    fresh_users: Any,
    tmp_path: Path,
    agent_processes: list[AgentProcess],
) -> None:
    """Started before the broker: live (its loop turns) but not ready; ready once it has
    reached Kafka, with its mailbox reported."""
    (index,) = fresh_users(1)
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    config = write_config(tmp_path, broker, dovecot, [index])
    port = free_port()
    agent = AgentProcess(config, tmp_path / "agent.log", "--health-port", str(port))
    agent_processes.append(agent.start())
    try:
        await wait_until(lambda: probe(port, "/livez") is not None, 30, "the health port")
        live = probe(port, "/livez")
        assert live is not None
        assert live[0] == 200
        ready = probe(port, "/readyz")
        assert ready is not None
        assert ready[0] == 503
        assert ready[1]["kafka"] == "connecting"
        broker.start()
        await wait_until(lambda: (probe(port, "/readyz") or (0,))[0] == 200, 60, "ready")
        status, body = probe(port, "/readyz") or (0, {})
        assert (status, body["kafka"], body["mailboxes"]) == (200, "connected", 1)
        assert agent.terminate() == 0
    finally:
        broker.stop()


async def test_worker_is_ready_once_it_holds_partitions(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """On faust's web port: ready once the consumer has its partitions, live throughout."""
    args = ("--trust", str(write_anchor(tmp_path)), "--session-timeout-seconds", "6")
    with WorkerProcess(broker, tmp_path / "w", *args) as worker:
        port = worker.web_port
        await wait_until(lambda: (probe(port, "/readyz") or (0,))[0] == 200, 120, "worker ready")
        status, body = probe(port, "/readyz") or (0, {})
        assert status == 200
        assert body["assigned_partitions"] > 0
        assert body["rebalancing"] is False
        status, body = probe(port, "/livez") or (0, {})
        assert status == 200
        assert body["stalled_partitions"] == []
    # every line the worker wrote is one JSON object, faust's own records included
    logged = [json.loads(line) for line in worker.log.read_text().splitlines() if line]
    events = {line["event"] for line in logged}
    assert "metrics.serving" in events
    assert {line["logger"].split(".")[0] for line in logged} >= {"pipeline", "faust"}
