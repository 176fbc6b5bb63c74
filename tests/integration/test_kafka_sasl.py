"""SASL end to end for the agent, the workers and ``pectrack events``.

First against the embedded broker with ``--authentication``, which can only refuse
(README, security): this build offers SCRAM-SHA-256/512 but keeps no user it could accept
(users created through its admin API are not persisted, and with ``--authentication`` on
nobody may create one), refuses PLAIN, and refuses any OAUTHBEARER token. Each client must
then stay alive and name the cause.

Then the successful path, through a SASL front end (:mod:`tests.support.sasl_gate`,
SCRAM by ``scramp``) in front of the broker, plaintext or TLS, as the TLS tests use a TLS
front end. No secret may appear anywhere."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.config import load_config
from agents.publish import read_cursors
from pipeline.dev.embedded import EmbeddedBroker
from pipeline.kafka.sasl import KafkaSasl, auth_error, kafka_client_options
from pipeline.kafka.tls import KafkaTls
from pipeline.simulate.traffic import generate_traffic
from tests.streams.oracle import expected_events
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.mail import message
from tests.support.proxy import ProxiedBroker
from tests.support.sasl_gate import SaslGate
from tests.support.tls import TlsPki
from tests.support.workers import WorkerProcess, produce_traffic, settle

from .conftest import box, in_process_agent, wait_until, write_config
from .test_streams import assert_matches_oracle, latest_states, worker_args

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
        [sys.executable, "-m", "pectrack", "events", "--broker", auth_broker.bootstrap,
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
        [sys.executable, "-m", "pectrack", "events", "--broker", auth_broker.bootstrap,
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


# -- the successful path, through a SASL front end (tests/support/sasl_gate.py) --------

USERS = {"pectrack-agent": "agent-pw-1", "pectrack-worker": "worker-pw-2", "reader": "r-pw-3"}


@dataclass
class SaslKafka:
    broker: ProxiedBroker
    gate: SaslGate
    pki: TlsPki | None
    valid_tokens: set[str]

    def client(self, mechanism: str, user: str = "reader") -> dict[str, Any]:
        tls = KafkaTls(self.pki.ca) if self.pki else None
        return kafka_client_options(
            tls, KafkaSasl(mechanism, username=user, password_env="PW", environ={"PW": USERS[user]})
        )


@pytest.fixture(params=["plaintext", "tls"])
def sasl_kafka(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SaslKafka]:
    tokens: set[str] = set()
    gate = SaslGate(USERS, tokens=lambda: tokens)
    pki = TlsPki(tmp_path / "pki") if request.param == "tls" else None
    context = pki.server_context(require_client=False) if pki else None
    with ProxiedBroker(log_path=tmp_path / "broker.log", tls=context, sasl=gate) as broker:
        yield SaslKafka(broker, gate, pki, tokens)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"])
async def test_agent_publishes_with_each_mechanism(
    dovecot: Dovecot, fresh_users: Any, sasl_kafka: SaslKafka, tmp_path: Path, mechanism: str
) -> None:
    """Records and cursors through SASL (plaintext or TLS); the OAUTHBEARER token file is
    rewritten by a 'refresher' and the next connection presents the new token."""
    (index,) = fresh_users(1)
    dovecot.append(dovecot.user(index), "INBOX", message(f"sasl-{mechanism}-{index}"))
    (tmp_path / "kafka-secret").write_text("old-token" if mechanism == "OAUTHBEARER" else
                                           USERS["pectrack-agent"])  # fmt: skip
    lines = [f'sasl_mechanism = "{mechanism}"']
    if mechanism == "OAUTHBEARER":
        lines.append('sasl_token_file = "kafka-secret"')
        sasl_kafka.valid_tokens.add("old-token")
    else:
        lines += ['sasl_username = "pectrack-agent"', 'sasl_password_file = "kafka-secret"']
    if sasl_kafka.pki is not None:
        lines += ["tls = true", f'ca_file = "{sasl_kafka.pki.ca}"']
    elif mechanism == "PLAIN":
        lines.append("sasl_allow_plaintext = true")
    config = _with_kafka(write_config(tmp_path, sasl_kafka.broker, dovecot, [index]), *lines)
    reader = sasl_kafka.client("SCRAM-SHA-512")
    async with in_process_agent(config):
        (record,) = await wait_for_count(
            sasl_kafka.broker.bootstrap, "pec.raw", 1, timeout=30, client=reader
        )
    assert record.key == box(index).encode()
    who = "oauth" if mechanism == "OAUTHBEARER" else "pectrack-agent"
    assert sasl_kafka.gate.accepted[(mechanism, who)] >= 1
    assert not sasl_kafka.gate.refused
    if mechanism == "OAUTHBEARER":  # rotation: only the new token is valid now
        sasl_kafka.valid_tokens.clear()
        sasl_kafka.valid_tokens.add("new-token")
        (tmp_path / "kafka-secret").write_text("new-token\n")
        cursors = await read_cursors(
            sasl_kafka.broker.bootstrap, "pec.agent.cursors",
            KafkaTls(sasl_kafka.pki.ca) if sasl_kafka.pki else None,
            load_config(config).kafka.sasl,
        )  # fmt: skip
        assert f"{box(index)}/INBOX".encode() in cursors
        assert sasl_kafka.gate.refused["OAUTHBEARER"] == 0


async def test_wrong_password_is_refused_with_the_brokers_reason(
    dovecot: Dovecot, fresh_users: Any, sasl_kafka: SaslKafka, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Refused as Kafka refuses (error 58): the agent logs the cause and retries."""
    caplog.set_level(logging.WARNING, "agents.agent")
    (tmp_path / "kafka-secret").write_text("not-the-password")
    lines = ['sasl_mechanism = "SCRAM-SHA-256"', 'sasl_username = "pectrack-agent"',
             'sasl_password_file = "kafka-secret"']  # fmt: skip
    if sasl_kafka.pki is not None:
        lines += ["tls = true", f'ca_file = "{sasl_kafka.pki.ca}"']
    config = _with_kafka(write_config(tmp_path, sasl_kafka.broker, dovecot, fresh_users(1)),
                         *lines)  # fmt: skip
    async with in_process_agent(config):
        await wait_until(
            lambda: any(r.getMessage() == "kafka.unavailable" for r in caplog.records),
            30,
            "the refusal",
        )
    (first, *_) = (r for r in caplog.records if r.getMessage() == "kafka.unavailable")
    assert "refused the SASL SCRAM-SHA-256 credentials" in first.fields["auth_error"]  # type: ignore[attr-defined]
    assert sasl_kafka.gate.refused["SCRAM-SHA-256"] >= 1
    assert "not-the-password" not in caplog.text


