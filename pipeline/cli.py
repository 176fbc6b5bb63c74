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
)

Handler = Callable[[argparse.Namespace], int]


def build_parser(modules: Sequence[str] = _SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pectrack",
        description="Track Italian certified email (PEC) delivery receipts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand still being built must not break others
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


# Commands that start faster alone: ``pectrack inspect`` over an archive is a tool run
# once per batch of files, and importing every subcommand (faust, aiokafka) costs ~0.4 s.
_ALONE = {"inspect": "pipeline.inspect_cli"}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    alone = _ALONE.get(args_list[0]) if args_list else None
    parser = build_parser((alone,) if alone else _SUBCOMMAND_MODULES)
    args = parser.parse_args(args_list)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
