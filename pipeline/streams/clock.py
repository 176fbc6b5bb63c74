"""The workers' clock: what ``now`` is for deadlines and retention, and the index's unit.

With ``--deadline-clock event`` (replays, backfills, the demo) time is the data's own:
daticert and submission times. A backfill reads a mailbox's Sent folder before its
INBOX and many mailboxes side by side, so the newest time seen over all of them runs
ahead of receipts that are still to be read: judging a message's deadlines by it
flagged nearly every message of the history overdue, to clear each flag again a moment
later (the "storm", bench.replay). So two clocks:

* ``now()``, the newest data time seen: retention and orphan expiry, as before;
* ``deadline_now(mailbox)``, the newest *verified receipt* time seen for that mailbox
  (never a Sent copy, never a suspect message): overdue flags. A mailbox's receipts are
  read in the order they arrived, so by the time its clock passes a message's deadline,
  that message's own receipts (which arrived before) have been read. The cost: a
  mailbox whose receipts stop altogether gets its flags only when time moves for it
  (a later receipt, or :meth:`EventClock.advance`).

With the wall clock both are the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["EventClock", "micros"]


@dataclass
class EventClock:
    """``now`` for deadlines: the wall clock, or data time ("event", see the module)."""

    mode: str
    wall: Callable[[], datetime] | None = field(default=None, repr=False)
    newest: datetime | None = None  # the newest data time seen, any mailbox
    floor: datetime | None = None  # a time every mailbox has reached (advance())
    receipts: dict[str, datetime] = field(default_factory=dict, repr=False)

    def observe(self, at: datetime | None) -> None:
        """A data time seen (an event's): moves ``now()``."""
        if at is not None and (self.newest is None or at > self.newest):
            self.newest = at

    def observe_receipt(self, mailbox: str, at: datetime | None) -> None:
        """A verified receipt's daticert time in ``mailbox``: moves its deadline clock."""
        if at is None:
            return
        self.observe(at)
        known = self.receipts.get(mailbox)
        if known is None or at > known:
            self.receipts[mailbox] = at

    def advance(self, at: datetime) -> None:
        """Time reached ``at`` for every mailbox (tests; a watermark from outside)."""
        self.observe(at)
        if self.floor is None or at > self.floor:
            self.floor = at

    def now(self) -> datetime | None:
        if self.mode == "event":
            return self.newest
        return self.wall() if self.wall is not None else None

    def deadline_now(self, mailbox: str) -> datetime | None:
        """``now`` for the overdue flags of ``mailbox``'s messages."""
        if self.mode != "event":
            return self.now()
        own, floor = self.receipts.get(mailbox), self.floor
        if own is None or (floor is not None and floor > own):
            return floor
        return own


def micros(at: datetime) -> int:
    """Microseconds since the epoch: the due-time index's clock."""
    return int(at.timestamp() * 1_000_000)
