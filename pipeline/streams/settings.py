"""Settings of the stream workers, each declared once: type, default, help, allowed values.

The flags (``--raw-topic``), the variables (``PECTRACK_RAW_TOPIC``) and validation are
derived from the declarations (:data:`SETTINGS`): defaults < environment < flags.

Every topic name is configurable; the defaults are the documented topology::

    pec.raw -> verify -> pec.receipts -> correlate -> pec.state-changes, pec.message-state
    pec.submissions -> (register) -> pec.receipts          unroutable input -> pec.dlq
    (verify) -> sdi.notifications -> invoices -> sdi.invoice-states
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from pipeline.contracts import topics
from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.schemas import DEFAULT_SCHEMA_BASE, Publication, check_schema_base
from pipeline.core import Deadlines, Retention
from pipeline.core.sdi_retention import InvoiceRetention
from pipeline.kafka import MECHANISMS
from pipeline.kafka.tls import KafkaTls

if TYPE_CHECKING:
    from pipeline.kafka.sasl import KafkaSasl

_DEADLINES = Deadlines()
_RETENTION = Retention()
_INVOICE_RETENTION = InvoiceRetention()


def setting(
    default: Any,
    help: str,  # noqa: A002 - the word argparse uses
    *,
    choices: Sequence[str] = (),
    minimum: float | None = None,
) -> Any:
    """Declare a worker setting: its default, its help, and what values it takes. The
    flag (``--name-with-dashes``) and the variable (``PECTRACK_NAME``) come from the
    field's name, its type from the annotation."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices),
                                            "minimum": minimum})  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Everything a worker is told. Each field is one setting: flag, variable and help."""

    broker: str = setting("127.0.0.1:9092", "Kafka bootstrap host:port")
    kafka_tls: bool = setting(False, "true: verified TLS to Kafka (pipeline.kafka.tls)")
    kafka_ca_file: str | None = setting(
        None, "PEM of the brokers' CA; unset: the system trust store"
    )
    kafka_cert_file: str | None = setting(None, "client certificate PEM for mutual TLS")
    kafka_key_file: str | None = setting(None, "its private key, if not in --kafka-cert-file")
    # SASL (pipeline.kafka.sasl): PLAIN, SCRAM-SHA-256/512 with a user and the password
    # in a file or in the variable *named* here; OAUTHBEARER with a token file.
    kafka_sasl_mechanism: str = setting(
        "", "SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; empty: none",
        choices=["", *MECHANISMS],
    )  # fmt: skip
    kafka_sasl_username: str = setting("", "SASL user (PLAIN, SCRAM)")
    kafka_sasl_password_env: str = setting(
        "", "the NAME of the variable holding the SASL password (never the password)"
    )
    kafka_sasl_password_file: str | None = setting(None, "file holding the SASL password")
    kafka_sasl_token_file: str | None = setting(
        None, "OAUTHBEARER token file, read again at each new connection"
    )
    kafka_sasl_allow_plaintext: bool = setting(
        False, "true: allow SASL PLAIN without TLS (a private network only)"
    )
    app_id: str = setting("pectrack", "consumer group / application id")
    partitions: int = setting(
        topics.DEFAULT_PARTITIONS, "partitions of every topic the worker creates", minimum=1
    )
    replication: int = setting(
        topics.DEFAULT_REPLICATION,
        "replicas of the topics it creates, faust's changelogs too (never 1 by default; "
        "from 3 on min.insync.replicas = 2)",
        minimum=1,
    )
    raw_topic: str = setting(topics.RAW, "input: raw mail from the agents")
    receipts_topic: str = setting(
        topics.RECEIPTS, "internal: observations keyed by correlation key"
    )
    submissions_topic: str = setting(topics.SUBMISSIONS, "input: submissions from a sending system")
    state_changes_topic: str = setting(topics.STATE_CHANGES, "output: one event per transition")
    message_state_topic: str = setting(
        topics.MESSAGE_STATE, "output (compacted): latest state per message"
    )
    dlq_topic: str = setting(topics.DLQ, "output: unroutable input")
    inbound_topic: str = setting(topics.INBOUND, "output: certified mail received in INBOX")
    sdi_topic: str = setting(
        topics.SDI_NOTIFICATIONS,
        "internal: SdI notifications and invoices received (an output, also read by the "
        "invoices processor)",
    )
    invoice_states_topic: str = setting(
        topics.SDI_INVOICE_STATES, "output: one event per SdI invoice state change or conflict"
    )
    sdi_checks_topic: str = setting(
        topics.SDI_CHECKS,
        "internal: the deadline timer's retention checks of invoices, read by the invoices "
        "processor with sdi.notifications",
    )
    table_name: str = setting("pectrack-messages", "name of the correlate table (and changelog)")
    invoice_table_name: str = setting(
        "pectrack-invoices", "name of the SdI invoice table (and changelog)"
    )
    cloudevents_mode: str = setting(
        Mode.STRUCTURED.value,
        "pec.state-changes: 'structured' (JSON value) or 'binary' (ce_* headers)",
        choices=[mode.value for mode in Mode],
    )
    schema_base: str = setting(
        DEFAULT_SCHEMA_BASE,
        "URI the schemas are published under; records name <base><name>/<N>.json",
    )
    batch_size: int = setting(
        200,
        "most queued records handled (and acknowledged) together; 1: one by one; "
        "a batch never waits to fill (pipeline.streams.batching)",
        minimum=1,
    )
    fetch_wait_ms: int = setting(
        100, "longest a consumer fetch waits for data, in ms (faust's own: 1500)", minimum=1
    )
    batch_seconds: float = setting(
        0.5, "a batch is handled at the latest this long after its first record", minimum=0
    )
    trust: str | None = setting(
        None, "trust anchors: PEM file or directory (default: bundled AgID CA1)"
    )
    verify_processes: int = setting(
        0,
        "processes that parse and verify raw mail (each loads the trust anchors once); "
        "0: in the event loop",
        minimum=0,
    )
    acceptance_timeout_seconds: float = setting(
        _DEADLINES.acceptance_timeout.total_seconds(),
        "no acceptance after this long: overdue",
        minimum=0,
    )
    delivery_window_seconds: float = setting(
        _DEADLINES.delivery_window.total_seconds(),
        "no final receipt this long after acceptance: overdue",
        minimum=0,
    )
    deadline_interval_seconds: float = setting(
        30.0, "how often the deadline timer scans", minimum=0
    )
    deadline_clock: str = setting(
        "wall", "'wall', or 'event' for replays: data time (overdue flags by the newest "
        "verified receipt time of the message's own mailbox, retention by the newest time "
        "seen)",
        choices=["wall", "event"],
    )  # fmt: skip
    max_message_bytes: int = setting(
        64 * 1024 * 1024, "larger raw mail is a dead letter, unread", minimum=1
    )
    metrics_port: int | None = setting(9109, "Prometheus /metrics port (0: any free port)")
    metrics_host: str = setting("127.0.0.1", "Prometheus bind address")
    web_port: int = setting(6066, "faust web port (message lookup at /message/?key=...)")
    web_host: str = setting("127.0.0.1", "faust web bind/advertised host")
    datadir: str = setting(
        "/tmp/pectrack-worker",  # noqa: S108 - faust state; overridden per worker
        "faust state directory (one per worker)",
    )
    session_timeout_seconds: float = setting(
        10.0,
        "consumer-group session timeout: a dead worker's partitions move after this "
        "(the embedded broker also waits about half of it before completing a join)",
        minimum=1,
    )
    group_instance_id: str = setting(
        "",
        "static group membership id (KIP-345), stable per worker (e.g. the pod name); "
        "empty: dynamic membership",
    )
    store: str = setting(
        "rocksdb://",
        "correlate table: rocksdb:// (on disk under --datadir; a restart reads only the "
        "changelog tail) or memory:// (rebuilt from the whole changelog; tests, demos)",
        choices=["rocksdb://", "memory://"],
    )
    state_cache_mb: int = setting(
        64, "RocksDB cache and write buffers, MiB for all partitions", minimum=8
    )
    standby_replicas: int = setting(
        0, "warm copies of each table partition on other workers", minimum=0
    )
    retention_seconds: float = setting(
        _RETENTION.finished.total_seconds(),
        "a finished message leaves the table this long after its last receipt",
        minimum=0,
    )
    orphan_ttl_seconds: float = setting(
        _RETENTION.orphan.total_seconds(),
        "receipts without their sent message are dropped after this",
        minimum=0,
    )
    invoice_open_ttl_seconds: float = setting(
        _INVOICE_RETENTION.open.total_seconds(),
        "an invoice not in a final state (sent, delivered, not-delivered) leaves the invoices "
        "table this long after its last notification (a final one: --retention-seconds)",
        minimum=0,
    )
    message_state_retention: str = setting(
        "keep",
        "'keep' the final pec.message-state record, or tombstone it when the message "
        "leaves the 'table'",
        choices=["keep", "table"],
    )
    # The evidence archive (pipeline.evidence): every message of archive_kinds is stored
    # byte-exact before the records it causes are published.
    archive: str = setting(
        "datadir",
        "evidence archive: file:///dir, s3://bucket/prefix, 'datadir' (a directory "
        "'evidence' under --datadir) or 'none' (records still carry the SHA-256 and IMAP "
        "location of each receipt)",
    )
    archive_kinds: str = setting(
        "receipts,envelopes", "what the archive keeps, of: receipts, envelopes, sent"
    )
    archive_retention_days: int = setting(
        0,
        "0: keep for ever (pectrack never deletes evidence); with --archive-lock-mode, "
        "each object is write-once for this many days",
        minimum=0,
    )
    archive_lock_mode: str = setting(
        "",
        "S3 Object Lock mode of archived objects (needs an s3:// archive on a bucket with "
        "Object Lock)",
        choices=["", "GOVERNANCE", "COMPLIANCE"],
    )
    log_level: str = setting(
        "warning", "debug, info, warning, error",
        choices=["debug", "info", "warning", "error", "critical"],
    )  # fmt: skip

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
    def invoice_retention(self) -> InvoiceRetention:
        return InvoiceRetention(
            timedelta(seconds=self.retention_seconds),
            timedelta(seconds=self.invoice_open_ttl_seconds),
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
    def sasl(self) -> KafkaSasl | None:
        """SASL to Kafka, or ``None``; :class:`KafkaSaslError` (a ValueError) if incomplete."""
        from pipeline.kafka.sasl import KafkaSasl  # noqa: PLC0415 - aiokafka, when used

        if not self.kafka_sasl_mechanism:
            return None
        return KafkaSasl(
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username or None,
            password_env=self.kafka_sasl_password_env or None,
            password_file=self.kafka_sasl_password_file,
            token_file=self.kafka_sasl_token_file,
            allow_plaintext=self.kafka_sasl_allow_plaintext,
        )

    @property
    def archive_uri(self) -> str:
        """The archive's URI (``""``: none); ``datadir`` is ``file://<datadir>/evidence``."""
        if self.archive == "datadir":
            return (Path(self.datadir).absolute() / "evidence").as_uri()
        return "" if self.archive in ("", "none") else self.archive

    @property
    def publication(self) -> Publication:
        """How the outputs are written: binding mode and schema base."""
        return Publication(Mode(self.cloudevents_mode), self.schema_base)

    def validate(self) -> StreamSettings:
        """``self`` if every value is allowed, else ``ValueError`` naming the setting."""
        for declared in SETTINGS:
            declared.check(getattr(self, declared.name))
        files = (self.kafka_ca_file, self.kafka_cert_file, self.kafka_key_file)
        if not self.kafka_tls and any(files):
            raise ValueError("kafka_ca_file, kafka_cert_file and kafka_key_file need kafka_tls")
        if self.kafka_key_file and not self.kafka_cert_file:
            raise ValueError("kafka_key_file needs kafka_cert_file")
        sasl_set = (self.kafka_sasl_username, self.kafka_sasl_password_env,
                    self.kafka_sasl_password_file, self.kafka_sasl_token_file)  # fmt: skip
        if not self.kafka_sasl_mechanism and any(sasl_set):
            raise ValueError("the kafka_sasl_* settings need kafka_sasl_mechanism")
        self.sasl  # noqa: B018 - validates the combination (KafkaSaslError is a ValueError)
        if not 0 < self.orphan_ttl_seconds <= self.retention_seconds:
            raise ValueError("orphan_ttl_seconds must be positive and at most retention_seconds")
        if self.invoice_open_ttl_seconds <= 0:
            raise ValueError("invoice_open_ttl_seconds must be positive")
        check_schema_base(self.schema_base)
        self._validate_archive()
        return self

    def _validate_archive(self) -> None:
        from pipeline.evidence.archive import open_archive  # noqa: PLC0415
        from pipeline.evidence.provenance import parse_kinds  # noqa: PLC0415

        parse_kinds(self.archive_kinds)
        if self.archive_uri:
            open_archive(
                self.archive_uri,
                lock_mode=self.archive_lock_mode,
                lock_days=self.archive_retention_days,
            )
        elif self.archive_lock_mode:
            raise ValueError("archive_lock_mode needs an s3:// archive")


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting, as the flags, the environment and validation see it."""

    name: str
    kind: type  # bool, int, float or str (optional ones: None allowed)
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...]
    minimum: float | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "PECTRACK_" + self.name.upper()

    def parse(self, text: str) -> Any:
        """The value of ``text`` (a flag or a variable); ``ValueError`` if it is not one.
        An empty text unsets an optional setting."""
        if self.optional and not text.strip():
            return None
        if self.kind is bool:
            return parse_bool(text)
        if self.kind in (int, float):
            return self.kind(text)
        return text

    def check(self, value: Any) -> None:
        if value is None:
            if not self.optional:
                raise ValueError(f"{self.name} must be set")
            return
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, not {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum:g}, not {value!r}")


def _declared() -> tuple[Setting, ...]:
    hints = get_type_hints(StreamSettings)
    declared = []
    for item in fields(StreamSettings):
        kinds = [k for k in get_args(hints[item.name]) if k is not type(None)] or [hints[item.name]]
        declared.append(
            Setting(
                item.name,
                kinds[0],
                type(None) in get_args(hints[item.name]),
                item.default,
                item.metadata["help"],
                item.metadata["choices"],
                item.metadata["minimum"],
            )
        )
    return tuple(declared)


SETTINGS: tuple[Setting, ...] = _declared()


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``1``/``0``); anything else is an error."""
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"expected true or false, not {text[:20]!r}")
    return lowered in ("1", "true", "yes")


