"""The CloudEvents Kafka binding of pec.state-changes: both modes, read back by the SDK and
by the package's own decoder, which takes the mode from the content-type header."""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.cloudevents import (
    BINARY_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    DecodeError,
    Mode,
    decode_record,
    encode_event,
)
from pipeline.core.correlate import EventType, SignatureVerdict, TrackEvent
from pipeline.core.model import DeliveryState

SCHEMA = "https://pectrack.example/schemas/state-change/2.json"
CET = timezone(timedelta(hours=1))
DELIVERED = TrackEvent(
    event_id="5c0f" + "0" * 28,
    type=EventType.STATE_CHANGE,
    key="ufficio legale <20240301.42@erp.example.it>",
    mailbox="ufficio legale",
    msgid="<20240301.42@erp.example.it>",
    recipient="giulia.bianchi@postecert.it",
    before=DeliveryState.ACCEPTED,
    after=DeliveryState.DELIVERED,
    receipt_kind="avvenuta-consegna",
    receipt_id="r2",
    provider="ARUBA PEC S.p.A.",
    at=datetime(2024, 3, 1, 11, 3, tzinfo=CET),
    latency=180.0,
    latency_from="acceptance",
    outcome="advanced",
    signature=SignatureVerdict.VALID_TRUSTED,
)
PROCESSED = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def encode(event: TrackEvent, mode: Mode) -> tuple[bytes, dict[str, bytes]]:
    value, headers = encode_event(event, mode=mode, dataschema=SCHEMA, processed_at=PROCESSED)
    assert len({name for name, _ in headers}) == len(headers)  # no header twice
    return value, dict(headers)


