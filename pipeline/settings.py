"""Settings of the stream workers: defaults, environment (``PECTRACK_*``) and flags.

Every topic name is configurable; the defaults are the documented topology::

    pec.raw -> verify -> pec.receipts -> correlate -> pec.state-changes, pec.message-state
    pec.submissions -> (register) -> pec.receipts          unroutable input -> pec.dlq
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from pipeline.contracts import DEFAULT_SCHEMA_BASE, Publication, check_schema_base
from pipeline.core.retention import Retention
from pipeline.core.tracker import Deadlines
from pipeline.events import Mode
from pipeline.kafka_tls import KafkaTls


@dataclass(frozen=True, slots=True)
class StreamSettings:
    broker: str = "127.0.0.1:9092"
    # Verified TLS to the brokers (see pipeline.kafka_tls); the files are PEM.
    kafka_tls: bool = False
    kafka_ca_file: str | None = None  # None: the system trust store
    kafka_cert_file: str | None = None  # client certificate, for mutual TLS
    kafka_key_file: str | None = None  # its key, if not in kafka_cert_file
    app_id: str = "pectrack"
    partitions: int = 4
    replication: int = 1
    raw_topic: str = "pec.raw"
    receipts_topic: str = "pec.receipts"
    submissions_topic: str = "pec.submissions"
    state_changes_topic: str = "pec.state-changes"
    message_state_topic: str = "pec.message-state"
    dlq_topic: str = "pec.dlq"
    table_name: str = "pectrack-messages"
    # pec.state-changes in the CloudEvents Kafka binding: "structured" (the event is the
    # JSON value, content-type application/cloudevents+json) or "binary" (ce_* headers,
    # the value is the data) for consumers that route on headers.
    cloudevents_mode: str = Mode.STRUCTURED.value
    # Records name their schema as <schema_base><name>/<version>.json: a name, resolvable
    # where the operator publishes schemas/ (docs/schemas.md).
    schema_base: str = DEFAULT_SCHEMA_BASE
    # Records already queued are handled together (at most ``batch_size``): one wait for
    # all their acknowledgements instead of one per record; a batch never waits to fill
    # (see ``pipeline.streams.batching``). 1 processes record by record.
    batch_size: int = 200
    fetch_wait_ms: int = 100  # longest a fetch waits for data (faust's own: 1500)
    batch_seconds: float = 0.5  # watchdog: a batch this old is handled whatever happens
    trust: str | None = None  # PEM file or directory; None: the bundled AgID CA1
    # Processes that parse and verify raw mail for this worker's verify processor (each
    # loads the trust anchors once); 0 verifies in the event loop.
    verify_processes: int = 0
    acceptance_timeout_seconds: float = 1800.0
    delivery_window_seconds: float = 86400.0
    deadline_interval_seconds: float = 30.0
    deadline_clock: str = "wall"  # "wall", or "event": the newest daticert time seen
    max_message_bytes: int = 64 * 1024 * 1024
    metrics_port: int | None = 9109
    metrics_host: str = "127.0.0.1"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    datadir: str = "/tmp/pectrack-worker"  # noqa: S108 - faust state; overridden per worker
    # A dead worker's partitions move after this; the embedded broker also waits about
    # half of it before completing a group join, so keep it short.
    session_timeout_seconds: float = 10.0
    # Static membership (KIP-345): a stable id per worker (e.g. the StatefulSet pod name).
    # A restarted worker with the same id takes its partitions back without a rebalance
    # on Apache Kafka; empty: dynamic membership.
    group_instance_id: str = ""
    # The correlate table: "rocksdb://" (on disk under datadir: a restart reads only the
    # changelog records it has not applied) or "memory://" (rebuilt from the whole
    # changelog at every start; for tests and small demos).
    store: str = "rocksdb://"
    state_cache_mb: int = 64  # RocksDB block cache + write buffers, all partitions together
    standby_replicas: int = 0  # other workers keep a warm copy of each partition
    # A message whose recipients are all final leaves the table this long after its
    # newest receipt; receipts whose sent message never appears, after orphan_ttl.
    retention_seconds: float = 30 * 86400.0
    orphan_ttl_seconds: float = 7 * 86400.0
    # "keep": pec.message-state keeps a message's final record (compaction keeps the
    # latest); "table": a tombstone follows it there when it leaves the table.
    message_state_retention: str = "keep"
    # The evidence archive (pipeline.evidence): every message of archive_kinds is stored
    # byte-exact before the records it causes are published. "file:///dir" or
    # "s3://bucket/prefix"; empty: none (records still carry sha256 and IMAP location).
    archive: str = ""
    archive_kinds: str = "receipts,envelopes"  # of receipts, envelopes, sent
    # Independent of the table's retention: 0 keeps for ever (pectrack never deletes
    # evidence); with archive_lock_mode (S3 Object Lock GOVERNANCE or COMPLIANCE), each
    # object is write-once for this many days.
    archive_retention_days: int = 0
    archive_lock_mode: str = ""
    log_level: str = "warning"

    @property
    def acceptance_timeout(self) -> timedelta:
        return timedelta(seconds=self.acceptance_timeout_seconds)

    @property
    def delivery_window(self) -> timedelta:
        return timedelta(seconds=self.delivery_window_seconds)

    @property
    def retention(self) -> Retention:
        return Retention(
            timedelta(seconds=self.retention_seconds), timedelta(seconds=self.orphan_ttl_seconds)
        )

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(self.acceptance_timeout, self.delivery_window)

    @property
    def tls(self) -> KafkaTls | None:
        """TLS to Kafka, or ``None`` for plaintext."""
        if not self.kafka_tls:
            return None
        return KafkaTls(self.kafka_ca_file, self.kafka_cert_file, self.kafka_key_file)

    @property
    def publication(self) -> Publication:
        """How the outputs are written: binding mode and schema base."""
        return Publication(Mode(self.cloudevents_mode), self.schema_base)

    def validate(self) -> StreamSettings:
        if self.partitions < 1 or self.batch_size < 1 or self.fetch_wait_ms < 1:
            raise ValueError("partitions, batch_size and fetch_wait_ms must be at least 1")
        if self.verify_processes < 0:
            raise ValueError("verify_processes must be 0 (the event loop) or more")
        files = (self.kafka_ca_file, self.kafka_cert_file, self.kafka_key_file)
        if not self.kafka_tls and any(files):
            raise ValueError("kafka_ca_file, kafka_cert_file and kafka_key_file need kafka_tls")
        if self.kafka_key_file and not self.kafka_cert_file:
            raise ValueError("kafka_key_file needs kafka_cert_file")
        if self.deadline_clock not in ("wall", "event"):
            raise ValueError(
                f"deadline_clock must be 'wall' or 'event', not {self.deadline_clock!r}"
            )
        if self.store not in ("memory://", "rocksdb://"):
            raise ValueError(f"store must be memory:// or rocksdb://, not {self.store!r}")
        if self.message_state_retention not in ("keep", "table"):
            raise ValueError(
                "message_state_retention must be 'keep' or 'table', "
                f"not {self.message_state_retention!r}"
            )
        if self.state_cache_mb < 8 or self.standby_replicas < 0:
            raise ValueError("state_cache_mb must be at least 8, standby_replicas at least 0")
        if not 0 < self.orphan_ttl_seconds <= self.retention_seconds:
            raise ValueError("orphan_ttl_seconds must be positive and at most retention_seconds")
        modes = [mode.value for mode in Mode]
        if self.cloudevents_mode not in modes:
            raise ValueError(f"cloudevents_mode must be in {modes}, not {self.cloudevents_mode!r}")
        check_schema_base(self.schema_base)
        self._validate_archive()
        return self

    def _validate_archive(self) -> None:
        from pipeline.evidence.archive import open_archive  # noqa: PLC0415
        from pipeline.evidence.provenance import parse_kinds  # noqa: PLC0415

        parse_kinds(self.archive_kinds)
        if self.archive_retention_days < 0:
            raise ValueError("archive_retention_days must be 0 (keep) or more")
        if self.archive:
            open_archive(
                self.archive,
                lock_mode=self.archive_lock_mode,
                lock_days=self.archive_retention_days,
            )
        elif self.archive_lock_mode:
            raise ValueError("archive_lock_mode needs an s3:// archive")


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``1``/``0``); anything else is an error."""
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"expected true or false, not {text[:20]!r}")
    return lowered in ("1", "true", "yes")


def from_environment(
    base: StreamSettings | None = None, env: dict[str, str] | None = None
) -> StreamSettings:
    """Override defaults with ``PECTRACK_<FIELD>`` variables (``PECTRACK_BROKER=...``)."""
    source = os.environ if env is None else env
    settings = base or StreamSettings()
    changes: dict[str, Any] = {}
    for item in fields(StreamSettings):
        variable = f"PECTRACK_{item.name.upper()}"
        value = source.get(variable)
        if value is None:
            continue
        try:
            changes[item.name] = _convert(getattr(settings, item.name), item.name, value)
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None
    return replace(settings, **changes).validate()


def _convert(current: object, name: str, value: str) -> object:
    if isinstance(current, bool):
        return parse_bool(value)
    if isinstance(current, int) or name == "metrics_port":
        return int(value) if value else None
    if isinstance(current, float):
        return float(value)
    if name.startswith("kafka_") and name.endswith("_file"):
        return value or None  # an empty variable: unset
    return value
