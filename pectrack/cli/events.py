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
from pipeline.kafka.sasl import (
    MECHANISMS,
    KafkaSasl,
    KafkaSaslError,
    auth_error,
    kafka_client_options,
)
from pipeline.kafka.tls import KafkaTls, KafkaTlsError

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
    parser.add_argument("--sasl-mechanism", choices=MECHANISMS, help="SASL authentication to Kafka")
    parser.add_argument("--sasl-username", help="SASL user (PLAIN, SCRAM)")
    parser.add_argument(
        "--sasl-password-env", metavar="VARIABLE", help="variable holding the SASL password"
    )
    parser.add_argument("--sasl-password-file", help="file holding the SASL password")
    parser.add_argument("--sasl-token-file", help="OAUTHBEARER token file")
    parser.add_argument(
        "--sasl-allow-plaintext", action="store_true", help="SASL PLAIN without --tls"
    )
    parser.set_defaults(func=run)


def _sasl(args: argparse.Namespace) -> KafkaSasl | None:
    """The SASL settings of the flags (secrets only by variable name or file)."""
    given = (args.sasl_username, args.sasl_password_env, args.sasl_password_file,
             args.sasl_token_file)  # fmt: skip
    if args.sasl_mechanism is None:
        if any(given):
            raise KafkaSaslError("the --sasl-* flags need --sasl-mechanism")
        return None
    return KafkaSasl(
        mechanism=args.sasl_mechanism,
        username=args.sasl_username,
        password_env=args.sasl_password_env,
        password_file=args.sasl_password_file,
        token_file=args.sasl_token_file,
        allow_plaintext=args.sasl_allow_plaintext,
    )


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
        tls = KafkaTls(*files) if args.tls else None
        sasl = _sasl(args)
        client = kafka_client_options(tls, sasl)
    except (KafkaTlsError, KafkaSaslError) as exc:
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
    except (KafkaError, KeyError) as exc:  # KeyError: aiokafka's SCRAM client, refused
        cause = await auth_error(args.broker, tls, sasl)
        why = f"{exc}" if isinstance(exc, KafkaError) else "SASL exchange refused"
        print(
            f"pectrack events: broker {args.broker}: {why}"
            + (f"; authentication: {cause}" if cause else ""),
            file=sys.stderr,
        )
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
