"""deploy/compose.yaml, checked as far as a machine without a Docker engine allows."""

from __future__ import annotations

import base64
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.config import KafkaSettings, parse_config
from pipeline.streams.settings import StreamSettings
from tests.deploy.cli_args import parse_error, pectrack_argv
from tests.deploy.promql import ROOT, require_binary

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _pectrack_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("pectrack")
    }


def _topics(compose: dict[str, Any]) -> dict[str, tuple[int, bool]]:
    """``{topic: (partitions, compacted)}`` from the kafka-init script."""
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    found = {}
    for line in script.splitlines():
        match = re.search(r"--topic (\S+) --partitions (\d+)", line)
        if match:
            found[match.group(1)] = (int(match.group(2)), "cleanup.policy=compact" in line)
    return found


def test_kafka_runs_in_kraft_mode_from_the_official_image(compose: dict[str, Any]) -> None:
    """Apache Kafka, broker and controller in one node, no ZooKeeper anywhere."""
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith("@kafka:9093")
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "KRaft needs a 16-byte id"
    assert not any("zookeeper" in name for name in compose["services"])
    assert "healthcheck" in kafka


def test_topics_are_the_settings_defaults_with_compaction(compose: dict[str, Any]) -> None:
    """kafka-init creates exactly the topics the code uses, compacting the state ones."""
    settings, kafka = StreamSettings(), KafkaSettings(bootstrap="kafka:9092")
    expected = {
        settings.raw_topic,
        settings.receipts_topic,
        settings.submissions_topic,
        settings.state_changes_topic,
        settings.message_state_topic,
        settings.dlq_topic,
        settings.inbound_topic,
        settings.sdi_topic,
        settings.invoice_states_topic,
        settings.sdi_checks_topic,
        kafka.topic,
        kafka.dead_letter_topic,
        kafka.cursor_topic,
    }
    topics = _topics(compose)
    assert set(topics) == expected
    compacted = {name for name, (_, compact) in topics.items() if compact}
    assert compacted == {settings.message_state_topic, kafka.cursor_topic}
    worker_env = compose["services"]["worker"]["environment"]
    partitions = {count for count, _ in topics.values()}
    assert partitions == {int(worker_env["PECTRACK_PARTITIONS"])}, "co-partitioning needs one count"
    depends = compose["services"]["kafka-init"]["depends_on"]["kafka"]["condition"]
    assert depends == "service_healthy"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    """Each bind mount's source (relative to deploy/) is in the repository."""
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named:
                continue
            assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    build = compose["x-pectrack"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_dependencies_name_real_services(compose: dict[str, Any]) -> None:
    """depends_on only points at services of this file; clients wait for the topics."""
    services = compose["services"]
    for name, service in services.items():
        assert set(service.get("depends_on") or []) <= set(services), name
    for name in _pectrack_services(compose):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_pectrack_commands_are_accepted_by_the_cli(compose: dict[str, Any]) -> None:
    """Every agent/worker command is a real subcommand with flags `pectrack --help` lists."""
    services = _pectrack_services(compose)
    commands = {}
    for name, service in services.items():
        argv = pectrack_argv(service["command"], service.get("entrypoint"))
        assert parse_error(argv) is None, f"{name}: {parse_error(argv)}"
        commands[name] = argv
    assert {argv[0] for argv in commands.values()} == {"agent", "worker"}
    shards = sorted(
        argv[argv.index("--shard") + 1] for argv in commands.values() if "--shard" in argv
    )
    assert shards == ["1/2", "2/2"], "the agents split the mailboxes without overlap"
    assert compose["services"]["worker"]["deploy"]["replicas"] == 2


def test_cli_check_rejects_an_unknown_flag() -> None:
    """The command check is real: argparse refuses a flag the worker does not have."""
    assert parse_error(["worker", "--no-such-flag", "1"]) is not None
    assert parse_error(pectrack_argv(["agent", "--shard", "3/2", "--config", "x"])) is not None


def test_agent_config_is_valid_and_uses_apache_kafka_settings(compose: dict[str, Any]) -> None:
    """The mounted agent.toml parses; idempotence on, topics not auto-created."""
    path = DEPLOY / "compose" / "agent.toml"
    data = tomllib.loads(path.read_text())
    env = {box["password_env"]: "secret" for box in data["mailbox"]}
    config = parse_config(data, env, base_dir=path.parent)
    assert config.kafka.bootstrap == "kafka:9092"
    assert config.kafka.idempotence is True
    assert config.kafka.create_topics is False
    assert config.kafka.partitions == _topics(compose)[config.kafka.topic][0]


def test_kafka_accepts_the_largest_message_an_agent_publishes(compose: dict[str, Any]) -> None:
    """Kafka's 1 MiB default would dead-letter every Sent copy with a large attachment."""
    path = DEPLOY / "compose" / "agent.toml"
    data = tomllib.loads(path.read_text())
    env = {box["password_env"]: "secret" for box in data["mailbox"]}
    largest = parse_config(data, env, base_dir=path.parent).limits.max_message_bytes
    headroom = 64 * 1024  # record headers and batch framing
    broker = compose["services"]["kafka"]["environment"]
    assert int(broker["KAFKA_MESSAGE_MAX_BYTES"]) >= largest + headroom
    assert int(broker["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= int(broker["KAFKA_MESSAGE_MAX_BYTES"])
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    raw = next(line for line in script.splitlines() if "--topic pec.raw " in line)
    topic_limit = re.search(r"max\.message\.bytes=(\d+)", raw)
    assert topic_limit is not None
    assert int(topic_limit.group(1)) >= largest + headroom


def test_prometheus_scrapes_the_services_and_loads_the_alerts(compose: dict[str, Any]) -> None:
    """promtool accepts the config; its targets are compose services on their metrics ports."""
    config_path = DEPLOY / "prometheus" / "prometheus.yaml"
    result = subprocess.run(
        [require_binary("promtool"), "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"pectrack-agent", "pectrack-worker"}
    services = compose["services"]
    for target in jobs["pectrack-agent"]["static_configs"][0]["targets"]:
        host, port = target.split(":")
        argv = pectrack_argv(services[host]["command"])
        assert argv[argv.index("--metrics-port") + 1] == port
    worker_sd = jobs["pectrack-worker"]["dns_sd_configs"][0]
    worker_argv = pectrack_argv(services["worker"]["command"], services["worker"]["entrypoint"])
    assert worker_sd["names"] == ["worker"]
    assert str(worker_sd["port"]) == worker_argv[worker_argv.index("--metrics-port") + 1]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/alerts.yaml:/etc/prometheus/alerts.yaml:ro" in mounts


def test_grafana_mounts_provisioning_and_dashboards(compose: dict[str, Any]) -> None:
    """Grafana gets the provisioning tree and the dashboards directory it names."""
    mounts = compose["services"]["grafana"]["volumes"]
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).is_file()
