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

from pectrack.cli import agent, demo, events, evidence, inspect, render, simulate, worker
from pipeline.contracts.build_info import version_string

Handler = Callable[[argparse.Namespace], int]

COMMANDS = (inspect, simulate, worker, agent, render, demo, events, evidence)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pectrack",
        description="Track Italian certified email (PEC) delivery receipts.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``, read from the installed distribution only when given."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"pectrack {version_string()}")
        parser.exit()


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
