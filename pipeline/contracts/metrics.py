"""Every Prometheus metric of pectrack, created on a registry the caller passes in.

Tests build a fresh ``CollectorRegistry()`` per case; a process uses one registry and
serves it with ``serve(registry, port)``. Naming: base units, ``_total`` counters, bounded
labels only: a mailbox id (configured, finite) is acceptable on per-mailbox gauges; a
Message-ID, an address or a password never is.

Ingest (``agents/``)::

    pec_ingest_messages_total{outcome="published"|"dead_letter"}
    pec_ingest_bytes_total
    pec_ingest_fetch_duration_seconds      (histogram, one UID FETCH batch)
    pec_ingest_publish_duration_seconds    (histogram, batch until Kafka acked)
    pec_imap_errors_total{kind}    auth|secret|tls|connect|timeout|dropped|parser|protocol
    pec_ingest_publish_errors_total
    pec_ingest_mailboxes                   mailboxes this process owns
    pec_imap_connected_mailboxes
    pec_imap_mailbox_up{mailbox}           1 once every folder synced, 0 while failing
    pec_imap_mailbox_credentials_ok{mailbox}   0: password unreadable or login refused
    pec_ingest_last_sync_timestamp_seconds{mailbox}
    pec_ingest_cursor_lag_messages{mailbox,folder}   newest UID on server - last published

Backfill progress (``agents/progress.py``)::

    pec_backfill_messages_todo{mailbox}    listed by the syncs under way, not yet published
    pec_backfill_messages_done_total{mailbox}   published by syncs since the agent started
    pec_backfill_eta_seconds               todo / recent rate; 0 when none; -1 rate unknown
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from pipeline.contracts.build_info import register_build_info
from pipeline.core.sdi_lifecycle import InvoiceState, SdiOutcome

__all__ = ["IMAP_ERROR_KINDS", "BackfillMetrics", "EvidenceMetrics", "IngestMetrics", "serve"]

IMAP_ERROR_KINDS = ("auth", "secret", "tls", "connect", "timeout", "dropped", "parser", "protocol")

# One IMAP round trip on loopback is ~1 ms; a 8 MB batch from a slow provider, tens of s.
_IO_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class IngestMetrics:
    """Metrics of the IMAP ingest agent."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "pec_ingest_messages",
            "Messages taken from IMAP and acknowledged by Kafka, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.bytes = Counter(
            "pec_ingest_bytes",
            "Raw message bytes published to the raw topic.",
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            "pec_ingest_fetch_duration_seconds",
            "Duration of one bounded UID FETCH batch.",
            buckets=_IO_BUCKETS,
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "pec_ingest_publish_duration_seconds",
            "Time from producing a batch until Kafka acknowledged all of it (acks=all).",
            buckets=_IO_BUCKETS,
            registry=registry,
        )
        self.imap_errors = Counter(
            "pec_imap_errors",
            "IMAP failures by kind; each one makes the mailbox reconnect with backoff.",
            ["kind"],
            registry=registry,
        )
        self.publish_errors = Counter(
            "pec_ingest_publish_errors",
            "Kafka failures while publishing records or cursors.",
            registry=registry,
        )
        self.mailboxes = Gauge(
            "pec_ingest_mailboxes",
            "Mailboxes owned by this agent process (after sharding).",
            registry=registry,
        )
        self.connected = Gauge(
            "pec_imap_connected_mailboxes",
            "Mailboxes with a logged-in IMAP connection.",
            registry=registry,
        )
        self.mailbox_up = Gauge(
            "pec_imap_mailbox_up",
            "1 once the mailbox synced every folder, 0 while failing or reconnecting.",
            ["mailbox"],
            registry=registry,
        )
        self.credentials_ok = Gauge(
            "pec_imap_mailbox_credentials_ok",
            "0 while the mailbox's password cannot be read or its login is refused, "
            "1 once a login succeeded.",
            ["mailbox"],
            registry=registry,
        )
        self.last_sync = Gauge(
            "pec_ingest_last_sync_timestamp_seconds",
            "Unix time of the mailbox's last complete sync of all its folders.",
            ["mailbox"],
            registry=registry,
        )
        self.cursor_lag = Gauge(
            "pec_ingest_cursor_lag_messages",
            "Newest UID on the server minus the last UID published, per folder.",
            ["mailbox", "folder"],
            registry=registry,
        )
        for kind in IMAP_ERROR_KINDS:
            self.imap_errors.labels(kind)
        for outcome in ("published", "dead_letter"):
            self.messages.labels(outcome)


