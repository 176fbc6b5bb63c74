"""``pectrack agent --config FILE [--shard K/N|auto] [--metrics-port P]``: run the IMAP ingest.

SIGHUP reads the config file again and applies its mailboxes live (``agents.reload``);
SIGTERM/SIGINT stop after the in-flight batches.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agents import logs
from agents.agent import run_agent
from agents.config import ConfigError, load_config
from agents.fleet import SHARD_COUNT_ENV, SHARD_ENV, resolve_shard
from agents.shard import parse_shard
from pipeline import health
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
        "--shard",
        type=_shard_arg,
        default=None,
        help="take share K of N of the mailboxes; 'auto' (or auto/N): K from the "
        f"StatefulSet pod ordinal, N from {SHARD_COUNT_ENV} (default: ${SHARD_ENV}, else all)",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    parser.add_argument("--metrics-addr", default="127.0.0.1", help="address for /metrics")
    parser.add_argument(
        "--health-port", type=int, default=None, help="serve /livez and /readyz here"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logs.log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    try:
        args.shard = resolve_shard(args.shard, os.environ)
    except ValueError as exc:
        logs.log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    registry = CollectorRegistry()
    if args.metrics_port is not None:
        port = serve(registry, args.metrics_port, args.metrics_addr)
        logs.log_event(log, logging.INFO, "metrics.serving", port=port)
    asyncio.run(_run(config, registry, args))
    return 0


async def _run(config: Any, registry: CollectorRegistry, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reload = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.health_port is not None:  # probes on this loop (pipeline.health)
        await health.start_agent_health(registry, args.health_port, args.metrics_addr)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    await run_agent(
        config,
        registry=registry,
        stop=stop,
        shard=args.shard,
        reload=reload,
        load=lambda: load_config(args.config),
    )


def _shard_arg(text: str) -> str:
    """``K/N`` checked now (argparse reports it); ``auto``/``auto/N`` resolved in main."""
    if not text.strip().startswith("auto"):
        parse_shard(text)
    return text