def from_environment(
    base: StreamSettings | None = None, env: Mapping[str, str] | None = None
) -> StreamSettings:
    """Override defaults with ``PECTRACK_<NAME>`` variables (``PECTRACK_BROKER=...``)."""
    source = os.environ if env is None else env
    changes: dict[str, Any] = {}
    for declared in SETTINGS:
        text = source.get(declared.variable)
        if text is None:
            continue
        try:
            changes[declared.name] = declared.parse(text)
        except ValueError as exc:
            raise ValueError(f"{declared.variable}: {exc}") from None
    return replace(base or StreamSettings(), **changes).validate()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; a flag not given leaves the environment's value."""
    defaults = StreamSettings()
    for declared in SETTINGS:
        parser.add_argument(
            declared.flag,
            dest=declared.name,
            type=_argument_type(declared),
            default=None,
            metavar=declared.name.upper() if not declared.choices else None,
            choices=declared.choices or None,
            help=f"{declared.help} (env {declared.variable}; "
            f"default: {getattr(defaults, declared.name)})",
        )


def from_arguments(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> StreamSettings:
    """Defaults < ``PECTRACK_*`` variables < flags."""
    settings = from_environment(env=env)
    changes = {d.name: getattr(args, d.name) for d in SETTINGS if getattr(args, d.name) is not None}
    return replace(settings, **changes).validate()


def _argument_type(declared: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return declared.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = declared.kind.__name__  # argparse names it in "invalid <name> value"
    return convert
