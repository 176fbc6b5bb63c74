"""Each KafkaUser's ACLs grant exactly what its component uses, derived from the code.

* agent: ``agents.config.KafkaSettings`` - it publishes to ``topic`` and
  ``dead_letter_topic`` (``agents.publish.KafkaPublisher``), and writes its cursors to
  ``cursor_topic`` and reads them back at start without a consumer group
  (``agents.publish.read_cursors``);
* worker: the topics its faust agents subscribe to (read), the settings the worker's CLI
  calls "internal" or "output" (written), faust's table changelog (read to restore, written)
  and its leader-election topic (subscribed), both of which faust asks to create at every
  start; its consumer group is the app id;
* reader: the two outputs a downstream system consumes.

``Describe`` comes with every topic (metadata). Anything more or less fails the test.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Any

import pytest

from agents.config import KafkaSettings
from pipeline.streams.app import build
from pipeline.streams.settings import SETTINGS, StreamSettings
from tests.deploy.kubernetes import K8S, kind, render

Acl = tuple[str, str, str, str]  # (resource type, name, pattern type, operation)


def _topic(name: str, *operations: str) -> set[Acl]:
    return {("topic", name, "literal", op) for op in ("Describe", *operations)}


def agent_needs() -> set[Acl]:
    kafka = KafkaSettings(bootstrap="x")
    return (
        _topic(kafka.topic, "Write")
        | _topic(kafka.dead_letter_topic, "Write")
        | _topic(kafka.cursor_topic, "Write", "Read")
    )


def worker_needs(tmp_path: Path) -> set[Acl]:
    settings = StreamSettings(store="memory://", datadir=str(tmp_path))
    pipeline = build(settings)
    app = pipeline.app
    subscribed = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    changelog = pipeline.table.changelog_topic.get_topic_name()
    leader = app._leader_assignor._leader_topic_name
    roles = {s.name: s.help.split(":", 1)[0] for s in SETTINGS if s.name.endswith("_topic")}
    read_by_role = {
        getattr(settings, n) for n, role in roles.items() if role in ("input", "internal")
    }
    assert subscribed == read_by_role, "the CLI's topic roles and faust's subscriptions differ"
    written = {getattr(settings, n) for n, role in roles.items() if role != "input"}
    needs: set[Acl] = {("group", settings.app_id, "literal", "Read")}
    for topic in subscribed:
        needs |= _topic(topic, "Read")
    for topic in written:
        needs |= _topic(topic, "Write")
    needs |= _topic(changelog, "Read", "Write", "Create")
    invoice_changelog = pipeline.invoice_table.changelog_topic.get_topic_name()
    needs |= _topic(invoice_changelog, "Read", "Write", "Create")
    needs |= _topic(leader, "Read", "Create")
    return needs


def reader_needs() -> set[Acl]:
    settings = StreamSettings()
    needs = _topic(settings.state_changes_topic, "Read") | _topic(
        settings.message_state_topic, "Read"
    )
    return needs | {("group", "pectrack-reader", "prefix", "Read")}


def granted(user: dict[str, Any]) -> set[Acl]:
    acls = user["spec"]["authorization"]["acls"]
    return {
        (acl["resource"]["type"], acl["resource"].get("name", ""),
         acl["resource"].get("patternType", "literal"), op)
        for acl in acls
        for op in acl["operations"]
    }  # fmt: skip


@pytest.fixture(scope="module")
def users() -> dict[str, dict[str, Any]]:
    return kind(render("strimzi"), "KafkaUser")


def test_agent_may_do_exactly_what_it_does(users: dict[str, dict[str, Any]]) -> None:
    assert granted(users["pectrack-agent"]) == agent_needs()


def test_worker_may_do_exactly_what_it_does(
    users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    assert granted(users["pectrack-worker"]) == worker_needs(tmp_path)


def test_reader_sees_only_the_outputs(users: dict[str, dict[str, Any]]) -> None:
    acls = granted(users["pectrack-reader"])
    assert acls == reader_needs()
    settings, kafka = StreamSettings(), KafkaSettings(bootstrap="x")
    for secret in (settings.raw_topic, settings.dlq_topic, kafka.dead_letter_topic):
        assert not any(name == secret for _, name, _, _ in acls), "whole messages"


def test_no_acl_is_broad(users: dict[str, dict[str, Any]]) -> None:
    """No wildcard, no prefix on topics, no All/Alter/Delete, no cluster rights."""
    for name, user in users.items():
        for kind_, resource, pattern, operation in granted(user):
            assert resource not in ("*", ""), name
            assert kind_ in ("topic", "group"), name
            assert operation not in ("All", "Alter", "Delete", "AlterConfigs"), name
            if kind_ == "topic":
                assert pattern == "literal", name


def _kafka_admin() -> Any:
    spec = importlib.util.spec_from_file_location("kafka_admin", K8S / "kafka_admin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_admin_commands_for_an_existing_kafka_grant_the_same(
    users: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """kafka_admin.py prints a kafka-acls.sh line per ACL of every user (read back here
    into the same set) and a kafka-topics.sh line per KafkaTopic."""
    assert _kafka_admin().main(["--replication", "3", "--command-config", "admin.properties"]) == 0
    lines = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    parsed: dict[str, set[Acl]] = {}
    created = set()
    for words in lines:
        if words[0] == "kafka-topics.sh":
            created.add(words[words.index("--topic") + 1])
            assert words[words.index("--replication-factor") + 1] == "3"
            assert words[words.index("--command-config") + 1] == "admin.properties"
        if words[0] != "kafka-acls.sh":
            continue
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        resource = "topic" if "--topic" in words else "group"
        name = words[words.index(f"--{resource}") + 1]
        pattern = {"LITERAL": "literal", "PREFIXED": "prefix"}[words[-1]]
        operations = [words[i + 1] for i, w in enumerate(words) if w == "--operation"]
        parsed.setdefault(principal, set()).update(
            (resource, name, pattern, op) for op in operations
        )
    assert parsed == {name: granted(user) for name, user in users.items()}
    topics = kind(render("strimzi"), "KafkaTopic")
    assert created == {t["spec"].get("topicName", n) for n, t in topics.items()}
