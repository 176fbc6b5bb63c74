"""Workers on a replayed backfill, ``--deadline-clock event`` (issue #20, item 4).

The worker's processors in-process (verify, correlate, the deadline timer; memory store,
a recording sink instead of Kafka), fed history the way the agent reads it,
``--mailboxes`` one after the other: a mailbox's Sent folder first (``--messages`` Sent
copies, one every ``--spacing-hours``), then its INBOX (an acceptance and a delivery
receipt a minute after each submission), in the worker's batches, with a deadline scan
after every batch (the timer fires while the backfill runs). Every message was
delivered at once, long ago, but one per mailbox whose delivery receipt never came.
Prints

  * overdue events raised (and cleared) for that delivered history: should be 0;
  * overdue events for the message never delivered: one per mailbox;
  * replayed records per CPU second through verify + correlate on one core, next to
    ``examine`` alone on the same records (the core's share).

    .venv/bin/python -m bench.replay --messages 300
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
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


def history(args: argparse.Namespace) -> tuple[str, list[bytes], list[bytes]]:
    """One mailbox's history: the msgid never delivered, its Sent copies, its receipts."""
    spacing = timedelta(hours=args.spacing_hours)
    ids = [f"<replay.{n}@pec.example.it>" for n in range(args.messages)]
    lost = ids[len(ids) // 2]  # accepted, its delivery receipt never came: must be flagged
    sent = [make_sent_copy(msgid=m, date=AT + n * spacing).raw for n, m in enumerate(ids)]
    inbox = [
        make_receipt(kind, msgid=m, at=AT + n * spacing + timedelta(minutes=1))
        for n, m in enumerate(ids)
        for kind in (Kind.ACCETTAZIONE, Kind.AVVENUTA_CONSEGNA)
        if not (m == lost and kind is Kind.AVVENUTA_CONSEGNA)
    ]
    return lost, sent, inbox


async def replay(args: argparse.Namespace) -> None:
    sink = RecordingSink()
    datadir = tempfile.mkdtemp(prefix="pectrack-replay-")  # a fresh state every run
    settings = StreamSettings(
        metrics_port=None,
        web_port=16067,
        deadline_clock="event",
        store="memory://",
        datadir=datadir,
        archive="none",
    )
    trust = TrustStore.from_bytes(anchor_pem())
    p = build(settings, registry=CollectorRegistry(), trust=trust, sink=sink)
    p.app.finalize()
    p.app.flow_control.resume()
    lost, sent, inbox = history(args)
    cpu = 0.0
    batch = settings.batch_size

    async def correlate_pending() -> None:
        pending = [(key, value, 0) for key, value, _ in sink.sent.pop("pec.receipts", [])]
        for n in range(0, len(pending), batch):
            await p.correlator.handle_batch(pending[n : n + batch])

    async def scan() -> None:
        await p.scanner.scan()
        await correlate_pending()

    async def feed(box: str, raws: list[bytes], folder: str) -> None:
        """Through verify and correlate in the worker's batches, as its Batcher calls
        them; the deadline timer fires after every batch (its CPU is not counted)."""
        nonlocal cpu
        headers = {"mailbox": box.encode(), "folder": folder.encode()}
        items = [(box.encode(), raw, headers) for raw in raws]
        for n in range(0, len(items), batch):
            started = time.process_time()
            await p.verifier.handle_batch(items[n : n + batch])
            await correlate_pending()
            cpu += time.process_time() - started
            await scan()

    boxes = [f"replay-box-{n}" for n in range(args.mailboxes)]
    for box in boxes:  # one after the other: the newest time seen runs far ahead of each
        await feed(box, sent, "Sent")
        await feed(box, inbox, "INBOX")
    await scan()
    events = [orjson.loads(v or b"{}") for _, v, _ in sink.sent.get("pec.state-changes", [])]
    overdue = [e["data"] for e in events if e.get("type") == "it.pec.overdue"]
    cleared = [e for e in events if e.get("type") == "it.pec.overdue-cleared"]
    flagged_lost = sum(1 for e in overdue if e["msgid"] == lost)
    states = [e for e in events if e.get("type") == "it.pec.state-change"]
    delivered = sum(1 for e in states if e["data"]["to_state"] == "delivered")
    records = (len(sent) + len(inbox)) * len(boxes)
    started = time.process_time()
    for raw in sent + inbox:
        examine(raw, trust)
    alone = (time.process_time() - started) * len(boxes)
    print(f"replayed {len(boxes)} mailboxes x {args.messages} messages ({records} raw records,"
          f" each mailbox's Sent then its INBOX, one message every {args.spacing_hours} h),"
          f" delivered: {delivered} | expected: {len(boxes) * (args.messages - 1)}")  # fmt: skip
    print(f"overdue events raised for delivered history: {len(overdue) - flagged_lost}"
          f" (cleared again: {len(cleared)}) | expected: 0")  # fmt: skip
    print(f"overdue events for the message never delivered: {flagged_lost}"
          f" | expected: {len(boxes)} (one per mailbox)")  # fmt: skip
    print(f"verify + correlate: {records / cpu:.0f} replayed records per CPU second"
          f" ({cpu / records * 1000:.3f} ms each) | examine alone: {records / alone:.0f}/s"
          f" ({alone / records * 1000:.3f} ms)")  # fmt: skip
    consumer: Any = p.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()
    shutil.rmtree(datadir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--spacing-hours", type=float, default=24.0)
    parser.add_argument("--mailboxes", type=int, default=3)
    asyncio.run(replay(parser.parse_args()))


if __name__ == "__main__":
    main()
