"""Kafka over TLS: the agent, the workers and ``pectrack events`` verify the brokers'
certificate and present a client certificate (mutual TLS), end to end.

The embedded broker speaks plaintext; a TLS front end (:class:`ProxiedBroker` with
``tls=``) that requires a client certificate from the test CA stands in front of it and
is the only address the broker advertises, so every connection of every client is TLS.
"""

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

from agents.publish import read_cursors
from pipeline.kafka.tls import KafkaTls, client_options
from pipeline.simulate.traffic import generate_traffic
from tests.streams.oracle import expected_events
from tests.support.dovecot import Dovecot
from tests.support.kafka import read_all, wait_for_count
from tests.support.mail import message
from tests.support.proxy import ProxiedBroker
from tests.support.tls import TlsPki
from tests.support.workers import WorkerProcess, produce_traffic, settle

from .conftest import box, in_process_agent, wait_until, write_config
from .test_streams import assert_matches_oracle, latest_states, worker_args

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsKafka:
    broker: ProxiedBroker
    pki: TlsPki

    @property
    def tls(self) -> KafkaTls:
        """A client's settings: the CA and a client certificate."""
        return KafkaTls(self.pki.ca, self.pki.client_cert, self.pki.client_key)

    @property
    def client(self) -> dict[str, Any]:
        """aiokafka options of that client."""
        return client_options(self.tls)


@pytest.fixture
def tls_kafka(tmp_path: Path) -> Iterator[TlsKafka]:
    pki = TlsPki(tmp_path / "pki")
    context = pki.server_context(require_client=True)
    with ProxiedBroker(log_path=tmp_path / "broker.log", tls=context) as broker:
        yield TlsKafka(broker, pki)


def with_kafka_tls(config: Path, *lines: str) -> Path:
    """The agent config with ``lines`` added to its [kafka] table."""
    text = config.read_text().replace("[kafka]\n", "[kafka]\n" + "".join(f"{x}\n" for x in lines))
    config.write_text(text)
    return config


async def test_agent_publishes_over_mutual_tls(
    dovecot: Dovecot, fresh_users: Any, tls_kafka: TlsKafka, tmp_path: Path
) -> None:
    """Records and cursors reach Kafka through TLS only; a reader needs the same trust."""
    tls_broker, pki = tls_kafka.broker, tls_kafka.pki
    users = fresh_users(2)
    for index in users:
        dovecot.append(dovecot.user(index), "INBOX", message(f"kafka-tls-{index}"))
    config = with_kafka_tls(
        write_config(tmp_path, tls_broker, dovecot, users),
        "tls = true",
        f'ca_file = "{pki.ca}"',
        f'cert_file = "{pki.client_cert}"',
        f'key_file = "{pki.client_key}"',
    )
    async with in_process_agent(config):
        records = await wait_for_count(
            tls_broker.bootstrap, "pec.raw", 2, timeout=30, client=tls_kafka.client
        )
        owners: set[str] = set()
        for _ in range(100):  # a cursor is written after its batch's ack
            cursors = await read_cursors(tls_broker.bootstrap, "pec.agent.cursors", tls_kafka.tls)
            owners = {key.decode().split("/")[0] for key in cursors}
            if len(owners) == 2:
                break
            await asyncio.sleep(0.1)
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in users)
    assert owners == {box(i) for i in users}
    assert tls_broker.proxy.accepted > 0


