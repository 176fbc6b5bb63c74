"""Where processors send records: faust topics in a worker, a recording fake in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone
    headers: Headers | None = None
    partition: int | None = None


def dead_letter(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str = "",
    *,
    source: Mapping[str, bytes] | None = None,
) -> Record:
    """A record for ``pec.dlq``: the input unchanged, its ``source`` headers (those of the
    input record) and ``reason`` (a bounded code, the ``pec_dlq_total`` label) and
    ``detail`` (what exactly was wrong), replacing any a replayed dead letter carried."""
    headers: Headers = [
        (name, data) for name, data in (source or {}).items() if name not in ("reason", "detail")
    ]
    headers.append(("reason", reason.encode()))
    if detail:
        headers.append(("detail", detail[:200].encode()))
    return Record(topic, key or b"", value or b"", headers)


class Sink(Protocol):
    async def send_all(self, records: Sequence[Record]) -> list[int]:
        """Send records in order; return once the broker acknowledged every one, with
        the offset each got."""


@dataclass
class FaustSink:
    """Sends through the app's producer now and waits for the acknowledgement (acks=all).

    ``force=True`` matters: by default faust *attaches* a message sent inside an agent to
    the source offset and publishes it only at the next commit, while table changelog
    writes flush on their own schedule. A worker killed in between would then have its
    table updated but its events never sent, and the replay would see a duplicate and
    send nothing: lost events. Sending now and awaiting the ack, before the table write,
    turns that crash into a replay of the same event ids instead.
    """

    topics: dict[str, Any]

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        # Enqueue in order (the producer keeps per-partition order), then wait for all
        # acknowledgements together: one round trip for a batch, not one per record.
        pending = [
            await self.topics[r.topic].send(
                key=r.key, value=r.value, headers=r.headers, partition=r.partition, force=True
            )
            for r in records
        ]
        if not pending:
            return []
        return [metadata.offset for metadata in await asyncio.gather(*pending)]


@dataclass
class RecordingSink:
    """A fake at the boundary: keeps what was sent, per topic."""

    sent: dict[str, list[tuple[bytes, bytes | None, Headers]]] = field(default_factory=dict)
    partitions: dict[str, list[int | None]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # topics in the order sent

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        offsets = []
        for r in records:
            sent = self.sent.setdefault(r.topic, [])
            offsets.append(len(sent))  # one offset sequence per topic
            sent.append((r.key, r.value, list(r.headers or [])))
            self.partitions.setdefault(r.topic, []).append(r.partition)
            self.order.append(r.topic)
        return offsets
