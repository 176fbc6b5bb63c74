"""Reconnect backoff (exponential, jittered, capped) and mailbox sharding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.backoff import Backoff
from agents.shard import Shard, parse_shard


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    """1, 2, 4, 8 ... then flat at the cap; huge attempts don't overflow."""
    policy = Backoff(base=1.0, cap=30.0)
    assert [policy.ceiling(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10_000) == 30.0


@given(st.integers(0, 200), st.floats(0, 1, exclude_max=True))
def test_backoff_delay_stays_within_floor_and_ceiling(attempt: int, draw: float) -> None:
    """Full jitter: the delay is in [floor, ceiling(attempt)]."""
    policy = Backoff(base=0.5, cap=300.0, floor=0.05)
    delay = policy.delay(attempt, lambda: draw)
    assert policy.floor <= delay <= policy.ceiling(attempt)


def test_backoff_jitter_spreads_delays() -> None:
    """Different random draws give different delays at the same attempt."""
    policy = Backoff(base=1.0, cap=60.0)
    assert policy.delay(5, lambda: 0.1) < policy.delay(5, lambda: 0.9)


def test_parse_shard() -> None:
    """``K/N`` parses; out-of-range or malformed shards are rejected."""
    assert parse_shard("2/8") == Shard(2, 8)
    for bad in ["0/8", "9/8", "2", "a/b", "2/0"]:
        with pytest.raises(ValueError):
            parse_shard(bad)


class _Box:
    def __init__(self, box_id: str) -> None:
        self.id = box_id


def test_shards_partition_the_mailboxes() -> None:
    """Every mailbox belongs to exactly one of N shards, and the split is not lopsided."""
    boxes = [_Box(f"box-{n:04d}") for n in range(1000)]
    shares = [Shard(k, 4).select(boxes) for k in range(1, 5)]
    owned = [b.id for share in shares for b in share]
    assert sorted(owned) == sorted(b.id for b in boxes)
    assert all(200 < len(share) < 300 for share in shares)


def test_shard_is_stable_when_mailboxes_are_added() -> None:
    """Adding a mailbox never moves existing ones to another shard."""
    shard = Shard(3, 8)
    before = {b.id for b in shard.select([_Box(f"m{n}") for n in range(100)])}
    after = {b.id for b in shard.select([_Box(f"m{n}") for n in range(150)])}
    assert before <= after
