"""The agent's IMAP side alone: CPU per mailbox of a first sync (issue #20, item 1).

Real Dovecot, the agent's own ``MailboxWorker`` (``once``: sync every folder, then stop;
no IDLE), Kafka replaced by an in-memory publisher and cursor store, all in this
process. For each ``--messages`` value a fresh set of ``--mailboxes`` users is synced
``--rounds`` times (cursors start empty each round), alternately on asyncio's loop and on
uvloop; the process CPU of each sync over the mailboxes is printed. The difference
between two ``--messages`` values gives the cost per message, the rest is per mailbox::

    .venv/bin/python -m bench.mailbox_cpu --mailboxes 300 --messages 1,20 --rounds 6

Run as root (Dovecot runs mail as uid ``mail``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop
from prometheus_client import CollectorRegistry

from agents.config import AgentConfig, load_config
from agents.cursor import FolderCursor
from agents.ingest import MailboxWorker, WorkerContext
from agents.records import OutRecord
from agents.slots import Slots
from pipeline.contracts.metrics import IngestMetrics
from tests.support.agent import write_config
from tests.support.dovecot import Dovecot, raise_inotify_limit
from tests.support.mail import message


class Memory:
    """Publisher and cursor store in memory: counts what would go to Kafka."""

    def __init__(self) -> None:
        self.records = 0
        self.cursors: dict[tuple[str, str], FolderCursor] = {}

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records += len(records)

    def get(self, mailbox_id: str, folder: str) -> FolderCursor | None:
        return self.cursors.get((mailbox_id, folder))

    async def commit(self, mailbox_id: str, folder: str, cursor: FolderCursor) -> None:
        self.cursors[(mailbox_id, folder)] = cursor


class NoBroker:
    bootstrap = "127.0.0.1:1"  # never contacted


async def sync(config: AgentConfig) -> tuple[float, int]:
    """Process CPU seconds of one first sync of every mailbox, and records published."""
    memory = Memory()
    ctx = WorkerContext(
        kafka=config.kafka,
        limits=config.limits,
        publisher=memory,
        cursors=memory,
        metrics=IngestMetrics(CollectorRegistry()),
        connecting=asyncio.Semaphore(config.limits.max_concurrent_connects),
        active=Slots(config.limits.max_concurrent_syncs),
        stop=asyncio.Event(),
        once=True,
    )
    started = time.process_time()
    await asyncio.gather(*(MailboxWorker(box, ctx).run() for box in config.mailboxes))
    return time.process_time() - started, memory.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=300)
    parser.add_argument("--messages", default="1,20", help="per mailbox, comma-separated")
    parser.add_argument("--size", type=int, default=18_000, help="body bytes per message")
    parser.add_argument("--rounds", type=int, default=6, help="even rounds asyncio, odd uvloop")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: Dovecot needs to run mail as uid `mail`")
    counts = [int(x) for x in args.messages.split(",")]
    raise_inotify_limit(4096)
    work = Path(tempfile.mkdtemp(prefix="pectrack-mailbox-cpu-"))
    with Dovecot(users=args.mailboxes * len(counts)) as server:
        sets: list[tuple[int, list[int]]] = []
        for k, count in enumerate(counts):
            users = list(range(k * args.mailboxes + 1, (k + 1) * args.mailboxes + 1))
            for user in users:
                raws = [message(f"u{user}-{n}", body_bytes=args.size) for n in range(count)]
                server.deliver(server.user(user), "INBOX", raws)
            sets.append((count, users))
        for round_ in range(args.rounds):
            loop = "uvloop" if round_ % 2 else "asyncio"
            for count, users in sets:
                config = load_config(
                    write_config(work, NoBroker(), server, users, command_timeout=60)  # type: ignore[arg-type]
                )
                factory = uvloop.new_event_loop if round_ % 2 else None
                with asyncio.Runner(loop_factory=factory) as runner:
                    cpu, published = runner.run(sync(config))
                print(f"round {round_} {loop:7} {count:3} per mailbox: {published} messages,"
                      f" CPU {cpu:.2f} s = {cpu / args.mailboxes * 1000:.2f} ms per mailbox"
                      f" (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
