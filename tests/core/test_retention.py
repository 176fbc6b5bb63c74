"""Retention, orphan expiry, late observations and due times (pipeline.core.retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.correlate import (
    Deadlines,
    EventType,
    SignatureVerdict,
    Suspect,
    Tracked,
    overdue_flags,
)
from pipeline.core.lifecycle import Event, Receipt
from pipeline.core.model import Recipient, RecipientType
from pipeline.core.observation import (
    DeadlineCheck,
    Evidence,
    Observation,
    Submission,
    SuspectReceipt,
    apply_observation,
)
from pipeline.core.retention import (
    Fate,
    Retention,
    Tally,
    expires_at,
    is_expired,
    next_due,
    step,
    tally,
)

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)
KEY, BOX, MSGID = "box <m@c>", "box", "<m@c>"
CERT = Recipient("mario@pec.example.it", RecipientType.CERTIFICATO)
EXT = Recipient("anna@example.com", RecipientType.ESTERNO)
DEADLINES = Deadlines(timedelta(minutes=30), timedelta(hours=24))
RETENTION = Retention(finished=timedelta(days=30), orphan=timedelta(days=7))


def sent(minutes: int = 0, to: tuple[Recipient, ...] = (CERT,)) -> Submission:
    at = T0 + timedelta(minutes=minutes)
    return Submission(KEY, BOX, MSGID, "me@pec.it", tuple(r.address for r in to), at)


def receipt(rid: str, event: Event, minutes: int, to: tuple[Recipient, ...] = (CERT,)) -> Evidence:
    per_recipient = event not in (Event.ACCEPT, Event.REJECT)
    r = Receipt(
        rid,
        event,
        to,
        to[0].address if per_recipient else None,
        T0 + timedelta(minutes=minutes),
    )
    return Evidence(KEY, BOX, MSGID, r, event.value, "Provider")


def suspect(rid: str, minutes: int) -> SuspectReceipt:
    s = Suspect(
        rid,
        EventType.SIGNATURE_INVALID,
        "avvenuta-consegna",
        CERT.address,
        "tampered",
        T0 + timedelta(minutes=minutes),
        SignatureVerdict.INVALID,
    )
    return SuspectReceipt(KEY, BOX, MSGID, s)


def fold(*observations: Observation) -> Tracked:
    tracked: Tracked | None = None
    for observation in observations:
        tracked, _ = apply_observation(tracked, observation, DEADLINES)
    assert tracked is not None
    return tracked


def check(at: datetime) -> DeadlineCheck:
    return DeadlineCheck(KEY, BOX, MSGID, at)


def test_seen_at_is_the_newest_data_time_applied() -> None:
    """Every observation's data time counts, in whatever order; a check's clock does not."""
    tracked = fold(receipt("d", Event.DELIVER, 9), sent(), receipt("a", Event.ACCEPT, 1))
    assert tracked.seen_at == T0 + timedelta(minutes=9)
    checked, _ = apply_observation(tracked, check(T0 + timedelta(days=3)), DEADLINES)
    assert checked.seen_at == tracked.seen_at
    assert fold(suspect("s", 4)).seen_at == T0 + timedelta(minutes=4)


def test_a_finished_message_expires_retention_after_its_last_receipt() -> None:
    """Final for every recipient: it leaves the table 30 days after the delivery."""
    tracked = fold(sent(), receipt("a", Event.ACCEPT, 1), receipt("d", Event.DELIVER, 5))
    assert expires_at(tracked, RETENTION) == T0 + timedelta(minutes=5, days=30)
    assert next_due(tracked, DEADLINES, RETENTION) == expires_at(tracked, RETENTION)
    assert not is_expired(tracked, T0 + timedelta(minutes=5, days=30), RETENTION)
    assert is_expired(tracked, T0 + timedelta(minutes=5, days=30, seconds=1), RETENTION)


def test_a_message_in_flight_never_expires() -> None:
    """Accepted and waiting (even overdue): kept, its next due time is the delivery window."""
    tracked = fold(sent(), receipt("a", Event.ACCEPT, 1))
    assert expires_at(tracked, RETENTION) is None
    assert next_due(tracked, DEADLINES, RETENTION) == T0 + timedelta(minutes=1, hours=24)
    late = T0 + timedelta(days=400)
    flagged, events = apply_observation(tracked, check(late), DEADLINES)
    assert [e.type for e in events] == [EventType.OVERDUE]
    assert next_due(flagged, DEADLINES, RETENTION) is None  # nothing more until it changes
    assert step(flagged, check(late), DEADLINES, RETENTION).fate is Fate.KEPT


def test_an_orphan_expires_after_orphan_ttl() -> None:
    """Receipts whose sent message never appears leave 7 days after the newest one."""
    tracked = fold(receipt("a", Event.ACCEPT, 1), suspect("s", 60))
    assert tracked.is_orphan
    assert expires_at(tracked, RETENTION) == T0 + timedelta(minutes=60, days=7)
    at = T0 + timedelta(minutes=61, days=7)
    result = step(tracked, check(at), DEADLINES, RETENTION)
    assert (result.tracked, result.fate) == (None, Fate.EXPIRED)  # no marker for orphans


def test_a_finished_message_is_retired_to_a_marker_then_deleted() -> None:
    """Past its retention a check leaves only a marker (no recipients, counted nowhere);
    another retention later the marker goes too."""
    tracked = fold(sent(to=(EXT,)), receipt("a", Event.ACCEPT, 1, to=(EXT,)))
    assert tracked.message.is_final
    at = T0 + timedelta(days=31)
    result = step(tracked, check(at), DEADLINES, RETENTION)
    assert result.fate is Fate.RETIRED
    assert result.events == ()
    marker = result.tracked
    assert marker is not None
    assert marker.retired
    assert marker.message.recipients == ()
    assert not marker.is_orphan
    assert tally(marker) == Tally()
    gone = T0 + timedelta(minutes=1, days=60)
    assert next_due(marker, DEADLINES, RETENTION) == gone
    assert step(marker, check(gone), DEADLINES, RETENTION).fate is Fate.KEPT
    later = gone + timedelta(seconds=1)
    result = step(marker, check(later), DEADLINES, RETENTION)
    assert (result.tracked, result.fate) == (None, Fate.EXPIRED)


def test_observations_of_a_retired_message_are_late() -> None:
    """A re-read receipt or Sent copy meets the marker: ignored, nothing changes, even
    when it claims a time far in the future."""
    finished = fold(sent(), receipt("a", Event.ACCEPT, 1), receipt("d", Event.DELIVER, 5))
    marker = step(finished, check(T0 + timedelta(days=31)), DEADLINES, RETENTION).tracked
    assert marker is not None
    for observation in (sent(), receipt("d", Event.DELIVER, 5), suspect("s", 10**6)):
        result = step(marker, observation, DEADLINES, RETENTION)
        assert (result.tracked, result.events, result.fate) == (marker, (), Fate.LATE)


def test_a_check_for_an_unknown_message_is_ignored() -> None:
    result = step(None, check(T0), DEADLINES, RETENTION)
    assert (result.tracked, result.events, result.fate) == (None, (), Fate.LATE)


def test_lateness_never_depends_on_the_clock() -> None:
    """An unknown message is applied whatever its time: a receipt from long ago becomes
    an orphan (which expires), a Sent copy a message in flight."""
    for observation in (sent(), receipt("d", Event.DELIVER, 5)):
        result = step(None, observation, DEADLINES, RETENTION)
        assert result.fate is Fate.KEPT
        assert result.tracked is not None


def test_a_held_message_takes_late_receipts() -> None:
    """A message in flight takes a receipt whatever its time."""
    tracked = fold(sent(), receipt("a", Event.ACCEPT, 1))
    result = step(tracked, receipt("d", Event.DELIVER, 60 * 24 * 90), DEADLINES, RETENTION)
    assert result.fate is Fate.KEPT
    assert result.tracked is not None
    assert result.tracked.message.is_final


def test_tally_counts_what_the_gauges_show() -> None:
    assert tally(None) == Tally()
    assert tally(fold(sent())) == Tally(inflight=1)
    assert tally(fold(receipt("a", Event.ACCEPT, 1))) == Tally(inflight=1, orphans=1)
    finished = fold(sent(), receipt("a", Event.ACCEPT, 1), receipt("d", Event.DELIVER, 2))
    assert tally(finished) == Tally()
    assert Tally(1, 2, 3) - Tally(1, 1, 1) + Tally(0, 0, 1) == Tally(0, 1, 3)


def test_orphans_cannot_outlive_finished_messages() -> None:
    with pytest.raises(ValueError, match="orphans"):
        Retention(finished=timedelta(days=1), orphan=timedelta(days=2))


OBSERVATIONS = st.one_of(
    st.builds(sent, st.integers(0, 3000), st.sampled_from([(CERT,), (EXT,), (CERT, EXT)])),
    st.builds(
        receipt,
        st.sampled_from(["r1", "r2", "r3", "r4"]),
        st.sampled_from(list(Event)),
        st.integers(0, 3000),
        st.sampled_from([(CERT,), (EXT,), (CERT, EXT)]),
    ),
    st.builds(suspect, st.sampled_from(["s1", "s2"]), st.integers(0, 3000)),
)


@given(
    st.lists(OBSERVATIONS, min_size=1, max_size=8),
    st.lists(st.integers(0, 60 * 24 * 60), max_size=3),
    st.integers(0, 60 * 24 * 60),
)
def test_due_time_is_exactly_when_a_full_scan_would_act(
    observations: list[Observation], checks: list[int], now_minutes: int
) -> None:
    """The due-time index is exact: next_due < now if and only if a full scan at ``now``
    finds a flag to raise or the message expired (so reading only due entries misses
    nothing and sends no useless check)."""
    tracked = fold(*observations)
    for minutes in sorted(checks):  # some flags already raised by earlier checks
        tracked, _ = apply_observation(tracked, check(T0 + timedelta(minutes=minutes)), DEADLINES)
    now = T0 + timedelta(minutes=now_minutes)
    full_scan = bool(overdue_flags(tracked, now, DEADLINES) - tracked.overdue) or is_expired(
        tracked, now, RETENTION
    )
    due = next_due(tracked, DEADLINES, RETENTION)
    assert (due is not None and due < now) == full_scan
