"""KafkaSasl: each mechanism's client options, secrets from env or files only (never
shown), the OAUTHBEARER token re-read, and the same settings for agent, workers, events."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agents.config import ConfigError, parse_config
from agents.publish import topic_specs
from pectrack.cli.events import _sasl
from pipeline.kafka.sasl import (
    FileTokenProvider,
    KafkaSasl,
    KafkaSaslError,
    faust_credentials,
    kafka_client_options,
)
from pipeline.kafka.tls import KafkaTls
from pipeline.streams.settings import from_environment
from tests.support.tls import TlsPki


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_over_plaintext_and_over_tls(mechanism: str, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    sasl = KafkaSasl(mechanism, username="agent", password_file=str(tmp_path / "pw"))
    plain = kafka_client_options(None, sasl)
    assert plain == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "agent",
        "sasl_plain_password": "s3cret",
    }
    pki = TlsPki(tmp_path)
    over_tls = kafka_client_options(KafkaTls(pki.ca), sasl)
    assert over_tls["security_protocol"] == "SASL_SSL"
    assert isinstance(over_tls["ssl_context"], ssl.SSLContext)
    assert over_tls["sasl_plain_password"] == "s3cret"


def test_plain_needs_tls_unless_the_network_is_declared_private(tmp_path: Path) -> None:
    sasl = KafkaSasl("PLAIN", username="u", password_env="PW", environ={"PW": "p"})
    with pytest.raises(KafkaSaslError, match="in clear"):
        kafka_client_options(None, sasl)
    pki = TlsPki(tmp_path)
    assert kafka_client_options(KafkaTls(pki.ca), sasl)["security_protocol"] == "SASL_SSL"
    private = KafkaSasl(
        "PLAIN", username="u", password_env="PW", environ={"PW": "p"}, allow_plaintext=True
    )
    assert kafka_client_options(None, private)["security_protocol"] == "SASL_PLAINTEXT"


async def test_oauthbearer_token_is_read_again_at_each_connection(tmp_path: Path) -> None:
    """An external refresher rewrites the file; the next connection sends the new token."""
    token = tmp_path / "token"
    token.write_text("first-token\n")
    options = kafka_client_options(None, KafkaSasl("OAUTHBEARER", token_file=str(token)))
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider: FileTokenProvider = options["sasl_oauth_token_provider"]
    assert await provider.token() == "first-token"
    token.write_text("refreshed-token")
    assert await provider.token() == "refreshed-token"
    token.unlink()
    with pytest.raises(KafkaSaslError, match=r"token_file .*token: No such file"):
        await provider.token()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mechanism": "GSSAPI", "username": "u", "password_env": "P"}, "not one of"),
        ({"mechanism": "SCRAM-SHA-256", "password_env": "P"}, "needs a username"),
        ({"mechanism": "SCRAM-SHA-256", "username": "u"}, "exactly one of"),
        (
            {
                "mechanism": "SCRAM-SHA-512",
                "username": "u",
                "password_env": "P",
                "password_file": "f",
            },
            "exactly one of",
        ),
        ({"mechanism": "OAUTHBEARER"}, "needs a token_file"),
        ({"mechanism": "OAUTHBEARER", "token_file": "t", "username": "u"}, "not a username"),
    ],
)
def test_incomplete_settings_are_named(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaSaslError, match=message):
        KafkaSasl(**kwargs)  # type: ignore[arg-type]


def test_a_missing_secret_is_named_and_no_secret_is_ever_shown(tmp_path: Path) -> None:
    sasl = KafkaSasl("SCRAM-SHA-512", username="u", password_env="KAFKA_PW", environ={})
    with pytest.raises(KafkaSaslError, match="KAFKA_PW is not set"):
        sasl.password()
    shown = KafkaSasl(
        "SCRAM-SHA-512", username="u", password_env="KAFKA_PW", environ={"KAFKA_PW": "hunter2"}
    )
    assert shown.password() == "hunter2"
    assert "hunter2" not in repr(shown) + str(shown)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(KafkaSaslError, match="is empty"):
        KafkaSasl("PLAIN", username="u", password_file=str(empty)).password()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"])
def test_the_workers_get_what_every_other_client_gets(mechanism: str, tmp_path: Path) -> None:
    """faust's credentials turn into the same aiokafka options as the agent's and events'."""
    (tmp_path / "secret").write_text("value")
    pki = TlsPki(tmp_path)
    tls = KafkaTls(pki.ca)
    sasl = (
        KafkaSasl(mechanism, token_file=str(tmp_path / "secret"))
        if mechanism == "OAUTHBEARER"
        else KafkaSasl(mechanism, username="w", password_file=str(tmp_path / "secret"))
    )
    credentials = faust_credentials(tls, sasl)["broker_credentials"]
    via_faust = dict(credentials_to_aiokafka_auth(credentials))
    direct = kafka_client_options(tls, sasl)
    for options in (via_faust, direct):
        assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
        provider = options.pop("sasl_oauth_token_provider", None)
        assert (provider is None) == (mechanism != "OAUTHBEARER")
    assert via_faust == direct
    assert faust_credentials(None, None) == {}
    assert isinstance(faust_credentials(tls, None)["broker_credentials"], faust.SSLCredentials)


