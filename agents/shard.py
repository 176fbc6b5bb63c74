"""Spread mailboxes over agent processes: ``--shard 2/8`` takes the 2nd of 8 shares (pure).

The share of a mailbox depends on its id only (CRC-32, stable across Python runs and
hosts), so adding a mailbox to the config never moves the others.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
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
