"""``pectrack demo``: the whole system on this machine, with a live view.

Starts, each as a child process in its own process group: the embedded Kafka-protocol
broker, an embedded IMAP server (pymap) whose simulated PEC mailboxes receive signed
traffic continuously (acceptances, deliveries, failures, warnings, a few forged or
tampered receipts), the IMAP ingest agent and the stream workers. The terminal shows
progress and a compact table refreshed from the processes' /metrics. Ctrl-C (or
--duration) stops everything and checks that no process is left.

Simulated time starts now and runs faster than the clock (--rate x 460), so 12 h and
24 h delivery warnings and overdue messages appear within a minute; the workers run
with --deadline-clock event (daticert time: per mailbox, its newest receipt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.dev.procstat import TICK, stat_fields

__all__ = ["register", "run"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole system locally on simulated PEC traffic, with a live view",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mailboxes",
        type=_positive_int,
        default=300,
        metavar="N",
        help="simulated PEC mailboxes on the IMAP server (default: 300)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        default=5.0,
        metavar="MSG/S",
        help="messages submitted per second, on average (default: 5)",
    )
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="stop after this long; 0 runs until Ctrl-C (default: 0)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=2,
        metavar="N",
        help="stream worker processes in the consumer group (default: 2)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="S", help="traffic seed (default: 1)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="logs, agent config, trust anchor, children.pids (default: a new temp dir)",
    )
    parser.add_argument(
        "--refresh",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="redraw interval (default: 1 on a terminal, 10 otherwise)",
    )
    parser.set_defaults(func=run)


STARTED_ENV = "PECTRACK_COMMAND_STARTED"  # epoch seconds; set by ``make demo``


def command_started() -> float:
    """When the user's command began, on the ``time.monotonic()`` scale.

    ``make demo`` sets ``PECTRACK_COMMAND_STARTED`` (epoch seconds) before it creates
    the venv and installs, so on a fresh machine the install counts too. Otherwise:
    when this process began (Linux: ``/proc/self/stat``, so interpreter start-up and
    imports count; else: now).
    """
    given = os.environ.get(STARTED_ENV, "")
    try:
        age = time.time() - float(given)
    except ValueError:
        pass
    else:
        if 0.0 <= age < 24 * 3600:
            return time.monotonic() - age
    try:
        since_boot = int(stat_fields("self")[19]) / TICK  # field 22: starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - max(0.0, age)


def run(args: argparse.Namespace) -> int:
    from pipeline.dev.demo.orchestrate import ChildFailedError, Supervisor  # noqa: PLC0415
    from pipeline.dev.demo.stack import DemoStack, StackOptions  # noqa: PLC0415
    from pipeline.dev.embedded import BrokerError  # noqa: PLC0415

    started = command_started()
    run_dir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="pectrack-demo-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    out = sys.stdout
    options = StackOptions(
        mailboxes=args.mailboxes,
        rate=args.rate,
        workers=args.workers,
        seed=args.seed,
        password=secrets.token_urlsafe(12),
    )
    interactive = out.isatty()
    refresh = args.refresh or (1.0 if interactive else 10.0)
    supervisor = Supervisor(run_dir)

    def on_signal(signum: int, _frame: Any) -> None:
        supervisor.interrupt(signum)  # start-up checks it; the watch loop has its own handlers

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    status = 0
    try:
        print(f"pectrack demo: starting in {run_dir}", file=out, flush=True)
        stack = DemoStack(supervisor, run_dir, options, out=out)
        stack.start(started)
        stack.print_help_text()
        asyncio.run(
            stack.watch(
                started=started,
                duration=args.duration,
                refresh=refresh,
                interactive=interactive,
            )
        )
    except InterruptedError as exc:
        print(f"\npectrack demo: {exc}, stopping...", file=out, flush=True)
    except (ChildFailedError, BrokerError) as exc:
        print(f"pectrack demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        leftovers = supervisor.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    count = len(supervisor.children)
    if leftovers:
        print(f"pectrack demo: killed {len(leftovers)} leftover processes {leftovers}", file=out)
    print(
        f"pectrack demo: stopped {count} processes, none left running; logs in {run_dir}",
        file=out,
        flush=True,
    )
    return status
