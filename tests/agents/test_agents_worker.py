"""MailboxWorker with fakes at its boundaries: ordering of publish and cursor commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest
from prometheus_client import CollectorRegistry

from agents.config import AgentLimits, KafkaSettings, MailboxConfig, Secret, TlsMode
from agents.cursor import FolderCursor, FolderStatus
from agents.imap.session import (
    ImapDroppedError,
    ImapFolderMissingError,
    ImapParserError,
    ImapProtocolError,
)
from agents.ingest import MailboxWorker, Session, WorkerContext
from agents.publish import PublishError, RecordsRejectedError
from agents.records import FetchedMessage, OutRecord
from pipeline.contracts.metrics import IngestMetrics

BOX = MailboxConfig(
    id="m1",
    host="h",
    port=143,
    tls=TlsMode.PLAIN,
    verify_tls=True,
    ca_file=None,
    user="u",
    password=Secret("pw"),
    folders=("INBOX",),
)

UP = "pec_imap_mailbox_up"
LAG = "pec_ingest_cursor_lag_messages"


@dataclass
class FakeServer:
    """One INBOX: UID -> raw bytes; scripted failures."""

    messages: dict[int, bytes]
    uidvalidity: int = 100
    fail_fetch_over: int | None = None  # RecursionError-like failure above this batch size
    fetch_sizes: list[int] = field(default_factory=list)
    vanished: set[int] = field(default_factory=set)  # listed by SEARCH, expunged before FETCH
    failed_selects: int = 0  # this many SELECTs answer NO, then the folder opens
    special: dict[str, str] = field(default_factory=lambda: {"\\Sent": "Posta inviata"})
    up_at_select: list[float | None] = field(default_factory=list)
    registry: CollectorRegistry | None = None
    dropped_fetches: int = 0  # this many FETCHes lose the connection; the last one stops
    missing: frozenset[str] = frozenset()  # folders the server does not have
    lag_at_fetch: list[float | None] = field(default_factory=list)
    refuse_listing: bool = False  # UID FETCH n:* (RFC822.SIZE) answered NO/BAD
    queries: list[str] = field(default_factory=list)  # "listing" / "search" / "sizes"


class FakeSession:
    def __init__(self, server: FakeServer, stop: asyncio.Event) -> None:
        self.server = server
        self.stop = stop
        self.selected: str | None = None

    @property
    def supports_idle(self) -> bool:
        return True

    async def select(self, folder: str) -> FolderStatus:
        if self.server.registry is not None:
            up = self.server.registry.get_sample_value(UP, {"mailbox": "m1"})
            self.server.up_at_select.append(up)
        if self.server.failed_selects:
            self.server.failed_selects -= 1
            raise ImapProtocolError("NO cannot open the folder")
        if folder in self.server.missing:
            self.selected = None
            raise ImapFolderMissingError(f"folder {folder!r} does not exist on the server")
        self.selected = folder
        top = max(set(self.server.messages) | self.server.vanished, default=0)
        return FolderStatus(self.server.uidvalidity, top + 1, len(self.server.messages))

    async def special_use(self) -> dict[str, str]:
        return self.server.special

    async def search_from(self, first_uid: int) -> list[int]:
        self.server.queries.append("search")
        listed = set(self.server.messages) | self.server.vanished
        return sorted(u for u in listed if u >= first_uid)

    async def sizes_from(self, first_uid: int) -> list[tuple[int, int]] | None:
        self.server.queries.append("listing")
        if self.server.refuse_listing:
            return None
        # the vanished ones are expunged after this listing, before their FETCH
        listed = dict(self.server.messages) | dict.fromkeys(self.server.vanished, b"gone")
        return sorted((u, len(raw)) for u, raw in listed.items() if u >= first_uid)

    async def sizes(self, uids: Sequence[int]) -> list[tuple[int, int]]:
        self.server.queries.append("sizes")
        return [(u, len(self.server.messages[u])) for u in uids if u in self.server.messages]

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        self.server.fetch_sizes.append(len(uids))
        if self.server.registry is not None:
            where = {"mailbox": "m1", "folder": self.selected or ""}
            lag = self.server.registry.get_sample_value(LAG, where)
            self.server.lag_at_fetch.append(lag)
        if self.server.dropped_fetches:
            self.server.dropped_fetches -= 1
            if not self.server.dropped_fetches:
                self.stop.set()
            raise ImapDroppedError("connection closed by server")
        limit = self.server.fail_fetch_over
        if limit is not None and len(uids) > limit:
            raise ImapParserError("too deep")
        messages = self.server.messages
        return [FetchedMessage(u, None, messages[u]) for u in uids if u in messages]

    async def header_section(self, uid: int) -> bytes:
        return b"H: v\r\n\r\n"

    async def wait_for_news(self, timeout: float, stop: asyncio.Event) -> bool:
        self.stop.set()  # one sync is all these tests need
        return False

    async def close(self) -> None:
        return None


class FakeKafka:
    """Publisher and cursor store sharing one event log; can refuse the Nth publish."""

    def __init__(self, refuse: set[int] | None = None, kafka_limit: int | None = None) -> None:
        self.kafka_limit = kafka_limit  # Kafka's own max.message.bytes, below the agent's
        self.events: list[tuple[str, object]] = []
        self.headers: list[dict[str, bytes]] = []  # of every record kept
        self.cursors: dict[tuple[str, str], FolderCursor] = {}
        self.refuse = refuse or set()
        self.calls = 0

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.calls += 1
        if self.calls in self.refuse:
            raise PublishError("refused")
        limit = self.kafka_limit
        too_big = {i for i, r in enumerate(records) if limit is not None and len(r.value) > limit}
        kept = [r for i, r in enumerate(records) if i not in too_big]
        self.events.append(("publish", [dict(r.headers)["uid"] for r in kept]))
        self.headers.extend(dict(r.headers) for r in kept)
        for record in kept:
            if "reason" in dict(record.headers):
                self.events.append(("dead_letter", dict(record.headers)["reason"]))
        if too_big:
            raise RecordsRejectedError(frozenset(too_big), "record too large for Kafka")

    def get(self, mailbox_id: str, folder: str) -> FolderCursor | None:
        return self.cursors.get((mailbox_id, folder))

    async def commit(self, mailbox_id: str, folder: str, cursor: FolderCursor) -> None:
        self.events.append(("commit", cursor.last_uid))
        self.cursors[(mailbox_id, folder)] = cursor


async def run_worker(
    server: FakeServer, kafka: FakeKafka, folders: tuple[str, ...] = ("INBOX",), **limits: int
) -> CollectorRegistry:
    stop = asyncio.Event()
    registry = server.registry or CollectorRegistry()
    metrics = IngestMetrics(registry)

    async def open_session(box: MailboxConfig, timeout: float) -> Session:
        return FakeSession(server, stop)

    ctx = WorkerContext(
        kafka=KafkaSettings(bootstrap="unused"),
        limits=AgentLimits(backoff_base=0.001, backoff_cap=0.001, **limits),
        publisher=kafka,
        cursors=kafka,
        metrics=metrics,
        connecting=asyncio.Semaphore(1),
        active=asyncio.Semaphore(1),
        stop=stop,
        open_session=open_session,
    )
    await asyncio.wait_for(MailboxWorker(replace(BOX, folders=folders), ctx).run(), 5)
    return registry


async def test_cursor_is_committed_only_after_each_batch_is_published() -> None:
    """publish(batch) always precedes commit(last UID of that batch)."""
    server = FakeServer(dict.fromkeys(range(1, 6), b"x" * 10))
    kafka = FakeKafka()
    await run_worker(server, kafka, batch_max_messages=2)
    assert kafka.events == [
        ("publish", [b"1", b"2"]),
        ("commit", 2),
        ("publish", [b"3", b"4"]),
        ("commit", 4),
        ("publish", [b"5"]),
        ("commit", 5),
    ]


async def test_refused_publish_leaves_the_cursor_and_is_retried() -> None:
    """Kafka refusing batch 2: no commit for it; the retry resumes at that batch."""
    server = FakeServer(dict.fromkeys(range(1, 5), b"x"))
    kafka = FakeKafka(refuse={2})
    registry = await run_worker(server, kafka, batch_max_messages=2)
    assert kafka.events == [
        ("publish", [b"1", b"2"]),
        ("commit", 2),
        ("publish", [b"3", b"4"]),
        ("commit", 4),
    ]
    assert registry.get_sample_value("pec_ingest_publish_errors_total") == 1


async def test_parser_failure_shrinks_the_batch_until_it_fits() -> None:
    """A batch aioimaplib cannot parse is retried in quarter-size batches."""
    server = FakeServer(dict.fromkeys(range(1, 41), b"x"), fail_fetch_over=10)
    kafka = FakeKafka()
    await run_worker(server, kafka, batch_max_messages=40)
    assert server.fetch_sizes[:2] == [40, 10]
    assert kafka.cursors[("m1", "INBOX")].last_uid == 40


async def test_oversized_message_is_dead_lettered_in_uid_order() -> None:
    """UID 2 over the limit: dead-lettered between UID 1 and UID 3, the cursor passes it."""
    server = FakeServer({1: b"a", 2: b"b" * 100, 3: b"c"})
    kafka = FakeKafka()
    await run_worker(server, kafka, max_message_bytes=50)
    assert kafka.events == [
        ("publish", [b"1"]),
        ("commit", 1),
        ("publish", [b"2"]),
        ("dead_letter", b"too-large: 100 bytes > 50"),
        ("commit", 2),
        ("publish", [b"3"]),
        ("commit", 3),
    ]


async def test_new_uidvalidity_resyncs_from_uid_one() -> None:
    """A stored cursor under another UIDVALIDITY is ignored: everything is read again."""
    server = FakeServer({1: b"a", 2: b"b"}, uidvalidity=200)
    kafka = FakeKafka()
    kafka.cursors[("m1", "INBOX")] = FolderCursor(100, 2)
    await run_worker(server, kafka)
    assert kafka.events == [("publish", [b"1", b"2"]), ("commit", 2)]
    assert kafka.cursors[("m1", "INBOX")] == FolderCursor(200, 2)


async def test_records_kafka_refuses_as_too_large_are_dead_lettered_not_retried() -> None:
    """Kafka's own size limit below the agent's: that message goes to the dead letters."""
    server = FakeServer({1: b"a", 2: b"S: x\r\n\r\n" + b"b" * 100, 3: b"c"})
    kafka = FakeKafka(kafka_limit=50)
    registry = await run_worker(server, kafka)
    assert kafka.events == [
        ("publish", [b"1", b"3"]),
        ("publish", [b"2"]),
        ("dead_letter", b"kafka-rejected: record too large for Kafka"),
        ("commit", 3),
    ]
    published = {"outcome": "published"}
    assert registry.get_sample_value("pec_ingest_messages_total", published) == 2


async def test_messages_expunged_between_search_and_fetch_are_passed_over() -> None:
    """UIDs that vanish before FETCH don't block the cursor, even under a new UIDVALIDITY."""
    server = FakeServer({}, uidvalidity=300, vanished={2, 3})
    kafka = FakeKafka()
    kafka.cursors[("m1", "INBOX")] = FolderCursor(100, 9)
    await run_worker(server, kafka)
    assert kafka.events == [("commit", 3)]
    assert kafka.cursors[("m1", "INBOX")] == FolderCursor(300, 3)


