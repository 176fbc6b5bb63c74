"""Probes answered from the event loop: verdicts, the HTTP server, the worker's pages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Gauge

from pipeline.contracts.metrics import IngestMetrics
from pipeline.health import (
    MAX_REQUEST_BYTES,
    Heartbeat,
    ProgressWatch,
    Verdict,
    agent_readiness,
    bound_port,
    serve_health,
    start_agent_health,
)
from pipeline.streams.app import build
from pipeline.streams.health import ConsumerState, install, worker_verdicts
from pipeline.streams.health import _lag as health_lag
from pipeline.streams.settings import StreamSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _get(port: int, request: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, (orjson.loads(body) if body else {})


def test_heartbeat_goes_stale_when_the_loop_does_not_run_it() -> None:
    clock = Clock()
    heartbeat = Heartbeat(interval=1.0, stale_after=30.0, clock=clock)
    clock.now += 29
    assert heartbeat.verdict().ok
    clock.now += 2
    assert not heartbeat.verdict().ok
    heartbeat.beat()
    assert heartbeat.verdict().ok


def test_progress_watch_flags_only_a_partition_that_waits_and_stands_still() -> None:
    watch = ProgressWatch(stall_seconds=300)
    watch.observe(0, {"a": 5, "b": 5, "c": 5}, {"a": 10, "b": 0, "c": 10})
    watch.observe(200, {"a": 5, "b": 5, "c": 7}, {"a": 10, "b": 0, "c": 10})
    watch.observe(301, {"a": 5, "b": 5, "c": 7}, {"a": 10, "b": 0, "c": 10})
    assert watch.stalled(301) == ["a"]  # c moved at 200, b has nothing waiting
    assert watch.stalled(501) == ["a", "c"]
    watch.observe(502, {"a": 6, "c": 7}, {"a": 10, "c": 0})
    assert watch.stalled(502) == []


def test_agent_is_ready_once_its_mailbox_workers_exist() -> None:
    """Before Kafka answers no mailbox worker runs (no mailbox_up series): not ready."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.mailboxes.set(2)
    verdict = agent_readiness(registry)
    assert (verdict.ok, verdict.detail["kafka"]) == (False, "connecting")
    metrics.mailbox_up.labels("a").set(0)
    metrics.mailbox_up.labels("b").set(1)
    metrics.connected.set(2)
    verdict = agent_readiness(registry)
    assert verdict.ok
    assert verdict.detail == {
        "kafka": "connected",
        "mailboxes": 2,
        "mailboxes_up": 1,
        "mailboxes_connected": 2,
    }


def test_agent_readiness_of_an_empty_registry_is_false() -> None:
    assert not agent_readiness(CollectorRegistry()).ok


async def test_server_answers_probes_and_refuses_the_rest() -> None:
    state = {"ready": False}
    server = await serve_health(
        lambda: Verdict(True, {"x": 1}), lambda: Verdict(state["ready"], {}), port=0
    )
    port = bound_port(server)
    try:
        assert await _get(port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n") == (
            200,
            {"ok": True, "x": 1},
        )
        assert (await _get(port, b"GET /readyz HTTP/1.1\r\n\r\n"))[0] == 503
        state["ready"] = True
        assert (await _get(port, b"GET /readyz?verbose HTTP/1.1\r\n\r\n"))[0] == 200
        assert (await _get(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _get(port, b"POST /livez HTTP/1.1\r\n\r\n"))[0] == 404
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /" + b"x" * (MAX_REQUEST_BYTES * 2))  # never ends its headers
        await writer.drain()
        assert await reader.read() == b""  # dropped, nothing answered
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_agent_health_serves_registry_state() -> None:
    registry = CollectorRegistry()
    IngestMetrics(registry).mailboxes.set(0)
    server = await start_agent_health(registry, 0, "127.0.0.1")
    try:
        status, body = await _get(bound_port(server), b"GET /readyz HTTP/1.1\r\n\r\n")
        assert (status, body["mailboxes"]) == (200, 0)
        status, body = await _get(bound_port(server), b"GET /livez HTTP/1.1\r\n\r\n")
        assert status == 200
        assert isinstance(body["loop_heartbeat_age_seconds"], float)
    finally:
        server.close()
        await server.wait_closed()


def _state(**changes: object) -> ConsumerState:
    values: dict[str, object] = {
        "started": True,
        "rebalancing": False,
        "recovering": False,
        "assigned": frozenset({("pec.raw", 0), ("pec.receipts", 0)}),
        "committed": {("pec.raw", 0): 5, ("pec.receipts", 0): 9},
        "lag": {("pec.raw", 0): 3, ("pec.receipts", 0): 0},
    }
    values.update(changes)
    return ConsumerState(**values)  # type: ignore[arg-type]


def test_worker_ready_only_when_assigned_and_settled() -> None:
    watch, beat = ProgressWatch(300), Verdict(True, {})
    assert worker_verdicts(_state(), watch, beat, 0)[1].ok
    for changed in (
        _state(started=False),
        _state(rebalancing=True),
        _state(recovering=True),
        _state(assigned=frozenset()),
    ):
        assert not worker_verdicts(changed, ProgressWatch(300), beat, 0)[1].ok, changed


def test_worker_not_live_when_a_waiting_partition_stands_still() -> None:
    watch, beat = ProgressWatch(300), Verdict(True, {})
    assert worker_verdicts(_state(), watch, beat, 0)[0].ok
    live, ready = worker_verdicts(_state(), watch, beat, 301)
    assert not live.ok
    assert live.detail["stalled_partitions"] == ["pec.raw/0"]
    assert ready.ok  # still assigned: only liveness restarts it


def test_worker_rebalance_restarts_the_stall_clock() -> None:
    watch, beat = ProgressWatch(300), Verdict(True, {})
    worker_verdicts(_state(), watch, beat, 0)
    worker_verdicts(_state(rebalancing=True), watch, beat, 200)
    assert worker_verdicts(_state(), watch, beat, 400)[0].ok
    assert not worker_verdicts(_state(), watch, beat, 701)[0].ok


def test_worker_with_a_stale_heartbeat_is_not_live() -> None:
    live, _ = worker_verdicts(_state(), ProgressWatch(300), Verdict(False, {"age": 40}), 0)
    assert not live.ok


def test_install_registers_pages_and_reads_the_lag_gauge(tmp_path: Path) -> None:
    """The pages exist on the faust app; before it starts, it is neither started nor ready."""
    pipeline = build(StreamSettings(store="memory://", datadir=str(tmp_path)))
    health = install(pipeline.app, pipeline.registry)
    routes = {str(path) for path in pipeline.app.web.views}
    assert {"/livez", "/readyz"} <= routes
    assert health.state().started is False
    live, ready = health.verdicts()
    assert live.ok
    assert not ready.ok
    pipeline.metrics.set_consumer_lag({("pec.raw", 3): 7})  # the gauge the metrics export
    assert health_lag(pipeline.registry) == {("pec.raw", 3): 7}


def test_agent_readiness_reads_the_ingest_metrics_under_either_prefix() -> None:
    """Issue #14 renames pectrack_* to pec_*: the probe finds the series either way."""
    registry = CollectorRegistry()
    Gauge("pec_ingest_mailboxes", "owned", registry=registry).set(1)
    Gauge("pec_imap_mailbox_up", "up", ["mailbox"], registry=registry).labels("a").set(1)
    verdict = agent_readiness(registry)
    assert verdict.ok
    assert verdict.detail["mailboxes_up"] == 1
