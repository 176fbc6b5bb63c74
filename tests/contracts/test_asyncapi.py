"""schemas/asyncapi.yaml: valid for the official AsyncAPI parser, and describing every
topic pectrack reads or writes with its key, compaction and payload schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.config import KafkaSettings
from pipeline.contracts.schemas import CONTRACTS
from pipeline.streams.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
VALIDATOR = ROOT / "tests" / "support" / "asyncapi_validate.cjs"
NODE_MODULES = ROOT / ".venv" / "node" / "node_modules"


def parse(document: Path) -> tuple[int, list[dict[str, Any]]]:
    """(exit status, diagnostics) of the official parser (@asyncapi/parser) on a file."""
    node = shutil.which("node")
    assert node, "node is needed to run the AsyncAPI parser"
    assert (NODE_MODULES / "@asyncapi" / "parser").is_dir(), "run `make asyncapi-parser`"
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    done = subprocess.run(
        [node, str(VALIDATOR), str(document)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def errors(diagnostics: list[dict[str, Any]]) -> list[str]:
    return [f"{d['path']}: {d['message']}" for d in diagnostics if d["severity"] == 0]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    return loaded


def test_the_document_is_valid_asyncapi_3() -> None:
    """The official parser accepts it, every $ref (the payload schema files) resolved."""
    status, diagnostics = parse(SCHEMAS / "asyncapi.yaml")
    assert errors(diagnostics) == []
    assert status == 0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    action: receive", "    action: consume"),
        ("'#/channels/stateChanges'", "'#/channels/stateChange'"),
        ("'./message-state.schema.json'", "'./message-state.json'"),
    ],
)
def test_the_parser_refuses_a_broken_document(tmp_path: Path, old: str, new: str) -> None:
    """The check can fail: a bad action, a dangling channel, a missing schema file."""
    copy = shutil.copytree(SCHEMAS, tmp_path / "schemas")
    text = (copy / "asyncapi.yaml").read_text()
    assert old in text
    (copy / "asyncapi.yaml").write_text(text.replace(old, new, 1))
    status, diagnostics = parse(copy / "asyncapi.yaml")
    assert errors(diagnostics)
    assert status == 1


def test_every_topic_is_described(document: dict[str, Any]) -> None:
    """Each default topic of the workers and agents, and the table changelog, is a channel,
    with its compaction as the code creates it."""
    settings, agent = StreamSettings(), KafkaSettings(bootstrap="x")
    channels = {c["address"]: c for c in document["channels"].values()}
    compacted = {
        settings.message_state_topic,
        agent.cursor_topic,
        f"{settings.app_id}-{settings.table_name}-changelog",  # faust's changelog name
        f"{settings.app_id}-{settings.invoice_table_name}-changelog",
    }
    plain = {
        f"{settings.app_id}-__assignor-__leader",  # faust's leader election
        settings.raw_topic,
        settings.receipts_topic,
        settings.submissions_topic,
        settings.state_changes_topic,
        settings.dlq_topic,
        settings.inbound_topic,
        settings.sdi_topic,
        settings.invoice_states_topic,
        settings.sdi_checks_topic,
        agent.topic,
        agent.dead_letter_topic,
    }
    assert set(channels) == compacted | plain
    for address, channel in channels.items():
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if address in compacted else ["delete"]), address


def test_every_message_has_a_key_and_payload_and_each_topic_a_producer_and_consumer(
    document: dict[str, Any],
) -> None:
    """Keys and payloads are declared; every channel is sent to by some operation, and
    pectrack's own inputs are received by one."""
    for name, message in document["components"]["messages"].items():
        assert "key" in message["bindings"]["kafka"], name
        assert "payload" in message, name
    sent = {op["channel"]["$ref"] for op in document["operations"].values()
            if op["action"] == "send"}  # fmt: skip
    received = {op["channel"]["$ref"] for op in document["operations"].values()
                if op["action"] == "receive"}  # fmt: skip
    inputs = {"raw", "receipts", "submissions", "agentCursors", "tableChangelog", "assignorLeader"}
    inputs |= {"sdiNotifications", "invoiceTableChangelog"}
    assert {f"#/channels/{name}" for name in inputs} <= received
    assert {f"#/channels/{name}" for name in document["channels"]} - {
        "#/channels/submissions",  # written by the sending systems
        "#/channels/assignorLeader",  # never written
    } <= sent


def test_payloads_are_the_published_schemas(document: dict[str, Any]) -> None:
    """The records' payloads point at the working schemas of pipeline.contracts.schemas."""
    messages = document["components"]["messages"]
    refs = {
        message["payload"]["schema"]["$ref"].split("#")[0]
        for message in messages.values()
        if "schema" in message["payload"]
    }
    assert refs == {f"./{contract.current}" for contract in CONTRACTS}
    structured = messages["stateChangeStructured"]["headers"]["properties"]["content-type"]
    assert structured["const"] == "application/cloudevents+json; charset=UTF-8"