async def test_worker_and_events_run_with_scram(
    sasl_kafka: SaslKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker authenticated with SCRAM-SHA-512 processes simulated traffic into exactly
    the oracle's events and states; ``pectrack events --sasl-*`` prints them."""
    traffic = generate_traffic(3, 30, 4, datetime(2024, 3, 1, 9, tzinfo=UTC))
    want = expected_events(traffic)
    client = sasl_kafka.client("SCRAM-SHA-512", "reader")
    monkeypatch.setenv("WORKER_KAFKA_PW", USERS["pectrack-worker"])
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_USERNAME", "pectrack-worker")
    monkeypatch.setenv("PECTRACK_KAFKA_SASL_PASSWORD_ENV", "WORKER_KAFKA_PW")
    tls_args: tuple[str, ...] = ()
    if sasl_kafka.pki is not None:
        tls_args = ("--kafka-tls", "true", "--kafka-ca-file", sasl_kafka.pki.ca)
    broker = sasl_kafka.broker
    with WorkerProcess(broker, tmp_path / "w1", *worker_args(tmp_path, *tls_args)) as worker:
        await produce_traffic(broker.bootstrap, traffic, client=client)
        try:
            events = await settle(
                broker.bootstrap,
                "pec.state-changes",
                expected=sum(want.values()),
                timeout=120,
                client=client,
            )
        except AssertionError:
            print(worker.log_text())
            raise
        states = await latest_states(broker.bootstrap, client)
    assert_matches_oracle(traffic, events, states)
    assert sasl_kafka.gate.accepted[("SCRAM-SHA-512", "pectrack-worker")] >= 1
    assert USERS["pectrack-worker"] not in worker.log.read_text()

    monkeypatch.setenv("READER_PW", USERS["reader"])
    argv = [sys.executable, "-m", "pectrack", "events", "--broker", broker.bootstrap,
            "--from-beginning", "--max", "2", "--sasl-mechanism", "SCRAM-SHA-256",
            "--sasl-username", "reader", "--sasl-password-env", "READER_PW"]  # fmt: skip
    if sasl_kafka.pki is not None:
        argv += ["--tls", "--ca-file", sasl_kafka.pki.ca]
    shown = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr.decode()[-2000:]
    assert all(orjson.loads(x)["specversion"] == "1.0" for x in shown.stdout.splitlines())
    assert len(shown.stdout.splitlines()) == 2
