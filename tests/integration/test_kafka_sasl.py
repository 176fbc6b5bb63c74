"""SASL against a broker that really authenticates: the embedded broker with
``--authentication``. What it can exercise are refusals (README, security): this build
offers SCRAM-SHA-256/512 but keeps no user it could accept (users created through its
admin API are not persisted, and with ``--authentication`` on nobody may create one),
refuses PLAIN, and refuses any OAUTHBEARER token. Each client must then stay alive and
name the cause; no secret may appear anywhere."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.config import load_config
from pipeline.embedded import EmbeddedBroker
from pipeline.kafka_sasl import KafkaSasl, auth_error
from tests.support.dovecot import Dovecot
from tests.support.workers import WorkerProcess

from .conftest import in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration

PASSWORD = "never-shown-4711"


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log", authentication=True).start()
    try:
        yield broker
    finally:
        broker.stop()


def _with_kafka(config: Path, *lines: str) -> Path:
    text = config.read_text().replace("[kafka]\n", "[kafka]\n" + "".join(f"{x}\n" for x in lines))
    config.write_text(text)
    return config


@pytest.mark.parametrize(
    ("lines", "cause"),
    [
        ((), "requires authentication (configure SASL)"),
        (
            ('sasl_mechanism = "SCRAM-SHA-256"', 'sasl_username = "pectrack-agent"',
             'sasl_password_file = "kafka-password"'),
            "ended the SASL SCRAM-SHA-256 exchange with an error: unknown user or wrong password",
        ),
        (
            ('sasl_mechanism = "SCRAM-SHA-512"', 'sasl_username = "pectrack-agent"',
             'sasl_password_file = "kafka-password"'),
            "ended the SASL SCRAM-SHA-512 exchange with an error",
        ),
        (('sasl_mechanism = "OAUTHBEARER"', 'sasl_token_file = "kafka-password"'),
         "refused the SASL OAUTHBEARER credentials"),
        (
            ('sasl_mechanism = "PLAIN"', 'sasl_username = "pectrack-agent"',
             'sasl_password_file = "kafka-password"', "sasl_allow_plaintext = true"),
            "closed the connection during SASL PLAIN",
        ),
    ],
    ids=["none", "scram-256", "scram-512", "oauthbearer", "plain"],
)  # fmt: skip
async def test_agent_refused_by_the_broker_names_the_cause_and_keeps_trying(
    dovecot: Dovecot,
    auth_broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    *,
    caplog: pytest.LogCaptureFixture,
    lines: tuple[str, ...],
    cause: str,
) -> None:
    (tmp_path / "kafka-password").write_text(PASSWORD)
    config = _with_kafka(write_config(tmp_path, auth_broker, dovecot, fresh_users(1)), *lines)
    caplog.set_level(logging.WARNING, "agents.agent")

    def refusals() -> list[dict[str, Any]]:
        return [
            r.fields  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "kafka.unavailable"
        ]

    async with in_process_agent(config) as agent:
        await wait_until(lambda: len(refusals()) >= 2, 30, "two refused attempts")
        assert agent.task is not None
        assert not agent.task.done()  # refused is retried, never a crash (SCRAM's KeyError)
    assert all(cause in r["auth_error"] for r in refusals()), refusals()
    assert PASSWORD not in caplog.text


async def test_auth_error_is_none_when_the_broker_needs_no_authentication(
    tmp_path: Path,
) -> None:
    """The diagnosis blames authentication only when it is the cause."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as open_broker:
        assert await auth_error(open_broker.bootstrap, None, None) is None
    # nothing listening: not an authentication problem either
    sasl = KafkaSasl("SCRAM-SHA-256", username="u", password_env="P", environ={"P": "x"})
    assert await auth_error(open_broker.bootstrap, None, sasl) is None


def test_events_refused_exits_1_naming_the_cause(
    auth_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "events", "--broker", auth_broker.bootstrap,
         "--from-beginning", "--max", "1", "--sasl-mechanism", "SCRAM-SHA-512",
         "--sasl-username", "reader", "--sasl-password-file", str(tmp_path / "pw")],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    err = done.stderr.decode()
    assert "authentication: the broker ended the SASL SCRAM-SHA-512 exchange" in err
    assert PASSWORD not in err + done.stdout.decode()


def test_events_without_credentials_is_told_the_broker_requires_them(
    auth_broker: EmbeddedBroker,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "events", "--broker", auth_broker.bootstrap,
         "--max", "1"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "requires authentication (configure SASL)" in done.stderr.decode()


async def test_worker_refused_names_the_cause_and_waits(
    auth_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's password comes from the variable named by its settings; refused, it
    retries with backoff and says why, without the password."""
    monkeypatch.setenv("KAFKA_PASSWORD", PASSWORD)
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_USERNAME", "pectrack-worker")
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_PASSWORD_ENV", "KAFKA_PASSWORD")
    worker = WorkerProcess(auth_broker, tmp_path / "w").start()
    try:
        await wait_until(
            lambda: worker.log_text().count("authentication: the broker ended the SASL "
                                            "SCRAM-SHA-256 exchange") >= 1,
            60,
            "the worker's refusal",
        )  # fmt: skip
        assert worker.proc is not None
        assert worker.proc.poll() is None  # still waiting for the broker, not dead
    finally:
        worker.kill()
    assert PASSWORD not in worker.log.read_text()


def test_agent_config_with_sasl_loads(tmp_path: Path) -> None:
    """The documented [kafka] SASL keys parse (docs/operations.md walks through them)."""
    config = tmp_path / "agent.toml"
    config.write_text(
        '[kafka]\nbootstrap = "kafka:9093"\ntls = true\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "pectrack-agent"\nsasl_password_file = "/run/secrets/kafka/password"\n'
        '[mailbox_defaults]\nhost = "imaps.pec.example.it"\n'
        'password_file = "/run/secrets/pec/{id}"\n'
        '[[mailbox]]\nid = "comune-x"\nuser = "protocollo@pec.comune-x.it"\n'
    )
    kafka = load_config(config, environ={}).kafka
    assert kafka.sasl is not None
    assert kafka.sasl.password_file == "/run/secrets/kafka/password"
    assert asyncio.iscoroutinefunction(auth_error)
