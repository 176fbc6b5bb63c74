"""Batch plan: bounded by count and bytes, UID order kept, oversized messages set apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.fetch_batches import FetchBatch, Oversized, chunked, plan_batches, shrink, uid_set


def test_batches_close_on_count_and_bytes() -> None:
    """A batch closes at max_messages or before passing max_bytes."""
    sizes = [(1, 40), (2, 40), (3, 40), (4, 10), (5, 10), (6, 10)]
    steps = plan_batches(sizes, max_messages=3, max_bytes=100, max_message_bytes=1000)
    assert steps == (
        FetchBatch((1, 2), 80),
        FetchBatch((3, 4, 5), 60),
        FetchBatch((6,), 10),
    )


def test_single_message_above_batch_bytes_is_its_own_batch() -> None:
    """A message bigger than max_bytes but within the limit is fetched alone."""
    steps = plan_batches([(1, 5), (2, 500)], max_messages=10, max_bytes=100, max_message_bytes=600)
    assert steps == (FetchBatch((1,), 5), FetchBatch((2,), 500))


def test_oversized_message_splits_batches_in_order() -> None:
    """An oversized message sits between the batches around it, in UID order."""
    steps = plan_batches(
        [(3, 10), (1, 10), (2, 900)], max_messages=10, max_bytes=100, max_message_bytes=500
    )
    assert steps == (FetchBatch((1,), 10), Oversized(2, 900), FetchBatch((3,), 10))


@given(
    st.dictionaries(st.integers(1, 10_000), st.integers(0, 5000), max_size=200),
    st.integers(1, 50),
    st.integers(1, 20_000),
    st.integers(0, 6000),
)
def test_plan_covers_every_uid_once_within_bounds(
    sizes: dict[int, int], max_messages: int, max_bytes: int, max_message_bytes: int
) -> None:
    """Every UID appears exactly once, ascending; every batch respects its bounds."""
    steps = plan_batches(
        sizes.items(),
        max_messages=max_messages,
        max_bytes=max_bytes,
        max_message_bytes=max_message_bytes,
    )
    order: list[int] = []
    for step in steps:
        if isinstance(step, Oversized):
            assert step.size > max_message_bytes
            order.append(step.uid)
            continue
        assert 1 <= len(step.uids) <= max_messages
        assert step.nbytes == sum(sizes[u] for u in step.uids)
        assert len(step.uids) == 1 or step.nbytes <= max_bytes
        order.extend(step.uids)
    assert order == sorted(sizes)


@given(st.sets(st.integers(1, 500), min_size=1))
def test_uid_set_round_trips(uids: set[int]) -> None:
    """The IMAP sequence-set names exactly the given UIDs."""
    named: set[int] = set()
    for part in uid_set(uids).split(","):
        low, _, high = part.partition(":")
        named.update(range(int(low), int(high or low) + 1))
    assert named == uids


def test_uid_set_collapses_runs() -> None:
    """Consecutive UIDs become ranges."""
    assert uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"


def test_chunked_and_shrink() -> None:
    """chunked slices without loss; shrink quarters the batch but never below 1."""
    assert [list(c) for c in chunked([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    assert (shrink(100), shrink(3), shrink(1)) == (25, 1, 1)
