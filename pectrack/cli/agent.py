"""``pectrack agent --config FILE [--shard K/N] [--metrics-port P] [--once]``: run the IMAP
ingest (``--once``: sync every folder to its end, then exit 0; a progress bar on a terminal)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agents import logs
from agents.agent import run_agent
from agents.config import ConfigError, load_config
from agents.progress import Progress
from agents.shard import parse_shard
from pipeline.contracts.metrics import serve

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="pull PEC mailboxes over IMAP and publish every message to Kafka",
        description=__doc__,
    )
    parser.add_argument("--config", type=Path, required=True, help="agent TOML file")
    parser.add_argument(
        "--shard", type=parse_shard, default=None, help="take share K of N of the mailboxes"
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    parser.add_argument("--metrics-addr", default="127.0.0.1", help="address for /metrics")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--once",
        action="store_true",
        help="sync every folder of every mailbox to its end, then exit 0 (scripted backfills)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logs.log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    registry = CollectorRegistry()
    if args.metrics_port is not None:
        port = serve(registry, args.metrics_port, args.metrics_addr)
        logs.log_event(log, logging.INFO, "metrics.serving", port=port)
    return asyncio.run(_run(config, registry, args))


async def _run(config: Any, registry: CollectorRegistry, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    once = bool(getattr(args, "once", False))
    progress = Progress()
    terminal = sys.stderr if once and sys.stderr.isatty() else None
    await run_agent(config, registry=registry, stop=stop, shard=args.shard, once=once,
                    progress=progress, terminal=terminal)  # fmt: skip
    if once and len(progress.synced) < progress.mailboxes:
        logs.log_event(log, logging.ERROR, "agent.once_incomplete",
                       synced=len(progress.synced), mailboxes=progress.mailboxes)  # fmt: skip
        return 1
    return 0
