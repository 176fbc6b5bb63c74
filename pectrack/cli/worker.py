"""``pectrack worker``: run the stream processors (one member of the consumer group)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pipeline.kafka.tls import handshake_error
from pipeline.streams.settings import StreamSettings, add_arguments, from_arguments


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
            print(
                f"pectrack worker: broker {settings.broker} unreachable ({exc})"
                + (f"; TLS: {cause}" if cause else "")
                + f"; retrying in {delay:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def run(args: argparse.Namespace) -> int:
    import faust  # noqa: PLC0415 - heavy import, only for this subcommand
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from pipeline.contracts.metrics import serve  # noqa: PLC0415
    from pipeline.streams.app import build  # noqa: PLC0415
    from pipeline.streams.topics import ensure_topics  # noqa: PLC0415
    from pipeline.trust import TrustStoreError  # noqa: PLC0415

    try:
        settings = from_arguments(args)
        pipeline = build(settings)
    except (ValueError, TrustStoreError) as exc:
        print(f"pectrack worker: {exc}", file=sys.stderr)
        return 2
    created = _wait_for_broker(settings, ensure_topics, KafkaError)
    if created:
        print(f"pectrack worker: created topics {', '.join(created)}", flush=True)
    if settings.metrics_port is not None:
        port = serve(pipeline.registry, settings.metrics_port, settings.metrics_host)
        print(
            f"pectrack worker: metrics on http://{settings.metrics_host}:{port}/metrics", flush=True
        )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    worker = faust.Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    try:
        return worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    finally:
        pipeline.verifier.close()  # the verify pool, once no batch can be in progress
