"""``pectrack worker``: run the stream processors (one member of the consumer group)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pipeline.kafka_tls import handshake_error
from pipeline.settings import StreamSettings, from_environment, parse_bool

_FLAGS: tuple[tuple[str, str], ...] = (
    ("broker", "Kafka bootstrap host:port"),
    ("kafka_tls", "true: verified TLS to Kafka"),
    ("kafka_ca_file", "PEM of the brokers' CA; unset: the system trust store"),
    ("kafka_cert_file", "client certificate PEM for mutual TLS"),
    ("kafka_key_file", "its private key, if not in --kafka-cert-file"),
    ("app_id", "consumer group / application id"),
    ("partitions", "partitions of every topic"),
    ("raw_topic", "input: raw mail from the agents"),
    ("receipts_topic", "internal: observations keyed by correlation key"),
    ("submissions_topic", "input: submissions from a sending system"),
    ("state_changes_topic", "output: one event per transition"),
    ("message_state_topic", "output (compacted): latest state per message"),
    ("dlq_topic", "output: unroutable input"),
    ("cloudevents_mode", "pec.state-changes: 'structured' (JSON value) or 'binary' (ce_* headers)"),
    ("schema_base", "URI the schemas are published under; records name <base><name>/<N>.json"),
    ("batch_size", "most queued records handled (and acknowledged) together; 1: one by one"),
    ("fetch_wait_ms", "longest a consumer fetch waits for data, in ms"),
    ("batch_seconds", "a batch is handled at the latest this long after its first record"),
    ("trust", "trust anchors: PEM file or directory (default: bundled AgID CA1)"),
    ("verify_processes", "processes that parse and verify raw mail; 0: in the event loop"),
    ("acceptance_timeout_seconds", "no acceptance after this long: overdue"),
    ("delivery_window_seconds", "no final receipt this long after acceptance: overdue"),
    ("deadline_interval_seconds", "how often the deadline timer scans"),
    ("deadline_clock", "'wall', or 'event' (newest daticert time seen) for replays"),
    ("metrics_port", "Prometheus /metrics port (0: any free port)"),
    ("metrics_host", "Prometheus bind address"),
    ("web_port", "faust web port (message lookup at /message/?key=...)"),
    ("web_host", "faust web bind/advertised host"),
    ("datadir", "faust state directory (one per worker)"),
    ("session_timeout_seconds", "consumer-group session timeout (failover time)"),
    ("group_instance_id", "static group membership id, stable per worker (e.g. the pod name)"),
    ("store", "correlate table: memory:// or rocksdb:// (on disk under --datadir)"),
    ("state_cache_mb", "RocksDB cache and write buffers, MiB for all partitions"),
    ("standby_replicas", "warm copies of each table partition on other workers"),
    ("retention_seconds", "a finished message leaves the table this long after its last receipt"),
    ("orphan_ttl_seconds", "receipts without their sent message are dropped after this"),
    (
        "message_state_retention",
        "'keep' the final pec.message-state record, or tombstone "
        "it when the message leaves the 'table'",
    ),
    ("archive", "evidence archive: file:///dir or s3://bucket/prefix; empty: none"),
    ("archive_kinds", "what the archive keeps, of: receipts, envelopes, sent"),
    ("archive_retention_days", "0: keep for ever; with --archive-lock-mode, days locked"),
    ("archive_lock_mode", "S3 Object Lock mode for archived objects: GOVERNANCE or COMPLIANCE"),
    ("log_level", "debug, info, warning, error"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the stream processors (verify, correlate, deadlines, web lookup)",
        description="Run one stream worker. Settings: defaults < PECTRACK_<NAME> env < flags.",
    )
    defaults = StreamSettings()
    for name, help_text in _FLAGS:
        default = getattr(defaults, name)
        kind: Any = (
            type(default) if default is not None else (int if name == "metrics_port" else str)
        )
        if isinstance(default, bool):
            kind = _boolean
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"{help_text} (default: {default})",
        )
    parser.set_defaults(func=run)


def _boolean(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from(args: argparse.Namespace) -> StreamSettings:
    settings = from_environment()
    changes = {name: getattr(args, name) for name, _ in _FLAGS if getattr(args, name) is not None}
    return dataclasses.replace(settings, **changes).validate()


def _wait_for_broker(
    settings: StreamSettings,
    ensure: Callable[[StreamSettings], Coroutine[Any, Any, list[str]]],
    errors: type[Exception],
) -> list[str]:
    """Create the topics, retrying with backoff while the broker is unreachable: a worker
    started before Kafka (or during an outage) waits for it, as the agent does."""
    delay = 1.0
    while True:
        try:
            return asyncio.run(ensure(settings))
        except errors as exc:
            tls = settings.tls
            cause = asyncio.run(handshake_error(settings.broker, tls)) if tls else None
            print(
                f"pectrack worker: broker {settings.broker} unreachable ({exc})"
                + (f"; TLS: {cause}" if cause else "")
                + f"; retrying in {delay:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def run(args: argparse.Namespace) -> int:
    import faust  # noqa: PLC0415 - heavy import, only for this subcommand
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from pipeline.metrics import serve  # noqa: PLC0415
    from pipeline.streams.app import build  # noqa: PLC0415
    from pipeline.streams.topics import ensure_topics  # noqa: PLC0415
    from pipeline.trust_files import TrustStoreError  # noqa: PLC0415

    try:
        settings = settings_from(args)
        pipeline = build(settings)
    except (ValueError, TrustStoreError) as exc:
        print(f"pectrack worker: {exc}", file=sys.stderr)
        return 2
    created = _wait_for_broker(settings, ensure_topics, KafkaError)
    if created:
        print(f"pectrack worker: created topics {', '.join(created)}", flush=True)
    if settings.metrics_port is not None:
        port = serve(pipeline.registry, settings.metrics_port, settings.metrics_host)
        print(
            f"pectrack worker: metrics on http://{settings.metrics_host}:{port}/metrics", flush=True
        )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    worker = faust.Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    try:
        return worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    finally:
        pipeline.verifier.close()  # the verify pool, once no batch can be in progress
