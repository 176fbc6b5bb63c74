"""One mailbox's ingest loop: connect, sync every folder, IDLE, repeat; thin by design.

Per folder: SELECT, plan from the stored cursor (:mod:`agents.cursor`), list UIDs, cut
them into bounded batches (:mod:`agents.fetch_batches`), fetch with ``BODY.PEEK[]``, publish,
wait for Kafka's acks, then advance the cursor. Any IMAP or Kafka failure ends the
connection; the worker waits (:mod:`agents.backoff`) and resumes from the stored cursor,
so a fault never skips a message. Other mailboxes are untouched by one mailbox's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from agents.backoff import Backoff
from agents.config import AgentLimits, KafkaSettings, MailboxConfig
from agents.cursor import FolderCursor, FolderPlan, FolderStatus, plan_folder
from agents.fetch_batches import FetchBatch, Oversized, chunked, plan_batches, shrink
from agents.imap.session import (
    ImapAuthError,
    ImapError,
    ImapFolderMissingError,
    ImapParserError,
    ImapProtocolError,
    ImapSession,
)
from agents.logs import log_event
from agents.progress import Progress
from agents.publish import PublishError, RecordsRejectedError
from agents.records import (
    FetchedMessage,
    OutRecord,
    dead_letter_record,
    header_section,
    raw_record,
)
from agents.slots import Lane, Slots
from pipeline.contracts.metrics import IngestMetrics
from pipeline.contracts.raw import FolderRole, folder_role

__all__ = ["Cursors", "MailboxWorker", "Opener", "Publisher", "Session", "WorkerContext"]

log = logging.getLogger(__name__)

# A RFC822.SIZE answer is one line per message and aioimaplib recurses once per line:
# a few hundred lines per query stay far below Python's recursion limit.
SIZE_QUERY_MAX = 200
# A folder with at most this many messages to read is listed with their sizes by one
# ``UID FETCH n:* (UID RFC822.SIZE)`` (~40 bytes a line) instead of SEARCH + size
# queries: one round trip less per folder; above it the answer would be held whole.
SIZE_LISTING_MAX = 5000


class Session(Protocol):
    """What the worker needs from an IMAP connection (:class:`ImapSession` in production)."""

    selected: str | None

    @property
    def supports_idle(self) -> bool: ...

    async def select(self, folder: str) -> FolderStatus: ...

    async def special_use(self) -> dict[str, str]: ...

    async def search_from(self, first_uid: int) -> list[int]: ...

    async def search_since(self, first_uid: int, since: date) -> list[int]: ...

    async def sizes_from(self, first_uid: int) -> list[tuple[int, int]] | None: ...

    async def sizes(self, uids: Sequence[int]) -> list[tuple[int, int]]: ...

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]: ...

    async def header_section(self, uid: int) -> bytes: ...

    async def wait_for_news(self, timeout: float, stop: asyncio.Event) -> bool: ...

    async def close(self) -> None: ...


Opener = Callable[[MailboxConfig, float], Awaitable[Session]]


class Publisher(Protocol):
    async def publish(self, records: Sequence[OutRecord]) -> None: ...


class Cursors(Protocol):
    def get(self, mailbox_id: str, folder: str) -> FolderCursor | None: ...

    async def commit(self, mailbox_id: str, folder: str, cursor: FolderCursor) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What every mailbox worker of a process shares."""

    kafka: KafkaSettings
    limits: AgentLimits
    publisher: Publisher
    cursors: Cursors
    metrics: IngestMetrics
    # Two bounds, so that servers that never answer (each holding a connect slot until
    # the command timeout) cannot starve the syncs of mailboxes already connected.
    connecting: asyncio.Semaphore  # connects + logins in progress
    active: asyncio.Semaphore | Slots  # IMAP batches in progress; idle connections hold neither
    stop: asyncio.Event
    open_session: Opener = ImapSession.open
    progress: Progress = field(default_factory=Progress)  # backfill: done / to do, ETA
    once: bool = False  # return after the first complete sync (pectrack agent --once)


