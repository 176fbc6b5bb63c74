"""The ``pectrack`` command line: one subcommand per module, each registering itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

# Each module exposes ``register(subparsers) -> None``; its parser sets ``func`` to a
# callable taking the parsed namespace and returning the exit status.
_SUBCOMMAND_MODULES = (
    "pipeline.inspect_cli",
    "pipeline.simulate.cli",
    "pipeline.streams.cli",
    "agents.cli",
    "pipeline.render_cli",
    "pipeline.demo.cli",
    "pipeline.events_cli",
    "pipeline.evidence.cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pectrack",
        description="Track Italian certified email (PEC) delivery receipts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand still being built must not break others
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
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
