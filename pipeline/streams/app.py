"""The faust application: topics, the table and the processors, wired from settings.

``build(settings)`` returns a :class:`Pipeline`; ``pectrack worker`` runs it. Several
workers with the same ``app_id`` form one consumer group and share the partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import SameNode
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from pipeline.contracts.codec import (
    DecodeError,
    decode,
    dumps,
    observation_to_dict,
    submission_from_dict,
    tracked_from_dict,
)
from pipeline.contracts.invoices import invoice_entry_to_dict
from pipeline.contracts.metrics import StreamMetrics
from pipeline.core import TrustStore, correlation_key, normalise_msgid
from pipeline.evidence.web import evidence_writer, register_evidence_pages
from pipeline.kafka.sasl import faust_credentials
from pipeline.streams.batching import Batcher, Handler
from pipeline.streams.clock import EventClock
from pipeline.streams.correlate import Correlator
from pipeline.streams.deadlines import DeadlineScanner
from pipeline.streams.faustapp import PipelineApp
from pipeline.streams.invoices import InvoiceTracker
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import KafkaSink, Record, Sink, dead_letter
from pipeline.streams.state import TrackedTable
from pipeline.streams.verify import Verifier
from pipeline.trust import default_trust_store, load_trust_store

log = logging.getLogger(__name__)

# How often pec_consumer_lag_records is measured (one ListOffsets request each time).
CONSUMER_LAG_INTERVAL_SECONDS = 5.0
# A record batch the sink builds per partition (faust's default is 16 KiB: a batch of 200
# observations took a dozen batches). Under faust's 1,000,000-byte request limit; a
# larger single record (a dead letter of up to ~900 KB) still goes alone in its batch.
PRODUCER_BATCH_BYTES = 256 * 1024


@dataclass
class Pipeline:
    app: PipelineApp
    settings: StreamSettings
    registry: CollectorRegistry
    metrics: StreamMetrics
    table: TrackedTable
    topics: dict[str, Any]
    verifier: Verifier
    correlator: Correlator
    scanner: DeadlineScanner
    invoice_table: TrackedTable
    invoices: InvoiceTracker


def _wall() -> datetime:
    return datetime.now(UTC)


def build(
    settings: StreamSettings,
    *,
    registry: CollectorRegistry | None = None,
    trust: TrustStore | None = None,
    sink: Sink | None = None,
) -> Pipeline:
    """Create the app and register every processor. ``sink`` replaces Kafka in unit tests."""
    settings.validate()
    tls = settings.tls  # its context(): KafkaTlsError (a ValueError) on a bad file
    credentials = faust_credentials(tls, settings.sasl)
    app = PipelineApp(
        settings.app_id,
        fetch_wait_ms=settings.fetch_wait_ms,
        **credentials,
        broker=f"kafka://{settings.broker}",
        store=settings.store,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        table_standby_replicas=settings.standby_replicas,
        consumer_group_instance_id=settings.group_instance_id or None,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        datadir=settings.datadir,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        key_serializer="raw",  # the codec module owns every encoding: bytes in, bytes out
        value_serializer="raw",
    )
    topics: dict[str, Any] = {
        name: _raw_topic(app, name, settings.partitions)
        for name in (
            settings.raw_topic,
            settings.receipts_topic,
            settings.submissions_topic,
            settings.state_changes_topic,
            settings.dlq_topic,
        )
    }
    topics[settings.message_state_topic] = _raw_topic(
        app, settings.message_state_topic, settings.partitions, compacting=True
    )
    table = _table(app, settings, settings.table_name, _store_options(settings))
    changelog = table.changelog_topic.get_topic_name()
    topics[changelog] = table.changelog_topic
    topics[settings.sdi_topic] = _raw_topic(app, settings.sdi_topic, settings.partitions)
    invoice_table = _table(
        app, settings, settings.invoice_table_name, _invoice_store_options(settings)
    )
    invoice_changelog = invoice_table.changelog_topic.get_topic_name()
    topics[invoice_changelog] = invoice_table.changelog_topic
    registry = registry or CollectorRegistry()
    metrics = StreamMetrics(registry)
    out = sink or KafkaSink(app.kafka_producer)
    clock = EventClock(settings.deadline_clock, _wall)
    trust_store = trust or (
        load_trust_store(settings.trust) if settings.trust else default_trust_store()
    )
    invoices = InvoiceTracker(settings, out, metrics, invoice_table.store, invoice_changelog, clock)
    pipeline = Pipeline(
        app=app,
        settings=settings,
        registry=registry,
        metrics=metrics,
        table=table,
        topics=topics,
        verifier=Verifier(
            settings,
            trust_store,
            out,
            metrics,
            *evidence_writer(
                settings.archive_uri,
                settings.archive_kinds,
                lock_mode=settings.archive_lock_mode,
                lock_days=settings.archive_retention_days,
                registry=registry,
            ),
        ),
        correlator=Correlator(settings, out, metrics, table.store, clock, changelog),
        scanner=DeadlineScanner(
            settings,
            out,
            metrics,
            table.store,
            clock,
            lambda: app.active_partitions(settings.receipts_topic),
            invoices,
            lambda: app.active_partitions(settings.sdi_topic),
        ),
        invoice_table=invoice_table,
        invoices=invoices,
    )
    table.store.describe = pipeline.correlator.describe  # changelog recovery's bookkeeping
    invoice_table.store.describe = pipeline.invoices.describe
    _register(pipeline, out)
    return pipeline


def _table(
    app: PipelineApp, settings: StreamSettings, name: str, options: dict[str, Any]
) -> TrackedTable:
    """A bytes-to-bytes table on the worker's store, added to the app."""
    table = TrackedTable(
        app,
        name=name,
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        beacon=app.tables.beacon,
        store=settings.store,
        options=options,
    )
    app.tables.add(table)
    return table


