"""The verify processor's side of the archive: store a batch's messages, or wait.

:meth:`EvidenceWriter.store_all` returns only once every message of the batch is in the
archive. While the archive fails it logs, counts ``pec_archive_errors_total``, sets
``pec_archive_up`` to 0 and retries with backoff, for ever: verify publishes nothing (the
batch is neither sent on nor committed), so no event ever names evidence that is missing.
Progress resumes by itself when the archive answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.contracts.metrics import EvidenceMetrics
from pipeline.evidence.archive import Archive, ArchiveError, Stored

log = logging.getLogger(__name__)

# Writes in flight at once (each runs in a thread: boto3 and file I/O block).
CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    data: bytes
    meta: Mapping[str, str]


@dataclass
class EvidenceWriter:
    archive: Archive
    metrics: EvidenceMetrics
    first_delay: float = 0.5
    max_delay: float = 30.0
    _stopping: bool = field(default=False, init=False)

    async def store_all(self, items: Sequence[ArchiveItem]) -> list[Stored]:
        if not items:
            return []
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(item: ArchiveItem) -> Stored:
            async with gate:
                return await self._store(item)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _store(self, item: ArchiveItem) -> Stored:
        delay = self.first_delay
        while True:
            started = time.perf_counter()
            try:
                stored = await asyncio.to_thread(self.archive.put, item.data, item.meta)
            except ArchiveError as exc:
                self.metrics.errors.inc()
                self.metrics.up.set(0)
                log.error(
                    "evidence archive %s refused a write (%s); verify waits, retrying in %.1fs",
                    self.archive.uri,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            self.metrics.up.set(1)
            if stored.written:
                self.metrics.objects.labels("written").inc()
                self.metrics.bytes.inc(stored.size)
            else:
                self.metrics.objects.labels("present").inc()
            return stored
