"""The demo's PEC provider: an IMAP server whose mailboxes fill with signed traffic.

Run by ``pectrack demo`` as a child process::

    python -m pipeline.dev.demo.provider --port 10143 --mailboxes 300 --rate 5 \\
        --password-file RUN/password --status RUN/provider.json \\
        --anchor-out RUN/anchor.pem

It serves every mailbox of :func:`~pipeline.dev.demo.feed.demo_mailboxes` over IMAP and,
as simulated time passes, stores each message where a real provider would: receipts
and envelopes in INBOX, the user's own copy in Sent. Every half second it rewrites the
``--status`` JSON file (``{"ready", "messages", "items", "faulty", "sim_time"}``) that
the live view reads, and expunges mail delivered more than ``--retain-seconds`` ago
(memory stays bounded; the agent has long fetched it). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from pipeline.dev.demo.feed import SimClock, TrafficFeed, demo_mailboxes
from pipeline.dev.demo.imapserver import DemoImapServer, ImapServerError
from pipeline.simulate.ca import default_pki

__all__ = ["main"]

_TICK_SECONDS = 0.1
_STATUS_EVERY_SECONDS = 0.5


def _write_status(path: Path, status: dict[str, object]) -> None:
    """Replace ``path`` atomically so a reader never sees half a file."""
    partial = path.with_suffix(".tmp")
    partial.write_bytes(orjson.dumps(status))
    partial.replace(path)


async def serve(args: argparse.Namespace) -> int:
    password = args.password_file.read_text(encoding="utf-8").strip()
    # Signing keys are made per process: only this process can say which anchor to trust.
    args.anchor_out.write_bytes(default_pki().anchor_pem())
    boxes = demo_mailboxes(args.mailboxes)
    server = DemoImapServer(dict.fromkeys(boxes, password), port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    start = datetime.now(UTC).replace(microsecond=0)
    feed = TrafficFeed(args.seed, args.mailboxes, start)
    clock = SimClock(start, time.monotonic(), feed.speed_for(args.rate))
    async with server:
        next_status = 0.0
        while not stop.is_set():
            now = time.monotonic()
            sim_now = clock.at(now)
            for item in feed.due(sim_now):
                await server.deliver(item.mailbox, item.folder, item.raw, item.arrival_time, at=now)
            if now >= next_status:
                await server.prune(now - args.retain_seconds)
                _write_status(
                    args.status,
                    {
                        "ready": True,
                        "pid": os.getpid(),
                        "messages": feed.submitted,
                        "items": feed.released,
                        "faulty": feed.faulty,
                        "sim_time": sim_now.isoformat(),
                        "speed": clock.speed,
                    },
                )
                next_status = now + _STATUS_EVERY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _TICK_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.dev.demo.provider", description=__doc__
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mailboxes", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--anchor-out", type=Path, required=True, help="trust anchor PEM")
    parser.add_argument(
        "--retain-seconds",
        type=float,
        default=60.0,
        help="expunge mail this long after delivery: the agent has read it by then",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except ImapServerError as exc:
        print(f"demo provider: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