def _store_options(settings: StreamSettings) -> dict[str, Any]:
    """RocksDB memory bounded by ``state_cache_mb`` for all partitions together: a
    quarter for the block cache (reads), the rest for the write buffers (two each)."""
    if settings.store != "rocksdb://":
        return {}
    budget = settings.state_cache_mb * 1024 * 1024 // settings.partitions
    return {
        "driver": "rocksdict",
        "block_cache_size": budget // 4,
        "block_cache_compressed_size": 0,
        "write_buffer_size": budget * 3 // 8,
        "max_write_buffer_number": 2,
    }


def _invoice_store_options(settings: StreamSettings) -> dict[str, Any]:
    """The invoices table holds one small entry per invoice sent: an eighth of the RocksDB
    budget (cache and write buffers) on top of the correlate table's."""
    scaled = ("block_cache_size", "write_buffer_size")
    return {k: v // 8 if k in scaled else v for k, v in _store_options(settings).items()}


def _raw_topic(
    app: faust.App,
    name: str,
    partitions: int,
    *,
    compacting: bool = False,
    also: tuple[str, ...] = (),
) -> Any:
    """Bytes in, bytes out: the codec module owns every encoding. ``also``: more topics
    read by the same consumer (co-partitioned)."""
    return app.topic(
        name,
        *also,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        compacting=compacting or None,
    )


def lookup_key(query: Mapping[str, str]) -> str | None:
    """The correlation key a web lookup asks for: ``key`` exactly as published, or
    ``mailbox`` and ``msgid`` normalised as verify does (``Ufficio-Legale`` and
    ``20240301.42@erp.example.it`` -> ``ufficio-legale <20240301.42@erp.example.it>``)."""
    if key := query.get("key"):
        return key
    mailbox, msgid = query.get("mailbox", ""), query.get("msgid", "")
    if not mailbox.strip() or normalise_msgid(msgid) is None:
        return None
    return correlation_key(mailbox, msgid)


def invoice_key(query: Mapping[str, str]) -> str | None:
    """The invoice key a web lookup asks for: ``key`` exactly as published
    (``<mailbox> <NomeFile>``), or ``mailbox`` and ``nome_file``."""
    if key := query.get("key"):
        return key
    mailbox, nome_file = query.get("mailbox", "").strip(), query.get("nome_file", "").strip()
    if not mailbox or not nome_file:
        return None
    return f"{mailbox} {nome_file}"


def _headers(event: Any) -> dict[str, bytes]:
    raw = event.headers
    if not raw:
        return {}
    headers = dict(raw.items() if isinstance(raw, dict) else raw)
    if all(type(name) is str and type(value) is bytes for name, value in headers.items()):
        return headers  # what Kafka delivers: no conversion per header
    return {
        str(name): value if isinstance(value, bytes) else str(value).encode()
        for name, value in headers.items()
    }


def _lag(event: Any) -> float:
    timestamp = getattr(event.message, "timestamp", None)
    return max(0.0, _wall().timestamp() - timestamp) if timestamp else 0.0


def _batcher(app: faust.App, stream: Any, handler: Handler, settings: StreamSettings) -> Batcher:
    return Batcher(app, stream, handler, settings.batch_size, settings.batch_seconds)


def _register(p: Pipeline, sink: Sink) -> None:
    settings, app = p.settings, p.app

    @app.agent(
        p.topics[settings.raw_topic],
        name="pectrack.verify",
    )
    async def verify(stream: Any) -> None:
        async def handle(events: Sequence[Any]) -> None:
            await p.verifier.handle_batch([(e.key, e.value, _headers(e)) for e in events])
            p.metrics.verify_lag.set(_lag(events[-1]))

        await _batcher(app, stream, handle, settings).run()

    @app.agent(p.topics[settings.receipts_topic], name="pectrack.correlate")
    async def correlate(stream: Any) -> None:
        async def handle(events: Sequence[Any]) -> None:
            await p.correlator.handle_batch([(e.key, e.value, e.message.partition) for e in events])
            p.metrics.correlate_lag.set(_lag(events[-1]))

        await _batcher(app, stream, handle, settings).run()

    @app.agent(p.topics[settings.submissions_topic], name="pectrack.register")
    async def register(stream: Any) -> None:
        async def handle(events: Sequence[Any]) -> None:
            records, bad = [], 0
            for event in events:
                try:
                    submission = submission_from_dict(decode(event.value))
                except DecodeError as exc:
                    reason = "bad-submission"
                    records.append(
                        dead_letter(settings.dlq_topic, event.key, event.value, reason, str(exc))
                    )
                    bad += 1
                    continue
                observation = dumps(observation_to_dict(submission))
                records.append(
                    Record(settings.receipts_topic, submission.key.encode(), observation)
                )
            await sink.send_all(records)
            if bad:
                p.metrics.labelled(p.metrics.dlq, "bad-submission").inc(bad)

        await _batcher(app, stream, handle, settings).run()

    @app.timer(interval=settings.deadline_interval_seconds, name="pectrack.deadlines")  # type: ignore[untyped-decorator]
    async def deadlines() -> None:
        if app.rebalancing:  # partitions are moving: the next tick scans what it owns then
            return
        await p.scanner.scan()

    @app.timer(interval=CONSUMER_LAG_INTERVAL_SECONDS, name="pectrack.consumer-lag")  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        try:
            lag = await app.consumer_lag()
        except (KafkaError, TimeoutError) as exc:  # the broker is away: keep the last values
            log.debug("consumer lag not measured: %r", exc)
            return
        if lag is not None:
            p.metrics.set_consumer_lag({(tp.topic, tp.partition): n for tp, n in lag.items()})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # (its type has no `assigned`)
    async def forget_moved_partitions(_app: Any, assigned: set[TP], **_: Any) -> None:
        """The new assignment is known: lag series of partitions owned elsewhere go (the
        table store drops their data itself, see pipeline.streams.state)."""
        p.metrics.drop_consumer_lag({(tp.topic, tp.partition) for tp in assigned})

    @app.page("/message/")
    class MessageView(View):
        """``GET /message/?key=<mailbox> <msgid>``, or ``?mailbox=...&msgid=...``: the
        message's state, answered by the worker that owns the key (any worker proxies)."""

        async def get(self, request: Request) -> Response:
            key = lookup_key(request.query)
            if key is None:
                error = "give key=<mailbox> <msgid>, or mailbox and msgid"
                return self.json({"error": error}, status=400)
            try:  # faust's table_route, with the key computed first
                return await app.router.route_req(p.table.name, key, self.web, request)
            except SameNode:
                pass  # this worker owns the key
            stored = p.table.store.lookup(key.encode())
            if stored is None:
                return self.json({"error": "unknown message", "key": key}, status=404)
            try:
                tracked = tracked_from_dict(decode(stored))
            except DecodeError as exc:
                return self.json({"error": f"corrupt table entry: {exc}"}, status=500)
            if tracked.retired:
                gone = {"error": "finished and past its retention", "key": key}
                return self.json(gone, status=410)  # the final state is on pec.message-state
            state = settings.publication.message_state_dict(tracked)
            for item in state.get("evidence", []):  # where to fetch each signed message
                item["link"] = f"/evidence/{item['sha256']}"
            return self.json(state)

    # sdi.notifications and the timer's checks (sdi.checks, co-partitioned): one agent,
    # so that only the table's owner writes it, in order.
    @app.agent(
        _raw_topic(app, settings.sdi_topic, settings.partitions, also=(settings.sdi_checks_topic,)),
        name="pectrack.invoices",
    )
    async def invoices(stream: Any) -> None:
        async def handle(events: Sequence[Any]) -> None:
            await p.invoices.handle_batch(
                [(e.key, e.value, _headers(e), e.message.partition) for e in events]
            )
            p.metrics.invoices_lag.set(_lag(events[-1]))

        await _batcher(app, stream, handle, settings).run()

    @app.page("/invoice/")
    class InvoiceView(View):
        """``GET /invoice/?key=<mailbox> <NomeFile>``, or ``?mailbox=...&nome_file=...``:
        an invoice's SdI state, answered by the worker that owns the key."""

        async def get(self, request: Request) -> Response:
            key = invoice_key(request.query)
            if key is None:
                error = "give key=<mailbox> <NomeFile>, or mailbox and nome_file"
                return self.json({"error": error}, status=400)
            try:
                return await app.router.route_req(p.invoice_table.name, key, self.web, request)
            except SameNode:
                pass  # this worker owns the key
            try:
                entry = p.invoices.lookup(key)
            except DecodeError as exc:
                return self.json({"error": f"corrupt table entry: {exc}"}, status=500)
            if entry is None:
                return self.json({"error": "unknown invoice", "key": key}, status=404)
            if entry.track.retired:
                gone = {"error": "past its retention", "key": key, "state": entry.track.state}
                return self.json(gone, status=410)  # its events are on sdi.invoice-states
            return self.json(invoice_entry_to_dict(entry))

    _ = (verify, correlate, register, deadlines, consumer_lag, forget_moved_partitions, MessageView)
    _ = (invoices, InvoiceView)
    register_evidence_pages(app, p.verifier.evidence)
