"""The Kafka producer the agent builds: acks=all always, idempotence as configured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.config import KafkaSettings
from agents.publish import KafkaPublisher, PublishError, stop_consumer


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


class StopRaises:
    """An aiokafka consumer whose ``stop()`` re-raises its fetch task's cancellation."""

    async def stop(self) -> None:
        raise asyncio.CancelledError


async def test_aiokafkas_own_cancellation_on_stop_is_a_publish_error() -> None:
    """The broker went away during the cursor read: the agent sees a PublishError (it
    retries with backoff) instead of a CancelledError that ended the process."""
    with pytest.raises(PublishError, match="went away"):
        await stop_consumer(StopRaises(), "pec.agent.cursors")


async def test_a_cancellation_of_the_reader_itself_is_passed_on() -> None:
    """Shutting the agent down while it reads still cancels it."""

    async def reading() -> None:
        await asyncio.sleep(3600)

    async def cancelled_while_stopping() -> None:
        try:
            await reading()
        finally:
            await stop_consumer(StopRaises(), "pec.agent.cursors")

    task = asyncio.ensure_future(cancelled_while_stopping())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
