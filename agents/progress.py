"""How far a backfill has come: messages done / to do per mailbox and in total, and an ETA.

A folder's sync lists the UIDs to read (``start``), then each acknowledged batch moves
``advance``; ``finish`` drops what was left (expunged meanwhile, or a sync cut short by a
failure: the next sync lists it again). The same numbers feed the metrics
(``pec_backfill_*``, the dashboard's "Backfill" row), the periodic ``backfill.progress``
log line and ``pectrack agent --once``'s progress bar. The ETA is the messages still to
do over the rate of the last ``window`` seconds (an exponentially weighted rate)::

    >>> p = Progress(clock=iter([0.0, 10.0, 10.0]).__next__)
    >>> p.start("a", "INBOX", 1000)
    >>> p.advance("a", "INBOX", 100)
    >>> p.snapshot().eta_seconds
    90.0
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from agents.logs import log_event
from pipeline.contracts.metrics import BackfillMetrics

__all__ = ["Progress", "Snapshot", "bar"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Totals over every mailbox of the process."""

    done: int  # messages published by syncs since the agent started
    todo: int  # messages listed by the syncs under way, not yet published
    rate: float  # messages per second, recent
    eta_seconds: float  # todo / rate; 0 when nothing is left; -1 while the rate is unknown
    mailboxes_synced: int
    mailboxes: int


class Progress:
    """Per mailbox and folder: listed, done. Not thread-safe: one asyncio loop."""

    def __init__(
        self,
        metrics: BackfillMetrics | None = None,
        *,
        mailboxes: int = 0,
        window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.mailboxes = mailboxes
        self.window = window
        self._clock = clock
        self._todo: dict[tuple[str, str], int] = {}
        self._done_by_box: dict[str, int] = {}
        self._todo_by_box: dict[str, int] = {}
        self.synced: set[str] = set()  # mailboxes whose every folder synced once
        self.done = 0
        self.todo = 0
        self._rate = 0.0
        self._rate_known = False
        self._last = clock()

    def start(self, mailbox: str, folder: str, total: int) -> None:
        self._set(mailbox, folder, total)

    def advance(self, mailbox: str, folder: str, count: int) -> None:
        left = self._todo.get((mailbox, folder), 0)
        count = min(count, left)
        self._set(mailbox, folder, left - count)
        self.done += count
        self._done_by_box[mailbox] = self._done_by_box.get(mailbox, 0) + count
        if self.metrics is not None:
            self.metrics.done.labels(mailbox).inc(count)
        self._observe(count)

    def finish(self, mailbox: str, folder: str) -> None:
        self._set(mailbox, folder, 0)

    def mark_synced(self, mailbox: str) -> None:
        self.synced.add(mailbox)

    def _set(self, mailbox: str, folder: str, todo: int) -> None:
        key = (mailbox, folder)
        delta = todo - self._todo.get(key, 0)
        if todo:
            self._todo[key] = todo
        else:
            self._todo.pop(key, None)
        self.todo += delta
        box_todo = self._todo_by_box.get(mailbox, 0) + delta
        self._todo_by_box[mailbox] = box_todo
        if self.metrics is not None:
            self.metrics.todo.labels(mailbox).set(box_todo)
            self.metrics.done.labels(mailbox)  # the series exists from the first sync

    def _observe(self, count: int) -> None:
        now = self._clock()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        instant = count / elapsed
        weight = 1.0 - math.exp(-elapsed / self.window)
        if self._rate_known:
            self._rate += weight * (instant - self._rate)
        else:
            self._rate, self._rate_known = instant, True

    def snapshot(self) -> Snapshot:
        if not self.todo:
            eta = 0.0
        elif self._rate_known and self._rate > 0:
            # the rate decays while nothing moves: a stalled backfill shows a growing ETA
            idle = max(self._clock() - self._last, 0.0)
            rate = self._rate * math.exp(-idle / self.window)
            eta = self.todo / rate if rate > 0 else -1.0
        else:
            eta = -1.0
        if self.metrics is not None:
            self.metrics.eta.set(eta)
        return Snapshot(
            done=self.done,
            todo=self.todo,
            rate=self._rate if self._rate_known else 0.0,
            eta_seconds=eta,
            mailboxes_synced=len(self.synced),
            mailboxes=self.mailboxes,
        )

    def log(self) -> Snapshot:
        """Log one ``backfill.progress`` line (and refresh the ETA gauge)."""
        snap = self.snapshot()
        log_event(log, logging.INFO, "backfill.progress", done=snap.done, todo=snap.todo,
                  rate=round(snap.rate, 1), eta_seconds=round(snap.eta_seconds),
                  mailboxes_synced=snap.mailboxes_synced, mailboxes=snap.mailboxes)  # fmt: skip
        return snap


def bar(snap: Snapshot, width: int = 30) -> str:
    """One terminal line: ``[#####.....]  1,234/5,678 msgs  22%  310 msg/s  ETA 0:00:14``."""
    total = snap.done + snap.todo
    share = snap.done / total if total else 1.0
    filled = round(share * width)
    eta = _clock_text(snap.eta_seconds) if snap.eta_seconds >= 0 else "--:--:--"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {snap.done:,}/{total:,} msgs {share:4.0%}"
        f"  {snap.rate:,.0f} msg/s  ETA {eta}"
        f"  mailboxes {snap.mailboxes_synced}/{snap.mailboxes}"
    )


def _clock_text(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
