"""One agent fleet: which share a pod takes, and the set of mailbox workers it runs.

**Shard from the pod.** A StatefulSet of N agent pods names them ``<name>-0`` ..
``<name>-(N-1)``; ``--shard auto`` (or ``PECTRACK_SHARD=auto``) takes share
``ordinal + 1`` of ``N``, N from ``PECTRACK_SHARD_COUNT`` (the manifest sets it to its
``replicas``) or from ``--shard auto/N``. Every pod reads the same config; each one owns
the mailboxes whose id hashes to its share (:mod:`agents.shard`) and reads only their
secrets (:mod:`agents.secrets`). Changing N moves mailboxes between pods (their cursors
are in Kafka, keyed by mailbox id, so the new owner resumes where the old one stopped).

**Workers.** :class:`MailboxFleet` runs one :class:`~agents.ingest.MailboxWorker` per
mailbox, each with a stop event of its own, so that one mailbox can be stopped (removed
or changed by a reload, :mod:`agents.reload`) while every other keeps its IMAP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from agents.config import MailboxConfig
from agents.ingest import MailboxWorker, WorkerContext
from agents.logs import log_event

__all__ = ["MailboxFleet"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Running:
    worker: MailboxWorker
    stop: asyncio.Event
    task: asyncio.Task[None]


class MailboxFleet:
    """The running mailbox workers of one process, by mailbox id."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._running: dict[str, _Running] = {}

    @property
    def boxes(self) -> dict[str, MailboxConfig]:
        return {box_id: r.worker.box for box_id, r in self._running.items()}

    def start(self, box: MailboxConfig) -> None:
        """Run a worker for ``box`` with a stop event of its own."""
        if box.id in self._running:
            raise ValueError(f"mailbox {box.id} is already running")
        stop = asyncio.Event()
        worker = MailboxWorker(box, replace(self._ctx, stop=stop))
        task = asyncio.create_task(worker.run(), name=f"mailbox:{box.id}")
        self._running[box.id] = _Running(worker, stop, task)

    async def stop(self, box_id: str, grace_seconds: float) -> None:
        """Let ``box_id``'s worker finish its batch (cursor committed), log out, forget its
        per-mailbox metric series. Its cursors stay in Kafka."""
        running = self._running.pop(box_id)
        await _finish([running], grace_seconds)
        metrics = self._ctx.metrics
        for gauge in (metrics.mailbox_up, metrics.credentials_ok, metrics.last_sync):
            with contextlib.suppress(KeyError):
                gauge.remove(box_id)
        for folder in {*running.worker.folders, *running.worker.box.folders}:
            with contextlib.suppress(KeyError):
                metrics.cursor_lag.remove(box_id, folder)

    async def stop_all(self, grace_seconds: float) -> None:
        """Stop every worker (after ``grace_seconds`` the rest is cancelled)."""
        running, self._running = list(self._running.values()), {}
        await _finish(running, grace_seconds)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The running workers' tasks (a worker in ``once`` mode ends after its sync)."""
        return [running.task for running in self._running.values()]

    def __len__(self) -> int:
        return len(self._running)


async def _finish(running: list[_Running], grace_seconds: float) -> None:
    for item in running:
        item.stop.set()
    tasks = [item.task for item in running]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for item in running:
        if item.task in pending:
            log_event(log, logging.WARNING, "mailbox.stop_cancelled", mailbox=item.worker.box.id,
                      detail=f"still busy after {grace_seconds} s: cancelled")  # fmt: skip
