"""Worker settings: defaults < PECTRACK_* variables < flags; TLS to Kafka among them."""

from __future__ import annotations

import argparse
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from pectrack.cli import worker as cli
from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.schemas import DEFAULT_SCHEMA_BASE, Publication
from pipeline.kafka.tls import KafkaTls, KafkaTlsError, client_options
from pipeline.streams.settings import StreamSettings, from_arguments, from_environment, parse_bool
from tests.support.tls import TlsPki


def parse(*argv: str) -> StreamSettings:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return from_arguments(parser.parse_args(["worker", *argv]))


def test_kafka_is_plaintext_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PECTRACK_KAFKA_TLS", raising=False)
    assert StreamSettings().tls is None
    assert parse().tls is None


def test_kafka_tls_from_the_environment(tmp_path: Path) -> None:
    pki = TlsPki(tmp_path)
    env = {
        "PECTRACK_KAFKA_TLS": "true",
        "PECTRACK_KAFKA_CA_FILE": pki.ca,
        "PECTRACK_KAFKA_CERT_FILE": pki.client_cert,
        "PECTRACK_KAFKA_KEY_FILE": pki.client_key,
    }
    tls = from_environment(env=env).tls
    assert tls == KafkaTls(pki.ca, pki.client_cert, pki.client_key)
    context = client_options(tls)["ssl_context"]
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    unset = from_environment(env={"PECTRACK_KAFKA_TLS": "1", "PECTRACK_KAFKA_CA_FILE": ""})
    assert unset.tls == KafkaTls()  # an empty variable leaves the file unset


def test_kafka_tls_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PECTRACK_KAFKA_TLS", raising=False)
    settings = parse("--kafka-tls", "yes", "--kafka-ca-file", "/etc/kafka/ca.pem")
    assert settings.tls == KafkaTls("/etc/kafka/ca.pem")
    assert parse("--kafka-tls", "false").tls is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PECTRACK_KAFKA_TLS": "maybe"}, "PECTRACK_KAFKA_TLS: expected true or false"),
        ({"PECTRACK_KAFKA_CA_FILE": "/ca.pem"}, "need kafka_tls"),
        ({"PECTRACK_KAFKA_TLS": "true", "PECTRACK_KAFKA_KEY_FILE": "/k.pem"}, "needs kafka_cert"),
        ({"PECTRACK_PARTITIONS": "four"}, "PECTRACK_PARTITIONS: invalid literal"),
    ],
)
def test_bad_settings_name_the_variable_or_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_environment(env=env)


def test_parse_bool_refuses_anything_else() -> None:
    assert [parse_bool(x) for x in ("1", "TRUE", " yes", "0", "False", "no")] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="true or false"):
        parse_bool("on!")


def test_unreadable_ca_file_is_named_before_any_connection(tmp_path: Path) -> None:
    """The worker refuses to start (exit 2) naming the file, without reaching for a broker."""
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(KafkaTlsError, match=r"no-such-ca\.pem: No such file"):
        KafkaTls(str(missing)).context()
    result = subprocess.run(
        [sys.executable, "-m", "pectrack", "worker", "--broker", "127.0.0.1:1",
         "--kafka-tls", "true", "--kafka-ca-file", str(missing), "--metrics-port", "0"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"Kafka TLS ca_file {missing}: No such file" in result.stderr.decode()


def test_cloudevents_mode_and_schema_base_from_environment_and_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Structured by default; binary and another schema base by variable or flag."""
    monkeypatch.delenv("PECTRACK_CLOUDEVENTS_MODE", raising=False)
    monkeypatch.delenv("PECTRACK_SCHEMA_BASE", raising=False)
    assert parse().publication == Publication(Mode.STRUCTURED, DEFAULT_SCHEMA_BASE)
    env = {"PECTRACK_CLOUDEVENTS_MODE": "binary", "PECTRACK_SCHEMA_BASE": "https://s.example/"}
    assert from_environment(env=env).publication == Publication(Mode.BINARY, "https://s.example/")
    flags = parse("--cloudevents-mode", "binary", "--schema-base", "https://s.example/pec/")
    assert flags.publication == Publication(Mode.BINARY, "https://s.example/pec/")


@pytest.mark.parametrize(
    "env",
    [
        {"PECTRACK_CLOUDEVENTS_MODE": "batch"},
        {"PECTRACK_SCHEMA_BASE": "pectrack.state-change/"},
        {"PECTRACK_SCHEMA_BASE": "https://pectrack.example/schemas"},
    ],
)
def test_a_bad_mode_or_schema_base_is_refused(env: dict[str, str]) -> None:
    """An unknown binding mode, or a base that would not give absolute URIs."""
    with pytest.raises(ValueError, match=r"cloudevents_mode|schema base"):
        from_environment(env=env)


def test_the_workers_create_no_topic_with_one_replica_unless_told() -> None:
    """Replication 3 and min.insync.replicas 2 by default, faust's changelogs included;
    replication = 1 only when the operator asks (the embedded broker's tests do not)."""
    from pipeline.streams.topics import topic_specs  # noqa: PLC0415 - aiokafka admin

    specs = topic_specs(StreamSettings())
    assert {spec.replication_factor for spec in specs} == {3}
    assert all(spec.topic_configs["min.insync.replicas"] == "2" for spec in specs)
    assert StreamSettings().replication == 3  # faust's topic_replication_factor
    single = topic_specs(StreamSettings(replication=1))
    assert {spec.replication_factor for spec in single} == {1}
    assert all("min.insync.replicas" not in spec.topic_configs for spec in single)
