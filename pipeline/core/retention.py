"""When a tracked message needs the timer again, and when it leaves the table.

A worker holds one :class:`~pipeline.core.tracker.Tracked` value per sent message. Work
must grow with the rate of receipts, not with every message ever seen, so:

* a message whose recipients are all final leaves the table ``Retention.finished`` after
  its newest data time (``Tracked.seen_at``: the newest daticert or submission time of
  anything applied to it); ``pec.message-state`` keeps its final record;
* an *orphan* (receipts whose sent message never appeared) leaves ``Retention.orphan``
  after its newest receipt;
* the timer finds what is due through an index by :func:`next_due`, instead of decoding
  every message: a message is looked at again only once its next deadline (no acceptance,
  no delivery) or its expiry has passed.

Times are data times, compared with the caller's clock (the wall clock, or the newest
daticert time seen when replaying history), so a replay takes the same decisions.

An observation that finds no state and is dated more than ``Retention.finished`` before
the clock is *late* (:func:`is_late`): its message, if it ever existed, has already left
the table, and applying it would start that message again as a new one in flight (a
re-published Sent copy would even go overdue for no acceptance). It is ignored and
counted instead. An orphan expires sooner than a finished message (``orphan`` <=
``finished``), so a late receipt of a message never seen is ignored too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline.core.model import DeliveryState, RecipientType
from pipeline.core.observation import DeadlineCheck, Observation, apply_observation, observed_at
from pipeline.core.tracker import MESSAGE_WIDE, Deadlines, OverdueReason, Tracked, TrackEvent


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
    if tracked is None:
        return NOTHING
    return Tally(
        inflight=int(not tracked.message.is_final),
        overdue=int(bool(tracked.overdue)),
        orphans=int(tracked.is_orphan),
    )


def expires_at(tracked: Tracked, retention: Retention) -> datetime | None:
    """When the message leaves the table; ``None``: not while it is in flight (or when
    nothing applied to it carried a time)."""
    if tracked.seen_at is None:
        return None
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

    Exact for :func:`~pipeline.core.tracker.overdue_flags`: at any ``now`` after this
    time a flag may be due; at ``now`` up to it, none is (flags need ``now - start >
    limit``)."""
    message = tracked.message
    candidates: list[datetime] = []
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


def is_late(
    observation: Observation | DeadlineCheck, now: datetime | None, retention: Retention
) -> bool:
    """Should an observation that finds no state be ignored? A deadline check always is
    (its message has left the table); any other when dated before ``now - finished``."""
    if isinstance(observation, DeadlineCheck):
        return True
    at = observed_at(observation)
    return now is not None and at is not None and now - at > retention.finished


class Fate(StrEnum):
    """What became of a message's table entry after one observation."""

    KEPT = "kept"  # applied (possibly changing nothing)
    EXPIRED = "expired"  # a deadline check found it past its retention: it leaves
    LATE = "late"  # no entry, and the observation is late (:func:`is_late`): ignored


@dataclass(frozen=True, slots=True)
class Step:
    tracked: Tracked | None  # None: no entry (expired, or a late observation)
    events: tuple[TrackEvent, ...]
    fate: Fate


def step(
    tracked: Tracked | None,
    observation: Observation | DeadlineCheck,
    deadlines: Deadlines,
    retention: Retention,
    now: datetime | None,
) -> Step:
    """:func:`~pipeline.core.observation.apply_observation` with the table's lifetime:
    late observations for unknown messages are ignored, and a deadline check also
    evicts a message past its retention (at the check's own ``now``, so a replay of the
    check decides the same). ``now`` is the caller's clock for :func:`is_late`."""
    if tracked is None and is_late(observation, now, retention):
        return Step(None, (), Fate.LATE)
    updated, events = apply_observation(tracked, observation, deadlines)
    if isinstance(observation, DeadlineCheck) and is_expired(updated, observation.now, retention):
        return Step(None, events, Fate.EXPIRED)
    return Step(updated, events, Fate.KEPT)
