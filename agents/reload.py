"""Live reconfiguration: SIGHUP makes the agent read its config file again.

The new config is validated whole first; an invalid one is refused (``config.reload_refused``
names the problem) and the running one stays. Otherwise, among this process's share of
the mailboxes (:mod:`agents.fleet`):

- added mailboxes start (connect, log in, sync from their stored cursors);
- removed mailboxes finish their batch, log out and stop; their cursors stay in Kafka, so
  adding one back resumes where it stopped;
- changed mailboxes (any setting, including which secret they reference) are stopped and
  started again: one new login;
- every other mailbox keeps its IMAP session untouched.

A rotated password needs no reload (it is read at each login, :mod:`agents.secrets`).
``[kafka]`` and ``[limits]`` are read but not applied by a reload: the producer and the
semaphores are shared by every mailbox, so a change there is logged
(``config.reload_needs_restart``) and waits for the next restart.

:func:`plan_reload` is pure; :func:`serve_reloads` applies plans as requests come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from agents.config import AgentConfig, ConfigError, MailboxConfig
from agents.fleet import MailboxFleet
from agents.logs import log_event
from agents.shard import Shard

__all__ = ["ReloadPlan", "plan_reload", "restart_needed", "serve_reloads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload changes: mailboxes to start, to stop, to restart; how many stay."""

    added: tuple[MailboxConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[MailboxConfig, ...]
    kept: int


def plan_reload(
    running: Mapping[str, MailboxConfig], wanted: Sequence[MailboxConfig]
) -> ReloadPlan:
    """Compare the running mailboxes with the wanted ones (already this shard's share)."""
    by_id = {box.id: box for box in wanted}
    added = tuple(box for box in wanted if box.id not in running)
    changed = tuple(box for box in wanted if box.id in running and running[box.id] != box)
    removed = tuple(sorted(set(running) - set(by_id)))
    kept = sum(1 for box in wanted if box.id in running and running[box.id] == box)
    return ReloadPlan(added, removed, changed, kept)


def restart_needed(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The sections a reload does not apply that differ (``["kafka"]``, ...)."""
    return [
        name
        for name, a, b in (("kafka", old.kafka, new.kafka), ("limits", old.limits, new.limits))
        if a != b
    ]


async def apply_plan(fleet: MailboxFleet, plan: ReloadPlan, grace_seconds: float) -> None:
    """Stop the removed and changed mailboxes (together), then start the new ones."""
    stopping = [*plan.removed, *(box.id for box in plan.changed)]
    await asyncio.gather(*(fleet.stop(box_id, grace_seconds) for box_id in stopping))
    for box in (*plan.changed, *plan.added):
        fleet.start(box)


async def serve_reloads(
    fleet: MailboxFleet,
    *,
    config: AgentConfig,
    shard: Shard,
    load: Callable[[], AgentConfig],
    requested: asyncio.Event,
    stop: asyncio.Event,
    grace_seconds: float,
    on_reloaded: Callable[[AgentConfig, int], None] = lambda _config, _count: None,
) -> None:
    """Apply a reload each time ``requested`` is set, until ``stop`` is set."""
    while not stop.is_set():
        stopped = asyncio.create_task(stop.wait())
        asked = asyncio.create_task(requested.wait())
        await asyncio.wait({stopped, asked}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopped, asked):
            waiter.cancel()
        if stop.is_set():
            return
        requested.clear()
        try:
            new = load()
        except ConfigError as exc:
            log_event(log, logging.ERROR, "config.reload_refused", error=str(exc),
                      detail="the new config is invalid: the running one stays")  # fmt: skip
            continue
        plan = plan_reload(fleet.boxes, shard.select(new.mailboxes))
        sections = restart_needed(config, new)  # against what runs: never applied live
        if sections:
            log_event(log, logging.WARNING, "config.reload_needs_restart", sections=sections,
                      detail="these apply at the next restart; mailboxes apply now")  # fmt: skip
        await apply_plan(fleet, plan, grace_seconds)
        on_reloaded(new, len(fleet))
        log_event(log, logging.INFO, "config.reloaded", added=_ids(b.id for b in plan.added),
                  removed=_ids(plan.removed), changed=_ids(b.id for b in plan.changed),
                  kept=plan.kept, mailboxes=len(fleet))  # fmt: skip


def _ids(ids: Iterable[str], shown: int = 20) -> dict[str, object]:
    """A count and the first ``shown`` ids: a reload of thousands stays one short line."""
    listed = list(ids)
    return {"count": len(listed), "ids": listed[:shown]}
