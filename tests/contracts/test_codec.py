"""The wire formats: round trips, and every record the processors emit fits its JSON Schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.contracts.codec import (
    DecodeError,
    decode,
    observation_from_dict,
    observation_to_dict,
    submission_from_dict,
    tracked_from_dict,
    tracked_to_dict,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import (
    DEFAULT_SCHEMA_BASE,
    MESSAGE_STATE,
    STATE_CHANGE,
    SUBMISSION,
    Contract,
    schema_document,
)
from pipeline.core.correlate import Deadlines, EventType, SignatureVerdict, Suspect
from pipeline.core.keys import correlation_key
from pipeline.core.lifecycle import Event, Receipt
from pipeline.core.model import DeliveryState, Recipient, RecipientType
from pipeline.core.observation import (
    DeadlineCheck,
    Evidence,
    Observation,
    Submission,
    SuspectReceipt,
    apply_observation,
)
from pipeline.core.retention import NOTHING
from pipeline.core.trust import TrustStore
from pipeline.simulate.traffic import generate_traffic
from pipeline.streams.clock import EventClock
from pipeline.streams.correlate import Correlator
from pipeline.streams.deadlines import DeadlineScanner
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from pipeline.streams.state import Entry, MemoryPartitions, Write
from pipeline.streams.verify import Verifier
from tests.factories import anchor_pem


def schema(contract: Contract) -> dict[str, Any]:
    """The working copy of a contract's schema (what the code must write)."""
    loaded = schema_document(contract.current)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def claimed(uri: str) -> jsonschema.Draft202012Validator:
    """The frozen released schema a record names by URI (``.../state-change/2.json``)."""
    assert uri.startswith(DEFAULT_SCHEMA_BASE), uri
    return jsonschema.Draft202012Validator(
        schema_document(uri.removeprefix(DEFAULT_SCHEMA_BASE)),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


@pytest.fixture(scope="module")
def emitted() -> RecordingSink:
    """Every record verify, correlate and the deadline scanner emit for simulated traffic."""
    settings = StreamSettings(deadline_clock="event", acceptance_timeout_seconds=60)
    sink = RecordingSink()
    metrics = StreamMetrics(CollectorRegistry())
    table = MemoryPartitions()
    clock = EventClock("event")
    verifier = Verifier(settings, TrustStore.from_bytes(anchor_pem()), sink, metrics)
    correlator = Correlator(settings, sink, metrics, table, clock, "changelog")
    scanner = DeadlineScanner(settings, sink, metrics, table, clock)

    async def run() -> None:
        items = generate_traffic(3, 120, 6, datetime(2024, 3, 1, 9, tzinfo=UTC))
        for item in items:
            headers = {"mailbox": item.mailbox.encode(), "folder": item.folder.encode()}
            await verifier.handle(item.mailbox.encode(), item.raw, headers)
        clock.advance(datetime(2024, 3, 9, tzinfo=UTC))  # far later: deadlines fire
        for _ in range(2):
            for key, value, _ in sink.sent.pop("pec.receipts", []):
                await correlator.handle(key, value)
            await scanner.scan()

    asyncio.run(run())
    return sink


def test_every_state_change_fits_the_schema(emitted: RecordingSink) -> None:
    """All event types appear; each record is a structured-mode CloudEvent valid against
    the working schema and against the frozen version its dataschema names."""
    validator = jsonschema.Draft202012Validator(schema(STATE_CHANGE))
    records = emitted.sent["pec.state-changes"]
    events = [orjson.loads(value) for _, value, _ in records]
    for (_, _, headers), event in zip(records, events, strict=True):
        assert headers == [("content-type", b"application/cloudevents+json; charset=UTF-8")]
        validator.validate(event)
        claimed(event["dataschema"]).validate(event)
    assert {event["dataschema"] for event in events} == {STATE_CHANGE.uri()}
    types = {event["type"] for event in events}
    assert {"it.pec.state-change", "it.pec.overdue", "it.pec.untrusted-signer"} <= types
    signatures = {(event["type"], event["data"]["signature"]) for event in events}
    assert ("it.pec.untrusted-signer", "untrusted") in signatures
    assert ("it.pec.signature-invalid", "invalid") in signatures
    assert ("it.pec.overdue", None) in signatures


def test_every_message_state_fits_the_schema(emitted: RecordingSink) -> None:
    """pec.message-state records validate against the working schema and the frozen
    version their ``schema`` field names."""
    validator = jsonschema.Draft202012Validator(schema(MESSAGE_STATE))
    states = [orjson.loads(value) for _, value, _ in emitted.sent["pec.message-state"]]
    assert states
    for state in states:
        validator.validate(state)
        claimed(state["schema"]).validate(state)
    assert {state["schema"] for state in states} == {MESSAGE_STATE.uri()}


def test_the_schema_rejects_a_wrong_record(emitted: RecordingSink) -> None:
    """The schema can fail: an unknown state name is refused."""
    validator = jsonschema.Draft202012Validator(schema(STATE_CHANGE))
    event = orjson.loads(emitted.sent["pec.state-changes"][0][1])
    event["data"]["to_state"] = "teleported"
    assert not validator.is_valid(event)
    event["data"]["to_state"] = None
    event["time"] = None  # version 1 allowed it; an event always has a time now
    assert not validator.is_valid(event)


def test_submission_schema_and_decoder_agree() -> None:
    """A documented submission example validates and decodes; a bad one is refused."""
    validator = jsonschema.Draft202012Validator(schema(SUBMISSION))
    example = {
        "schema": SUBMISSION.uri(),
        "mailbox": "ufficio-legale",
        "msgid": "<20240301.42@erp.example.it>",
        "recipients": ["Giulia.Bianchi@postecert.it"],
        "submitted_at": "2024-03-01T10:00:00+01:00",
    }
    validator.validate(example)
    submission = submission_from_dict(example)
    assert submission.key == "ufficio-legale <20240301.42@erp.example.it>"
    assert submission.recipients == ("giulia.bianchi@postecert.it",)
    with pytest.raises(DecodeError):
        submission_from_dict({"mailbox": "x"})


def test_observation_and_table_round_trip(emitted: RecordingSink) -> None:
    """Observations and table values survive encode/decode unchanged."""
    check = DeadlineCheck(
        correlation_key("box", "<m@c>"),
        "box",
        "<m@c>",
        datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=1),
    )
    assert observation_from_dict(observation_to_dict(check)) == check
    for _, value, _ in emitted.sent["changelog"][:50]:
        assert value is not None
        data = orjson.loads(value)
        assert data["seen_at"] is not None
        tracked = tracked_from_dict(data)
        assert tracked_to_dict(tracked) == data
    with pytest.raises(DecodeError):
        observation_from_dict({"schema": "pectrack.observation/1", "type": "teleport"})


# --- poison records: any JSON value decodes or raises DecodeError, nothing else ----------

AT = datetime(2024, 3, 1, 10, tzinfo=UTC)
BOX, MSGID = "ufficio-legale", "<20240301.42@erp.example.it>"
KEY = correlation_key(BOX, MSGID)
RECIPIENT = "giulia.bianchi@postecert.it"


@pytest.mark.parametrize(
    ("event", "reason", "verdict"),
    [
        (EventType.SIGNATURE_INVALID, "header-x: y; signature-missing", SignatureVerdict.MISSING),
        (EventType.SIGNATURE_INVALID, "signature-invalid", SignatureVerdict.INVALID),
        (EventType.UNTRUSTED_SIGNER, "signer-untrusted: self", SignatureVerdict.UNTRUSTED),
        (EventType.RECEIPT_REJECTED, "signer-not-issuer: a", SignatureVerdict.SIGNER_MISMATCH),
        (EventType.RECEIPT_REJECTED, "header-variant-mismatch", SignatureVerdict.VALID_TRUSTED),
    ],
)
def test_suspect_without_signature_field_decodes_as_before(
    event: EventType, reason: str, verdict: SignatureVerdict
) -> None:
    """A suspect written before the ``signature`` field existed (rolling upgrade) gets the
    verdict those versions published; a record that has the field is taken at its word."""
    suspect = Suspect("r9", event, "avvenuta-consegna", RECIPIENT, reason, AT, verdict)
    data = observation_to_dict(SuspectReceipt(KEY, BOX, MSGID, suspect))
    assert data["signature"] == verdict.value
    del data["signature"]
    decoded = observation_from_dict(data)
    assert isinstance(decoded, SuspectReceipt)
    assert decoded.suspect == suspect
    data["signature"] = "missing"
    decoded = observation_from_dict(data)
    assert isinstance(decoded, SuspectReceipt)
    assert decoded.suspect.signature is SignatureVerdict.MISSING