def test_agent_config_reads_sasl_keys_relative_to_the_config(tmp_path: Path) -> None:
    doc = {
        "kafka": {"bootstrap": "k:9093", "tls": True, "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_username": "pectrack-agent", "sasl_password_file": "kafka-pw"},
        "mailbox": [{"id": "a", "host": "h", "user": "u", "password_env": "PW"}],
    }  # fmt: skip
    sasl = parse_config(doc, {}, base_dir=tmp_path).kafka.sasl
    assert sasl == KafkaSasl(
        "SCRAM-SHA-512", username="pectrack-agent", password_file=str(tmp_path / "kafka-pw")
    )
    bad = {**doc, "kafka": {"bootstrap": "k:9093", "sasl_username": "x"}}
    with pytest.raises(ConfigError, match="sasl_mechanism is not"):
        parse_config(bad, {})
    with pytest.raises(ConfigError, match=r"\[kafka\] Kafka SASL OAUTHBEARER needs"):
        parse_config({**doc, "kafka": {"bootstrap": "k", "sasl_mechanism": "OAUTHBEARER"}}, {})


def test_worker_settings_take_sasl_from_the_environment(tmp_path: Path) -> None:
    env = {
        "PECTRACK_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "PECTRACK_KAFKA_SASL_USERNAME": "pectrack-worker",
        "PECTRACK_KAFKA_SASL_PASSWORD_ENV": "KAFKA_PASSWORD",
    }
    settings = from_environment(env=env)
    assert settings.sasl == KafkaSasl(
        "SCRAM-SHA-256", username="pectrack-worker", password_env="KAFKA_PASSWORD"
    )
    with pytest.raises(ValueError, match="need kafka_sasl_mechanism"):
        from_environment(env={"PECTRACK_KAFKA_SASL_USERNAME": "x"})
    with pytest.raises(ValueError, match="needs a token_file"):
        from_environment(env={"PECTRACK_KAFKA_SASL_MECHANISM": "OAUTHBEARER"})


def test_events_flags_build_the_same_settings() -> None:
    args = argparse.Namespace(
        sasl_mechanism="SCRAM-SHA-512", sasl_username="reader", sasl_password_env="PW",
        sasl_password_file=None, sasl_token_file=None, sasl_allow_plaintext=False,
    )  # fmt: skip
    assert _sasl(args) == KafkaSasl("SCRAM-SHA-512", username="reader", password_env="PW")
    args.sasl_mechanism = None
    with pytest.raises(KafkaSaslError, match="need --sasl-mechanism"):
        _sasl(args)


def test_agent_topics_are_never_created_with_one_replica_by_default() -> None:
    """Replication 3 with min.insync.replicas 2 unless configured; 1 only when asked."""
    doc = {
        "kafka": {"bootstrap": "k"},
        "mailbox": [{"id": "a", "host": "h", "user": "u", "password_env": "PW"}],
    }
    specs = topic_specs(parse_config(doc, {}).kafka)
    assert [(t.name, t.replication_factor) for t in specs] == [
        ("pec.raw", 3), ("pec.raw.deadletter", 3), ("pec.agent.cursors", 3),
    ]  # fmt: skip
    assert all(t.topic_configs["min.insync.replicas"] == "2" for t in specs)
    assert specs[2].topic_configs["cleanup.policy"] == "compact"
    one = {**doc, "kafka": {"bootstrap": "k", "replication": 1}}
    assert {t.replication_factor for t in topic_specs(parse_config(one, {}).kafka)} == {1}
    with pytest.raises(ConfigError, match="replication must be positive"):
        parse_config({**doc, "kafka": {"bootstrap": "k", "replication": 0}}, {})