class BackfillMetrics:
    """How far the agent's syncs have come (a first sync of years of mail, or a resync)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.todo = Gauge(
            "pec_backfill_messages_todo",
            "Messages the mailbox's syncs under way listed and have not published yet.",
            ["mailbox"],
            registry=registry,
        )
        self.done = Counter(
            "pec_backfill_messages_done",
            "Messages the mailbox's syncs published since the agent started.",
            ["mailbox"],
            registry=registry,
        )
        self.eta = Gauge(
            "pec_backfill_eta_seconds",
            "Estimated seconds until every sync under way is done (0: none; -1: no rate yet).",
            registry=registry,
        )


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` of ``registry`` in a daemon thread; returns the bound port."""
    register_build_info(registry)  # pec_build_info on every served registry
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    bound: int = server.server_port
    return bound


# --- Stream processors (``pipeline/streams``) ----------------------------------------------
#
#   pec_receipts_total{kind,provider}             receipts applied as evidence
#   pec_delivery_latency_seconds{phase,provider}  submission->acceptance, acceptance->delivery;
#                                                 provider of the receipt ending the phase
#   pec_delivery_failures_total{reason}           errore-consegna / virus / rejection, by code
#   pec_signature_failures_total{reason}          signature-invalid, untrusted-signer, ...
#   pec_messages_inflight / pec_messages_overdue / pec_orphan_receipts   (this worker's keys)
#   pec_state_changes_total{to_state}             events published
#   pec_processing_lag_seconds{processor}         now - Kafka timestamp of the record processed
#   pec_consumer_lag_records{topic,partition}     end offset - committed offset, per partition
#                                                 the worker is assigned (changelog: to restore)
#   pec_dlq_total{reason}                         records sent to the dead-letter topic
#   pec_ignored_total{reason}                     mail that is not about sent messages
#   pec_table_evictions_total{reason}             finished messages retired, orphans dropped,
#                                                 invoices retired
#   pec_late_observations_total{kind}             mail of retired messages and invoices, and
#                                                 checks of entries no longer held: ignored
#   pec_table_entries_due                         index entries the last deadline scan read
#   pec_table_entries_waiting                     of those, due by the newest time seen but
#                                                 not yet by their mailbox's receipts (event
#                                                 clock, a replay): left for a later scan
#   pec_sdi_invoice_transitions_total{to_state,outcome}   SdI notifications applied per invoice
#   pec_sdi_invoice_ignored_total{reason}         sdi.notifications records not applied

# PEC latencies run from seconds (acceptance) to days (a delivery after the 24 h warning).
LATENCY_BUCKETS = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    21600.0, 43200.0, 86400.0, 129600.0, 172800.0,
)  # fmt: skip
MAX_PROVIDER_LABELS = 64
# pec_sdi_invoice_ignored_total{reason}
INVOICE_IGNORED = ("invoice-received", "not-evidence", "no-event")

_MetricT = TypeVar("_MetricT", bound=MetricWrapperBase)


