"""Where a lost message or a doubled event went: what the chaos test prints on failure.

::

    offset_gaps(await read_all(bootstrap, "pec.raw"))   # ["pec.raw/2: holes [(228, 233)]"]

Everything here reads Kafka as a consumer would, and describes; nothing asserts.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

import orjson
from aiokafka.structs import ConsumerRecord

from tests.support.kafka import header

__all__ = [
    "cursor_history",
    "event_lines",
    "missing_uids",
    "offset_gaps",
]


def offset_gaps(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """Holes and repeats in the offsets read from each partition of one topic."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    topic = ""
    for record in records:
        topic = record.topic
        by_partition[record.partition].append(record.offset)
    out = []
    for partition, offsets in sorted(by_partition.items()):
        repeated = sorted(o for o, n in Counter(offsets).items() if n > 1)
        if repeated:
            out.append(f"{topic}/{partition}: offsets read twice {repeated[:10]}")
        ordered = sorted(set(offsets))
        holes = [(a, b) for a, b in itertools.pairwise(ordered) if b != a + 1]
        if holes:
            out.append(f"{topic}/{partition}: holes {holes[:10]}")
    return out


def missing_uids(
    in_imap: Mapping[tuple[str, str], Iterable[int]],
    raw: Iterable[ConsumerRecord[bytes, bytes]],
) -> dict[tuple[str, str], list[int]]:
    """(mailbox, folder) -> UIDs Dovecot holds that no ``pec.raw`` record carries."""
    published: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in raw:
        published[(header(r, "mailbox"), header(r, "folder"))].add(int(header(r, "uid")))
    out = {}
    for folder, uids in in_imap.items():
        gone = sorted(set(uids) - published[folder])
        if gone:
            out[folder] = gone
    return out


def cursor_history(
    records: Iterable[ConsumerRecord[bytes, bytes]], mailbox: str, folder: str
) -> list[str]:
    """Every cursor record of one folder, in offset order: ``offset:last_uid``."""
    key = f"{mailbox}/{folder}".encode()
    return [
        f"{r.offset}:{orjson.loads(r.value).get('last_uid')}"
        for r in records
        if r.key == key and r.value
    ]


def event_lines(values: Iterable[bytes], keys: set[str]) -> list[str]:
    """Every state-change event (with its id) about one of ``keys``, as read."""
    out = []
    for value in values:
        event = orjson.loads(value)
        data = event["data"]
        if data["key"] in keys:
            out.append(
                f"{event['id']} {data['key']} {data.get('recipient')} "
                f"{event['type']} {data['from_state']}->{data['to_state']} "
                f"receipt={data.get('receipt_id') or data.get('receipt')}"
            )
    return out
