"""JSON log lines and the ingest metrics on a fresh registry."""

from __future__ import annotations

import logging

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from agents.logs import JsonFormatter
from pipeline.contracts.metrics import IMAP_ERROR_KINDS, IngestMetrics


def test_log_line_is_json_with_fields() -> None:
    """A log_event record renders as one JSON object with its fields inlined."""
    record = logging.LogRecord("agents.ingest", logging.INFO, "f", 1, "sync.progress", None, None)
    record.fields = {"mailbox": "comune-x", "done": 5}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["event"] == "sync.progress"
    assert (line["level"], line["mailbox"], line["done"]) == ("info", "comune-x", 5)
    assert line["ts"].endswith("Z")


def test_ingest_metrics_names_and_zeroed_error_kinds() -> None:
    """Every error kind exists at 0 from the start; names follow Prometheus conventions."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.cursor_lag.labels("comune-x", "INBOX").set(3)
    text = generate_latest(registry).decode()
    for kind in IMAP_ERROR_KINDS:
        assert f'pec_imap_errors_total{{kind="{kind}"}} 0.0' in text
    for name in [
        "pec_ingest_messages_total",
        "pec_ingest_bytes_total",
        "pec_ingest_fetch_duration_seconds_bucket",
        "pec_imap_connected_mailboxes",
        'pec_ingest_cursor_lag_messages{folder="INBOX",mailbox="comune-x"} 3.0',
    ]:
        assert name in text


def test_two_registries_do_not_collide() -> None:
    """Creating the metrics twice on fresh registries works (no global state)."""
    IngestMetrics(CollectorRegistry())
    IngestMetrics(CollectorRegistry())
