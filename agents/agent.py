"""One agent process: the Kafka producer, the cursor store and a worker per mailbox.

A single asyncio loop holds every mailbox (1,000+): idle connections cost a socket and a
small buffer each; semaphores bound how many mailboxes connect, and how many fetch a batch, at
once (a slot is taken per batch, so a long first sync never starves mail that just arrived).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TextIO

from prometheus_client import CollectorRegistry

from agents.backfill import report, stop_when_synced
from agents.backoff import Backoff
from agents.config import AgentConfig
from agents.fleet import MailboxFleet
from agents.ingest import WorkerContext
from agents.logs import log_event
from agents.progress import Progress
from agents.publish import CursorStore, KafkaPublisher, PublishError
from agents.reload import serve_reloads
from agents.shard import Shard
from agents.slots import Slots
from pipeline.contracts.metrics import BackfillMetrics, IngestMetrics
from pipeline.kafka.sasl import KafkaSaslError, auth_error
from pipeline.kafka.tls import handshake_error

__all__ = ["run_agent"]

log = logging.getLogger(__name__)


async def run_agent(
    config: AgentConfig,
    *,
    registry: CollectorRegistry,
    stop: asyncio.Event,
    shard: Shard | None = None,
    grace_seconds: float = 10.0,
    reload: asyncio.Event | None = None,
    load: Callable[[], AgentConfig] | None = None,
    once: bool = False,
    progress: Progress | None = None,
    terminal: TextIO | None = None,
) -> None:
    """Ingest the shard's mailboxes until ``stop`` is set, then finish in-flight batches.

    Each time ``reload`` is set, ``load()`` is called and its mailboxes applied
    (:mod:`agents.reload`). ``once``: every mailbox returns after its first complete
    sync, and ``stop`` is set when all have (``progress.synced`` then names every
    mailbox). ``terminal``: draw a progress bar there.
    """
    shard = shard or Shard()
    boxes = shard.select(config.mailboxes)
    metrics = IngestMetrics(registry)
    progress = progress or Progress()
    progress.metrics, progress.mailboxes = BackfillMetrics(registry), len(boxes)
    metrics.mailboxes.set(len(boxes))
    for box in boxes:
        if not box.has_sent_folder:  # allowed (INBOX-only test setups), but say what it costs
            log_event(log, logging.WARNING, "config.no_sent_folder", mailbox=box.id,
                      folders=list(box.folders),
                      detail="no Sent folder configured: sent messages will only be "
                      "registered from pec.submissions")  # fmt: skip
    connected = await _connect_kafka(config, stop)
    if connected is None:
        return
    publisher, cursors = connected
    log_event(log, logging.INFO, "agent.start", mailboxes=len(boxes), shard=str(shard))
    ctx = WorkerContext(
        kafka=config.kafka,
        limits=config.limits,
        publisher=publisher,
        cursors=cursors,
        metrics=metrics,
        connecting=asyncio.Semaphore(config.limits.max_concurrent_connects),
        active=Slots(config.limits.max_concurrent_syncs),
        stop=stop,
        progress=progress,
        once=once,
    )
    fleet = MailboxFleet(ctx)
    for box in boxes:
        fleet.start(box)
    every = config.limits.progress_seconds
    helpers = [asyncio.create_task(report(progress, stop, every=every, terminal=terminal))]
    if once:  # the mailboxes started now; one added by a reload is not waited for
        helpers.append(asyncio.create_task(stop_when_synced(fleet.tasks(), stop)))
    try:
        if reload is not None and load is not None:
            await serve_reloads(
                fleet, config=config, shard=shard, load=load, requested=reload, stop=stop,
                grace_seconds=grace_seconds,
                on_reloaded=lambda _new, count: metrics.mailboxes.set(count),
            )  # fmt: skip
        await stop.wait()
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await fleet.stop_all(grace_seconds)
        await publisher.stop()
        log_event(log, logging.INFO, "agent.stop")


async def _connect_kafka(
    config: AgentConfig, stop: asyncio.Event
) -> tuple[KafkaPublisher, CursorStore] | None:
    """Start a producer and read the cursors, retrying with backoff until ``stop``."""
    backoff = Backoff(config.limits.backoff_base, config.limits.backoff_cap)
    attempt = 0
    while not stop.is_set():
        publisher: KafkaPublisher | None = None
        try:
            # made per attempt: the SASL password file is read again at each one
            publisher = KafkaPublisher(
                config.kafka, max_record_bytes=config.limits.max_message_bytes
            )
            await publisher.start()
            return publisher, await CursorStore.load(publisher)
        except (PublishError, KafkaSaslError) as exc:
            if publisher is not None:
                await publisher.stop()
            log_event(
                log, logging.WARNING, "kafka.unavailable", error=str(exc), attempt=attempt,
                **await _diagnose(config),
            )  # fmt: skip
            delay = backoff.delay(attempt, random.random)
            attempt += 1
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
    return None


async def _diagnose(config: AgentConfig) -> dict[str, str]:
    """Why Kafka refuses the agent, when it is TLS or authentication (log fields)."""
    kafka = config.kafka
    extra: dict[str, str] = {}
    if kafka.tls is not None:
        cause = await handshake_error(kafka.bootstrap, kafka.tls)
        if cause:
            extra["tls_error"] = cause
            return extra
    cause = await auth_error(kafka.bootstrap, kafka.tls, kafka.sasl)
    if cause:
        extra["auth_error"] = cause
    return extra