async def test_special_use_folder_is_resolved_at_login() -> None:
    """A ``\\Sent`` entry becomes the server's folder with that attribute."""
    server = FakeServer({1: b"a"})
    kafka = FakeKafka()
    await run_worker(server, kafka, folders=("INBOX", "\\Sent"))
    assert set(kafka.cursors) == {("m1", "INBOX"), ("m1", "Posta inviata")}


async def test_records_say_which_folder_holds_the_sent_copies() -> None:
    """``folder-role``: INBOX, the ``\\Sent`` folder, and ``\\Archive`` (not sent copies)."""
    server = FakeServer({1: b"a"}, special={"\\Sent": "Posta inviata", "\\Archive": "Archivio"})
    kafka = FakeKafka()
    await run_worker(server, kafka, folders=("INBOX", "\\Sent", "\\Archive", "Old"))
    roles = {h["folder"]: h["folder-role"] for h in kafka.headers}
    assert roles == {
        b"INBOX": b"inbox",
        b"Posta inviata": b"sent",
        b"Archivio": b"archive",
        b"Old": b"sent",
    }


async def test_mailbox_that_logs_in_but_cannot_open_a_folder_is_never_up() -> None:
    """Up means synced: logins that fail on SELECT keep the gauge at 0 between retries."""
    registry = CollectorRegistry()
    server = FakeServer({1: b"a"}, failed_selects=3, registry=registry)
    kafka = FakeKafka()
    await run_worker(server, kafka)
    assert server.up_at_select[:4] == [0.0, 0.0, 0.0, 0.0]
    assert registry.get_sample_value("pec_imap_errors_total", {"kind": "protocol"}) == 3
    assert kafka.cursors[("m1", "INBOX")].last_uid == 1
    assert registry.get_sample_value("pec_imap_connected_mailboxes") == 0


