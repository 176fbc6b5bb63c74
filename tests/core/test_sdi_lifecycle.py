"""The SdI lifecycle table: complete, monotone, idempotent, order-insensitive."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.sdi_lifecycle import (
    TRANSITIONS,
    InvoiceState,
    InvoiceTrack,
    SdiEvent,
    SdiOutcome,
    apply,
    implied_state,
    new_invoice,
)

RANK = list(InvoiceState)  # declared in rank order


def fold(items: list[tuple[SdiEvent, str]]) -> InvoiceTrack:
    track = new_invoice("IT01234567890_0A1B2.xml")
    for event, nid in items:
        track, _ = apply(track, event, nid, identificativo_sdi=f"47{len(nid)}")
    return track


def test_table_is_complete() -> None:
    """Every (state, event) pair has an explicit entry."""
    assert {(s, e) for s in InvoiceState for e in SdiEvent} == set(TRANSITIONS)


def test_table_is_the_higher_rank() -> None:
    """Every entry leads to the higher of the current state and the event's own state,
    so the table never moves down and the final state is order-insensitive."""
    for (before, event), (after, _outcome) in TRANSITIONS.items():
        target = implied_state(event)
        assert RANK.index(after) == max(RANK.index(before), RANK.index(target)), (before, event)


def test_real_sequences() -> None:
    """RC then NE EC01 accepts; MC then RC delivers (the SdI's retry); NS rejects."""
    assert (
        fold([(SdiEvent.CONSEGNA, "rc"), (SdiEvent.ACCETTAZIONE, "ne")]).state
        is InvoiceState.ACCEPTED
    )
    assert (
        fold([(SdiEvent.MANCATA_CONSEGNA, "mc"), (SdiEvent.CONSEGNA, "rc")]).state
        is InvoiceState.DELIVERED
    )
    assert (
        fold([(SdiEvent.MANCATA_CONSEGNA, "mc"), (SdiEvent.ATTESTAZIONE, "at")]).state
        is InvoiceState.NOT_DELIVERED
    )
    assert (
        fold([(SdiEvent.CONSEGNA, "rc"), (SdiEvent.DECORRENZA, "dt")]).state
        is InvoiceState.DEADLINE_PASSED
    )
    assert fold([(SdiEvent.SCARTO, "ns")]).state is InvoiceState.REJECTED


def test_outcomes() -> None:
    """An outcome before its RC is out of order, the RC after it stale, EC01 vs EC02 a
    conflict."""
    track, first = apply(new_invoice("f.xml"), SdiEvent.ACCETTAZIONE, "ne")
    assert first.outcome is SdiOutcome.OUT_OF_ORDER
    track, late = apply(track, SdiEvent.CONSEGNA, "rc")
    assert (late.outcome, track.state) == (SdiOutcome.STALE, InvoiceState.ACCEPTED)
    track, conflict = apply(track, SdiEvent.RIFIUTO, "ne2")
    assert (conflict.outcome, track.state) == (SdiOutcome.CONFLICT, InvoiceState.ACCEPTED)
    again, duplicate = apply(track, SdiEvent.RIFIUTO, "ne2")
    assert (duplicate.outcome, again) == (SdiOutcome.DUPLICATE, track)


# A notification id names one notification, which means one event: ids embed the event.
notifications = st.lists(
    st.tuples(st.sampled_from(list(SdiEvent)), st.sampled_from(["a", "bb", "ccc", "dddd"])),
    max_size=10,
).map(lambda items: [(event, f"{event.value}-{nid}") for event, nid in items])


@given(notifications, st.randoms(use_true_random=False))
def test_final_state_is_order_insensitive(items: list[tuple[SdiEvent, str]], rnd: object) -> None:
    """Any permutation of the same notifications ends in the same state and SdI id."""
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    one, other = fold(items), fold(shuffled)
    assert (one.state, one.identificativo_sdi) == (other.state, other.identificativo_sdi)


@given(notifications)
def test_applying_everything_twice_is_idempotent(items: list[tuple[SdiEvent, str]]) -> None:
    """Re-reading every notification after the first pass changes nothing."""
    track = fold(items)
    again = track
    for event, nid in items:
        again, transition = apply(again, event, nid)
        assert transition.outcome is SdiOutcome.DUPLICATE
    assert again == track
