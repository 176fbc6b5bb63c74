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


@dataclass(frozen=True, slots=True)
class StreamSettings:
    broker: str = "127.0.0.1:9092"
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
    log_level: str = "warning"

    @property
    def acceptance_timeout(self) -> timedelta:
        return timedelta(seconds=self.acceptance_timeout_seconds)

    @property
    def delivery_window(self) -> timedelta:
        return timedelta(seconds=self.delivery_window_seconds)

    def validate(self) -> StreamSettings:
        if self.partitions < 1 or self.batch_size < 1 or self.fetch_wait_ms < 1:
            raise ValueError("partitions, batch_size and fetch_wait_ms must be at least 1")
        if self.verify_processes < 0:
            raise ValueError("verify_processes must be 0 (the event loop) or more")
        if self.deadline_clock not in ("wall", "event"):
            raise ValueError(
                f"deadline_clock must be 'wall' or 'event', not {self.deadline_clock!r}"
            )
        return self


def from_environment(
    base: StreamSettings | None = None, env: dict[str, str] | None = None
) -> StreamSettings:
    """Override defaults with ``PECTRACK_<FIELD>`` variables (``PECTRACK_BROKER=...``)."""
    source = os.environ if env is None else env
    settings = base or StreamSettings()
    changes: dict[str, Any] = {}
    for item in fields(StreamSettings):
        value = source.get(f"PECTRACK_{item.name.upper()}")
        if value is None:
            continue
        current = getattr(settings, item.name)
        if isinstance(current, bool):
            changes[item.name] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, int) or item.name == "metrics_port":
            changes[item.name] = int(value) if value else None
        elif isinstance(current, float):
            changes[item.name] = float(value)
        else:
            changes[item.name] = value
    return replace(settings, **changes).validate()
