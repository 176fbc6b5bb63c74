"""Cut the UIDs to fetch into bounded batches: by count and by summed RFC822.SIZE.

Bounded batches keep every response, and so the agent's memory, small (aioimaplib's own
reader also recursed once per line: :mod:`agents.imap.protocol` replaces it with a loop). Messages
over the size limit are never fetched whole: they go to the dead-letter topic::

    >>> plan_batches([(1, 10), (2, 900), (3, 10)], max_messages=10, max_bytes=100,
    ...              max_message_bytes=500)
    (FetchBatch(uids=(1,), nbytes=10), Oversized(uid=2, size=900), FetchBatch(uids=(3,), nbytes=10))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["FetchBatch", "Oversized", "chunked", "plan_batches", "shrink", "uid_set"]


@dataclass(frozen=True, slots=True)
class FetchBatch:
    """UIDs to fetch with one ``UID FETCH``, in ascending order."""

    uids: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class Oversized:
    """A message larger than the limit: dead-lettered with its size, not fetched."""

    uid: int
    size: int


def plan_batches(
    sizes: Iterable[tuple[int, int]],
    *,
    max_messages: int,
    max_bytes: int,
    max_message_bytes: int,
) -> tuple[FetchBatch | Oversized, ...]:
    """Group ``(uid, size)`` pairs (ascending UID) into batches, keeping UID order.

    A batch closes when adding a message would pass ``max_messages`` or ``max_bytes``; a
    single message bigger than ``max_bytes`` but within ``max_message_bytes`` is a batch
    of its own. An oversized message closes the current batch so the cursor can advance
    over it in order.
    """
    out: list[FetchBatch | Oversized] = []
    uids: list[int] = []
    total = 0
    for uid, size in sorted(sizes):
        if size > max_message_bytes:
            if uids:
                out.append(FetchBatch(tuple(uids), total))
                uids, total = [], 0
            out.append(Oversized(uid, size))
            continue
        if uids and (len(uids) >= max_messages or total + size > max_bytes):
            out.append(FetchBatch(tuple(uids), total))
            uids, total = [], 0
        uids.append(uid)
        total += size
    if uids:
        out.append(FetchBatch(tuple(uids), total))
    return tuple(out)


def chunked(uids: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    """Consecutive slices of at most ``size`` UIDs."""
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


def uid_set(uids: Iterable[int]) -> str:
    """IMAP sequence-set for UIDs, runs collapsed: ``[1, 2, 3, 7]`` -> ``"1:3,7"``."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid != prev + 1:
            parts.append(f"{start}:{prev}" if prev != start else str(start))
            start = uid
        prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def shrink(max_messages: int) -> int:
    """Batch size after a response aioimaplib could not parse: a quarter, at least 1.

    Resuming with the same batch would fail the same way forever; a smaller one succeeds
    (one message per FETCH is always parseable).
    """
    return max(1, max_messages // 4)
