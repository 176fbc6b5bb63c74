"""The verify processor: ``pec.raw`` -> parse + verify -> ``pec.receipts`` or ``pec.dlq``.

Stateless. Faust runs it as one batched task per worker (faust duplicates events across
concurrent actors of a batching agent), so its concurrency is inside: with
``verify_processes`` N >= 1 a batch is examined by a pool of N processes, each holding
its own copy of the trust store, while the event loop keeps serving the other
processors. Records are planned in the batch's order whatever the pool does, so
outputs and acknowledgements are exactly those of ``verify_processes=0`` (examine in
the event loop). A record's Kafka headers say where the mail came from
(:mod:`pipeline.contracts.raw`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.serialization import Encoding

from pipeline.contracts.codec import dumps, observation_to_dict
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.raw import DeadLetterHeader, read_origin
from pipeline.core import (
    Examined,
    Ignored,
    Limits,
    Submission,
    TrustStore,
    Unroutable,
    examine,
    load_certificates,
    observe_message,
)
from pipeline.core.mime import header_section
from pipeline.evidence.provenance import archive_item, archive_kind, provenance_of
from pipeline.evidence.writer import ArchiveItem, EvidenceWriter
from pipeline.streams.inbound import inbound_records, invoice_sent_records
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record, Sink, dead_letter

log = logging.getLogger(__name__)

RawItem = tuple[bytes | None, bytes | None, Mapping[str, bytes]]  # key, raw mail, headers

# Largest message a dead letter carries whole. faust's producer refuses requests over
# 1,000,000 bytes (producer_max_request_size) and Kafka's default message.max.bytes is
# about 1 MiB: a larger dead letter would fail to send and crash the batch on every
# retry. Above this, the dead letter keeps the header section (``truncated`` and
# ``size`` headers say so); the whole message stays in ``pec.raw``, found by the
# mailbox/folder/uid headers the dead letter keeps.
DLQ_MAX_VALUE_BYTES = 900_000


@dataclass
class Verifier:
    settings: StreamSettings
    trust: TrustStore
    sink: Sink
    metrics: StreamMetrics
    # The evidence archive (pipeline.evidence): what a batch leads to is stored there
    # before any of its records is sent. None: no archive (provenance without a copy).
    evidence: EvidenceWriter | None = None
    archive_kinds: frozenset[str] = frozenset()
    _pool: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)

    async def handle(
        self, key: bytes | None, raw: bytes | None, headers: Mapping[str, bytes]
    ) -> None:
        await self.handle_batch([(key, raw, headers)])

    async def handle_batch(self, batch: Sequence[RawItem]) -> None:
        """Verify a batch; return once every resulting record is acknowledged."""
        examined = await self._examine_batch(batch)
        records: list[Record] = []
        archived: list[ArchiveItem] = []
        for item, done in zip(batch, examined, strict=True):
            planned, entry = self._plan(*item, done)
            records += planned
            if entry is not None:
                archived.append(entry)
        if self.evidence is not None:
            await self.evidence.store_all(archived)  # waits while the archive is down
        await self.sink.send_all(records)

    def plan(
        self,
        key: bytes | None,
        raw: bytes | None,
        headers: Mapping[str, bytes],
        examined: Examined | None = None,
    ) -> list[Record]:
        """The records one raw message leads to (none for mail that is ignored).

        ``examined`` is ``raw`` already examined (by the pool); ``None``: examine it here.
        """
        return self._plan(key, raw, headers, examined)[0]

    def _plan(
        self,
        key: bytes | None,
        raw: bytes | None,
        headers: Mapping[str, bytes],
        examined: Examined | None = None,
    ) -> tuple[list[Record], ArchiveItem | None]:
        """The records, and the message to archive before they are sent (if any)."""
        self.metrics.verified.inc()
        origin = read_origin(key, headers)
        if not origin.mailbox or raw is None:
            return [self._dead_letter(key, raw or b"", headers, "no-mailbox-or-value")], None
        if examined is None:
            examined = examine(raw, self.trust, self._limits())
        outcome = observe_message(
            examined,
            origin.mailbox,
            sent_copy=origin.holds_sent_copies,
            received_at=origin.internal_date,
        )
        if isinstance(outcome, Unroutable):
            return [self._dead_letter(key, raw, headers, outcome.reason, outcome.detail)], None
        entry, provenance = None, None
        kind = archive_kind(outcome, examined)
        if kind is not None:
            archived = self.evidence is not None and kind in self.archive_kinds
            archive = self.evidence.archive if archived and self.evidence else None
            provenance = provenance_of(raw, origin, examined, kind=kind, archive=archive)
            if archived:
                entry = archive_item(raw, provenance, examined.message.msgid)
        if isinstance(outcome, Ignored):
            self.metrics.labelled(self.metrics.ignored, outcome.reason).inc()
            role = origin.role.value if origin.role is not None else None
            received = inbound_records(
                self.settings, self.metrics, examined, raw, origin.mailbox, origin.folder, role,
                self._limits(),
            )  # fmt: skip
            return received, entry
        if provenance is not None:
            outcome = replace(outcome, provenance=provenance)
        value = dumps(observation_to_dict(outcome))
        records = [Record(self.settings.receipts_topic, outcome.key.encode(), value)]
        if isinstance(outcome, Submission):  # an invoice handed to the SdI starts its lifecycle
            records += invoice_sent_records(
                self.settings, self.metrics, outcome, raw, self._limits()
            )
        return records, entry

    def close(self) -> None:
        """Stop the pool's processes (waiting for chunks in progress); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def _examine_batch(self, batch: Sequence[RawItem]) -> list[Examined | None]:
        """Each item examined by the pool, in order; ``None`` where :meth:`plan` will
        examine (no pool) or has nothing to examine (a dead letter)."""
        processes = self.settings.verify_processes
        wanted = [
            i
            for i, (key, raw, headers) in enumerate(batch)
            if raw is not None and read_origin(key, headers).mailbox
        ]
        result: list[Examined | None] = [None] * len(batch)
        if processes < 1 or not wanted:
            return result
        raws = [batch[i][1] or b"" for i in wanted]
        size = -(-len(raws) // processes)  # one contiguous chunk per process
        chunks = [raws[start : start + size] for start in range(0, len(raws), size)]
        loop = asyncio.get_running_loop()
        limits = self._limits()
        try:
            pool = self._executor()
            done = await asyncio.gather(
                *(loop.run_in_executor(pool, _examine_chunk, chunk, limits) for chunk in chunks)
            )
        except BrokenProcessPool:
            # A pool process died (killed, out of memory): this batch is examined here, as
            # with no pool, and the next one starts a new pool.
            log.warning("verify pool broken; examining %d records in the event loop", len(raws))
            self._discard_pool()
            return result
        for index, examined in zip(wanted, (e for chunk in done for e in chunk), strict=True):
            result[index] = examined
        return result

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            anchors = tuple(cert.public_bytes(Encoding.DER) for cert in self.trust.anchors)
            intermediates = tuple(c.public_bytes(Encoding.DER) for c in self.trust.intermediates)
            self._pool = ProcessPoolExecutor(
                max_workers=self.settings.verify_processes,
                # Not fork: the worker runs threads (faust's consumer, the metrics server).
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_process,
                initargs=(anchors, intermediates),
            )
        return self._pool

    def _discard_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _limits(self) -> Limits:
        return Limits(max_message_bytes=self.settings.max_message_bytes)

    def _dead_letter(
        self,
        key: bytes | None,
        raw: bytes,
        headers: Mapping[str, bytes],
        reason: str,
        detail: str = "",
    ) -> Record:
        """The raw record with its headers (:func:`dead_letter`); over
        :data:`DLQ_MAX_VALUE_BYTES`, its header section only."""
        self.metrics.labelled(self.metrics.dlq, reason).inc()
        value, source = raw, headers
        if len(raw) > DLQ_MAX_VALUE_BYTES:
            value = header_section(raw, DLQ_MAX_VALUE_BYTES)
            source = {
                **headers,
                DeadLetterHeader.TRUNCATED.value: b"header-section",
                DeadLetterHeader.SIZE.value: str(len(raw)).encode(),
            }
        return dead_letter(self.settings.dlq_topic, key, value, reason, detail, source=source)


# The trust store of a pool process, built once by _start_process from DER bytes (a
# TrustStore holds certificate objects, which do not pickle).
_process_trust: list[TrustStore] = []


def _start_process(anchors: tuple[bytes, ...], intermediates: tuple[bytes, ...]) -> None:
    # Ctrl-C reaches the whole process group: the worker shuts the pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = TrustStore(
        tuple(c for der in anchors for c in load_certificates(der)),
        tuple(c for der in intermediates for c in load_certificates(der)),
    )
    _process_trust[:] = [store]


def _examine_chunk(raws: list[bytes], limits: Limits) -> list[Examined]:
    """Run in a pool process: the results are frozen values and pickle back."""
    [trust] = _process_trust
    return [examine(raw, trust, limits) for raw in raws]
