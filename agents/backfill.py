"""The agent's backfill loops: a periodic progress report, and ``--once``'s end.

``report`` logs a ``backfill.progress`` line every ``every`` seconds while messages are
left to do, once when the last is done and once at the stop, and, given a terminal stream, redraws a
progress bar on it every half second. ``stop_when_synced`` sets ``stop`` once every
mailbox worker has returned: with ``once`` they return after their first complete sync.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TextIO

from agents.progress import Progress, bar

__all__ = ["report", "stop_when_synced"]


async def report(
    progress: Progress, stop: asyncio.Event, *, every: float, terminal: TextIO | None = None
) -> None:
    tick = 0.5 if terminal is not None else every
    last_log = asyncio.get_running_loop().time()
    logged_idle = True
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)
        snap = progress.snapshot()
        if terminal is not None:
            terminal.write("\r" + bar(snap) + "\x1b[K")  # clear what a longer line left
            terminal.flush()
        now = asyncio.get_running_loop().time()
        if snap.todo and now - last_log >= every:
            progress.log()
            last_log, logged_idle = now, False
        elif not snap.todo and not logged_idle:
            progress.log()  # the line that says it is done
            last_log, logged_idle = now, True
    if progress.done:
        progress.log()  # where it stands at the stop (--once: the whole backfill)
    if terminal is not None:
        terminal.write("\r" + bar(progress.snapshot()) + "\x1b[K\n")
        terminal.flush()


async def stop_when_synced(tasks: Sequence[asyncio.Task[None]], stop: asyncio.Event) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
