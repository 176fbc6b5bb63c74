"""``pectrack demo`` end to end: real broker, IMAP server, agent and workers as processes."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev.demo.orchestrate import group_members
from pipeline.dev.demo.stack import lookup_url

pytestmark = pytest.mark.integration

FIRST = re.compile(r"first state change after (\d+\.\d)s")
LOOKUP = re.compile(r"curl -sG http://127\.0\.0\.1:(\d+)/message/ --data-urlencode 'key=(.+ <.+>)'")


def demo_argv(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pectrack", "demo", "--mailboxes", "50",
            "--workdir", str(workdir), *extra]  # fmt: skip


def children(workdir: Path) -> dict[str, int]:
    """name -> pid, from the pid file the demo writes as it starts each child."""
    pairs = (line.split() for line in (workdir / "children.pids").read_text().splitlines())
    return {name: int(pid) for pid, name in pairs}


def assert_nothing_left(workdir: Path) -> None:
    started = children(workdir)
    assert {"broker", "provider", "agent", "worker1"} <= set(started)
    assert group_members(set(started.values())) == [], "a child's process group survived"
    for name, pid in started.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still exists"


def summary(output: str) -> dict[str, str]:
    line = next(text for text in output.splitlines() if text.startswith("summary: "))
    return dict(pair.split("=", 1) for pair in line.removeprefix("summary: ").split())


def test_a_timed_demo_delivers_reports_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """--duration 40 prints the first-event time and deliveries, exits 0, leaves no process."""
    result = subprocess.run(
        demo_argv(tmp_path, "--duration", "40", "--workers", "1", "--rate", "5"),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output[-3000:] + result.stderr[-3000:]
    first = FIRST.search(output)
    assert first is not None, output[-3000:]
    assert 0 < float(first.group(1)) < 40
    assert "│ in flight │ delivered │ failed │ overdue │" in output
    numbers = summary(output)
    assert int(numbers["delivered"]) > 0
    assert int(numbers["ingested"]) > 0  # the agent fetched from the IMAP server
    assert int(numbers["state_changes"]) >= int(numbers["delivered"])
    assert int(numbers["signature_failures"]) > 0  # the forged receipts were caught
    assert LOOKUP.search(output) is not None, output[-3000:]  # a real lookup key was printed
    assert "none left running" in output
    assert_nothing_left(tmp_path)


def lookup_when_routable(url: str) -> Any:
    """The lookup's answer; 503 is faust's router during a rebalance (the second worker
    joining, the owner not known yet): asked again, as a user would, for up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_sigint_stops_every_process_cleanly(tmp_path: Path) -> None:
    """The printed lookup URL answers; then SIGINT exits 0 with every process gone."""
    proc = subprocess.Popen(
        demo_argv(tmp_path, "--workers", "2", "--rate", "4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(text) for text in proc.stdout or []])
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not (any(FIRST.search(t) for t in seen) and any(LOOKUP.search(t) for t in seen)):
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
            assert proc.poll() is None, "".join(seen)[-3000:]
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        lookup = next(m for m in map(LOOKUP.search, seen) if m is not None)
        url = lookup_url(int(lookup.group(1)), lookup.group(2))
        state = lookup_when_routable(url)
        assert state["key"] == lookup.group(2)
        assert "delivered" in {r["state"] for r in state["recipients"]}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert "stopping..." in output
    assert "none left running" in output
    assert {"worker1", "worker2"} <= set(children(tmp_path))
    assert_nothing_left(tmp_path)


def test_sigterm_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    """A SIGTERM while the demo is still starting: no traceback, exit 0, nothing left."""
    proc = subprocess.Popen(
        demo_argv(tmp_path, "--workers", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    with proc.stdout:
        head = [proc.stdout.readline() for _ in range(2)]  # "starting in", then the broker
        assert "broker" in head[1], head
        proc.send_signal(signal.SIGTERM)
        output = "".join(head) + proc.stdout.read()
    assert proc.wait(60) == 0, output
    assert "SIGTERM, stopping..." in output
    assert "Traceback" not in output
    assert "none left running" in output
    started = children(tmp_path)
    assert "broker" in started
    assert group_members(set(started.values())) == []
