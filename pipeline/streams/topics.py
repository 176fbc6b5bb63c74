"""Create the pipeline's topics before the workers start (partitions and compaction set).

faust would only declare its internal topics; source topics that do not exist yet make
the first consumer-group join wait for a metadata refresh. Existing topics are left as
they are (their partition count is the operator's decision).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from pipeline.contracts import topics
from pipeline.kafka.sasl import kafka_client_options
from pipeline.streams.settings import StreamSettings


def topic_specs(settings: StreamSettings) -> list[NewTopic]:
    plain = (
        settings.raw_topic,
        settings.receipts_topic,
        settings.submissions_topic,
        settings.state_changes_topic,
        settings.dlq_topic,
        settings.inbound_topic,
        settings.sdi_topic,
        settings.invoice_states_topic,
        settings.sdi_checks_topic,
    )
    configs = topics.durability_configs(settings.replication)
    specs = [
        NewTopic(name, settings.partitions, settings.replication, topic_configs=configs)
        for name in plain
    ]
    specs.append(
        NewTopic(
            settings.message_state_topic,
            settings.partitions,
            settings.replication,
            topic_configs={**configs, "cleanup.policy": "compact"},
        )
    )
    return specs


async def ensure_topics(settings: StreamSettings) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = AIOKafkaAdminClient(
        **kafka_client_options(settings.tls, settings.sasl), bootstrap_servers=settings.broker
    )
    try:
        await admin.start()
    except KeyError:  # aiokafka's SCRAM client when the broker ends the exchange (e=...)
        await admin.close()
        raise KafkaConnectionError("SASL SCRAM exchange refused") from None
    created = []
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        for spec in missing:
            try:
                await admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                continue  # another worker created it in the meantime
    finally:
        await admin.close()
    return created
