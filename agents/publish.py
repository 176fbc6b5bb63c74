"""Kafka side of the agent (aiokafka): produce with acks=all, keep folder cursors.

The ordering rule that makes restarts safe: a folder's cursor record is produced only
after Kafka acknowledged every record of the batch it covers, so the stored cursor is
never ahead of what Kafka holds. Cursors live in a compacted topic, key
``mailbox-id/folder``; at start-up the agent reads that topic to its end.

Errors: :class:`PublishError` (any Kafka failure, translated here).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from agents.config import KafkaSettings
from agents.cursor import FolderCursor, cursor_key, decode_cursor, encode_cursor
from agents.records import OutRecord
from pipeline.contracts import topics
from pipeline.kafka.read import read_topic as read_topic_records
from pipeline.kafka.sasl import KafkaSasl, kafka_client_options
from pipeline.kafka.tls import KafkaTls

__all__ = [
    "CursorStore",
    "KafkaPublisher",
    "PublishError",
    "RecordsRejectedError",
    "read_cursors",
    "stop_consumer",
    "topic_specs",
]

_TOPIC_EXISTS = 36
MAX_BATCH_BYTES = 1_000_000  # per partition and request; a larger record goes alone
BATCH_PATH_MAX_RECORD = 256 * 1024  # larger records take the record-by-record path


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    """The agent's topics as it creates them: ``[kafka] replication`` replicas (3 unless
    configured; a cluster with fewer brokers refuses, and the agent says so rather than
    lowering it), and from 3 on ``min.insync.replicas = 2``, so that an ``acks=all``
    write survives the loss of any one broker."""
    replication = settings.replication
    configs = topics.durability_configs(replication)
    compact = {**configs, "cleanup.policy": "compact"}
    return [
        NewTopic(settings.topic, settings.partitions, replication, topic_configs=configs),
        NewTopic(
            settings.dead_letter_topic, settings.partitions, replication, topic_configs=configs
        ),
        NewTopic(settings.cursor_topic, 1, replication, topic_configs=compact),
    ]


class PublishError(Exception):
    """Kafka did not take a record (or the cursor topic could not be read)."""

    kind = "kafka"


class RecordsRejectedError(PublishError):
    """Kafka acknowledged a batch except the records at ``indices`` (too large for it)."""

    def __init__(self, indices: frozenset[int], reason: str) -> None:
        super().__init__(f"Kafka rejected {len(indices)} record(s): {reason}")
        self.indices = indices
        self.reason = reason


_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class KafkaPublisher:
    """An idempotence-configurable, acks=all producer; ``publish`` waits for every ack.

    ``producer`` builds the aiokafka producer from keyword arguments (tests pass a fake
    that records them).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        max_record_bytes: int,
        producer: Callable[..., AIOKafkaProducer] = AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        # the TLS context made and the SASL password read once per producer (each
        # reconnect of the agent makes a new one: a rotated password file is read again)
        self._client = kafka_client_options(settings.tls, settings.sasl)
        # one batch handed over at a time per partition (_publish_batches)
        self._handing: dict[tuple[str, int], asyncio.Lock] = {}
        self._producer = producer(
            **self._client,
            bootstrap_servers=settings.bootstrap,
            client_id=settings.client_id,
            acks="all",  # a record counts once every in-sync replica has it
            enable_idempotence=settings.idempotence,  # off only for the embedded broker
            max_request_size=max_record_bytes + 64 * 1024,
            # One IMAP batch in as few Kafka batches as fit: aiokafka's default (16 KB)
            # held two or three messages, so each became its own stored batch, and the
            # embedded broker's S3 storage fetches slower the more batch objects a
            # partition holds (docs/reliability.md). Below Kafka's default
            # message.max.bytes (1 MiB + 12), so no broker setting is needed for it.
            max_batch_size=MAX_BATCH_BYTES,
            linger_ms=5,
            request_timeout_ms=30_000,
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
            if self.settings.create_topics:
                await self._create_topics()
        except KafkaError as exc:
            raise PublishError(f"cannot reach Kafka: {type(exc).__name__}") from None
        except KeyError:  # aiokafka's SCRAM client when the broker ends the exchange (e=)
            raise PublishError("cannot reach Kafka: SASL SCRAM exchange refused") from None

    async def _create_topics(self) -> None:
        s = self.settings
        admin = AIOKafkaAdminClient(
            **self._client, bootstrap_servers=s.bootstrap, client_id=s.client_id
        )
        await admin.start()
        try:
            topics = topic_specs(s)
            response = await admin.create_topics(topics)
            for name, code, message in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise PublishError(
                        f"cannot create topic {name} with {s.replication} replicas: {message} "
                        f"(error {code}; [kafka] replication sets it, create_topics = false "
                        "leaves topic creation to you)"
                    )
        finally:
            await admin.close()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` and return once Kafka acknowledged all of them.

        Raises :class:`RecordsRejectedError` when the only failures are records Kafka
        finds too large (every other record is then acknowledged), else
        :class:`PublishError`.

        Several records of one key (a mailbox's batch) go as whole record batches
        (:meth:`_publish_batches`); a single record (a folder's cursor, a dead letter,
        one new message) goes through the producer's accumulator, where the records of
        other mailboxes for that partition share its batch and produce request: as a
        batch of its own, every cursor commit cost a produce request (~1.2 ms of agent
        CPU per mailbox on a first sync, bench/README.md).
        """
        if len(records) > 1 and _one_key(records) and await self._publish_batches(records):
            return
        outcomes: list[BaseException | asyncio.Future[Any]] = []
        try:
            for r in records:
                headers = list(r.headers) or None
                try:
                    outcomes.append(
                        await self._producer.send(r.topic, r.value, key=r.key, headers=headers)
                    )
                except _TOO_LARGE as exc:  # refused client-side, before sending
                    outcomes.append(exc)
            waited = [o for o in outcomes if isinstance(o, asyncio.Future)]
            await asyncio.gather(*waited, return_exceptions=True)
        except KafkaError as exc:
            raise PublishError(f"Kafka refused a record: {type(exc).__name__}") from None
        errors = {i: _outcome(o) for i, o in enumerate(outcomes)}
        failed = {i: e for i, e in errors.items() if e is not None}
        if not failed:
            return
        if all(isinstance(e, _TOO_LARGE) for e in failed.values()):
            raise RecordsRejectedError(frozenset(failed), "record too large for Kafka")
        kind = next(type(e).__name__ for e in failed.values() if not isinstance(e, _TOO_LARGE))
        raise PublishError(f"Kafka refused a record: {kind}")

    async def _publish_batches(self, records: Sequence[OutRecord]) -> bool:
        """Records of one topic and key (one mailbox's batch) as ready-made record batches.

        aiokafka's ``send`` costs a coroutine, a partitioner call and an accumulator
        look-up per record (~10 % of the agent's CPU on a first sync); a mailbox's
        records all go to one partition, so they are appended to ``BatchBuilder``s and
        handed over whole, in order. The partition is the one ``send`` would choose
        (the producer's partitioner over the same partition list). ``False`` (nothing
        sent) when a record is too large for this path: ``publish`` then sends record by
        record, which reports records Kafka refuses one by one.

        aiokafka queues one handed-over batch per partition: ``send_batch`` waits until
        the one before it is drained, and every waiter of a partition wakes at each
        drain (with 32 syncs in flight, ~35 wake-ups per batch, and its time budget
        shrinks by the total wait at each wake-up, so under load some failed with
        ``KafkaTimeoutError`` and their mailbox read its batch again). Hand-overs to a
        partition therefore queue on a lock, in FIFO order: one waiter at a time.
        """
        if any(len(r.value) > BATCH_PATH_MAX_RECORD for r in records):
            return False
        producer = self._producer
        topic, key = records[0].topic, records[0].key
        try:
            partitions = list(await producer.partitions_for(topic))
            available = list(producer.client.cluster.available_partitions_for_topic(topic))
            partition = producer._partitioner(key, partitions, available)
            handing = self._handing.get((topic, partition))
            if handing is None:
                handing = self._handing[(topic, partition)] = asyncio.Lock()
            futures: list[asyncio.Future[Any]] = []
            batch = producer.create_batch()
            for r in records:
                headers = list(r.headers)
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
                    async with handing:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if (
                        batch.append(key=r.key, value=r.value, timestamp=None, headers=headers)
                        is None
                    ):
                        raise PublishError("a record does not fit an empty batch")
            async with handing:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        except KafkaError as exc:
            raise PublishError(f"Kafka refused a record: {type(exc).__name__}") from None
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors and all(isinstance(e, _TOO_LARGE) for e in errors):
            # a broker whose message.max.bytes is below our batch size: record by record
            # (batches already stored are sent again; downstream keys on content_key)
            return False
        if errors:
            raise PublishError(f"Kafka refused a record: {type(errors[0]).__name__}")
        return True

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError):
            await self._producer.stop()


def _one_key(records: Sequence[OutRecord]) -> bool:
    """Whether every record has the first one's topic and key (and there is one)."""
    if not records:
        return False
    topic, key = records[0].topic, records[0].key
    return all(r.topic == topic and r.key == key for r in records)


def _outcome(outcome: BaseException | asyncio.Future[Any]) -> BaseException | None:
    """The error of one send (a local refusal or the acknowledgement future), if any."""
    if isinstance(outcome, BaseException):
        return outcome
    return outcome.exception()


class CursorStore:
    """Folder cursors in memory, backed by the compacted cursor topic."""

    def __init__(self, publisher: KafkaPublisher, cursors: dict[bytes, FolderCursor]) -> None:
        self._publisher = publisher
        self._cursors = cursors

    @classmethod
    async def load(cls, publisher: KafkaPublisher) -> CursorStore:
        s = publisher.settings
        cursors = await read_cursors(s.bootstrap, s.cursor_topic, s.tls, s.sasl)
        return cls(publisher, cursors)

    def get(self, mailbox_id: str, folder: str) -> FolderCursor | None:
        return self._cursors.get(cursor_key(mailbox_id, folder))

    async def commit(self, mailbox_id: str, folder: str, cursor: FolderCursor) -> None:
        """Store ``cursor`` durably (acks=all) and only then remember it."""
        key = cursor_key(mailbox_id, folder)
        topic = self._publisher.settings.cursor_topic
        await self._publisher.publish([OutRecord(topic, key, encode_cursor(cursor), ())])
        self._cursors[key] = cursor


async def read_cursors(
    bootstrap: str, topic: str, tls: KafkaTls | None = None, sasl: KafkaSasl | None = None
) -> dict[bytes, FolderCursor]:
    """Every folder cursor in ``topic`` (last record per key wins)."""
    cursors: dict[bytes, FolderCursor] = {}
    for key, value in await read_topic(bootstrap, topic, tls, sasl):
        cursor = decode_cursor(value) if key is not None and value is not None else None
        if key is not None and cursor is not None:
            cursors[key] = cursor
    return cursors


async def read_topic(
    bootstrap: str, topic: str, tls: KafkaTls | None = None, sasl: KafkaSasl | None = None
) -> list[tuple[bytes | None, bytes | None]]:
    """``(key, value)`` of every record now in ``topic``, partition by partition."""
    consumer = AIOKafkaConsumer(
        **kafka_client_options(tls, sasl), bootstrap_servers=bootstrap, enable_auto_commit=False
    )
    try:
        await consumer.start()
        # to the fetch's high watermark: the embedded broker's ListOffsets lags behind
        return [(r.key, r.value) for r in await read_topic_records(consumer, topic)]
    except KafkaError as exc:
        raise PublishError(f"cannot read {topic}: {type(exc).__name__}") from None
    except KeyError:  # aiokafka's SCRAM client when the broker ends the exchange (e=)
        raise PublishError(f"cannot read {topic}: SASL SCRAM exchange refused") from None
    finally:
        await stop_consumer(consumer, topic)


async def stop_consumer(consumer: Any, topic: str) -> None:
    """``consumer.stop()``, with aiokafka's own cancellation translated.

    When the broker goes away during a read, aiokafka's fetch task sits in its retry
    back-off; ``stop()`` cancels it and re-raises that task's ``CancelledError``, which
    would end the agent's start-up (``_connect_kafka`` retries on PublishError only)
    after a broker crash. A cancellation of the caller's own task is passed on unchanged.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise PublishError(f"Kafka went away while reading {topic}") from None
