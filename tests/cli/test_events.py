"""``pectrack events``: a topic's records as JSON lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pectrack.cli.events import line
from tests.support.kafka import running_broker


def test_json_values_are_printed_compactly_and_other_bytes_as_raw() -> None:
    """A JSON value is re-serialized on one line; anything else is wrapped, never dropped."""
    assert line(b'{ "data": {"to_state": "delivered"} }') == b'{"data":{"to_state":"delivered"}}'
    assert orjson.loads(line(b"\xffnot json")) == {"raw": "\ufffdnot json"}
    assert line(None) == b"null"


def test_a_binary_mode_event_is_printed_in_its_structured_form() -> None:
    """ce_* headers become attributes and the value the data; structured mode as it is."""
    value, headers = (
        b'{"to_state": "delivered"}',
        [
            ("content-type", b"application/json"),
            ("ce_id", b"5c0f"),
            ("ce_type", b"it.pec.state-change"),
        ],
    )
    assert orjson.loads(line(value, headers)) == {
        "id": "5c0f",
        "type": "it.pec.state-change",
        "datacontenttype": "application/json",
        "data": {"to_state": "delivered"},
    }
    structured = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    assert line(b'{"id": "5c0f"}', structured) == b'{"id":"5c0f"}'


@pytest.mark.integration
async def test_events_prints_existing_records_from_the_beginning(tmp_path: Path) -> None:
    """--from-beginning --max N prints the first N records of the topic, one JSON per line."""
    with running_broker(tmp_path / "broker.log") as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for n in range(3):
                value = orjson.dumps({"data": {"n": n}})
                await producer.send_and_wait("pec.state-changes", value, partition=0)
        finally:
            await producer.stop()
        result = subprocess.run(
            [sys.executable, "-m", "pectrack", "events", "--broker", broker.bootstrap,
             "--from-beginning", "--max", "2"],
            capture_output=True,
            timeout=60,
            check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    printed = [orjson.loads(text) for text in result.stdout.splitlines()]
    assert printed == [{"data": {"n": 0}}, {"data": {"n": 1}}]
