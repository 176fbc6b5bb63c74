"""The ``pectrack`` command line: the composition root.

Every subcommand is a module of this package with ``register(subparsers)``; its parser
sets ``func`` to a callable taking the parsed namespace and returning the exit status.
This package is the only one that imports both ``agents`` and ``pipeline`` (an
import-linter contract keeps ``pipeline`` from importing ``agents``). Heavy or optional
dependencies (faust, the ``dev`` extra) are imported by a command when it runs.

The command modules are listed in :data:`COMMAND_MODULES` and imported when used: ``pectrack
inspect ...`` imports the inspect module only (start-up is part of an archive run's time),
``pectrack --help`` and :func:`build_parser` import them all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import import_module
from types import ModuleType

Handler = Callable[[argparse.Namespace], int]

# Subcommand name -> its module in this package, in --help order.
COMMAND_MODULES = {
    "inspect": "inspect",
    "simulate": "simulate",
    "worker": "worker",
    "agent": "agent",
    "render-dashboard": "render",
    "demo": "demo",
    "events": "events",
    "evidence": "evidence",
}


def __getattr__(name: str) -> tuple[ModuleType, ...]:
    if name == "COMMANDS":  # every command module (imports them all)
        return tuple(_module(command) for command in COMMAND_MODULES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _module(command: str) -> ModuleType:
    return import_module(f"{__name__}.{COMMAND_MODULES[command]}")


def build_parser(commands: Iterable[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pectrack",
        description="Track Italian certified email (PEC) delivery receipts.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        _module(command).register(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``, read from the installed distribution only when given."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from pipeline.contracts.build_info import version_string  # noqa: PLC0415 (importlib.metadata)

        print(f"pectrack {version_string()}")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    # "pectrack inspect ...": that command's parser is all that can apply (the top
    # level's usage names no command), so only its module is imported.
    only = words[:1] if words and words[0] in COMMAND_MODULES else COMMAND_MODULES
    parser = build_parser(only)
    args = parser.parse_args(words)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
