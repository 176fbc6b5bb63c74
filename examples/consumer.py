"""A downstream consumer of ``pec.state-changes`` in one file: deliveries and failures.

    pip install pectrack              # for pipeline.contracts.cloudevents (and aiokafka)
    python examples/consumer.py --broker 127.0.0.1:9092 --from-beginning

Follows the topic in its own consumer group, reads each record in either CloudEvents
mode with :func:`pipeline.contracts.cloudevents.decode_record`, drops repeats by event
``id`` (delivery is at-least-once: a worker that crashed replays the same ids), keeps the
latest state of each (message, recipient) and prints every delivery and every failure::

    2024-03-01 11:03:00+01:00  delivered        <20240301.42@erp.example.it> -> g.b@postecert.it
    2024-03-01 11:05:12+01:00  delivery-failed  <20240301.43@erp.example.it> -> uff@pec.example.it

``--jsonl`` prints every event instead (after dedup), one JSON object a line. Ctrl-C stops
it; the group's offsets are committed, so the next run goes on where this one stopped
(the ``seen`` ids are in memory only: keep them in your own store to dedup across runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from aiokafka import AIOKafkaConsumer

from pipeline.contracts.cloudevents import DecodeError, StateChange, decode_record
from pipeline.core.model import DeliveryState


class Deliveries:
    """What the consumer knows: event ids seen, and the latest state per recipient."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.latest: dict[tuple[str, str | None], DeliveryState] = {}

    def apply(self, event: StateChange) -> bool:
        """Record ``event``; ``False`` if it is a repeat (same id) and changes nothing."""
        if event.id in self.seen:
            return False
        self.seen.add(event.id)
        if event.to_state is not None:
            self.latest[(event.key, event.recipient)] = event.to_state
        return True


def line(event: StateChange) -> str | None:
    """The human line for a delivery or a failure; ``None`` for any other event."""
    if not (event.is_delivery or event.is_final_failure):
        return None
    state = event.to_state.value if event.to_state else ""
    return f"{event.time}  {state:<15}  {event.msgid} -> {event.recipient}"


def as_json(event: StateChange) -> str:
    return json.dumps(
        {
            "id": event.id,
            "type": event.type.value,
            "key": event.key,
            "recipient": event.recipient,
            "from_state": event.from_state.value if event.from_state else None,
            "to_state": event.to_state.value if event.to_state else None,
            "time": event.time.isoformat(),
        }
    )


async def follow(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.broker,
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
    )
    deliveries = Deliveries()
    await consumer.start()
    try:
        async for record in consumer:
            try:
                event = decode_record(record.headers, record.value)
            except DecodeError as exc:  # not a pectrack event: say so, go on
                where = f"{record.topic}/{record.partition}@{record.offset}"
                print(f"skipped {where}: {exc}", file=sys.stderr, flush=True)
                continue
            if not deliveries.apply(event):
                continue
            text = as_json(event) if args.jsonl else line(event)
            if text is not None:
                print(text, flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--broker", default="127.0.0.1:9092", help="Kafka bootstrap host:port")
    parser.add_argument("--topic", default="pec.state-changes")
    parser.add_argument("--group", default="pectrack-example", help="consumer group id")
    parser.add_argument(
        "--from-beginning", action="store_true", help="a new group starts at the oldest event"
    )
    parser.add_argument("--jsonl", action="store_true", help="every event as a JSON line")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(args))


if __name__ == "__main__":
    main()
