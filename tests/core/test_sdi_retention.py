"""When an invoice leaves the invoices table: retired after its retention, a marker
that ends too, lateness by the marker."""

from __future__ import annotations

import random as random_module
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.retention import Fate
from pipeline.core.sdi_lifecycle import InvoiceState, InvoiceTrack, SdiEvent, apply, new_invoice
from pipeline.core.sdi_retention import (
    InvoiceRetention,
    check_invoice,
    invoice_expires_at,
    retire_invoice,
)

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)
DAY = timedelta(days=1)
RETENTION = InvoiceRetention(finished=30 * DAY, open=90 * DAY)


def delivered_then_accepted() -> InvoiceTrack:
    track = new_invoice("IT01234567890_0A1B2.xml")
    track, _ = apply(track, SdiEvent.CONSEGNA, "RC:1", T0)
    return apply(track, SdiEvent.ACCETTAZIONE, "NE:2", T0 + 2 * DAY)[0]


def test_a_final_invoice_is_retired_a_retention_after_its_newest_time() -> None:
    """Accepted on day 2: kept up to day 32, retired to a marker after it."""
    track = delivered_then_accepted()
    assert track.seen_at == T0 + 2 * DAY
    assert invoice_expires_at(track, RETENTION) == T0 + 32 * DAY
    assert check_invoice(track, T0 + 32 * DAY, RETENTION) == (track, Fate.KEPT)
    marker, fate = check_invoice(track, T0 + 33 * DAY, RETENTION)
    assert fate is Fate.RETIRED
    assert marker == retire_invoice(track)
    assert marker is not None
    assert marker.retired
    assert marker.notifications == frozenset()
    assert (marker.state, marker.identificativo_sdi) == (track.state, track.identificativo_sdi)


def test_the_marker_leaves_one_more_retention_later() -> None:
    """A marker is kept one more retention, then deleted; a check for an invoice no
    longer held is late."""
    marker = retire_invoice(delivered_then_accepted())
    assert invoice_expires_at(marker, RETENTION) == T0 + 62 * DAY
    assert check_invoice(marker, T0 + 40 * DAY, RETENTION) == (marker, Fate.KEPT)
    assert check_invoice(marker, T0 + 63 * DAY, RETENTION) == (None, Fate.EXPIRED)
    assert check_invoice(None, T0 + 63 * DAY, RETENTION) == (None, Fate.LATE)


def test_an_invoice_that_is_not_final_is_retired_after_the_open_ttl() -> None:
    """A B2B invoice ends delivered (no NE, no DT ever comes): retired after the open
    TTL, not the retention of final invoices."""
    track, _ = apply(new_invoice("IT01234567890_0A1B2.xml"), SdiEvent.CONSEGNA, "RC:1", T0)
    assert track.state is InvoiceState.DELIVERED
    assert not track.is_final
    assert check_invoice(track, T0 + 60 * DAY, RETENTION)[1] is Fate.KEPT
    assert check_invoice(track, T0 + 91 * DAY, RETENTION)[1] is Fate.RETIRED
    assert invoice_expires_at(retire_invoice(track), RETENTION) == T0 + 120 * DAY


def test_an_invoice_without_any_time_is_never_due() -> None:
    """Nothing applied carried a time: no expiry, a check keeps it."""
    track, _ = apply(new_invoice("IT01234567890_0A1B2.xml"), SdiEvent.SCARTO, "NS:1", None)
    assert invoice_expires_at(track, RETENTION) is None
    assert check_invoice(track, T0 + 1000 * DAY, RETENTION) == (track, Fate.KEPT)


notifications = st.lists(
    st.tuples(
        st.sampled_from(list(SdiEvent)),
        st.integers(0, 10**6).map(str),
        st.none() | st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s)),
    ),
    max_size=8,
    unique_by=lambda item: item[1],  # one id, one notification
)
Item = tuple[SdiEvent, str, datetime | None]


@given(notifications, st.randoms())
def test_seen_at_is_the_newest_time_whatever_the_order(
    items: list[Item], random: random_module.Random
) -> None:
    """seen_at is the newest time of the notifications applied, in any order (stale and
    conflicting ones included), so the expiry does not depend on the order either."""
    shuffled = list(items)
    random.shuffle(shuffled)
    results = []
    for order in (items, shuffled):
        track = new_invoice("IT01234567890_0A1B2.xml")
        for event, nid, at in order:
            track, _ = apply(track, event, nid, at)
        results.append(track.seen_at)
    newest = max((at for _event, _nid, at in items if at is not None), default=None)
    assert results == [newest, newest]
