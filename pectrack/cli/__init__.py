"""The ``pectrack`` command line: the composition root.

Every subcommand is a module of this package with ``register(subparsers)``; its parser
sets ``func`` to a callable taking the parsed namespace and returning the exit status.
This package is the only one that imports both ``agents`` and ``pipeline`` (an
import-linter contract keeps ``pipeline`` from importing ``agents``). Heavy or optional
dependencies (faust, the ``dev`` extra) are imported by a command when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pectrack import __version__
from pectrack.cli import agent, demo, events, inspect, render, simulate, worker
from pipeline.evidence import cli as evidence

Handler = Callable[[argparse.Namespace], int]

COMMANDS = (inspect, simulate, worker, agent, render, demo, events, evidence)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pectrack",
        description="Track Italian certified email (PEC) delivery receipts.",
    )
    parser.add_argument("--version", action="version", version=f"pectrack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
