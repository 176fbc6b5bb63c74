"""``/livez`` and ``/readyz`` of a stream worker, on faust's web server (its event loop).

* ready: the consumer runs, holds partitions, and no rebalance or table recovery is in
  progress (a worker restoring its table answers lookups from a partial table);
* live: the loop ran its heartbeat recently, and no assigned partition has records
  waiting while its committed offset stands still for ``stall_seconds`` (a processor
  stuck on one record, or a consumer that stopped fetching). Rebalances and recoveries
  restart that clock: their partitions are paused by design.

The decision is :func:`worker_verdicts`, a pure function of a :class:`ConsumerState`
sample; :func:`install` samples the faust app and registers the pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from pipeline.health import Heartbeat, ProgressWatch, Verdict

__all__ = ["ConsumerState", "WorkerHealth", "install", "worker_verdicts"]

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ConsumerState:
    started: bool
    rebalancing: bool
    recovering: bool
    assigned: frozenset[Partition]
    committed: Mapping[Partition, int | None]
    lag: Mapping[Partition, int]


def worker_verdicts(
    state: ConsumerState, watch: ProgressWatch, heartbeat: Verdict, now: float
) -> tuple[Verdict, Verdict]:
    """``(liveness, readiness)`` for one sample; feeds ``watch``."""
    settled = state.started and not state.rebalancing and not state.recovering
    if settled:
        committed = {tp: state.committed.get(tp) for tp in state.assigned}
        watch.observe(now, committed, {tp: state.lag.get(tp, 0) for tp in state.assigned})
    else:
        watch.observe(now, {}, {})  # paused by design: nothing can stall now
    stalled = watch.stalled(now)
    live_detail = {
        **heartbeat.detail,
        "stalled_partitions": [f"{topic}/{partition}" for topic, partition in stalled],
    }
    live = Verdict(heartbeat.ok and not stalled, live_detail)
    ready_detail = {
        "consumer": "started" if state.started else "starting",
        "rebalancing": state.rebalancing,
        "recovering": state.recovering,
        "assigned_partitions": len(state.assigned),
    }
    ready = Verdict(settled and bool(state.assigned), ready_detail)
    return live, ready


def _lag(registry: CollectorRegistry) -> dict[Partition, int]:
    lag: dict[Partition, int] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "pec_consumer_lag_records":
                lag[(sample.labels["topic"], int(sample.labels["partition"]))] = int(sample.value)
    return lag


class WorkerHealth:
    def __init__(
        self,
        app: Any,
        registry: CollectorRegistry,
        stall_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.registry = registry
        self.heartbeat = Heartbeat(clock=clock)
        self.watch = ProgressWatch(stall_seconds)
        self._clock = clock

    def state(self) -> ConsumerState:
        app = self.app
        consumer = app._consumer  # the property would create one
        if consumer is None or not getattr(consumer, "started", False):
            return ConsumerState(False, False, False, frozenset(), {}, {})
        leader = f"{app.conf.id}-__assignor-__leader"  # faust's election topic: never written
        assigned = frozenset(
            (tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic != leader
        )
        committed_by_tp = cast(Mapping[Any, int | None], consumer.committed_offsets())
        committed = {(tp.topic, tp.partition): offset for tp, offset in committed_by_tp.items()}
        return ConsumerState(
            started=True,
            rebalancing=bool(app.rebalancing),
            recovering=bool(getattr(app, "in_recovery", False)),
            assigned=assigned,
            committed=committed,
            lag=_lag(self.registry),
        )

    def verdicts(self) -> tuple[Verdict, Verdict]:
        return worker_verdicts(self.state(), self.watch, self.heartbeat.verdict(), self._clock())


def install(app: Any, registry: CollectorRegistry, stall_seconds: float = 300.0) -> WorkerHealth:
    """Register the heartbeat timer and the two pages on ``app`` (before it starts)."""
    health = WorkerHealth(app, registry, stall_seconds)

    @app.timer(interval=health.heartbeat.interval, name="pectrack.heartbeat")  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        health.heartbeat.beat()

    @app.page("/livez")
    class Live(View):
        async def get(self, request: Request) -> Response:
            verdict = health.verdicts()[0]
            return self.json({"ok": verdict.ok, **verdict.detail}, status=_status(verdict))

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            verdict = health.verdicts()[1]
            return self.json({"ok": verdict.ok, **verdict.detail}, status=_status(verdict))

    _ = (heartbeat, Live, Ready)
    return health


def _status(verdict: Verdict) -> int:
    return 200 if verdict.ok else 503
