"""Workers on a replayed backfill, ``--deadline-clock event`` (issue #20, item 4).

The worker's processors in-process (verify, correlate, the deadline timer; memory store,
a recording sink instead of Kafka), fed history the way the agent reads it: a mailbox's
Sent folder first (``--messages`` Sent copies, one every ``--spacing-hours``), a deadline
scan (the timer fires while the backfill runs), then its INBOX (an acceptance and a
delivery receipt a minute after each submission), a last scan. Every message was
delivered at once, long ago. Prints

  * overdue events raised (and cleared) for that delivered history: should be 0;
  * replayed records per CPU second through verify + correlate on one core, next to
    ``examine`` alone on the same records (the core's share).

    .venv/bin/python -m bench.replay --messages 300
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from pipeline.core import examine
from pipeline.core.model import Kind
from pipeline.core.trust import TrustStore
from pipeline.streams.app import build
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from tests.factories import AT, anchor_pem, make_receipt, make_sent_copy

BOX = "replay-box"


async def replay(args: argparse.Namespace) -> None:
    sink = RecordingSink()
    settings = StreamSettings(metrics_port=None, web_port=16067, deadline_clock="event")
    trust = TrustStore.from_bytes(anchor_pem())
    p = build(settings, registry=CollectorRegistry(), trust=trust, sink=sink)
    p.app.finalize()
    p.app.flow_control.resume()
    spacing = timedelta(hours=args.spacing_hours)
    ids = [f"<replay.{n}@pec.example.it>" for n in range(args.messages)]
    sent = [make_sent_copy(msgid=m, date=AT + n * spacing).raw for n, m in enumerate(ids)]
    inbox = [
        make_receipt(kind, msgid=m, at=AT + n * spacing + timedelta(minutes=1))
        for n, m in enumerate(ids)
        for kind in (Kind.ACCETTAZIONE, Kind.AVVENUTA_CONSEGNA)
    ]
    cpu = 0.0

    async def feed(raws: list[bytes], folder: str) -> None:
        nonlocal cpu
        started = time.process_time()
        headers = {"mailbox": BOX.encode(), "folder": folder.encode()}
        async with p.app.agents["pectrack.verify"].test_context() as verify:
            for raw in raws:
                await verify.put(raw, key=BOX.encode(), headers=headers)
        pending = sink.sent.pop("pec.receipts", [])
        async with p.app.agents["pectrack.correlate"].test_context() as correlate:
            for key, value, _ in pending:
                await correlate.put(value, key=key, partition=0)
        cpu += time.process_time() - started

    async def scan() -> None:
        await p.scanner.scan()
        pending = sink.sent.pop("pec.receipts", [])
        async with p.app.agents["pectrack.correlate"].test_context() as correlate:
            for key, value, _ in pending:
                await correlate.put(value, key=key, partition=0)

    await feed(sent, "Sent")
    await scan()
    await feed(inbox, "INBOX")
    await scan()
    events = [orjson.loads(v or b"{}") for _, v, _ in sink.sent.get("pec.state-changes", [])]
    types = [e.get("type") for e in events]
    states = [e for e in events if e.get("type") == "it.pec.state-change"]
    delivered = sum(1 for e in states if e["data"]["to_state"] == "delivered")
    records = len(sent) + len(inbox)
    started = time.process_time()
    for raw in sent + inbox:
        examine(raw, trust)
    alone = time.process_time() - started
    print(f"replayed {args.messages} messages ({records} raw records, Sent first, one every"
          f" {args.spacing_hours} h), delivered: {delivered}")  # fmt: skip
    print(f"overdue events raised for delivered history: {types.count('it.pec.overdue')}"
          f" (cleared again: {types.count('it.pec.overdue-cleared')}) | expected: 0")  # fmt: skip
    print(f"verify + correlate: {records / cpu:.0f} replayed records per CPU second"
          f" ({cpu / records * 1000:.3f} ms each) | examine alone: {records / alone:.0f}/s"
          f" ({alone / records * 1000:.3f} ms)")  # fmt: skip
    consumer: Any = p.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--spacing-hours", type=float, default=24.0)
    asyncio.run(replay(parser.parse_args()))


if __name__ == "__main__":
    main()
