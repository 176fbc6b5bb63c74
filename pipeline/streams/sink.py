"""Where processors send records: faust topics in a worker, a recording fake in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Headers = list[tuple[str, bytes]]


class Sink(Protocol):
    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers | None = None
    ) -> None:
        """Send one record and return once the broker has acknowledged it."""


@dataclass
class FaustSink:
    """Sends through the app's producer and waits for the acknowledgement (acks=all).

    Waiting matters: the correlate processor updates its table only after its events are
    acknowledged, so a crash in between re-emits (same event ids) instead of losing them.
    """

    topics: dict[str, Any]

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers | None = None
    ) -> None:
        pending = await self.topics[topic].send(key=key, value=value, headers=headers)
        await pending


@dataclass
class RecordingSink:
    """A fake at the boundary: keeps what was sent, per topic."""

    sent: dict[str, list[tuple[bytes, bytes, Headers]]] = field(default_factory=dict)

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers | None = None
    ) -> None:
        self.sent.setdefault(topic, []).append((key, value, list(headers or [])))
