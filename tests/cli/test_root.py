"""The composition root: every subcommand is wired, by static import, and --version."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from pectrack import __version__
from pectrack.cli import COMMANDS, build_parser, main

EXPECTED = {
    "agent",
    "demo",
    "events",
    "evidence",
    "inspect",
    "render-dashboard",
    "simulate",
    "worker",
}


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers, argparse._SubParsersAction)
    assert set(subparsers.choices) == EXPECTED
    assert len(COMMANDS) == len(EXPECTED)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pectrack {__version__}"
    assert __version__ != "0+unknown"  # the installed distribution's version


def test_python_dash_m_pectrack_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pectrack", "--help"], capture_output=True, text=True, check=True
    )
    for name in EXPECTED:
        assert name in result.stdout
