"""The invoices table's value and the sdi.invoice-states event: round trips, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.codec import DecodeError
from pipeline.contracts.invoices import (
    InvoiceEntry,
    NotificationRecord,
    decode_notification_record,
    encode_invoice_state,
    invoice_entry_from_dict,
    invoice_entry_to_dict,
    invoice_state_id,
    invoice_track_from_dict,
    invoice_track_to_dict,
)
from pipeline.core.sdi_lifecycle import InvoiceState, InvoiceTrack, SdiEvent, apply, new_invoice

CET = timezone(timedelta(hours=1))

tracks = st.builds(
    InvoiceTrack,
    nome_file=st.text(min_size=1, max_size=40),
    identificativo_sdi=st.none() | st.text(alphabet="0123456789", min_size=1, max_size=12),
    state=st.sampled_from(InvoiceState),
    notifications=st.frozensets(st.text(max_size=20), max_size=6),
    changed_at=st.none()
    | st.datetimes(timezones=st.sampled_from([UTC, CET])).map(lambda t: t.replace(microsecond=0)),
    seen_at=st.none() | st.datetimes(timezones=st.sampled_from([UTC, CET])),
    retired=st.booleans(),
)


@given(tracks)
def test_an_invoice_track_round_trips(track: InvoiceTrack) -> None:
    """Whatever the track, the table value decodes to the same frozen value."""
    entry = InvoiceEntry(f"amministrazione {track.nome_file}", "amministrazione", track)
    wire = orjson.loads(orjson.dumps(invoice_entry_to_dict(entry)))
    assert invoice_entry_from_dict(wire) == entry
    assert invoice_track_from_dict(invoice_track_to_dict(track)) == track


def test_an_entry_written_before_seen_at_was_kept_is_seen_at_its_newest_time() -> None:
    """An old table value (no seen_at, no retired) reads as held, seen at the newer of
    its last change and its sending."""
    old = {
        "schema": "pectrack.invoice/1", "key": "amministrazione IT1_00001.xml",
        "mailbox": "amministrazione", "nome_file": "IT1_00001.xml", "state": "delivered",
        "notifications": ["RC:1"], "changed_at": "2024-03-01T11:00:00+01:00",
        "sent_at": "2024-03-01T09:00:00+01:00",
    }  # fmt: skip
    track = invoice_entry_from_dict(old).track
    assert track.seen_at == datetime(2024, 3, 1, 11, tzinfo=CET)
    assert not track.retired
    assert invoice_entry_from_dict({**old, "retired": True}).track.retired
    with pytest.raises(DecodeError, match="retired"):
        invoice_entry_from_dict({**old, "retired": "yes"})


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"nome_file": "IT1_00001.xml", "state": "sent"},  # no notifications
        {"nome_file": "IT1_00001.xml", "state": "lost", "notifications": []},
        {"nome_file": "", "state": "sent", "notifications": []},
        {"nome_file": "IT1_00001.xml", "state": "sent", "notifications": [1]},
        {"nome_file": "IT1_00001.xml", "state": "sent", "notifications": [], "changed_at": "x"},
    ],
)
def test_a_bad_table_value_is_a_decode_error(broken: Any) -> None:
    """Never a KeyError or TypeError: the processor dead-letters on DecodeError."""
    with pytest.raises(DecodeError):
        invoice_track_from_dict(broken)


def test_the_entry_needs_its_schema_key_and_mailbox() -> None:
    entry = invoice_entry_to_dict(
        InvoiceEntry("m IT1_00001.xml", "m", new_invoice("IT1_00001.xml"))
    )
    for name in ("schema", "key", "mailbox"):
        with pytest.raises(DecodeError, match=name):
            invoice_entry_from_dict({k: v for k, v in entry.items() if k != name})


def test_the_event_id_depends_on_the_invoice_and_the_notification_only() -> None:
    """Same invoice and notification: same id, whatever the time of writing."""
    record = NotificationRecord(
        "e1", "sdi-notification", "m IT1_00001.xml", "m", "IT1_00001.xml", True, "RC",
        SdiEvent.CONSEGNA, "RC:42", "4713", datetime(2024, 3, 1, 10, tzinfo=CET),
    )  # fmt: skip
    after, transition = apply(new_invoice("IT1_00001.xml"), SdiEvent.CONSEGNA, "RC:42", record.at)
    values = [
        encode_invoice_state(
            record, transition, after, mode=Mode.STRUCTURED, dataschema="https://x/s/1.json",
            processed_at=datetime.now(UTC) + timedelta(days=n),
        )[0]
        for n in range(2)
    ]  # fmt: skip
    assert values[0] == values[1]
    assert orjson.loads(values[0])["id"] == invoice_state_id("m IT1_00001.xml", "RC:42")
    assert invoice_state_id("m IT1_00001.xml", "RC:43") != invoice_state_id(
        "m IT1_00001.xml", "RC:42"
    )
    assert invoice_state_id("n IT1_00001.xml", "RC:42") != invoice_state_id(
        "m IT1_00001.xml", "RC:42"
    )


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ([], b"{}"),  # neither mode
        ([("content-type", b"application/cloudevents+json")], b"[]"),
        (
            [("content-type", b"application/cloudevents+json")],
            b'{"specversion": "1.0", "id": "x", "type": "it.pec.state-change", "data": {}}',
        ),
        (
            [("content-type", b"application/cloudevents+json")],
            b'{"specversion": "1.0", "id": "x", "type": "it.pec.sdi-notification",'
            b' "data": {"key": "k", "mailbox": "m", "nome_file": "f", "evidence": true}}',
        ),
    ],
)
def test_what_is_not_an_sdi_record_is_refused(headers: Any, value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_notification_record(headers, value)
