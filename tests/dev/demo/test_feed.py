"""The demo's endless traffic feed: one timeline, released by simulated time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.core.model import Kind
from pipeline.dev.demo.feed import MEAN_GAP_SECONDS, SimClock, TrafficFeed, demo_mailboxes
from pipeline.simulate import generate_traffic
from pipeline.simulate.traffic import SENT

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_demo_mailboxes_are_the_generators_mailboxes() -> None:
    """Every mailbox the generator stores mail in is one the demo creates up front."""
    boxes = demo_mailboxes(30)
    assert len(set(boxes)) == 30
    items = generate_traffic(3, 120, 30, START)
    assert {item.mailbox for item in items} <= set(boxes)


def test_feed_releases_items_in_arrival_order_and_never_early() -> None:
    """Across many chunks, items come out oldest first and only once their time has come."""
    feed = TrafficFeed(seed=5, mailboxes=20, start=START, chunk=4)
    released = []
    for step in range(1, 200):
        now = START + timedelta(minutes=10 * step)
        batch = feed.due(now)
        assert all(item.arrival_time <= now for item in batch)
        released += batch
    times = [item.arrival_time for item in released]
    assert times == sorted(times)
    assert feed.submitted > 40  # many chunks were generated
    assert feed.released == len(released)


def test_chunks_continue_one_timeline() -> None:
    """Each chunk's submissions start after the previous chunk's, so msgids never repeat."""
    feed = TrafficFeed(seed=2, mailboxes=10, start=START, chunk=3)
    items = feed.due(START + timedelta(days=3))
    sent = [item for item in items if item.folder == SENT and item.truth.kind is Kind.NOT_PEC]
    msgids = [item.truth.msgid for item in sent]
    assert len(msgids) == len(set(msgids)) > 20
    submitted = [item.truth.timestamp for item in sent if item.truth.timestamp is not None]
    assert min(submitted) >= START


def test_feed_counts_forged_and_tampered_items() -> None:
    """The faulty counter matches the items with a fault (a few forged or tampered)."""
    feed = TrafficFeed(seed=9, mailboxes=10, start=START, chunk=20, attachment_size=0)
    items = feed.due(START + timedelta(days=1))
    assert feed.faulty == sum(1 for item in items if item.truth.fault is not None) > 0


def test_sim_clock_runs_speed_times_faster() -> None:
    """Two wall-clock seconds at 460x are 920 simulated seconds; rate 5 means 2300x."""
    clock = SimClock(START, origin=100.0, speed=460.0)
    assert clock.at(102.0) == START + timedelta(seconds=920)
    assert TrafficFeed.speed_for(5.0) == 5.0 * MEAN_GAP_SECONDS == 2300.0
