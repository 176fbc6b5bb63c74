"""``pectrack agent`` command line: bad configs exit 2 with a JSON log line, no secret."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import uvloop

from pectrack.cli.agent import loop_factory


def run_agent(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pectrack", "agent", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_invalid_config_exits_2_with_a_structured_error(tmp_path: Path) -> None:
    """A literal password is refused before anything connects; the value is not echoed."""
    config = tmp_path / "agent.toml"
    config.write_text(
        '[kafka]\nbootstrap = "127.0.0.1:1"\n[[mailbox]]\nid = "a"\nhost = "h"\n'
        'user = "u"\npassword = "hunter2-literal"\n'
    )
    done = run_agent("--config", str(config))
    assert done.returncode == 2
    (line,) = [orjson.loads(x) for x in done.stderr.splitlines() if x.strip()]
    assert line["event"] == "config.invalid"
    assert "no literal password" in line["error"]
    assert b"hunter2-literal" not in done.stderr + done.stdout


def test_bad_shard_is_a_usage_error(tmp_path: Path) -> None:
    """--shard must be K/N with 1 <= K <= N."""
    done = run_agent("--config", str(tmp_path / "x.toml"), "--shard", "9/8")
    assert done.returncode == 2
    assert b"--shard" in done.stderr


def test_event_loop_is_uvloop_by_default_and_asyncio_on_request() -> None:
    """auto and uvloop run the agent on uvloop (installed with the project); asyncio on
    asyncio's own loop."""
    for choice in ("auto", "uvloop"):
        factory = loop_factory(choice)
        assert factory is not None
        loop = factory()
        try:
            assert isinstance(loop, uvloop.Loop)
            assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        finally:
            loop.close()
    assert loop_factory("asyncio") is None