class MailboxWorker:
    """Keeps one mailbox flowing into Kafka until ``stop`` is set."""

    def __init__(self, box: MailboxConfig, ctx: WorkerContext) -> None:
        self.box = box
        self.ctx = ctx
        self.backoff = Backoff(ctx.limits.backoff_base, ctx.limits.backoff_cap)
        self._rand = random.Random()  # noqa: S311 - jitter, not cryptography
        self.metrics = ctx.metrics
        self.metrics.mailbox_up.labels(box.id).set(0)
        self.batch_max = ctx.limits.batch_max_messages
        self.folders: tuple[str, ...] = box.folders  # special-use names resolved per login
        # folder-role of the folders found by special use; the others: by name (raw_record)
        self.roles: dict[str, FolderRole] = {}
        self._missing: set[str] = set()  # configured folders the server does not have
        self._live = False  # past its first complete sync: its syncs take the urgent lane
        self._listing = True  # False once the server refused UID FETCH n:* (RFC822.SIZE)

    async def run(self) -> None:
        attempt = 0
        while not self.ctx.stop.is_set():
            session: Session | None = None
            try:
                async with self.ctx.connecting:
                    session = await self.ctx.open_session(self.box, self.ctx.limits.command_timeout)
                self.metrics.connected.inc()
                self.metrics.credentials_ok.labels(self.box.id).set(1)
                self.folders = await self._resolve_folders(session)
                await self._sync_all(session)
                self._up(True)  # up = every folder synced, not merely logged in
                self.ctx.progress.mark_synced(self.box.id)
                self._live = True
                attempt = 0
                if self.ctx.once:
                    return
                await self._watch(session)
            except (ImapError, PublishError) as exc:
                if isinstance(exc, ImapParserError):
                    self.batch_max = shrink(self.batch_max)
                self._failed(exc, attempt)
                attempt += 1
            except Exception as exc:  # a bug must not stop this mailbox for good
                self._failed(ImapProtocolError(f"unexpected {type(exc).__name__}"), attempt)
                attempt += 1
            finally:
                if session is not None:
                    self._up(False)
                    self.metrics.connected.dec()
                    await session.close()
            if not self.ctx.stop.is_set() and attempt:
                await self._sleep(self.backoff.delay(attempt - 1, self._rand.random))

    def _up(self, up: bool) -> None:
        self.metrics.mailbox_up.labels(self.box.id).set(1 if up else 0)

    def _failed(self, exc: ImapError | PublishError, attempt: int) -> None:
        if isinstance(exc, ImapError):
            self.metrics.imap_errors.labels(exc.kind).inc()
            if isinstance(exc, ImapAuthError):  # refused, or no password to give (secret)
                self.metrics.credentials_ok.labels(self.box.id).set(0)
        else:
            self.metrics.publish_errors.inc()
        log_event(
            log,
            logging.WARNING,
            "mailbox.error",
            mailbox=self.box.id,
            kind=exc.kind,
            error=str(exc),
            attempt=attempt + 1,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stop.wait(), seconds)

    async def _watch(self, session: Session) -> None:
        """IDLE on INBOX (or poll); on news sync INBOX, every ``poll_seconds`` all folders."""
        limits = self.ctx.limits
        next_full = time.monotonic() + limits.poll_seconds
        while not self.ctx.stop.is_set():
            wait = max(0.0, min(limits.idle_seconds, next_full - time.monotonic()))
            if session.supports_idle:
                if session.selected != "INBOX":
                    await self._select(session, "INBOX")
                news = await session.wait_for_news(wait, self.ctx.stop)
            else:
                await self._sleep(wait)
                news = False
            if self.ctx.stop.is_set():
                return
            if time.monotonic() >= next_full:
                await self._sync_all(session)
                next_full = time.monotonic() + limits.poll_seconds
            elif news:
                await self._sync_folder(session, "INBOX")

    async def _resolve_folders(self, session: Session) -> tuple[str, ...]:
        """Replace ``\\Sent``-style entries by the server's folder with that attribute."""
        self.roles = {}
        if not any(f.startswith("\\") for f in self.box.folders):
            return self.box.folders
        by_use = await session.special_use()
        resolved: list[str] = []
        for folder in self.box.folders:
            name = by_use.get(folder, "") if folder.startswith("\\") else folder
            if not name:
                log_event(log, logging.WARNING, "folder.special_use_missing",
                          mailbox=self.box.id, attribute=folder,
                          detail=f"no folder on the server has {folder}: skipped")  # fmt: skip
            elif name not in resolved:
                resolved.append(name)
                if folder.startswith("\\"):
                    self.roles[name] = folder_role(name, folder)
        return tuple(resolved)

    async def _sync_all(self, session: Session) -> None:
        # INBOX last, so it stays selected for IDLE.
        for folder in sorted(self.folders, key=lambda f: f == "INBOX"):
            try:
                await self._sync_folder(session, folder)
            except ImapFolderMissingError as exc:
                # A configured Sent folder the server lacks must not stop INBOX (receipts):
                # skip it, say so once, and look again at every full sync.
                if folder not in self._missing:
                    self._missing.add(folder)
                    log_event(log, logging.WARNING, "folder.missing", mailbox=self.box.id,
                              folder=folder, error=str(exc),
                              detail="configured folder not on the server: skipped; "
                              "checked again at every full sync")  # fmt: skip
                continue
            self._missing.discard(folder)
        self.metrics.last_sync.labels(self.box.id).set(time.time())

    async def _select(
        self, session: Session, folder: str
    ) -> tuple[FolderStatus, FolderCursor | None, FolderPlan]:
        """SELECT ``folder`` and show its backlog at once (newest UID minus last published).

        Set from every SELECT, before any fetch: a mailbox 50,000 messages behind shows it
        now, not after its first batch. Nothing resets it when the mailbox goes down, so
        the last known backlog stays visible during an outage.
        """
        status = await session.select(folder)
        cursor = self.ctx.cursors.get(self.box.id, folder)
        plan = plan_folder(cursor, status)
        self.metrics.cursor_lag.labels(self.box.id, folder).set(plan.lag)
        return status, cursor, plan

    async def _sync_folder(self, session: Session, folder: str) -> None:
        """Publish the folder's new messages in UID order, committing after each batch.

        The ``active`` slot is held per IMAP round of work (SELECT and SEARCH, one size
        query, one batch fetched and acknowledged), never for the whole folder: a first
        sync of 100,000 messages queues for a slot again after every batch, so a mailbox
        woken by IDLE waits for one batch of each sync ahead of it, not for their end.
        The asyncio semaphore wakes waiters in FIFO order. Between batches nothing is
        in flight, so a cursor still moves only after its records are acknowledged.
        """
        box, active = self.box, self._slot()
        async with active:
            status, cursor, plan = await self._select(session, folder)
            lag = self.metrics.cursor_lag.labels(box.id, folder)
            if plan.resync:
                log_event(log, logging.WARNING, "folder.uidvalidity_changed", mailbox=box.id,
                          folder=folder, old=cursor.uidvalidity if cursor else None,
                          new=status.uidvalidity)  # fmt: skip
            if plan.up_to_date and not plan.resync:
                return
            # A history limit bounds a folder's first read only (no cursor, or a new
            # UIDVALIDITY): after it, everything past the cursor is read (agents.history).
            since = box.history.start(datetime.now(UTC).date()) if box.history else None
            sizes: list[tuple[int, int]] | None = None  # known with the UIDs, or asked later
            if since is not None and plan.first_uid == 1:
                uids = await session.search_since(1, since)
                # Past every UID the server had at SELECT, matched or not, so the next
                # sync does not read the older messages above the newest match.
                skipped = status.uidnext - 1 if status.uidnext < 2**32 else 0
                log_event(log, logging.INFO, "sync.history_limited", mailbox=box.id,
                          folder=folder, since=since.isoformat(), messages=len(uids))  # fmt: skip
            else:
                sizes = await self._list_sizes(session, status, plan)
                if sizes is None:
                    uids = await session.search_from(plan.first_uid)
                else:
                    uids = [uid for uid, _size in sizes]
                skipped = 0
        if not uids:
            lag.set(0)
            if plan.resync or skipped:  # empty (or all too old) under a new UIDVALIDITY
                reached = FolderCursor(plan.uidvalidity, skipped)
                await self.ctx.cursors.commit(box.id, folder, reached)
            return
        newest = max(uids[-1], skipped)
        progress = self.ctx.progress
        progress.start(box.id, folder, len(uids))
        try:
            await self._fetch_all(session, folder, plan, uids, newest, listed=sizes)
        finally:
            progress.finish(box.id, folder)  # the rest is listed again by the next sync

    async def _list_sizes(
        self, session: Session, status: FolderStatus, plan: FolderPlan
    ) -> list[tuple[int, int]] | None:
        """UIDs to read with their sizes in one round trip, for a folder with at most
        :data:`SIZE_LISTING_MAX` of them (``lag`` and ``exists`` both bound the count);
        ``None``: list by SEARCH (a bigger folder, or a server that refused it once)."""
        if not self._listing or min(status.exists, plan.lag) > SIZE_LISTING_MAX:
            return None
        sizes = await session.sizes_from(plan.first_uid)
        if sizes is None:
            self._listing = False
            log_event(log, logging.INFO, "imap.size_listing_refused", mailbox=self.box.id,
                      detail="UID FETCH n:* (RFC822.SIZE) refused: SEARCH from now on")  # fmt: skip
        return sizes

    async def _fetch_all(
        self,
        session: Session,
        folder: str,
        plan: FolderPlan,
        uids: list[int],
        newest: int,
        *,
        listed: list[tuple[int, int]] | None = None,
    ) -> None:
        """Fetch and publish ``uids``; ``listed``: their sizes when already known."""
        box, limits, active = self.box, self.ctx.limits, self._slot()
        lag = self.metrics.cursor_lag.labels(box.id, folder)
        total, done = len(uids), 0
        big = total >= limits.progress_every
        if big:
            log_event(log, logging.INFO, "sync.start", mailbox=box.id, folder=folder,
                      messages=total, resync=plan.resync)  # fmt: skip
        step_max = self.batch_max
        for start in range(0, total, step_max):
            chunk = uids[start : start + step_max]
            if self.ctx.stop.is_set():
                return
            sizes: list[tuple[int, int]] = []
            if listed is not None:
                sizes = listed[start : start + step_max]
            else:
                async with active:
                    for part in chunked(chunk, SIZE_QUERY_MAX):
                        sizes += await session.sizes(part)
            steps = plan_batches(
                sizes,
                max_messages=self.batch_max,
                max_bytes=limits.batch_max_bytes,
                max_message_bytes=limits.max_message_bytes,
            )
            for step in steps:
                async with active:
                    last = await self._step(session, folder, plan.uidvalidity, step)
                    reached = FolderCursor(plan.uidvalidity, last)
                    await self.ctx.cursors.commit(box.id, folder, reached)
                lag.set(max(newest - last, 0))
                self.ctx.progress.advance(box.id, folder, _count(step))
            done += len(chunk)
            if big and (done % limits.progress_every < len(chunk) or done == total):
                log_event(log, logging.INFO, "sync.progress", mailbox=box.id, folder=folder,
                          done=done, total=total)  # fmt: skip
        # UIDs listed by SEARCH but expunged before FETCH: move past them too.
        final = FolderCursor(plan.uidvalidity, newest)
        if self.ctx.cursors.get(box.id, folder) != final:
            await self.ctx.cursors.commit(box.id, folder, final)
        lag.set(0)

    def _slot(self) -> asyncio.Semaphore | Lane:
        """The urgent lane once the mailbox is past its first sync (agents.slots)."""
        active = self.ctx.active
        return active.lane(urgent=self._live) if isinstance(active, Slots) else active

    async def _step(
        self, session: Session, folder: str, uidvalidity: int, step: FetchBatch | Oversized
    ) -> int:
        """Fetch and publish one batch (or dead-letter one message); returns its last UID."""
        box, kafka = self.box, self.ctx.kafka
        if isinstance(step, Oversized):
            head = header_section(await session.header_section(step.uid))  # bounded
            reason = f"too-large: {step.size} bytes > {self.ctx.limits.max_message_bytes}"
            await self._dead_letter(
                folder, uidvalidity, step.uid, size=step.size, head=head, reason=reason
            )
            return step.uid
        started = time.perf_counter()
        fetched = await session.fetch(step.uids)
        self.metrics.fetch_seconds.observe(time.perf_counter() - started)
        if len(fetched) != len(step.uids):  # expunged between SEARCH and FETCH
            missing = sorted(set(step.uids) - {m.uid for m in fetched})
            log_event(log, logging.INFO, "message.vanished", mailbox=box.id, folder=folder,
                      uids=missing[:20], count=len(missing))  # fmt: skip
        role = self.roles.get(folder)
        records = [
            raw_record(kafka.topic, box.id, folder, uidvalidity, m, role=role) for m in fetched
        ]
        rejected: frozenset[int] = frozenset()
        if not records:  # all expunged since they were listed
            return step.uids[-1]
        try:
            await self._publish(records)
        except RecordsRejectedError as exc:
            # Kafka's own size limit (max.message.bytes) can be below ours: the rest of
            # the batch is acknowledged; the refused ones are dead-lettered, not retried.
            rejected = exc.indices
            for index in sorted(rejected):
                message = fetched[index]
                reason = f"kafka-rejected: {exc.reason}"
                head = header_section(message.raw)
                await self._dead_letter(
                    folder,
                    uidvalidity,
                    message.uid,
                    size=len(message.raw),
                    head=head,
                    reason=reason,
                )
        published = [r for i, r in enumerate(records) if i not in rejected]
        self.metrics.messages.labels("published").inc(len(published))
        self.metrics.bytes.inc(sum(len(r.value) for r in published))
        return step.uids[-1]

    async def _dead_letter(
        self, folder: str, uidvalidity: int, uid: int, *, size: int, head: bytes, reason: str
    ) -> None:
        record = dead_letter_record(
            self.ctx.kafka.dead_letter_topic, self.box.id, folder, uidvalidity, uid,
            reason=reason, size=size, header_section=head,
        )  # fmt: skip
        log_event(log, logging.WARNING, "message.dead_letter", mailbox=self.box.id,
                  folder=folder, uid=uid, reason=reason)  # fmt: skip
        await self._publish([record])
        self.metrics.messages.labels("dead_letter").inc()

    async def _publish(self, records: Sequence[OutRecord]) -> None:
        started = time.perf_counter()
        await self.ctx.publisher.publish(records)
        self.metrics.publish_seconds.observe(time.perf_counter() - started)


def _count(step: FetchBatch | Oversized) -> int:
    """Messages a step took off the to-do list (a dead-lettered one counts too)."""
    return 1 if isinstance(step, Oversized) else len(step.uids)
