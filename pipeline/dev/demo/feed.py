"""Endless PEC traffic on one simulated timeline, released as simulated time passes.

:func:`pipeline.simulate.generate_traffic` plays a fixed number of messages. The demo
needs traffic that never ends, so :class:`TrafficFeed` generates it in chunks, each
starting where the previous one's submissions stopped, and keeps what has not arrived
yet (a 24 h warning is due long after later chunks' messages) in one queue ordered by
arrival time::

    feed = TrafficFeed(seed=1, mailboxes=300, start=now)
    clock = SimClock(start=now, speed=feed.speed_for(rate=5.0))
    for item in feed.due(clock.at(time.monotonic())):   # TrafficItems, in arrival order
        store(item.mailbox, item.folder, item.raw)

Simulated time runs ``speed`` times faster than the wall clock, so that delivery
warnings (12 h, 24 h) and overdue messages show up within a minute of the demo. Pure:
no clock is read here.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.core.model import Kind
from pipeline.simulate.ca import Pki, default_pki
from pipeline.simulate.scenario import Scenario
from pipeline.simulate.sdi import generate_sdi_traffic
from pipeline.simulate.traffic import TrafficItem, TrafficMix, generate_traffic

__all__ = ["MEAN_GAP_SECONDS", "SimClock", "TrafficFeed", "demo_mailboxes"]

# generate_traffic spaces submissions uniformly 20..900 s apart in simulated time.
MEAN_GAP_SECONDS = (20 + 900) / 2

_SUBMISSION_KINDS = (Kind.ACCETTAZIONE, Kind.NON_ACCETTAZIONE)


def demo_mailboxes(count: int, pki: Pki | None = None) -> list[str]:
    """The ``count`` user mailboxes that :func:`generate_traffic` plays, in its order.

    A chunk of traffic only shows the mailboxes it used, while the IMAP server and the
    agent need all of them before the first message: ask the scenario engine itself.
    """
    scenario = Scenario(
        random.Random(0),  # noqa: S311 - populate() draws nothing from it
        pki or default_pki(),
        TrafficMix(),
        datetime(2024, 1, 1, tzinfo=UTC),  # unused by populate()
    )
    scenario.populate(count)
    return list(scenario.boxes)


@dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated time: ``start`` at wall-clock ``origin`` (monotonic s), ``speed``× faster."""

    start: datetime
    origin: float
    speed: float

    def at(self, monotonic: float) -> datetime:
        return self.start + timedelta(seconds=(monotonic - self.origin) * self.speed)


class TrafficFeed:
    """Signed traffic for ``mailboxes`` from ``start`` on, generated ``chunk`` messages
    at a time; :meth:`due` hands out every item whose arrival time has come."""

    def __init__(
        self,
        seed: int,
        mailboxes: int,
        start: datetime,
        *,
        chunk: int = 10,
        attachment_size: int = 2048,
        pki: Pki | None = None,
        sdi_per_chunk: int = 1,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.seed = seed
        self.mailboxes = mailboxes
        self.chunk = chunk
        self.attachment_size = attachment_size
        self.pki = pki or default_pki()
        self.sdi_per_chunk = sdi_per_chunk  # invoices (sent or received) via the SdI
        self._boxes: tuple[tuple[str, str], ...] | None = None
        self.submitted = 0  # messages generated (their items may still be pending)
        self.released = 0  # items handed out by due()
        self.faulty = 0  # forged or tampered items handed out
        self._horizon = start  # submissions are generated up to here
        self._chunks = itertools.count()
        self._order = itertools.count()
        self._queue: list[tuple[datetime, int, TrafficItem]] = []

    @staticmethod
    def speed_for(rate: float) -> float:
        """Simulated seconds per wall-clock second giving ``rate`` messages a second."""
        return rate * MEAN_GAP_SECONDS

    def _generate(self) -> None:
        index = next(self._chunks)
        chunk_start = self._horizon
        items = generate_traffic(
            self.seed * 1_000_003 + index,
            self.chunk,
            self.mailboxes,
            self._horizon,
            attachment_size=self.attachment_size,
            pki=self.pki,
        )
        submissions = [
            item.truth.timestamp
            for item in items
            if item.truth.kind in _SUBMISSION_KINDS and item.truth.timestamp is not None
        ]
        # The next chunk starts after this one's last acceptance (1-3 s after submission).
        self._horizon = max([self._horizon, *submissions]) + timedelta(seconds=5)
        self.submitted += self.chunk
        for item in items:
            heapq.heappush(self._queue, (item.arrival_time, next(self._order), item))
        if self.sdi_per_chunk > 0:
            self._generate_sdi(index, chunk_start)

    def _generate_sdi(self, index: int, start: datetime) -> None:
        """E-invoicing traffic: the SdI's envelopes in the users' INBOX, and the Sent copies
        that handed each invoice to the SdI."""
        if self._boxes is None:
            self._boxes = tuple((b, b) for b in demo_mailboxes(self.mailboxes, self.pki))
        rng = random.Random(self.seed * 7919 + index)  # noqa: S311 - simulation
        for sdi in generate_sdi_traffic(
            rng, self.pki, self._boxes, self.sdi_per_chunk, start,
            first=index * self.sdi_per_chunk, sent_copies=True,
        ):  # fmt: skip
            item = sdi.traffic_item(next(self._order))
            heapq.heappush(self._queue, (item.arrival_time, item.arrival_order, item))

    def due(self, now: datetime) -> list[TrafficItem]:
        """Items that arrived by simulated time ``now``, oldest first."""
        while self._horizon <= now:
            self._generate()
        out: list[TrafficItem] = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        self.released += len(out)
        self.faulty += sum(1 for item in out if item.truth.fault is not None)
        return out
