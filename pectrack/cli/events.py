"""``pectrack events``: print a topic's records as JSON lines (default ``pec.state-changes``).

    pectrack events --broker 127.0.0.1:9092                 # follow new events
    pectrack events --broker 127.0.0.1:9092 --from-beginning --max 10 | jq .data.to_state

Each line is one record's JSON value as the worker wrote it; a value that is not JSON is
printed as ``{"raw": "..."}``. An event in CloudEvents binary mode (``ce_*`` headers,
``--cloudevents-mode binary``) is printed in its structured form: the attributes from
the headers, the value as ``data``. Reads without a consumer group: it never moves anyone's
offsets. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.contracts.cloudevents import CONTENT_TYPE_HEADER, HEADER_PREFIX
from pipeline.kafka.tls import KafkaTls, KafkaTlsError, client_options

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "events",
        help="print pec.state-changes (or another topic) as JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", default="127.0.0.1:9092", help="Kafka bootstrap host:port")
    parser.add_argument(
        "--topic", default="pec.state-changes", help="topic to print (default: pec.state-changes)"
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record, not the newest"
    )
    parser.add_argument(
        "--max", type=int, default=0, metavar="N", help="stop after N records (default: never)"
    )
    parser.add_argument("--tls", action="store_true", help="verified TLS to Kafka")
    parser.add_argument(
        "--ca-file", help="with --tls: PEM of the brokers' CA (default: the system trust store)"
    )
    parser.add_argument("--cert-file", help="with --tls: client certificate PEM (mutual TLS)")
    parser.add_argument("--key-file", help="with --tls: its key, if not in --cert-file")
    parser.set_defaults(func=run)


def line(value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> bytes:
    """One output line: the record's JSON re-serialized compactly, or ``{"raw": ...}``;
    with ``ce_*`` headers, the event's attributes and the value as its ``data``."""
    try:
        parsed: Any = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        parsed = {"raw": (value or b"").decode("utf-8", "replace")}
    attributes = {
        name.removeprefix(HEADER_PREFIX): bytes(raw).decode("utf-8", "replace")
        for name, raw in headers
        if name.startswith(HEADER_PREFIX)
    }
    content_type = dict(headers).get(CONTENT_TYPE_HEADER)
    if attributes and not (content_type or b"").startswith(b"application/cloudevents"):
        if content_type is not None:
            attributes["datacontenttype"] = bytes(content_type).decode("utf-8", "replace")
        return orjson.dumps({**attributes, "data": parsed})
    return orjson.dumps(parsed)


async def follow(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415 - heavy import, only here
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    files = (args.ca_file, args.cert_file, args.key_file)
    if any(files) and not args.tls:
        print("pectrack events: --ca-file, --cert-file and --key-file need --tls", file=sys.stderr)
        return 2
    try:
        client = client_options(KafkaTls(*files) if args.tls else None)
    except KafkaTlsError as exc:
        print(f"pectrack events: {exc}", file=sys.stderr)
        return 2
    consumer = AIOKafkaConsumer(
        args.topic,
        **client,
        bootstrap_servers=args.broker,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        print(f"pectrack events: broker {args.broker}: {exc}", file=sys.stderr)
        return 1
    printed = 0
    try:
        async for record in consumer:
            sys.stdout.buffer.write(line(record.value, record.headers) + b"\n")
            sys.stdout.buffer.flush()
            printed += 1
            if args.max and printed >= args.max:
                break
    finally:
        await consumer.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(follow(args))
    except BrokenPipeError:  # piped into head: fine
        return 0
