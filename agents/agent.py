"""One agent process: the Kafka producer, the cursor store and a worker per mailbox.

A single asyncio loop holds every mailbox (1,000+): idle connections cost a socket and a
small buffer each; semaphores bound how many mailboxes connect, and how many fetch a batch, at
once (a slot is taken per batch, so a long first sync never starves mail that just arrived).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TextIO

from prometheus_client import CollectorRegistry

from agents.backfill import report, stop_when_synced
from agents.backoff import Backoff
from agents.config import AgentConfig
from agents.ingest import MailboxWorker, WorkerContext
from agents.logs import log_event
from agents.progress import Progress
from agents.publish import CursorStore, KafkaPublisher, PublishError
from agents.shard import Shard
from agents.slots import Slots
from pipeline.contracts.metrics import BackfillMetrics, IngestMetrics
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
    once: bool = False,
    progress: Progress | None = None,
    terminal: TextIO | None = None,
) -> None:
    """Ingest the shard's mailboxes until ``stop`` is set, then finish in-flight batches.

    ``once``: every mailbox returns after its first complete sync, and ``stop`` is set
    when all have (``progress.synced`` then names every mailbox). ``terminal``: draw a
    progress bar there.
    """
    boxes = (shard or Shard()).select(config.mailboxes)
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
    log_event(log, logging.INFO, "agent.start", mailboxes=len(boxes), shard=str(shard or Shard()))
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
    tasks = [
        asyncio.create_task(MailboxWorker(box, ctx).run(), name=f"mailbox:{box.id}")
        for box in boxes
    ]
    workers = list(tasks)
    every = config.limits.progress_seconds
    tasks.append(asyncio.create_task(report(progress, stop, every=every, terminal=terminal)))
    if once:
        tasks.append(asyncio.create_task(stop_when_synced(workers, stop)))
    try:
        await stop.wait()
        _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await publisher.stop()
        log_event(log, logging.INFO, "agent.stop")


async def _connect_kafka(
    config: AgentConfig, stop: asyncio.Event
) -> tuple[KafkaPublisher, CursorStore] | None:
    """Start a producer and read the cursors, retrying with backoff until ``stop``."""
    backoff = Backoff(config.limits.backoff_base, config.limits.backoff_cap)
    attempt = 0
    while not stop.is_set():
        publisher = KafkaPublisher(config.kafka, max_record_bytes=config.limits.max_message_bytes)
        try:
            await publisher.start()
            return publisher, await CursorStore.load(publisher)
        except PublishError as exc:
            await publisher.stop()
            tls = config.kafka.tls
            cause = await handshake_error(config.kafka.bootstrap, tls) if tls else None
            extra = {"tls_error": cause} if cause else {}
            log_event(
                log, logging.WARNING, "kafka.unavailable", error=str(exc), attempt=attempt, **extra
            )
            delay = backoff.delay(attempt, random.random)
            attempt += 1
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
    return None
