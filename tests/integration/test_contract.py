"""The downstream contract end to end: simulated traffic through a real worker on the
embedded broker, read back as consumers would (the CloudEvents SDK, the example
consumer), and the broker itself refusing records that break the published schema."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from pipeline.contracts.cloudevents import Mode, decode_record
from pipeline.contracts.schemas import (
    MESSAGE_STATE,
    STATE_CHANGE,
    schema_document,
    state_change_value_schema,
)
from pipeline.dev.embedded import EmbeddedBroker, write_schema_registry
from pipeline.simulate.traffic import TrafficItem, generate_traffic
from tests.factories import write_anchor
from tests.streams.oracle import EventShape, expected_events
from tests.support.kafka import read_all
from tests.support.workers import WorkerProcess, produce_traffic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 3, 1, 9, tzinfo=UTC)
TOPIC = "pec.state-changes"


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(15, 120, 6, START)


def worker_args(tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return (
        "--trust", str(write_anchor(tmp_path)),
        "--deadline-clock", "event",
        "--acceptance-timeout-seconds", "1e9",
        "--delivery-window-seconds", "1e9",
        *extra,
    )  # fmt: skip


def sdk_event(record: ConsumerRecord[bytes, bytes]) -> CloudEvent:
    """The record as the CloudEvents SDK reads it, the mode chosen as the Kafka binding
    says (and Java or Knative readers do): by the content-type header alone."""
    headers = {name: bytes(value) for name, value in record.headers}
    message = ce_kafka.KafkaMessage(headers=headers, key=record.key, value=record.value or b"")
    content_type = headers.get("content-type", b"").decode()
    if content_type.startswith("application/cloudevents"):
        event = ce_kafka.from_structured(message, JSONFormat(), CloudEvent)
    else:
        event = ce_kafka.from_binary(message, JSONFormat(), CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def shape(kind: str, data: dict[str, Any]) -> EventShape:
    return (data["key"], data["recipient"], kind, data["from_state"], data["to_state"])


async def events_settled(bootstrap: str, expected: int, timeout: float = 180) -> list[Any]:
    """Every record of pec.state-changes, once ``expected`` distinct event ids are there
    and nothing new came for 3 s (so an extra event would be seen too)."""
    deadline = time.monotonic() + timeout
    count, changed = -1, time.monotonic()
    records: list[ConsumerRecord[bytes, bytes]] = []
    while time.monotonic() < deadline:
        records = await read_all(bootstrap, TOPIC)
        if len(records) != count:
            count, changed = len(records), time.monotonic()
        elif time.monotonic() - changed >= 3:
            ids = {decode_record(r.headers, r.value).id for r in records}
            if len(ids) >= expected:
                return records
        await asyncio.sleep(0.5)
    raise AssertionError(f"{TOPIC}: {len(records)} records after {timeout}s, want {expected}")


class ConsumerProcess:
    """A consumer script run as a user runs it, its output lines collected."""

    def __init__(self, script: Path, directory: Path, *args: str) -> None:
        self.out = directory / f"{script.stem}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), *args], stdout=out, stderr=subprocess.STDOUT
            )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    async def wait_for(self, count: int, timeout: float = 60) -> list[str]:
        """The lines once ``count`` arrived and 2 s more passed (to see any extra)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.lines()) < count:
            assert self.proc.poll() is None, self.out.read_text()[-2000:]
            await asyncio.sleep(0.3)
        await asyncio.sleep(2)
        return self.lines()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def readme_consumer(directory: Path, bootstrap: str) -> Path:
    """The ten lines of README's "Consuming the events", pointed at ``bootstrap``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Consuming the events", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "127.0.0.1:9092" in code
    script = directory / "readme_consumer.py"
    script.write_text(code.replace("127.0.0.1:9092", bootstrap))
    return script


FINAL = {"delivered", "delivery-failed", "virus", "rejected"}


@pytest.mark.parametrize("mode", list(Mode), ids=lambda mode: mode.value)
async def test_consumers_read_exactly_the_oracles_events(
    broker: EmbeddedBroker, tmp_path: Path, traffic: list[TrafficItem], mode: Mode
) -> None:
    """In either binding mode, the CloudEvents SDK reads every record as a valid event,
    the example consumer prints, after dedup on id, exactly the oracle's events, and
    README's ten-line consumer each delivery and failure once."""
    want = expected_events(traffic)
    args = worker_args(tmp_path, "--cloudevents-mode", mode.value)
    with WorkerProcess(broker, tmp_path / "w", *args) as worker:
        await produce_traffic(broker.bootstrap, traffic)
        try:
            records = await events_settled(broker.bootstrap, sum(want.values()))
        except AssertionError:
            print(worker.log_text())
            raise
    example = ConsumerProcess(
        ROOT / "examples" / "consumer.py", tmp_path, "--broker", broker.bootstrap,
        "--group", "example", "--from-beginning", "--jsonl",
    )  # fmt: skip
    try:
        lines = await example.wait_for(sum(want.values()))
    finally:
        example.stop()
    assert not [line for line in lines if not line.startswith("{")]  # nothing skipped
    printed = [orjson.loads(line) for line in lines]
    readme = ConsumerProcess(readme_consumer(tmp_path, broker.bootstrap), tmp_path)
    finals: Counter[tuple[str | None, str | None]] = Counter()
    for (_, recipient, _, _, to_state), count in want.items():
        if to_state in FINAL:
            finals[(to_state, recipient)] += count
    try:
        readme_lines = await readme.wait_for(sum(finals.values()))
    finally:
        readme.stop()
    readme_saw = Counter(
        (line.split(" -> ")[0].split()[-2], line.split(" -> ")[1])
        for line in readme_lines
        if " -> " in line
    )
    assert readme_saw == finals

    envelope = schema_document(STATE_CHANGE.path)
    data_schema = jsonschema.Draft202012Validator(
        envelope["properties"]["data"] | {"$defs": envelope["$defs"]}
    )
    by_id: dict[str, CloudEvent] = {}
    for record in records:
        content_type = dict(record.headers)["content-type"].decode()
        assert content_type == (
            "application/cloudevents+json; charset=UTF-8"
            if mode is Mode.STRUCTURED
            else "application/json"
        )
        event = sdk_event(record)
        assert event.get_dataschema() == STATE_CHANGE.uri()
        assert event.get_time() is not None
        assert event.get_extension("partitionkey") == record.key.decode()
        data = event.get_data()
        assert isinstance(data, dict)
        data_schema.validate(data)
        by_id.setdefault(event.get_id(), event)
    read = Counter(
        shape(e.get_type().removeprefix("it.pec."), e.get_data()) for e in by_id.values()
    )
    assert read == want
    example_saw = Counter(
        (p["key"], p["recipient"], p["type"], p["from_state"], p["to_state"]) for p in printed
    )
    assert example_saw == want
    assert len({p["id"] for p in printed}) == len(printed)  # deduplicated