class StreamMetrics:
    """Metrics of the verify and correlate processors (one instance per worker)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.receipts = Counter(
            "pec_receipts",
            "Receipts applied to the delivery lifecycle, by kind and provider.",
            ["kind", "provider"],
            registry=registry,
        )
        self.latency = Histogram(
            "pec_delivery_latency_seconds",
            "Daticert time of a receipt minus submission (acceptance) or acceptance (final), "
            "by the provider that issued the receipt.",
            ["phase", "provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "pec_delivery_failures",
            "Recipients that ended in a failure state, by reason.",
            ["reason"],
            registry=registry,
        )
        self.signature_failures = Counter(
            "pec_signature_failures",
            "Receipts reported but never counted: bad signature, untrusted signer, defects.",
            ["reason"],
            registry=registry,
        )
        self.inflight = Gauge(
            "pec_messages_inflight", "Messages with a recipient not yet final.", registry=registry
        )
        self.overdue = Gauge(
            "pec_messages_overdue", "Messages with an overdue flag raised.", registry=registry
        )
        self.orphans = Gauge(
            "pec_orphan_receipts",
            "Messages known only from receipts: the sent copy has not been seen.",
            registry=registry,
        )
        self.state_changes = Counter(
            "pec_state_changes",
            "State-change events published, by the state reached.",
            ["to_state"],
            registry=registry,
        )
        self.lag = Gauge(
            "pec_processing_lag_seconds",
            "Age of the last record processed (now minus its Kafka timestamp).",
            ["processor"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "pec_consumer_lag_records",
            "Records not yet consumed, per assigned partition: end offset minus the group's "
            "committed offset (a table changelog: records left to restore).",
            ["topic", "partition"],
            registry=registry,
        )
        self._lag_series: set[tuple[str, str]] = set()
        self.processed = Counter(
            "pec_processed_records",
            "Records processed, by processor.",
            ["processor"],
            registry=registry,
        )
        self.dlq = Counter(
            "pec_dlq",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.ignored = Counter(
            "pec_ignored",
            "Mail that is not about a sent message (incoming envelopes, ordinary mail).",
            ["reason"],
            registry=registry,
        )
        self.evictions = Counter(
            "pec_table_evictions",
            "Messages that left the correlate table: finished (retired to a marker, retention "
            "after the last receipt) or orphan (its sent message never appeared within "
            "orphan_ttl); invoices retired from the invoices table (invoice).",
            ["reason"],
            registry=registry,
        )
        self.late = Counter(
            "pec_late_observations",
            "Observations ignored because their message has left the table: mail read again "
            "for a retired message, or a deadline check for a message no longer held; for "
            "the invoices table: sdi-notification, invoice-sent, invoice-check.",
            ["kind"],
            registry=registry,
        )
        self.due = Gauge(
            "pec_table_entries_due",
            "Due-time index entries the last deadline scan read (work per scan).",
            registry=registry,
        )
        self.waiting = Gauge(
            "pec_table_entries_waiting",
            "Of the entries the last deadline scan read, those left waiting: due by the newest "
            "data time seen but not by their mailbox's own receipts (--deadline-clock event).",
            registry=registry,
        )
        self._providers: set[str] = set()
        for reason in ("finished", "orphan"):
            self.evictions.labels(reason)
        for kind in ("submission", "check"):
            self.late.labels(kind)
        # Children per record are looked up once: prometheus-client's labels() costs a
        # few microseconds (argument checks, a lock) every call.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.verified = self.processed.labels("verify")
        self.correlated = self.processed.labels("correlate")
        self.verify_lag = self.lag.labels("verify")
        self.correlate_lag = self.lag.labels("correlate")
        for reason in ("signature-invalid", "untrusted-signer", "receipt-rejected"):
            self.signature_failures.labels(reason)
        self.inbound = Counter(
            "pec_inbound",
            "Certified mail received in INBOX (envelopes and anomaly envelopes), by provider "
            "and signature verdict.",
            ["provider", "signature"],
            registry=registry,
        )
        self.sdi_notifications = Counter(
            "pec_sdi_notifications",
            "SdI files received over PEC, by type (RC, NS, MC, NE, DT, AT, invoice-received) "
            "and whether they count as evidence.",
            ["type", "evidence"],
            registry=registry,
        )

        for kind in ("RC", "NS", "MC", "NE", "DT", "AT", "invoice-received"):
            for evidence in ("true", "false"):
                self.sdi_notifications.labels(kind, evidence)  # bounded: 14 series, 0 until seen
        self.invoice_transitions = Counter(
            "pec_sdi_invoice_transitions",
            "SdI notifications applied to their invoice's lifecycle (invoices processor), by "
            "the state reached and the outcome: advanced, out-of-order, stale, conflict, "
            "duplicate.",
            ["to_state", "outcome"],
            registry=registry,
        )
        self.invoice_ignored = Counter(
            "pec_sdi_invoice_ignored",
            "sdi.notifications records the invoices processor does not apply, by reason: "
            "invoice-received (no lifecycle), not-evidence (not from a valid, trusted SdI "
            "envelope), no-event (an NE whose Esito is neither EC01 nor EC02).",
            ["reason"],
            registry=registry,
        )
        for state in InvoiceState:
            for outcome in SdiOutcome:  # bounded: 7 x 5 series, 0 until seen
                self.invoice_transitions.labels(state.value, outcome.value)
        for reason in INVOICE_IGNORED:
            self.invoice_ignored.labels(reason)
        self.invoiced = self.processed.labels("invoices")
        self.invoices_lag = self.lag.labels("invoices")

    def inbound_received(self, provider: str | None, signature: str) -> None:
        self.labelled(self.inbound, self.provider_label(provider), signature).inc()

    def sdi_notification(self, kind: str, evidence: bool) -> None:
        self.labelled(self.sdi_notifications, kind, "true" if evidence else "false").inc()

    def invoice_transition(self, to_state: InvoiceState, outcome: SdiOutcome) -> None:
        self.labelled(self.invoice_transitions, to_state.value, outcome.value).inc()

    def labelled(self, metric: _MetricT, *values: str) -> _MetricT:
        """``metric.labels(*values)``, cached. Only for metrics whose series are never
        removed (not ``consumer_lag``), and bounded label values only."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        result: _MetricT = child
        return result

    def set_consumer_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """``(topic, partition) -> records``: the worker's whole assignment. Partitions
        missing from it (moved to another worker) lose their series."""
        self.drop_consumer_lag(lag.keys())
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)
        self._lag_series = {(topic, str(partition)) for topic, partition in lag}

    def drop_consumer_lag(self, assigned: Collection[tuple[str, int]]) -> None:
        """A new assignment: partitions not in it lose their series now."""
        keep = {(topic, str(partition)) for topic, partition in assigned}
        for gone in self._lag_series - keep:
            self.consumer_lag.remove(*gone)
        self._lag_series &= keep

    def provider_label(self, provider: str | None) -> str:
        """Provider names come from signed daticert; still, cap how many labels exist."""
        name = (provider or "unknown").strip()[:60] or "unknown"
        if name in self._providers:
            return name
        if len(self._providers) >= MAX_PROVIDER_LABELS:
            return "other"
        self._providers.add(name)
        return name