def sdk_read(value: bytes, headers: dict[str, bytes]) -> CloudEvent:
    """As a downstream SDK consumer applying the binding's rule: content-type decides."""
    message = ce_kafka.KafkaMessage(headers=headers, key=DELIVERED.key.encode(), value=value)
    read = (
        ce_kafka.from_structured
        if headers.get("content-type", b"").startswith(b"application/cloudevents")
        else ce_kafka.from_binary
    )
    event = read(message, JSONFormat(), CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def test_structured_mode_is_one_json_event_with_its_content_type() -> None:
    """Structured: the content-type header, the whole event as the value."""
    value, headers = encode(DELIVERED, Mode.STRUCTURED)
    assert headers == {"content-type": STRUCTURED_CONTENT_TYPE.encode()}
    envelope = orjson.loads(value)
    assert envelope["dataschema"] == SCHEMA
    assert envelope["time"] == "2024-03-01T11:03:00+01:00"
    assert envelope["source"] == "pectrack/ufficio%20legale"  # a URI reference
    assert envelope["data"]["to_state"] == "delivered"


def test_binary_mode_puts_attributes_in_ce_headers_and_data_in_the_value() -> None:
    """Binary: ce_* headers, content-type of the data, the value is the data alone."""
    value, headers = encode(DELIVERED, Mode.BINARY)
    assert headers["content-type"] == BINARY_CONTENT_TYPE.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"it.pec.state-change"
    assert headers["ce_dataschema"] == SCHEMA.encode()
    assert "ce_datacontenttype" not in headers  # carried by content-type
    assert orjson.loads(value)["msgid"] == DELIVERED.msgid


@pytest.mark.parametrize("mode", list(Mode))
def test_the_sdk_reads_both_modes_to_the_same_event(mode: Mode) -> None:
    """The CloudEvents SDK's Kafka binding reads every attribute and the data."""
    event = sdk_read(*encode(DELIVERED, mode))
    assert event.get_id() == DELIVERED.event_id
    assert event.get_type() == "it.pec.state-change"
    assert event.get_source() == "pectrack/ufficio%20legale"
    assert event.get_subject() == DELIVERED.msgid
    assert event.get_time() == DELIVERED.at
    assert event.get_dataschema() == SCHEMA
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("partitionkey") == DELIVERED.key
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["to_state"] == "delivered"


@pytest.mark.parametrize("mode", list(Mode))
def test_decode_record_reads_both_modes(mode: Mode) -> None:
    """The package's decoder gives the same typed event whatever the mode."""
    value, headers = encode(DELIVERED, mode)
    event = decode_record(list(headers.items()), value)
    assert event.id == DELIVERED.event_id
    assert (event.type, event.from_state, event.to_state) == (
        EventType.STATE_CHANGE,
        DeliveryState.ACCEPTED,
        DeliveryState.DELIVERED,
    )
    assert event.time == DELIVERED.at
    assert event.daticert_time == DELIVERED.at
    assert event.key == DELIVERED.key
    assert event.signature is SignatureVerdict.VALID_TRUSTED
    assert event.is_delivery
    assert not event.is_final_failure
    assert decode_record(headers, value) == event  # a mapping of headers works too


@pytest.mark.parametrize("mode", list(Mode))
def test_decode_record_reads_what_the_sdk_writes(mode: Mode) -> None:
    """A record another CloudEvents producer wrote (the SDK's own encoder) decodes."""
    value, headers = encode(DELIVERED, Mode.STRUCTURED)
    event = sdk_read(value, headers)
    write = ce_kafka.to_structured if mode is Mode.STRUCTURED else ce_kafka.to_binary
    message = write(event, JSONFormat())
    decoded = decode_record(message.headers, message.value)
    assert decoded.id == DELIVERED.event_id
    assert decoded.time == DELIVERED.at


def test_time_is_the_evidence_time_else_the_processing_time() -> None:
    """An event without a data time gets the processing time: time is never missing."""
    value, _ = encode(replace(DELIVERED, at=None), Mode.STRUCTURED)
    envelope = orjson.loads(value)
    assert envelope["time"] == "2026-12-02T06:00:00+00:00"
    assert envelope["data"]["daticert_time"] is None


@pytest.mark.parametrize("mode", list(Mode))
def test_attribute_names_follow_the_cloudevents_naming_rule(mode: Mode) -> None:
    """Attribute (and so extension) names are lower-case letters and digits."""
    value, headers = encode(DELIVERED, mode)
    names = (
        set(orjson.loads(value))
        if mode is Mode.STRUCTURED
        else {h.removeprefix("ce_") for h in headers if h.startswith("ce_")}
    )
    assert "partitionkey" in names
    assert all(re.fullmatch(r"[a-z0-9]{1,20}", name) for name in names)


def test_a_record_without_the_binding_is_refused() -> None:
    """No content-type and no ce_ headers: by the binding, not a CloudEvent (the records
    written before version 2 of the schema are such records)."""
    value, _ = encode(DELIVERED, Mode.STRUCTURED)
    with pytest.raises(DecodeError, match="no ce_ headers"):
        decode_record([], value)


@pytest.mark.parametrize(
    ("headers", "value", "match"),
    [
        ({"content-type": b"application/cloudevents+avro"}, b"{}", "unsupported format"),
        ({"content-type": STRUCTURED_CONTENT_TYPE.encode()}, b"[1]", "not a JSON object"),
        ({"content-type": STRUCTURED_CONTENT_TYPE.encode()}, None, "no value"),
        ({"content-type": b"text/plain", "ce_id": b"x"}, b"{}", "data of type"),
        ({"ce_specversion": b"0.3", "ce_type": b"it.pec.overdue"}, b"{}", "specversion"),
        ({"ce_specversion": b"1.0", "ce_type": b"com.other"}, b"{}", "not a pectrack event"),
    ],
)
def test_foreign_records_are_decode_errors(
    headers: dict[str, bytes], value: bytes | None, match: str
) -> None:
    """Other formats, other producers' events, odd values: a DecodeError saying why."""
    with pytest.raises(DecodeError, match=match):
        decode_record(headers, value)


@given(
    st.dictionaries(
        st.sampled_from(["content-type", "ce_id", "ce_specversion", "ce_type", "ce_time", "x"]),
        st.binary(max_size=12)
        | st.sampled_from([b"1.0", b"it.pec.overdue", STRUCTURED_CONTENT_TYPE.encode()]),
    ),
    st.none() | st.binary(max_size=30) | st.sampled_from([encode(DELIVERED, Mode.BINARY)[0]]),
)
def test_decode_record_raises_only_decode_error(headers: dict[str, bytes], value: bytes) -> None:
    """Whatever the headers and value: a StateChange or a DecodeError, nothing else."""
    with contextlib.suppress(DecodeError):
        decode_record(headers, value)
