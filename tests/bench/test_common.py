"""The benchmarks start pectrack processes with one command line: it must run."""

from __future__ import annotations

import subprocess

from bench.common import PECTRACK


def test_the_benchmarks_pectrack_command_runs_a_worker_command() -> None:
    """bench.e2e and bench.state once started workers with a module path that no longer
    existed (`python -m pectrack.cli`): every worker exited at once."""
    done = subprocess.run(
        [*PECTRACK, "worker", "--help"], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--broker" in done.stdout