SAMPLES: list[Observation | DeadlineCheck] = [
    Submission(KEY, BOX, MSGID, "ufficio@pec.example.it", (RECIPIENT,), AT),
    Evidence(
        KEY,
        BOX,
        MSGID,
        Receipt("r1", Event.ACCEPT, (Recipient(RECIPIENT, RecipientType.CERTIFICATO),), None, AT),
        "accettazione",
        "ARUBA PEC S.p.A.",
    ),
    Evidence(
        KEY,
        BOX,
        MSGID,
        Receipt("r2", Event.DELIVER, (), RECIPIENT, AT + timedelta(minutes=3)),
        "avvenuta-consegna",
        "Postecom",
    ),
    SuspectReceipt(
        KEY,
        BOX,
        MSGID,
        Suspect(
            "r3",
            EventType.UNTRUSTED_SIGNER,
            "avvenuta-consegna",
            RECIPIENT,
            "self",
            AT,
            SignatureVerdict.UNTRUSTED,
        ),
    ),
    DeadlineCheck(KEY, BOX, MSGID, AT + timedelta(days=2)),
]


def _iso_time(at: datetime, minutes: int | None) -> str:
    if minutes is None:
        return at.isoformat()  # naive
    sign = "+" if minutes >= 0 else "-"
    return f"{at.isoformat()}{sign}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"


