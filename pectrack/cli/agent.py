"""``pectrack agent --config FILE [--shard K/N|auto] [--metrics-port P] [--once]``: run the
IMAP ingest (on uvloop when installed: ``--event-loop``).

SIGHUP reads the config file again and applies its mailboxes live (``agents.reload``);
SIGTERM/SIGINT stop after the in-flight batches. ``--once``: sync every folder to its
end, then exit 0 (a progress bar on a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents import logs
from agents.shard import SHARD_COUNT_ENV, SHARD_ENV, parse_shard, resolve_shard

__all__ = ["loop_factory", "register"]

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
    parser.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="auto (default): uvloop when installed (a project dependency: less CPU per "
        "mailbox and message), else asyncio's own loop",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="sync every folder of every mailbox to its end, then exit 0 (scripted backfills)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - only when it runs

    from agents.config import ConfigError, load_config  # noqa: PLC0415
    from pipeline.contracts.metrics import serve  # noqa: PLC0415

    logs.configure(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logs.log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    try:
        args.shard = resolve_shard(args.shard, os.environ, socket.gethostname())
    except ValueError as exc:
        logs.log_event(log, logging.ERROR, "config.invalid", error=str(exc))
        return 2
    registry = CollectorRegistry()
    if args.metrics_port is not None:
        port = serve(registry, args.metrics_port, args.metrics_addr)
        logs.log_event(log, logging.INFO, "metrics.serving", port=port)
    factory = loop_factory(getattr(args, "event_loop", "auto"))
    logs.log_event(log, logging.INFO, "agent.event_loop",
                   loop="asyncio" if factory is None else "uvloop")  # fmt: skip
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(config, registry, args))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run the agent on: ``None`` for asyncio's own.

    uvloop (libuv, in C) runs the same coroutines with less CPU per callback, timer and
    socket operation; a first sync makes ~70 loop callbacks per mailbox beside its
    messages (bench/README.md, issue #20). ``auto`` falls back to asyncio's loop when
    uvloop is not installed (it is a dependency, but not on every platform).
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("--event-loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _run(config: Any, registry: Any, args: argparse.Namespace) -> int:
    from agents.agent import run_agent  # noqa: PLC0415
    from agents.config import load_config  # noqa: PLC0415
    from agents.progress import Progress  # noqa: PLC0415
    from pipeline import health  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reload = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.health_port is not None:  # probes on this loop (pipeline.health)
        await health.start_agent_health(registry, args.health_port, args.metrics_addr)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    once = bool(getattr(args, "once", False))
    progress = Progress()
    terminal = sys.stderr if once and sys.stderr.isatty() else None
    await run_agent(
        config,
        registry=registry,
        stop=stop,
        shard=args.shard,
        reload=reload,
        load=lambda: load_config(args.config),
        once=once,
        progress=progress,
        terminal=terminal,
    )
    if once and len(progress.synced) < progress.mailboxes:
        logs.log_event(log, logging.ERROR, "agent.once_incomplete",
                       synced=len(progress.synced), mailboxes=progress.mailboxes)  # fmt: skip
        return 1
    return 0


def _shard_arg(text: str) -> str:
    """``K/N`` checked now (argparse reports it); ``auto``/``auto/N`` resolved in main."""
    if not text.strip().startswith("auto"):
        parse_shard(text)
    return text
