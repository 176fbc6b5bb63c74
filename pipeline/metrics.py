"""Every Prometheus metric of pectrack, created on a registry the caller passes in.

Tests build a fresh ``CollectorRegistry()`` per case; a process uses one registry and
serves it with ``serve(registry, port)``. Naming: base units, ``_total`` counters, bounded
labels only: a mailbox id (configured, finite) is acceptable on per-mailbox gauges; a
Message-ID, an address or a password never is.

Ingest (``agents/``)::

    pectrack_ingest_messages_total{outcome="published"|"dead_letter"}
    pectrack_ingest_bytes_total
    pectrack_ingest_fetch_duration_seconds      (histogram, one UID FETCH batch)
    pectrack_ingest_publish_duration_seconds    (histogram, batch until Kafka acked)
    pectrack_imap_errors_total{kind}            auth|tls|connect|timeout|dropped|parser|protocol
    pectrack_ingest_publish_errors_total
    pectrack_ingest_mailboxes                   mailboxes this process owns
    pectrack_imap_connected_mailboxes
    pectrack_imap_mailbox_up{mailbox}           1 while logged in, 0 while failing
    pectrack_ingest_last_sync_timestamp_seconds{mailbox}
    pectrack_ingest_cursor_lag_messages{mailbox,folder}   newest UID on server - last published
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["IMAP_ERROR_KINDS", "IngestMetrics", "serve"]

IMAP_ERROR_KINDS = ("auth", "tls", "connect", "timeout", "dropped", "parser", "protocol")

# One IMAP round trip on loopback is ~1 ms; a 8 MB batch from a slow provider, tens of s.
_IO_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class IngestMetrics:
    """Metrics of the IMAP ingest agent."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "pectrack_ingest_messages",
            "Messages taken from IMAP and acknowledged by Kafka, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.bytes = Counter(
            "pectrack_ingest_bytes",
            "Raw message bytes published to the raw topic.",
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            "pectrack_ingest_fetch_duration_seconds",
            "Duration of one bounded UID FETCH batch.",
            buckets=_IO_BUCKETS,
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "pectrack_ingest_publish_duration_seconds",
            "Time from producing a batch until Kafka acknowledged all of it (acks=all).",
            buckets=_IO_BUCKETS,
            registry=registry,
        )
        self.imap_errors = Counter(
            "pectrack_imap_errors",
            "IMAP failures by kind; each one makes the mailbox reconnect with backoff.",
            ["kind"],
            registry=registry,
        )
        self.publish_errors = Counter(
            "pectrack_ingest_publish_errors",
            "Kafka failures while publishing records or cursors.",
            registry=registry,
        )
        self.mailboxes = Gauge(
            "pectrack_ingest_mailboxes",
            "Mailboxes owned by this agent process (after sharding).",
            registry=registry,
        )
        self.connected = Gauge(
            "pectrack_imap_connected_mailboxes",
            "Mailboxes with a logged-in IMAP connection.",
            registry=registry,
        )
        self.mailbox_up = Gauge(
            "pectrack_imap_mailbox_up",
            "1 while the mailbox is logged in, 0 while it is failing or reconnecting.",
            ["mailbox"],
            registry=registry,
        )
        self.last_sync = Gauge(
            "pectrack_ingest_last_sync_timestamp_seconds",
            "Unix time of the mailbox's last complete sync of all its folders.",
            ["mailbox"],
            registry=registry,
        )
        self.cursor_lag = Gauge(
            "pectrack_ingest_cursor_lag_messages",
            "Newest UID on the server minus the last UID published, per folder.",
            ["mailbox", "folder"],
            registry=registry,
        )
        for kind in IMAP_ERROR_KINDS:
            self.imap_errors.labels(kind)
        for outcome in ("published", "dead_letter"):
            self.messages.labels(outcome)


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` of ``registry`` in a daemon thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    bound: int = server.server_port
    return bound