# Times a decoder may accept, over the whole range (year 1 to 9999) with odd offsets.
iso_times = st.builds(_iso_time, st.datetimes(), st.none() | st.integers(-1439, 1439))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | iso_times
    | st.sampled_from(["evidence", "deliver", "certificato", "untrusted-signer", KEY, MSGID]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Replacements of the right JSON type, so that many near-valid records still decode and
# reach the lifecycle with odd but well-typed values.
plausible = (
    st.none()
    | iso_times
    | st.sampled_from(
        ["", "*", RECIPIENT, "x@y", "r1", "r2", KEY, MSGID, BOX, "BOX", "check", "evidence"]
        + [e.value for e in (*Event, *EventType, *RecipientType, *DeliveryState)]
        + ["no-acceptance", "no-delivery", "accettazione", "avvenuta-consegna"]
    )
    | st.lists(st.sampled_from([RECIPIENT, "x@y", "r1"]), max_size=3)
    | st.lists(
        st.fixed_dictionaries(
            {
                "address": st.sampled_from([RECIPIENT, "x@y", ""]),
                "type": st.sampled_from(["certificato", "esterno"]),
            }
        ),
        max_size=3,
    )
)


@st.composite
def near_valid(draw: st.DrawFn, samples: list[dict[str, Any]]) -> Any:
    """A valid record with one field, or one field of a nested object, replaced or gone."""
    data = json.loads(json.dumps(draw(st.sampled_from(samples))))
    target = data
    nested = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
    if nested and draw(st.booleans()):
        target = draw(st.sampled_from(nested))[0]
    field = draw(st.sampled_from(sorted(target)))
    if draw(st.integers(0, 4)) == 0:
        del target[field]
    else:
        target[field] = draw(plausible | json_values)
    return data


OBSERVATIONS = [observation_to_dict(o) for o in SAMPLES]
SUBMISSIONS = [
    {
        "mailbox": BOX,
        "msgid": MSGID,
        "sender": "ufficio@pec.example.it",
        "recipients": [RECIPIENT],
        "submitted_at": AT.isoformat(),
    }
]


def _tracked_samples() -> list[dict[str, Any]]:
    tracked = None
    for observation in (SAMPLES[0], SAMPLES[1], SAMPLES[3], SAMPLES[4]):  # no delivery
        tracked, _ = apply_observation(tracked, observation, Deadlines())
    assert tracked is not None
    assert tracked.overdue
    return [tracked_to_dict(tracked)]


TRACKED = _tracked_samples()


@given(json_values | near_valid(OBSERVATIONS) | near_valid(SUBMISSIONS) | near_valid(TRACKED))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_decoders_raise_only_decode_error(value: Any) -> None:
    """Any JSON value, even a valid record with one field wrong: decoded, or DecodeError."""
    for decoder in (observation_from_dict, submission_from_dict, tracked_from_dict):
        with contextlib.suppress(DecodeError):
            decoder(value)


@given(st.binary(max_size=40) | st.none())
def test_decode_raises_only_decode_error(raw: bytes | None) -> None:
    """A record value that is not JSON (or a tombstone) is a DecodeError."""
    with contextlib.suppress(DecodeError):
        decode(raw)


@given(near_valid(OBSERVATIONS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_correlate_never_crashes_on_a_decodable_record(value: Any) -> None:
    """Whatever decodes is applied without an exception to a message already tracked."""
    sink = RecordingSink()
    correlator = Correlator(
        StreamSettings(deadline_clock="event"),
        sink,
        StreamMetrics(CollectorRegistry()),
        MemoryPartitions(),
        EventClock("event"),
        "changelog",
    )

    async def run() -> None:
        for observation in SAMPLES[:2]:
            await correlator.handle(KEY.encode(), orjson.dumps(observation_to_dict(observation)))
        await correlator.handle(KEY.encode(), json.dumps(value).encode())

    asyncio.run(run())
    assert len(sink.sent.get("pec.dlq", [])) <= 1


@given(near_valid(TRACKED))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_correlate_never_crashes_on_an_odd_table_value(value: Any) -> None:
    """Every observation applies to any table value that decodes (or is dead-lettered)."""
    sink = RecordingSink()
    store = MemoryPartitions()
    odd = Write(KEY.encode(), json.dumps(value).encode(), NOTHING, Entry(0, NOTHING))
    store.partition(0).write([odd], None)  # due at once: the scanner reads it too
    correlator = Correlator(
        StreamSettings(deadline_clock="event"),
        sink,
        StreamMetrics(CollectorRegistry()),
        store,
        EventClock("event"),
        "changelog",
    )

    async def run() -> None:
        for observation in SAMPLES:
            await correlator.handle(KEY.encode(), orjson.dumps(observation_to_dict(observation)))
        await DeadlineScanner(
            correlator.settings, sink, correlator.metrics, store, correlator.clock
        ).scan()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("decoder", "value"),
    [
        (submission_from_dict, {"mailbox": "a", "msgid": "<x@y>", "sender": 123}),
        (submission_from_dict, {"mailbox": "a", "msgid": "<x@y>", "recipients": ["a@b", 1]}),
        (submission_from_dict, {"mailbox": "a", "msgid": 42}),
        (submission_from_dict, {"mailbox": "a", "msgid": "<x@y>", "submitted_at": "2024-03-01"}),
        (submission_from_dict, ["mailbox"]),
        (observation_from_dict, [1]),
        (observation_from_dict, OBSERVATIONS[0] | {"key": "other <x@y>"}),
        (observation_from_dict, OBSERVATIONS[3] | {"event": "overdue"}),
        (tracked_from_dict, TRACKED[0] | {"overdue": [["*"]]}),
    ],
)
def test_wrong_shapes_are_decode_errors(decoder: Any, value: Any) -> None:
    """Well-formed JSON of the wrong shape: wrong types, naive times, mismatched keys."""
    with pytest.raises(DecodeError):
        decoder(value)
