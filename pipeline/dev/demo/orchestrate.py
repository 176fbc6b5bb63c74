"""The demo's child processes: each in its own process group, all stopped on exit.

A :class:`Supervisor` starts children (logs in the run directory, pids in
``children.pids``), stops them in reverse order of start (SIGTERM to the whole group,
a grace period, then SIGKILL) and finally scans ``/proc`` for anything still in one of
their process groups, so that no grandchild outlives the demo either::

    with Supervisor(run_dir) as supervisor:
        broker = supervisor.start("broker", [tansu, "broker", ...])
        supervisor.wait_for_port("broker", 9092, timeout=20)
    # every child and grandchild is gone here

A signal during start-up is noted by :meth:`Supervisor.interrupt` and raised as
:class:`InterruptedError` at the next :meth:`Supervisor.check`, never in the middle of
starting a child (which could then run unrecorded). Each child also gets SIGKILL from
the kernel if the demo itself dies without cleaning up (``PR_SET_PDEATHSIG``, Linux).

Errors: :class:`ChildFailedError` when a child exits or never opens its port during start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipeline.dev.procstat import processes

__all__ = ["Child", "ChildFailedError", "Supervisor", "group_members"]

_PR_SET_PDEATHSIG = 1


class ChildFailedError(RuntimeError):
    """A child process exited, or did not get ready, while the demo was starting."""


@dataclass
class Child:
    name: str
    stage: str  # children of one stage are stopped together
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the demo's thread ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def group_members(pgids: set[int]) -> list[int]:
    """Pids of live processes (zombies excluded) whose process group is in ``pgids``."""
    return [pid for pid, fields in processes() if fields[0] != "Z" and int(fields[2]) in pgids]


class Supervisor:
    """Owns every child of the demo; see the module docstring."""

    def __init__(self, run_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.children: list[Child] = []
        self.pid_file = run_dir / "children.pids"
        self.interrupted_by: str | None = None

    def interrupt(self, signum: int) -> None:
        """Note a stop request; the next :meth:`check` raises :class:`InterruptedError`."""
        self.interrupted_by = signal.Signals(signum).name

    def start(self, name: str, argv: list[str], *, stage: str | None = None) -> Child:
        log_path = self.run_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(  # noqa: S603 - argv built by the demo, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            process_group=0,  # Ctrl-C reaches the demo only; it stops the children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - no threads yet
        )
        child = Child(name, stage or name, proc, log_path, log)
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        lines = (f"{child.pid} {child.name}\n" for child in self.children)
        self.pid_file.write_text("".join(lines))

    def check(self) -> None:
        """Raise :class:`InterruptedError` after a signal, :class:`ChildFailedError` if
        any child has exited."""
        if self.interrupted_by is not None:
            raise InterruptedError(self.interrupted_by)
        for child in self.children:
            if not child.alive:
                raise ChildFailedError(
                    f"{child.name} exited with status {child.proc.returncode}; "
                    f"end of {child.log_path}:\n{child.log_tail()}"
                )

    def wait_for_port(self, child: Child, port: int, timeout: float) -> None:
        """Block until ``127.0.0.1:port`` accepts connections (the child still alive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise ChildFailedError(f"{child.name} did not listen on port {port} within {timeout:.0f}s")

    def stop(self, children: list[Child], grace: float) -> None:
        """SIGTERM each child's group, wait up to ``grace`` s for all, then SIGKILL."""
        for child in children:
            if child.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait()
            child.log.close()

    def stop_all(self, grace: float = 15.0) -> list[int]:
        """Stop every stage, the last started first (so the agent stops before the IMAP
        server it reads and the broker goes last); return the pids that had to be killed
        afterwards because they were still in a child's process group."""
        stages: dict[str, list[Child]] = {}
        for child in self.children:
            stages.setdefault(child.stage, []).append(child)
        for stage in reversed(stages.values()):
            self.stop(stage, grace)
        pgids = {child.pid for child in self.children}
        deadline = time.monotonic() + 2.0  # grandchildren got the same SIGTERM: let them end
        while (leftovers := group_members(pgids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
