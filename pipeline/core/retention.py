"""When a tracked message needs the timer again, and when it leaves the table.

A worker holds one :class:`~pipeline.core.correlate.Tracked` value per sent message. Work
must grow with the rate of receipts, not with every message ever seen, so:

* a message whose recipients are all final is *retired* ``Retention.finished`` after
  its newest data time (``Tracked.seen_at``: the newest daticert or submission time of
  anything applied to it): only a small marker stays (key, msgid, times, no recipients),
  and ``pec.message-state`` keeps its final record; the marker itself leaves another
  ``finished`` later;
* an *orphan* (receipts whose sent message never appeared) leaves ``Retention.orphan``
  after its newest receipt, without a marker;
* the timer finds what is due through an index by :func:`next_due`, instead of decoding
  every message: a message is looked at again only once its next deadline (no acceptance,
  no delivery) or its expiry has passed.

Times are data times, compared with the time of the deadline check (the wall clock, or
the newest daticert time seen when replaying history), so a replay decides the same.

An observation that finds a marker is *late* (:class:`Fate.LATE`): the message was
finished and retired; applying a re-read receipt or Sent copy would start it again as a
new message in flight (a Sent copy would even go overdue for no acceptance). It is
ignored and counted. Lateness is decided by the marker, never by comparing a receipt's
time with a clock: one wrongly dated message must not make the others look late. Once
the marker is gone, such an observation is applied like any other (a receipt becomes an
orphan, which expires).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline.core.correlate import MESSAGE_WIDE, Deadlines, OverdueReason, Tracked, TrackEvent
from pipeline.core.lifecycle import new_message
from pipeline.core.model import DeliveryState, RecipientType
from pipeline.core.observation import DeadlineCheck, Observation, apply_observation


@dataclass(frozen=True, slots=True)
class Retention:
    finished: timedelta = timedelta(days=30)
    orphan: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.orphan > self.finished:
            raise ValueError("orphans must not be kept longer than finished messages")


@dataclass(frozen=True, slots=True)
class Tally:
    """What one message adds to a worker's gauges (in flight, overdue, orphan)."""

    inflight: int = 0
    overdue: int = 0
    orphans: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.inflight + other.inflight,
            self.overdue + other.overdue,
            self.orphans + other.orphans,
        )

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.inflight - other.inflight,
            self.overdue - other.overdue,
            self.orphans - other.orphans,
        )


NOTHING = Tally()


def tally(tracked: Tracked | None) -> Tally:
    if tracked is None or tracked.retired:
        return NOTHING
    return Tally(
        inflight=int(not tracked.message.is_final),
        overdue=int(bool(tracked.overdue)),
        orphans=int(tracked.is_orphan),
    )


def expires_at(tracked: Tracked, retention: Retention) -> datetime | None:
    """When the message leaves the table (a finished one: when it is retired; a marker:
    when it is deleted); ``None``: not while it is in flight (or when nothing applied
    to it carried a time)."""
    if tracked.seen_at is None:
        return None
    if tracked.retired:
        return tracked.seen_at + 2 * retention.finished
    if tracked.is_orphan:
        return tracked.seen_at + retention.orphan
    if tracked.message.is_final:
        return tracked.seen_at + retention.finished
    return None


def is_expired(tracked: Tracked, now: datetime, retention: Retention) -> bool:
    expiry = expires_at(tracked, retention)
    return expiry is not None and now > expiry


def next_due(tracked: Tracked, deadlines: Deadlines, retention: Retention) -> datetime | None:
    """The earliest time after which the timer must look at ``tracked`` again: a deadline
    whose flag is not raised yet, or its expiry. ``None``: never, unless it changes.

    Exact for :func:`~pipeline.core.correlate.overdue_flags`: at any ``now`` after this
    time a flag may be due; at ``now`` up to it, none is (flags need ``now - start >
    limit``)."""
    message = tracked.message
    candidates: list[datetime] = []
    if tracked.retired:
        return expires_at(tracked, retention)
    if (
        message.submitted_at is not None
        and message.accepted_at is None
        and message.recipients
        and all(r.state is DeliveryState.SUBMITTED for r in message.recipients)
        and (MESSAGE_WIDE, OverdueReason.NO_ACCEPTANCE) not in tracked.overdue
    ):
        candidates.append(message.submitted_at + deadlines.acceptance_timeout)
    if message.accepted_at is not None and any(
        r.type is RecipientType.CERTIFICATO
        and not r.is_final
        and (r.address, OverdueReason.NO_DELIVERY) not in tracked.overdue
        for r in message.recipients
    ):
        candidates.append(message.accepted_at + deadlines.delivery_window)
    expiry = expires_at(tracked, retention)
    if expiry is not None:
        candidates.append(expiry)
    return min(candidates, default=None)


class Fate(StrEnum):
    """What became of a message's table entry after one observation."""

    KEPT = "kept"  # applied (possibly changing nothing)
    RETIRED = "retired"  # finished and past its retention: only a marker stays
    EXPIRED = "expired"  # an orphan past orphan_ttl, or a marker past its life: deleted
    LATE = "late"  # a marker, or a deadline check for a message no longer held: ignored


@dataclass(frozen=True, slots=True)
class Step:
    tracked: Tracked | None  # None: no entry (expired, or a check for an unknown key)
    events: tuple[TrackEvent, ...]
    fate: Fate


def retire(tracked: Tracked) -> Tracked:
    """The marker a retired message leaves: who it was and when, nothing else."""
    return Tracked(
        tracked.key,
        tracked.mailbox,
        replace(new_message(tracked.message.msgid), submitted=True),  # not an orphan
        seen_at=tracked.seen_at,
        retired=True,
    )


def step(
    tracked: Tracked | None,
    observation: Observation | DeadlineCheck,
    deadlines: Deadlines,
    retention: Retention,
) -> Step:
    """:func:`~pipeline.core.observation.apply_observation` with the table's lifetime.

    A deadline check retires a finished message past its retention and deletes an
    orphan or a marker past theirs, at the check's own ``now`` (a replay of the check
    decides the same); a check for an unknown key is ignored. Any observation of a
    retired message is late."""
    if isinstance(observation, DeadlineCheck):
        if tracked is None:
            return Step(None, (), Fate.LATE)
        if tracked.retired:
            if is_expired(tracked, observation.now, retention):
                return Step(None, (), Fate.EXPIRED)
            return Step(tracked, (), Fate.KEPT)
    elif tracked is not None and tracked.retired:
        return Step(tracked, (), Fate.LATE)
    updated, events = apply_observation(tracked, observation, deadlines)
    if isinstance(observation, DeadlineCheck) and is_expired(updated, observation.now, retention):
        if updated.is_orphan:
            return Step(None, events, Fate.EXPIRED)
        return Step(retire(updated), events, Fate.RETIRED)
    return Step(updated, events, Fate.KEPT)
