"""``/proc/<pid>/stat`` for process bookkeeping (the demo's supervisor, tests, benchmarks).

Fields are those after ``(comm)`` — comm may hold spaces and parentheses — so index 0 is
the state, 1 the parent pid, 2 the process group, 3 the session, 11-14 utime, stime,
cutime, cstime in clock ticks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int | str) -> list[str]:
    """The fields of one process (``OSError`` once it is gone)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def processes() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields)`` of every process alive while /proc is listed."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), stat_fields(entry.name)
        except OSError:
            continue


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICK
