"""Spread mailboxes over agent processes: ``--shard 2/8`` takes the 2nd of 8 shares (pure).

The share of a mailbox depends on its id only (CRC-32, stable across Python runs and
hosts), so adding a mailbox to the config never moves the others.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["Shard", "parse_shard"]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


@dataclass(frozen=True, slots=True)
class Shard:
    """Share ``index`` (1-based) of ``count``."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 1 <= index <= count")

    def owns(self, mailbox_id: str) -> bool:
        return zlib.crc32(mailbox_id.encode()) % self.count == self.index - 1

    def select(self, items: Iterable[T]) -> tuple[T, ...]:
        return tuple(item for item in items if self.owns(item.id))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/8"`` -> ``Shard(2, 8)``; ``ValueError`` for anything else."""
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(f"shard must look like K/N, got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


SHARD_ENV = "PECTRACK_SHARD"
SHARD_COUNT_ENV = "PECTRACK_SHARD_COUNT"
_AUTO = re.compile(r"^\s*auto\s*(?:/\s*(\d+)\s*)?$")
_ORDINAL = re.compile(r"-(\d+)$")


def shard_from_ordinal(hostname: str, count: int) -> Shard:
    """``"pectrack-agent-2"``, 4 -> ``Shard(3, 4)``; ``ValueError`` naming the problem."""
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    if match is None:
        raise ValueError(
            f"--shard auto: host name {hostname!r} does not end in -<ordinal> "
            "(run the agent as a StatefulSet pod, or give --shard K/N)"
        )
    ordinal = int(match.group(1))
    if count < 1:
        raise ValueError(f"--shard auto: the shard count must be at least 1, not {count}")
    if ordinal >= count:
        raise ValueError(
            f"--shard auto: pod ordinal {ordinal} is outside {count} shards "
            f"(set {SHARD_COUNT_ENV} to the StatefulSet's replicas)"
        )
    return Shard(ordinal + 1, count)


def resolve_shard(
    given: str | None, environ: Mapping[str, str], hostname: str | None = None
) -> Shard:
    """The share from ``--shard`` (else ``PECTRACK_SHARD``, else all mailboxes).

    ``K/N`` is taken as is; ``auto`` or ``auto/N`` reads the pod ordinal from the host
    name (``HOSTNAME``, else ``hostname``), N from ``auto/N`` or ``PECTRACK_SHARD_COUNT``.
    """
    text = given if given is not None else environ.get(SHARD_ENV, "").strip()
    if not text:
        return Shard()
    auto = _AUTO.match(text)
    if auto is None:
        return parse_shard(text)
    count_text = auto.group(1) or environ.get(SHARD_COUNT_ENV, "").strip()
    if not count_text.isdigit():
        raise ValueError(f"--shard auto needs N: give auto/N or set {SHARD_COUNT_ENV}")
    host = environ.get("HOSTNAME") or hostname
    if not host:
        raise ValueError("--shard auto: no host name (set HOSTNAME)")
    return shard_from_ordinal(host, int(count_text))
