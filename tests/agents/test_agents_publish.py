"""The Kafka producer the agent builds: acks=all always, idempotence as configured."""

from __future__ import annotations

from typing import Any

import pytest

from agents.config import KafkaSettings
from agents.publish import KafkaPublisher


@pytest.mark.parametrize("idempotence", [True, False])
def test_producer_waits_for_all_replicas_and_follows_the_idempotence_setting(
    idempotence: bool,
) -> None:
    """acks="all" whatever the setting; enable_idempotence is exactly ``idempotence``."""
    built: list[dict[str, Any]] = []

    def recording_producer(**kwargs: Any) -> Any:
        """Stands in for AIOKafkaProducer: keeps the keyword arguments it was built with."""
        built.append(kwargs)
        return object()

    settings = KafkaSettings(bootstrap="kafka-0:9092,kafka-1:9092", idempotence=idempotence)
    KafkaPublisher(settings, max_record_bytes=1000, producer=recording_producer)
    (kwargs,) = built
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is idempotence
    assert kwargs["bootstrap_servers"] == "kafka-0:9092,kafka-1:9092"
    assert kwargs["max_request_size"] > 1000  # room for a whole record plus its headers


async def test_default_producer_is_a_real_aiokafka_producer_with_acks_all() -> None:
    """Without a factory the real AIOKafkaProducer is built (it normalises "all" to -1)."""
    publisher = KafkaPublisher(KafkaSettings(bootstrap="127.0.0.1:1"), max_record_bytes=1000)
    try:
        assert publisher._producer._sender._acks == -1
        assert publisher._producer._txn_manager is not None  # idempotence on by default
    finally:
        await publisher.stop()