async def test_agent_refuses_a_broker_its_trust_store_does_not_know(
    dovecot: Dovecot,
    fresh_users: Any,
    tls_kafka: TlsKafka,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """tls = true without the brokers' CA: the system store does not know the test CA, so
    the agent publishes nothing and says Kafka is unavailable (and keeps retrying)."""
    caplog.set_level(logging.WARNING)
    tls_broker, pki = tls_kafka.broker, tls_kafka.pki
    (index,) = fresh_users(1)
    dovecot.append(dovecot.user(index), "INBOX", message(f"kafka-untrusted-{index}"))
    config = with_kafka_tls(
        write_config(tmp_path, tls_broker, dovecot, [index]),
        "tls = true",
        f'cert_file = "{pki.client_cert}"',
        f'key_file = "{pki.client_key}"',
    )
    async with in_process_agent(config):
        await wait_until(
            lambda: any(r.getMessage() == "kafka.unavailable" for r in caplog.records),
            20,
            "kafka.unavailable",
        )
    assert await read_all(tls_broker.bootstrap, "pec.raw", client=tls_kafka.client) == []
    (first, *_) = (r for r in caplog.records if r.getMessage() == "kafka.unavailable")
    fields = getattr(first, "fields", {})
    assert "certificate" in fields["tls_error"]  # the cause, not only "cannot reach Kafka"


async def test_workers_and_events_command_run_over_mutual_tls(
    tls_kafka: TlsKafka, tmp_path: Path
) -> None:
    """The whole topology through TLS: exact events and states for simulated traffic, with
    a second worker taking over half-way from a fresh state directory (it rebuilds the
    table from its changelog, end offsets included, over TLS); then ``pectrack events
    --tls`` prints them, and without a client certificate gets nothing."""
    traffic = generate_traffic(5, 60, 6, datetime(2024, 3, 1, 9, tzinfo=UTC))
    half = len(traffic) // 2
    want = expected_events(traffic)
    tls_broker, pki, client = tls_kafka.broker, tls_kafka.pki, tls_kafka.client
    tls_args = (
        "--kafka-tls", "true",
        "--kafka-ca-file", pki.ca,
        "--kafka-cert-file", pki.client_cert,
        "--kafka-key-file", pki.client_key,
    )  # fmt: skip
    for name, items, expected in (
        ("w1", traffic[:half], expected_events(traffic[:half])),
        ("w2", traffic[half:], want),
    ):
        with WorkerProcess(
            tls_broker, tmp_path / name, *worker_args(tmp_path, *tls_args)
        ) as worker:
            await produce_traffic(tls_broker.bootstrap, items, client=client)
            try:
                events = await settle(
                    tls_broker.bootstrap,
                    "pec.state-changes",
                    expected=sum(expected.values()),
                    timeout=120,
                    client=client,
                )
            except AssertionError:
                print(worker.log_text())
                raise
            states = await latest_states(tls_broker.bootstrap, client)
    assert_matches_oracle(traffic, events, states)
    assert sum(want.values()) > 50

    base = [sys.executable, "-m", "pectrack", "events", "--broker", tls_broker.bootstrap,
            "--from-beginning", "--max", "3", "--tls", "--ca-file", pki.ca]  # fmt: skip
    shown = await asyncio.to_thread(
        subprocess.run,
        [*base, "--cert-file", pki.client_cert, "--key-file", pki.client_key],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr.decode()[-2000:]
    lines = shown.stdout.decode().splitlines()
    assert len(lines) == 3
    assert all(orjson.loads(x)["specversion"] == "1.0" for x in lines)
    refused = await asyncio.to_thread(
        subprocess.run, base, capture_output=True, timeout=60, check=False
    )
    assert refused.returncode == 1
    assert b"broker" in refused.stderr


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("client-cert", "TLS: the broker hung up right after the TLS handshake"),
        ("ca", "TLS: self-signed certificate in certificate chain"),
    ],
)
async def test_worker_says_why_tls_fails(
    missing: str, expected: str, tls_kafka: TlsKafka, tmp_path: Path
) -> None:
    """A worker without its client certificate, or without the brokers' CA, keeps waiting
    for the broker, and its log names the TLS cause, not only "unreachable"."""
    pki = tls_kafka.pki
    flags = {
        "client-cert": ("--kafka-ca-file", pki.ca),
        "ca": ("--kafka-cert-file", pki.client_cert, "--kafka-key-file", pki.client_key),
    }[missing]
    args = worker_args(tmp_path, "--kafka-tls", "true", *flags)
    with WorkerProcess(tls_kafka.broker, tmp_path / "w", *args) as worker:
        await wait_until(lambda: expected in worker.log_text(), 30, expected)
        assert "unreachable" in worker.log_text()
