"""``pectrack demo`` options, and where its clock starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pectrack.cli import build_parser


def test_help_documents_the_knobs() -> None:
    """--help names mailboxes, rate, duration, workers and seed with their defaults."""
    result = subprocess.run(
        [sys.executable, "-m", "pectrack", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for option in ("--mailboxes N", "--rate MSG/S", "--duration SECONDS", "--workers N", "--seed"):
        assert option in text
    assert "0 runs until Ctrl-C" in text
    assert "(default: 300)" in text


def test_defaults_and_overrides_parse() -> None:
    """The defaults are a few hundred mailboxes, 5 messages/s, until Ctrl-C, two workers."""
    args = build_parser().parse_args(["demo"])
    assert (args.mailboxes, args.rate, args.duration, args.workers) == (300, 5.0, 0.0, 2)
    args = build_parser().parse_args(["demo", "--rate", "0.5", "--duration", "30"])
    assert (args.rate, args.duration) == (0.5, 30.0)


@pytest.mark.parametrize(
    "bad", [["--rate", "0"], ["--mailboxes", "0"], ["--duration", "-1"], ["--workers", "0"]]
)
def test_nonsense_values_are_refused(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A zero rate, no mailboxes, a negative duration or no worker is a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", *bad])
    assert exit_info.value.code == 2
    assert "must" in capsys.readouterr().err


def test_the_clock_starts_when_the_command_started() -> None:
    """Time already spent before run() (interpreter start, imports, here a 0.5 s sleep) counts."""
    code = (
        "import time; time.sleep(0.5)\n"
        "from pectrack.cli.demo import command_started\n"
        "print(time.monotonic() - command_started())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 0.5 <= float(result.stdout) < 10


def test_make_demo_passes_the_moment_the_command_started() -> None:
    """``PECTRACK_COMMAND_STARTED`` (set by ``make demo`` before it installs) wins; a value
    that is garbage or in the future is ignored."""
    code = (
        "from pectrack.cli.demo import command_started; import time\n"
        "print(time.monotonic() - command_started())"
    )

    def age(value: str) -> float:
        env = {**os.environ, "PECTRACK_COMMAND_STARTED": value}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            check=True, env=env,
        )  # fmt: skip
        return float(result.stdout)

    assert 40 <= age(str(time.time() - 42)) < 60
    assert age("garbage") < 40
    assert age(str(time.time() + 3600)) < 40
