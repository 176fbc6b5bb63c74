"""The agent's Kafka side alone: CPU per mailbox of a first sync (issue #20, item 1).

The agent's ``KafkaPublisher`` and ``CursorStore`` against the embedded broker, in this
process: for each of ``--mailboxes`` mailboxes (``--concurrent`` at a time, like the
agent's sync slots) ``--messages`` records built by ``raw_record`` as the agent builds
them, one publish, then the folder's cursor commit. Prints the process CPU per mailbox
and per message, on uvloop and on asyncio's loop::

    .venv/bin/python -m bench.publish_cpu --mailboxes 1000 --messages 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import uvloop

from agents.config import KafkaSettings
from agents.cursor import FolderCursor
from agents.publish import CursorStore, KafkaPublisher
from agents.records import FetchedMessage, raw_record
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.mail import message


async def publish_all(bootstrap: str, args: argparse.Namespace) -> float:
    """Process CPU seconds to publish every mailbox's records and cursor (one warm-up
    mailbox first, not counted)."""
    settings = KafkaSettings(bootstrap=bootstrap, idempotence=False, partitions=3)
    publisher = KafkaPublisher(settings, max_record_bytes=10 * 1024 * 1024)
    await publisher.start()
    cursors = CursorStore(publisher, {})
    raws = [message(f"pub-{n}", body_bytes=args.size) for n in range(args.messages)]
    slots = asyncio.Semaphore(args.concurrent)

    async def mailbox(index: int) -> None:
        box = f"box-{index:04d}"
        async with slots:
            records = [
                raw_record(settings.topic, box, "INBOX", 7,
                           FetchedMessage(uid, "26-Nov-2026 12:12:37 +0000", raw))
                for uid, raw in enumerate(raws, 1)
            ]  # fmt: skip
            await publisher.publish(records)
            await cursors.commit(box, "INBOX", FolderCursor(7, len(raws)))

    try:
        await mailbox(0)
        started = time.process_time()
        await asyncio.gather(*(mailbox(i) for i in range(1, args.mailboxes + 1)))
        return time.process_time() - started
    finally:
        await publisher.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="per mailbox")
    parser.add_argument("--size", type=int, default=18_000, help="body bytes per message")
    parser.add_argument("--concurrent", type=int, default=32, help="mailboxes at a time")
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        for name in ("uvloop", "asyncio"):
            factory = uvloop.new_event_loop if name == "uvloop" else None
            with asyncio.Runner(loop_factory=factory) as runner:
                cpu = runner.run(publish_all(broker.bootstrap, args))
            total = args.mailboxes * args.messages
            print(f"{name:7}: {cpu:.2f} s CPU for {args.mailboxes} mailboxes x {args.messages}:"
                  f" {cpu / args.mailboxes * 1000:.2f} ms per mailbox,"
                  f" {cpu / total * 1000:.3f} ms per message"
                  f" (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
