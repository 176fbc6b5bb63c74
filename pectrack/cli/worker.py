"""``pectrack worker``: run the stream processors (one member of the consumer group)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agents.logs import JsonFormatter, configure, log_event  # the agent's JSON lines
from pipeline.kafka.tls import handshake_error
from pipeline.streams.logs import logging_config
from pipeline.streams.settings import StreamSettings, add_arguments, from_arguments

log = logging.getLogger("pipeline.streams.worker")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the stream processors (verify, correlate, deadlines, web lookup)",
        description="Run one stream worker. Settings: defaults < PECTRACK_<NAME> env < flags.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def _wait_for_broker(
    settings: StreamSettings,
    ensure: Callable[[StreamSettings], Coroutine[Any, Any, list[str]]],
    errors: type[Exception],
) -> list[str]:
    """Create the topics, retrying with backoff while the broker is unreachable: a worker
    started before Kafka (or during an outage) waits for it, as the agent does."""
    delay = 1.0
    while True:
        try:
            return asyncio.run(ensure(settings))
        except errors as exc:
            tls = settings.tls
            cause = asyncio.run(handshake_error(settings.broker, tls)) if tls else None
            auth = None if cause else asyncio.run(_auth_error(settings))
            log_event(
                log,
                logging.WARNING,
                "kafka.unreachable",
                broker=settings.broker,
                error=f"unreachable ({exc})"
                + (f"; TLS: {cause}" if cause else "")
                + (f"; authentication: {auth}" if auth else ""),
                retry_seconds=round(delay),
            )
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _auth_error(settings: StreamSettings) -> str | None:
    from pipeline.kafka.sasl import auth_error  # noqa: PLC0415 - aiokafka, when needed

    return await auth_error(settings.broker, settings.tls, settings.sasl)


def run(args: argparse.Namespace) -> int:
    import faust  # noqa: PLC0415 - heavy import, only for this subcommand
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from pipeline.contracts.metrics import serve  # noqa: PLC0415
    from pipeline.streams.app import build  # noqa: PLC0415
    from pipeline.streams.health import install  # noqa: PLC0415
    from pipeline.streams.topics import ensure_topics  # noqa: PLC0415
    from pipeline.trust import TrustStoreError  # noqa: PLC0415

    try:
        settings = from_arguments(args)
        configure(settings.log_level)  # JSON lines from here on, faust's own too (below)
        pipeline = build(settings)
        install(pipeline.app, pipeline.registry)  # /livez, /readyz on the web port
    except (ValueError, TrustStoreError) as exc:
        configure("info")
        log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    created = _wait_for_broker(settings, ensure_topics, KafkaError)
    if created:
        log_event(log, logging.INFO, "topics.created", topics=created)
    if settings.metrics_port is not None:
        port = serve(pipeline.registry, settings.metrics_port, settings.metrics_host)
        log_event(log, logging.INFO, "metrics.serving", host=settings.metrics_host, port=port)
    worker = faust.Worker(
        pipeline.app,
        loglevel=settings.log_level,
        quiet=True,
        logging_config=logging_config(settings.log_level, JsonFormatter),
    )
    try:
        return worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    finally:
        pipeline.verifier.close()  # the verify pool, once no batch can be in progress
