"""The verify processor: ``pec.raw`` -> parse + verify -> ``pec.receipts`` or ``pec.dlq``.

Stateless, so it runs with concurrency > 1. A record's Kafka headers say where the mail
came from (``mailbox``, ``folder``, ``internal-date``: see ``agents.records``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.codec import dumps, observation_to_dict
from pipeline.core.examine import examine
from pipeline.core.observation import Ignored, Unroutable, observe_message
from pipeline.core.parse import Limits
from pipeline.core.trust import TrustStore
from pipeline.metrics import StreamMetrics
from pipeline.settings import StreamSettings
from pipeline.streams.sink import Headers, Record, Sink


@dataclass
class Verifier:
    settings: StreamSettings
    trust: TrustStore
    sink: Sink
    metrics: StreamMetrics

    async def handle(
        self, key: bytes | None, raw: bytes | None, headers: Mapping[str, bytes]
    ) -> None:
        await self.sink.send_all(self.plan(key, raw, headers))

    async def handle_batch(
        self, batch: Sequence[tuple[bytes | None, bytes | None, Mapping[str, bytes]]]
    ) -> None:
        """Verify a batch; return once every resulting record is acknowledged."""
        await self.sink.send_all([r for item in batch for r in self.plan(*item)])

    def plan(
        self, key: bytes | None, raw: bytes | None, headers: Mapping[str, bytes]
    ) -> list[Record]:
        """The records one raw message leads to (none for mail that is ignored)."""
        self.metrics.processed.labels("verify").inc()
        mailbox = _text(headers.get("mailbox")) or _text(key)
        folder = _text(headers.get("folder")) or "INBOX"
        if not mailbox or raw is None:
            return [self._dead_letter(key, raw or b"", headers, "no-mailbox-or-value")]
        examined = examine(
            raw, self.trust, Limits(max_message_bytes=self.settings.max_message_bytes)
        )
        received = _date(_text(headers.get("internal-date")))
        outcome = observe_message(examined, mailbox, folder, received)
        if isinstance(outcome, Unroutable):
            return [self._dead_letter(key, raw, headers, outcome.reason)]
        if isinstance(outcome, Ignored):
            self.metrics.ignored.labels(outcome.reason).inc()
            return []
        value = dumps(observation_to_dict(outcome))
        return [Record(self.settings.receipts_topic, outcome.key.encode(), value)]

    def _dead_letter(
        self, key: bytes | None, raw: bytes, headers: Mapping[str, bytes], reason: str
    ) -> Record:
        out: Headers = [(name, value) for name, value in headers.items() if name != "reason"]
        out.append(("reason", reason.encode()))
        self.metrics.dlq.labels(reason).inc()
        return Record(self.settings.dlq_topic, key or b"", raw, out)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return value.strip()


def _date(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
