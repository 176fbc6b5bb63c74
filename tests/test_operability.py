"""``pectrack --version``, ``pec_build_info`` and the worker's JSON logs."""

from __future__ import annotations

import logging
import logging.config
import subprocess
import sys
import urllib.request
from importlib.metadata import version

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.logs import JsonFormatter, log_event
from pipeline.contracts.build_info import BUILD_INFO, version_string
from pipeline.contracts.metrics import serve
from pipeline.streams.logs import logging_config


def test_version_flag_prints_the_installed_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pectrack", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pectrack {version('pectrack')}"
    assert version_string() == version("pectrack")


def test_served_registry_exports_build_info() -> None:
    registry = CollectorRegistry()
    port = serve(registry, 0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    [line] = [x for x in text.splitlines() if x.startswith(BUILD_INFO + "{")]
    assert f'version="{version("pectrack")}"' in line
    assert line.endswith(" 1.0")


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_worker_logging_config_writes_json_lines(
    capsys: pytest.CaptureFixture[str], restore_logging: object
) -> None:
    """faust is given this dictConfig: its records and ours come out as one JSON object
    per line, with the agent's keys."""
    logging.config.dictConfig(logging_config("info", JsonFormatter))
    log_event(logging.getLogger("pipeline.streams.worker"), logging.INFO, "x.y", n=3)
    logging.getLogger("faust.worker").warning("plain %s", "text")
    logging.getLogger("pipeline.streams.worker").debug("below the level")
    lines = capsys.readouterr().err.splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [(r["event"], r["level"], r["logger"]) for r in records] == [
        ("x.y", "info", "pipeline.streams.worker"),
        ("plain text", "warning", "faust.worker"),
    ]
    assert records[0]["n"] == 3
    assert records[0]["ts"].endswith("Z")
