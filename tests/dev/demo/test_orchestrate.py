"""The demo's supervisor: children in their own groups, nothing left after stop_all()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.dev.demo.orchestrate import Supervisor, group_members

# A child that starts a grandchild in its group, and one that ignores SIGTERM.
SPAWNER = ["sh", "-c", "sleep 300 & sleep 300"]
STUBBORN = ["sh", "-c", "trap '' TERM; sleep 300 & echo trapped; wait; sleep 300"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_children_get_their_own_process_groups_and_a_pid_file(tmp_path: Path) -> None:
    """Each child leads its own group (Ctrl-C reaches only the demo) and is listed by pid."""
    supervisor = Supervisor(tmp_path)
    try:
        one = supervisor.start("one", SPAWNER)
        two = supervisor.start("two", SPAWNER, stage="pair")
        assert os.getpgid(one.pid) == one.pid != os.getpgid(0)
        assert os.getpgid(two.pid) == two.pid
        listed = supervisor.pid_file.read_text().split()
        assert listed == [str(one.pid), "one", str(two.pid), "two"]
    finally:
        supervisor.stop_all(grace=5)


def test_stop_all_leaves_no_child_or_grandchild(tmp_path: Path) -> None:
    """SIGTERM to each group ends the children and the grandchildren they started."""
    supervisor = Supervisor(tmp_path)
    children = [supervisor.start(f"c{n}", SPAWNER) for n in range(3)]
    pgids = {child.pid for child in children}
    deadline = time.monotonic() + 10
    while len(group_members(pgids)) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)  # each shell starts its background sleep
    assert len(group_members(pgids)) >= 6
    leftovers = supervisor.stop_all(grace=5)
    assert leftovers == []
    assert group_members(pgids) == []
    assert not any(_alive(child.pid) for child in children)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """A process that traps SIGTERM is SIGKILLed (with its group) once the grace ends."""
    supervisor = Supervisor(tmp_path)
    child = supervisor.start("stubborn", STUBBORN)
    deadline = time.monotonic() + 10
    while "trapped" not in child.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)  # SIGTERM must come after the trap is set, even on a busy machine
    started = time.monotonic()
    supervisor.stop_all(grace=1.0)
    assert 0.9 <= time.monotonic() - started < 5
    assert group_members({child.pid}) == []
    assert child.proc.returncode == -9


def test_a_signal_during_start_up_is_raised_at_the_next_check(tmp_path: Path) -> None:
    """interrupt() only notes the signal; check() then raises InterruptedError naming it."""
    supervisor = Supervisor(tmp_path)
    supervisor.check()
    supervisor.interrupt(signal.SIGTERM)
    with pytest.raises(InterruptedError, match="SIGTERM"):
        supervisor.check()


PARENT = """
import sys, time
from pathlib import Path
from pipeline.dev.demo.orchestrate import Supervisor
child = Supervisor(Path(sys.argv[1])).start("sleeper", ["sleep", "300"])
print(child.pid, flush=True)
time.sleep(300)
"""


def test_children_die_with_a_killed_demo(tmp_path: Path) -> None:
    """If the demo is SIGKILLed (no cleanup runs), the kernel kills its children too."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.stdout.close()
    assert _alive(child_pid)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)
