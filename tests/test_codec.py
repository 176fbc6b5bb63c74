"""The wire formats: round trips, and every record the processors emit fits its JSON Schema."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.codec import (
    DecodeError,
    observation_from_dict,
    observation_to_dict,
    submission_from_dict,
    tracked_from_dict,
    tracked_to_dict,
)
from pipeline.core.observation import DeadlineCheck
from pipeline.core.trust import TrustStore
from pipeline.metrics import StreamMetrics
from pipeline.settings import StreamSettings
from pipeline.simulate.traffic import generate_traffic
from pipeline.streams.correlate import Correlator, EventClock
from pipeline.streams.deadlines import DeadlineScanner
from pipeline.streams.sink import RecordingSink
from pipeline.streams.verify import Verifier
from tests.factories import anchor_pem

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@pytest.fixture(scope="module")
def emitted() -> RecordingSink:
    """Every record verify, correlate and the deadline scanner emit for simulated traffic."""
    settings = StreamSettings(deadline_clock="event", acceptance_timeout_seconds=60)
    sink = RecordingSink()
    metrics = StreamMetrics(CollectorRegistry())
    table: dict[bytes, bytes] = {}
    clock = EventClock("event")
    verifier = Verifier(settings, TrustStore.from_bytes(anchor_pem()), sink, metrics)
    correlator = Correlator(settings, sink, metrics, table, clock, "changelog")
    scanner = DeadlineScanner(settings, sink, metrics, table, clock)

    async def run() -> None:
        items = generate_traffic(3, 120, 6, datetime(2024, 3, 1, 9, tzinfo=UTC))
        for item in items:
            headers = {"mailbox": item.mailbox.encode(), "folder": item.folder.encode()}
            await verifier.handle(item.mailbox.encode(), item.raw, headers)
        clock.observe(datetime(2024, 3, 9, tzinfo=UTC))  # far later: deadlines fire
        for _ in range(2):
            for key, value, _ in sink.sent.pop("pec.receipts", []):
                await correlator.handle(key, value)
            await scanner.scan()

    asyncio.run(run())
    return sink


def test_every_state_change_fits_the_schema(emitted: RecordingSink) -> None:
    """All event types appear and each record validates against state-change.schema.json."""
    validator = jsonschema.Draft202012Validator(schema("state-change.schema.json"))
    events = [orjson.loads(value) for _, value, _ in emitted.sent["pec.state-changes"]]
    for event in events:
        validator.validate(event)
    types = {event["type"] for event in events}
    assert {"it.pec.state-change", "it.pec.overdue", "it.pec.untrusted-signer"} <= types


def test_every_message_state_fits_the_schema(emitted: RecordingSink) -> None:
    """pec.message-state records validate against message-state.schema.json."""
    validator = jsonschema.Draft202012Validator(schema("message-state.schema.json"))
    states = [orjson.loads(value) for _, value, _ in emitted.sent["pec.message-state"]]
    assert states
    for state in states:
        validator.validate(state)


def test_the_schema_rejects_a_wrong_record(emitted: RecordingSink) -> None:
    """The schema can fail: an unknown state name is refused."""
    validator = jsonschema.Draft202012Validator(schema("state-change.schema.json"))
    event = orjson.loads(emitted.sent["pec.state-changes"][0][1])
    event["data"]["to_state"] = "teleported"
    assert not validator.is_valid(event)


def test_submission_schema_and_decoder_agree() -> None:
    """A documented submission example validates and decodes; a bad one is refused."""
    validator = jsonschema.Draft202012Validator(schema("submission.schema.json"))
    example = {
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
        "k", "box", "<m@c>", datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=1)
    )
    assert observation_from_dict(observation_to_dict(check)) == check
    for _, value, _ in emitted.sent["pec.message-state"][:50]:
        data = orjson.loads(value)
        data["schema"] = "pectrack.tracked/1"
        for recipient in data["recipients"]:
            del recipient["final"]
        del data["final"], data["orphan"]
        tracked = tracked_from_dict(data)
        assert tracked_to_dict(tracked) == data
    with pytest.raises(DecodeError):
        observation_from_dict({"schema": "pectrack.observation/1", "type": "teleport"})