@pytest.mark.parametrize("mode", list(Mode), ids=lambda mode: mode.value)
async def test_the_broker_enforces_the_published_schemas(
    tmp_path: Path, traffic: list[TrafficItem], mode: Mode
) -> None:
    """With the embedded broker validating pec.state-changes (the event, or in binary
    mode its data) and pec.message-state against the published schemas, the pipeline's
    records all pass, and records that break them are refused."""
    registry = write_schema_registry(
        tmp_path / "registry",
        {
            TOPIC: state_change_value_schema(mode),
            "pec.message-state": schema_document(MESSAGE_STATE.current),
        },
    )
    want = expected_events(traffic)
    args = worker_args(tmp_path, "--cloudevents-mode", mode.value)
    with (
        EmbeddedBroker(schema_registry=registry, log_path=tmp_path / "broker.log") as broker,
        WorkerProcess(broker, tmp_path / "w", *args) as worker,
    ):
        await produce_traffic(broker.bootstrap, traffic)
        try:
            records = await events_settled(broker.bootstrap, sum(want.values()))
        except AssertionError:
            print(worker.log_text())
            raise
        assert "Traceback" not in worker.log_text()
        events = {r.value for r in records}
        states = await read_all(broker.bootstrap, "pec.message-state")
        assert states

        good = orjson.loads(records[0].value)
        if mode is Mode.STRUCTURED:  # a version-1 event (no time, a relative dataschema)
            old = good | {"time": None, "dataschema": "pectrack.state-change/1"}
            off_enum = good | {"data": good["data"] | {"to_state": "teleported"}}
        else:  # the data: version 1's envelope is no data; a state off the enum
            old = {"specversion": "1.0", "data": good}
            off_enum = good | {"to_state": "teleported"}
        state = orjson.loads(states[0].value)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, enable_idempotence=False, acks="all"
        )
        await producer.start()
        try:
            for bad_topic, bad in ((TOPIC, old), (TOPIC, off_enum),
                                   ("pec.message-state", state | {"final": "yes"})):  # fmt: skip
                with pytest.raises(KafkaError):
                    await producer.send_and_wait(bad_topic, orjson.dumps(bad), key=records[0].key)
            # the same broker takes a conforming record: the refusals are the schema's
            await producer.send_and_wait(TOPIC, records[0].value, key=records[0].key)
        finally:
            await producer.stop()
        after = await read_all(broker.bootstrap, TOPIC)
        assert len(after) == len(records) + 1
        assert {r.value for r in after} == events
        # every topic the worker created or wrote is one the AsyncAPI document describes
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            topics = set(await admin.list_topics())
        finally:
            await admin.close()
    described = yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text())["channels"]
    assert topics - {"__consumer_offsets"} <= {c["address"] for c in described.values()}
