"""Backfill progress: done / to do per mailbox and in total, the ETA, the metrics, the bar."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.progress import Progress, bar
from pipeline.contracts.metrics import BackfillMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_totals_metrics_and_eta_follow_the_syncs() -> None:
    registry, clock = CollectorRegistry(), Clock()
    progress = Progress(BackfillMetrics(registry), mailboxes=2, window=10.0, clock=clock)

    def sample(name: str, mailbox: str | None = None) -> float | None:
        return registry.get_sample_value(name, {"mailbox": mailbox} if mailbox else {})

    progress.start("a", "INBOX", 300)
    progress.start("a", "Sent", 100)
    progress.start("b", "INBOX", 600)
    assert progress.snapshot().eta_seconds == -1  # no rate yet
    clock.now = 2.0
    progress.advance("a", "INBOX", 100)  # 50 msg/s
    snap = progress.snapshot()
    assert (snap.done, snap.todo) == (100, 900)
    assert snap.eta_seconds == 900 / 50
    assert sample("pec_backfill_messages_todo", "a") == 300
    assert sample("pec_backfill_messages_todo", "b") == 600
    assert sample("pec_backfill_messages_done_total", "a") == 100
    assert sample("pec_backfill_eta_seconds") == 18
    clock.now = 12.0  # ten seconds without progress: the rate decays, the ETA grows
    assert progress.snapshot().eta_seconds > 18
    progress.advance("a", "INBOX", 500)  # more than listed: capped at what was left
    progress.finish("a", "Sent")  # expunged meanwhile: the rest is dropped
    progress.mark_synced("a")
    snap = progress.snapshot()
    assert (snap.done, snap.todo, snap.mailboxes_synced) == (300, 600, 1)
    assert sample("pec_backfill_messages_todo", "a") == 0
    progress.finish("b", "INBOX")
    assert progress.snapshot().eta_seconds == 0  # nothing left to do
    assert sample("pec_backfill_eta_seconds") == 0


def test_bar_shows_share_rate_eta_and_mailboxes() -> None:
    clock = Clock()
    progress = Progress(mailboxes=3, clock=clock)
    progress.start("a", "INBOX", 1000)
    clock.now = 1.0
    progress.advance("a", "INBOX", 250)
    line = bar(progress.snapshot(), width=20)
    assert line.startswith("[#####...............] 250/1,000 msgs  25%")
    assert "250 msg/s" in line
    assert "ETA 0:00:03" in line
    assert line.endswith("mailboxes 0/3")