async def test_cursor_lag_shows_the_backlog_at_select_and_keeps_it_while_down() -> None:
    """Lag = newest UID - last published from the SELECT on, before any fetch; a mailbox
    that then keeps failing still shows its backlog."""
    registry = CollectorRegistry()
    server = FakeServer(dict.fromkeys(range(1, 8), b"x"), registry=registry, dropped_fetches=3)
    kafka = FakeKafka()
    kafka.cursors[("m1", "INBOX")] = FolderCursor(100, 2)
    await run_worker(server, kafka)
    assert server.lag_at_fetch == [5.0, 5.0, 5.0]
    assert registry.get_sample_value(LAG, {"mailbox": "m1", "folder": "INBOX"}) == 5
    assert registry.get_sample_value(UP, {"mailbox": "m1"}) == 0
    assert kafka.events == []


async def test_configured_folder_missing_on_the_server_is_logged_and_inbox_flows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Sent folder the server lacks is skipped with a ``folder.missing`` warning naming
    it; INBOX is still synced and the full sync completes."""
    caplog.set_level(logging.WARNING, "agents.ingest")
    registry = CollectorRegistry()
    server = FakeServer({1: b"a"}, missing=frozenset({"Sent"}), registry=registry)
    kafka = FakeKafka()
    await run_worker(server, kafka, folders=("INBOX", "Sent"))
    assert set(kafka.cursors) == {("m1", "INBOX")}
    missing = [r for r in caplog.records if r.getMessage() == "folder.missing"]
    assert [r.fields["folder"] for r in missing] == ["Sent"]  # type: ignore[attr-defined]
    synced = registry.get_sample_value("pec_ingest_last_sync_timestamp_seconds", {"mailbox": "m1"})
    assert synced is not None
    assert synced > 0
    assert registry.get_sample_value("pec_imap_errors_total", {"kind": "protocol"}) == 0


async def test_large_first_sync_logs_start_and_progress(caplog: pytest.LogCaptureFixture) -> None:
    """A first sync of at least progress_every messages logs sync.start, then sync.progress
    every progress_every messages and at the end; a small sync logs neither."""
    caplog.set_level(logging.INFO, "agents.ingest")
    server = FakeServer(dict.fromkeys(range(1, 351), b"x"))
    await run_worker(server, FakeKafka(), batch_max_messages=50, progress_every=100)
    lines = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    assert [f for e, f in lines if e == "sync.start"] == [
        {"mailbox": "m1", "folder": "INBOX", "messages": 350, "resync": False}
    ]
    progress = [(f["done"], f["total"]) for e, f in lines if e == "sync.progress"]
    assert progress == [(100, 350), (200, 350), (300, 350), (350, 350)]
    caplog.clear()
    await run_worker(
        FakeServer(dict.fromkeys(range(1, 100), b"x")), FakeKafka(), progress_every=100
    )
    assert not [r for r in caplog.records if r.getMessage().startswith("sync.")]


async def test_first_sync_lists_uids_with_their_sizes_in_one_query() -> None:
    """A folder with up to SIZE_LISTING_MAX messages to read: one size listing, no
    SEARCH and no size query; everything published in UID order, cursor at the end."""
    server = FakeServer({1: b"a", 2: b"bb", 5: b"c"})
    kafka = FakeKafka()
    await run_worker(server, kafka)
    assert server.queries == ["listing"]
    assert kafka.events == [("publish", [b"1", b"2", b"5"]), ("commit", 5)]


async def test_size_listing_refused_falls_back_to_search_and_is_not_asked_again() -> None:
    """A server answering NO/BAD to UID FETCH n:* (RFC822.SIZE): SEARCH + size query,
    the same records; the next folder of that login goes straight to SEARCH."""
    server = FakeServer({1: b"a", 2: b"bb"}, refuse_listing=True)
    kafka = FakeKafka()
    await run_worker(server, kafka, folders=("Sent", "INBOX"))
    assert server.queries == ["listing", "search", "sizes", "search", "sizes"]
    assert kafka.cursors[("m1", "INBOX")].last_uid == 2
    assert kafka.cursors[("m1", "Sent")].last_uid == 2


async def test_folder_with_more_than_the_listing_limit_is_listed_by_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above SIZE_LISTING_MAX messages to read, SEARCH then size queries per chunk."""
    monkeypatch.setattr("agents.ingest.SIZE_LISTING_MAX", 3)
    server = FakeServer(dict.fromkeys(range(1, 6), b"x"))
    kafka = FakeKafka()
    await run_worker(server, kafka, batch_max_messages=2)
    assert server.queries == ["search", "sizes", "sizes", "sizes"]
    assert kafka.cursors[("m1", "INBOX")].last_uid == 5


async def test_listing_from_a_cursor_reads_only_the_new_messages() -> None:
    """After a stored cursor the listing starts past it (a small lag: listed, not searched)."""
    server = FakeServer(dict.fromkeys(range(1, 8), b"x"))
    kafka = FakeKafka()
    kafka.cursors[("m1", "INBOX")] = FolderCursor(100, 5)
    await run_worker(server, kafka)
    assert server.queries == ["listing"]
    assert kafka.events == [("publish", [b"6", b"7"]), ("commit", 7)]
