"""The workers' clock: what ``now`` is for deadlines and retention, and the index's unit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["EventClock", "micros"]


@dataclass
class EventClock:
    """``now`` for deadlines: the wall clock, or the newest daticert time seen ("event")."""

    mode: str
    wall: Callable[[], datetime] | None = field(default=None, repr=False)
    newest: datetime | None = None

    def observe(self, at: datetime | None) -> None:
        if at is not None and (self.newest is None or at > self.newest):
            self.newest = at

    def now(self) -> datetime | None:
        if self.mode == "event":
            return self.newest
        return self.wall() if self.wall is not None else None


def micros(at: datetime) -> int:
    """Microseconds since the epoch: the due-time index's clock."""
    return int(at.timestamp() * 1_000_000)