# --- Evidence archive (``pipeline/evidence``) ----------------------------------------------
#
#   pec_archive_objects_total{result="written"|"present"}   objects stored / already there
#   pec_archive_bytes_total                                  bytes written to the archive
#   pec_archive_write_duration_seconds                       one object, until stored
#   pec_archive_errors_total                                 failed writes (each is retried)
#   pec_archive_up                                           0 while writes fail: verify stops


class EvidenceMetrics:
    """Metrics of the evidence archive writer (one instance per worker)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.objects = Counter(
            "pec_archive_objects",
            "Messages archived: written now, or already present (a replay).",
            ["result"],
            registry=registry,
        )
        self.bytes = Counter(
            "pec_archive_bytes", "Bytes written to the evidence archive.", registry=registry
        )
        self.write_seconds = Histogram(
            "pec_archive_write_duration_seconds",
            "Time to store one message in the evidence archive (including the check).",
            buckets=_IO_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "pec_archive_errors",
            "Failed archive writes; verify retries and publishes nothing meanwhile.",
            registry=registry,
        )
        self.up = Gauge(
            "pec_archive_up",
            "1 while the evidence archive accepts writes, 0 while it fails (progress stops).",
            registry=registry,
        )
        for result in ("written", "present"):
            self.objects.labels(result)
        self.up.set(1)
