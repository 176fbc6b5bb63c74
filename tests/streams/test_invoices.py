"""The invoices processor: sdi.notifications (as verify writes them for simulated SdI
traffic) -> per-invoice state in its table -> sdi.invoice-states events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import orjson
import pytest
from faust.exceptions import SameNode
from prometheus_client import CollectorRegistry

from pipeline.contracts.invoices import encode_invoice_check
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import SDI_INVOICE_STATE, released_schema
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import tamper_body
from pipeline.simulate.sdi import (
    SdiCase,
    SdiItem,
    generate_sdi_traffic,
    notification_files,
    sdi_envelope,
    sdi_provider,
)
from pipeline.streams.app import Pipeline, build, invoice_key
from pipeline.streams.invoices import InvoiceTracker
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record, RecordingSink
from pipeline.streams.state import MemoryPartitions
from pipeline.streams.verify import Verifier
from tests.factories import anchor_pem

CET = timezone(timedelta(hours=1))
BOX = "amministrazione"
ADDRESS = "amm@pec.example.it"
START = datetime(2024, 3, 1, 9, tzinfo=CET)
STATES = "sdi.invoice-states"
CHANGELOG = "pectrack-pectrack-invoices-changelog"
# An sdi.notifications record as the invoices agent receives it
SdiRecord = tuple[bytes, bytes | None, list[tuple[str, bytes]]]


def settings(tmp_path: Path, mode: str = "structured", store: str = "memory://") -> StreamSettings:
    return StreamSettings(
        metrics_port=None,
        web_port=16067,
        store=store,
        datadir=str(tmp_path / "state"),
        archive="none",
        cloudevents_mode=mode,
    )


async def verified(raws: Sequence[bytes], mode: str = "structured") -> list[SdiRecord]:
    """What verify publishes on sdi.notifications for these envelopes in BOX's INBOX."""
    sink = RecordingSink()
    trust = TrustStore.from_bytes(anchor_pem())
    verifier = Verifier(
        StreamSettings(metrics_port=None, cloudevents_mode=mode, archive="none"),
        trust,
        sink,
        StreamMetrics(CollectorRegistry()),
    )
    headers = {"mailbox": BOX.encode(), "folder": b"INBOX", "folder-role": b"inbox"}
    await verifier.handle_batch([(BOX.encode(), raw, headers) for raw in raws])
    return sink.sent.get("sdi.notifications", [])


@pytest.fixture(scope="module")
def traffic() -> list[SdiItem]:
    """Every outcome of the simulator (two invoices each) and a few invoices received."""
    return generate_sdi_traffic(
        random.Random(7), default_pki(), ((BOX, ADDRESS),), 24, START, received_share=0.2
    )


@pytest.fixture(scope="module")
def records(traffic: list[SdiItem]) -> list[SdiRecord]:
    return asyncio.run(verified([item.raw for item in traffic]))


def case_files(steps: Sequence[str], progressive: str = "0C0F1") -> list[bytes]:
    """One invoice's envelopes, one per step (``RC``, ``NE-EC01``, ...), an hour apart."""
    provider = sdi_provider(default_pki())
    case = SdiCase("IT", "01234567890", progressive, "4713", START)
    return [
        sdi_envelope(
            provider,
            ADDRESS,
            notification_files(case, step, START + timedelta(hours=n)),
            f"Notifica {step}",
            START + timedelta(hours=n),
            900 + n,
        )
        for n, step in enumerate(steps)
    ]


def tracker(sink: RecordingSink, mode: str = "structured") -> InvoiceTracker:
    """The processor alone, on a memory store (no faust app)."""
    return InvoiceTracker(
        StreamSettings(metrics_port=None, cloudevents_mode=mode, archive="none"),
        sink,
        StreamMetrics(registry_of(sink)),
        MemoryPartitions(),
        CHANGELOG,
    )


REGISTRIES: dict[int, tuple[RecordingSink, CollectorRegistry]] = {}  # each tracker's, by its sink


def registry_of(sink: RecordingSink) -> CollectorRegistry:
    """A new registry for a new sink (kept with the sink: an ``id`` is reused once its
    object is gone), the same one for a sink seen before."""
    known = REGISTRIES.get(id(sink))
    if known is None or known[0] is not sink:
        known = REGISTRIES[id(sink)] = (sink, CollectorRegistry())
    return known[1]


def sample(sink: RecordingSink, name: str, **labels: str) -> float:
    """A metric of the tracker made with ``sink`` (0 if the series does not exist)."""
    return registry_of(sink).get_sample_value(name, labels) or 0.0


def is_notice(record: SdiRecord) -> bool:
    """An SdI notification (not an invoice received)."""
    return bool(orjson.loads(record[1] or b"{}")["type"] == "it.pec.sdi-notification")


async def run(t: InvoiceTracker, batch: Sequence[SdiRecord], partition: int = 0) -> None:
    await t.handle_batch([(key, value, dict(headers), partition) for key, value, headers in batch])


def events(sink: RecordingSink) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value, _ in sink.sent.get(STATES, [])]


def states(t: InvoiceTracker, keys: Sequence[bytes]) -> dict[str, str]:
    found = {}
    for key in keys:
        entry = t.lookup(key.decode())
        if entry is not None:
            found[entry.track.nome_file] = entry.track.state.value
    return found


def expected_states(traffic: list[SdiItem]) -> dict[str, str]:
    return {i.nome_file: i.final_state for i in traffic if i.final_state is not None}


# --- the processor -------------------------------------------------------------------------


async def test_each_invoice_reaches_the_simulators_final_state(
    traffic: list[SdiItem], records: list[SdiRecord]
) -> None:
    """Fed every SdI file in order, each invoice sent ends where the simulator says, each
    published event is valid against the released schema, and invoices received are
    counted, not tracked."""
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, records)
    keys = sorted({key for key, _, _ in records})
    assert states(t, keys) == expected_states(traffic)
    published = events(sink)
    validator = jsonschema.Draft202012Validator(released_schema(SDI_INVOICE_STATE))
    for event in published:
        validator.validate(event)
    last = {e["data"]["nome_file"]: e["data"]["after"] for e in published}
    assert last == expected_states(traffic)
    assert len({e["id"] for e in published}) == len(published)
    assert all(e["data"]["outcome"] == "advanced" for e in published)  # in order: no surprise
    notices = sum(1 for i in traffic if i.final_state is not None)
    received = sum(1 for i in traffic if i.kind == "MT")
    assert received > 0
    processed = sample(sink, "pec_processed_records_total", processor="invoices")
    assert processed == len(records) == notices + received
    assert sample(sink, "pec_sdi_invoice_ignored_total", reason="invoice-received") == received
    assert sample(sink, "pec_sdi_invoice_transitions_total", to_state="delivered",
                  outcome="advanced") > 0  # fmt: skip
    [(key, value, _)] = [r for r in sink.sent[CHANGELOG] if r[0] == keys[0]][-1:]
    assert orjson.loads(value)["key"] == key.decode()  # the changelog holds the entry


async def test_the_same_notifications_again_publish_nothing(records: list[SdiRecord]) -> None:
    """Re-read notifications are duplicates: no event, no changelog write, counted."""
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, records)
    sent_before = {topic: len(values) for topic, values in sink.sent.items()}
    await run(t, records)
    await run(t, records[:3] + records[:3])
    assert {topic: len(values) for topic, values in sink.sent.items()} == sent_before
    duplicates = sum(
        sample(sink, "pec_sdi_invoice_transitions_total", to_state=state, outcome="duplicate")
        for state in ("rejected", "not-delivered", "delivered", "deadline-passed", "refused",
                      "accepted")
    )  # fmt: skip
    notices = [r for r in records if is_notice(r)]
    assert duplicates == len(notices) + 2 * sum(1 for r in records[:3] if is_notice(r))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_order_does_not_change_the_final_states(
    traffic: list[SdiItem], records: list[SdiRecord], seed: int
) -> None:
    """Notifications in any order (one batch, or one by one) give the same final states;
    out-of-order ones are published as such."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    sink = RecordingSink()
    t = tracker(sink)
    if seed % 2:
        await run(t, shuffled)
    else:
        for record in shuffled:
            await run(t, [record])
    keys = sorted({key for key, _, _ in records})
    assert states(t, keys) == expected_states(traffic)
    outcomes = {e["data"]["outcome"] for e in events(sink)}
    assert outcomes <= {"advanced", "out-of-order"}


async def test_a_contradiction_is_published_as_a_conflict() -> None:
    """RC then NS for one file: delivered, then a conflict that keeps delivered; EC01
    and EC02 for it: accepted, and the refusal a conflict."""
    raws = case_files(["RC", "NS", "NE-EC01", "NE-EC02"])
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, await verified(raws))
    got = [
        (e["data"]["before"], e["data"]["after"], e["data"]["event"], e["data"]["outcome"])
        for e in events(sink)
    ]
    assert got == [
        ("sent", "delivered", "consegna", "advanced"),
        ("delivered", "delivered", "scarto", "conflict"),
        ("delivered", "accepted", "accettazione", "advanced"),
        ("accepted", "accepted", "rifiuto", "conflict"),
    ]
    first = events(sink)[0]
    assert first["type"] == "it.pec.sdi-invoice-state"
    assert first["subject"] == "IT01234567890_0C0F1.xml"
    assert first["time"] == START.isoformat()  # the envelope's daticert time
    assert first["data"]["identificativo_sdi"] == "4713"
    assert first["data"]["notification_type"] == "RC"
    assert sample(sink, "pec_sdi_invoice_transitions_total", to_state="accepted",
                  outcome="conflict") == 1  # fmt: skip


async def test_binary_mode_in_and_out() -> None:
    """sdi.notifications in binary mode is read, and the events are written the same way."""
    raws = case_files(["MC", "RC"], progressive="0B1N4")
    sink = RecordingSink()
    t = tracker(sink, mode="binary")
    await run(t, await verified(raws, mode="binary"))
    [(key, value, headers), (_, _, second)] = sink.sent[STATES]
    assert key == f"{BOX} IT01234567890_0B1N4.xml".encode()
    assert dict(headers)["ce_type"] == b"it.pec.sdi-invoice-state"
    schema = released_schema(SDI_INVOICE_STATE)
    data_schema = {**schema["properties"]["data"], "$defs": schema["$defs"]}
    jsonschema.Draft202012Validator(data_schema).validate(orjson.loads(value))
    assert orjson.loads(value)["after"] == "not-delivered"
    assert dict(second)["ce_id"] != dict(headers)["ce_id"]


async def test_forged_and_bad_records_change_no_invoice() -> None:
    """A tampered SdI envelope (published by verify with evidence false) is ignored; a
    record that is not an SdI event, or whose key is not its invoice's, is a dead letter."""
    [genuine] = case_files(["RC"], progressive="0F0R6")
    [forged] = await verified([tamper_body(genuine)])
    [record] = await verified([genuine])
    key, value, headers = record
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, [forged])
    assert sample(sink, "pec_sdi_invoice_ignored_total", reason="not-evidence") == 1
    await run(
        t,
        [
            (key, b"not json", headers),
            (b"amministrazione other.xml", value, headers),
            (key, value, [("content-type", b"text/plain")]),
        ],
    )
    assert STATES not in sink.sent
    assert CHANGELOG not in sink.sent
    dead = sink.sent["pec.dlq"]
    assert len(dead) == 3
    assert all(("reason", b"bad-sdi-record") in h for _, _, h in dead)
    await run(t, [record])
    assert [e["data"]["after"] for e in events(sink)] == ["delivered"]


class FailingChangelog(RecordingSink):
    """A broker that acknowledges the events, then fails before the changelog write."""

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        if any(r.topic == CHANGELOG for r in records):
            raise ConnectionError("broker gone")
        return await super().send_all(records)


async def test_a_crash_before_the_changelog_replays_the_same_event_ids() -> None:
    """Events acknowledged, changelog not: the replay sends the same ids again (and now
    the state); a replay after that sends nothing."""
    raws = case_files(["RC", "NE-EC02"], progressive="0C4A5")
    batch = await verified(raws)
    broken = FailingChangelog()
    t = tracker(broken)
    with pytest.raises(ConnectionError):
        await run(t, batch)
    assert t.lookup(batch[0][0].decode()) is None  # the local store was not written
    first_ids = [e["id"] for e in events(broken)]
    healthy = RecordingSink()
    t.sink = healthy
    await run(t, batch)
    assert [e["id"] for e in events(healthy)] == first_ids
    assert len(healthy.sent[CHANGELOG]) == 1  # one record per changed invoice per batch
    await run(t, batch)
    assert len(events(healthy)) == 2


# --- in the worker: the agent, the table and its changelog, the lookup ---------------------


@pytest.fixture
async def pipeline(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, RecordingSink]]:
    sink = RecordingSink()
    built = build(
        settings(tmp_path, store=getattr(request, "param", "memory://")),
        registry=CollectorRegistry(),
        trust=TrustStore.from_bytes(anchor_pem()),
        sink=sink,
    )
    built.app.finalize()
    built.app.flow_control.resume()
    yield built, sink
    consumer = built.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


async def feed(p: Pipeline, batch: Sequence[SdiRecord], partition: int = 0) -> None:
    async with p.app.agents["pectrack.invoices"].test_context() as agent:
        for key, value, headers in batch:
            await agent.put(value, key=key, headers=dict(headers), partition=partition)


def restored(key: bytes, value: bytes | None, partition: int, offset: int) -> Any:
    message = SimpleNamespace(key=key, value=value, partition=partition, offset=offset)
    return SimpleNamespace(key=key, message=message)


@pytest.mark.parametrize("pipeline", ["memory://", "rocksdb://"], indirect=True)
async def test_restart_restores_the_invoice_from_its_changelog(
    pipeline: Any, tmp_path: Path
) -> None:
    """The worker's invoices agent writes the changelog; a new worker restoring it knows
    the invoice: the RC read again is a duplicate, the NE moves it on."""
    p, sink = pipeline
    rc, ne = await verified(case_files(["RC", "NE-EC01"], progressive="0R3S7"))
    await feed(p, [rc], partition=5)
    assert sink.partitions[CHANGELOG] == [5]
    [(key, value, _)] = sink.sent[CHANGELOG]

    again = RecordingSink()
    fresh = build(
        settings(tmp_path / "second", store=p.settings.store),
        registry=CollectorRegistry(),
        trust=TrustStore.from_bytes(anchor_pem()),
        sink=again,
    )
    fresh.invoice_table.data.apply_changelog_batch([restored(key, value, 5, 0)], None, None)
    entry = fresh.invoices.lookup(key.decode())
    assert entry is not None
    assert entry.track.state.value == "delivered"
    await fresh.invoices.handle_batch([(rc[0], rc[1], dict(rc[2]), 5)])
    assert STATES not in again.sent
    await fresh.invoices.handle_batch([(ne[0], ne[1], dict(ne[2]), 5)])
    [event] = events(again)
    assert (event["data"]["before"], event["data"]["after"]) == ("delivered", "accepted")


class FakeRouter:
    def __init__(self, owner_elsewhere: bool) -> None:
        self.owner_elsewhere = owner_elsewhere
        self.routed: list[tuple[str, str]] = []

    async def route_req(self, table_name: str, key: str, web: Any, request: Any) -> Any:
        self.routed.append((table_name, key))
        if not self.owner_elsewhere:
            raise SameNode()
        return web.json({"proxied": key})


async def get_invoice(p: Pipeline, router: FakeRouter, **query: str) -> tuple[int, Any]:
    p.app.router = router
    response = await p.app.web.views["/invoice/"].get(SimpleNamespace(query=query))
    return response.status, orjson.loads(response.body)


def test_invoice_key_from_the_query() -> None:
    """key as it is, or mailbox and nome_file joined; anything less is no key."""
    assert invoice_key({"key": f"{BOX} IT1_00001.xml"}) == f"{BOX} IT1_00001.xml"
    assert invoice_key({"mailbox": BOX, "nome_file": " IT1_00001.xml"}) == f"{BOX} IT1_00001.xml"
    assert invoice_key({"mailbox": BOX}) is None
    assert invoice_key({"mailbox": " ", "nome_file": "IT1_00001.xml"}) is None


async def test_lookup_answers_the_invoice_state_from_its_owner(pipeline: Any) -> None:
    """GET /invoice/ is routed by the invoices table; the owner answers the track."""
    p, _ = pipeline
    await feed(p, await verified(case_files(["MC", "AT"], progressive="0L0K8")))
    key = f"{BOX} IT01234567890_0L0K8.xml"
    here = FakeRouter(owner_elsewhere=False)
    status, body = await get_invoice(p, here, mailbox=BOX, nome_file="IT01234567890_0L0K8.xml")
    assert status == 200
    assert body["key"] == key
    assert body["state"] == "not-delivered"
    assert body["identificativo_sdi"] == "4713"
    assert len(body["notifications"]) == 2
    assert await get_invoice(p, here, key=key) == (200, body)
    assert here.routed == [(p.invoice_table.name, key)] * 2
    elsewhere = FakeRouter(owner_elsewhere=True)
    assert await get_invoice(p, elsewhere, key=key) == (200, {"proxied": key})
    status, unknown = await get_invoice(p, here, key=f"{BOX} nope.xml")
    assert (status, unknown["key"]) == (404, f"{BOX} nope.xml")
    assert (await get_invoice(p, here, mailbox=BOX))[0] == 400


# --- the sending: the organisation's Sent copy starts the lifecycle -----------------------


async def verified_in(items: Sequence[SdiItem]) -> list[SdiRecord]:
    """What verify publishes on sdi.notifications for these items, each in its folder."""
    sink = RecordingSink()
    verifier = Verifier(
        StreamSettings(metrics_port=None, archive="none"),
        TrustStore.from_bytes(anchor_pem()),
        sink,
        StreamMetrics(CollectorRegistry()),
    )
    for item in items:
        role = b"sent" if item.folder == "Sent" else b"inbox"
        headers = {"mailbox": BOX.encode(), "folder": item.folder.encode(), "folder-role": role}
        await verifier.handle_batch([(BOX.encode(), item.raw, headers)])
    return sink.sent.get("sdi.notifications", [])


@pytest.fixture(scope="module")
def with_sent_copies() -> list[SdiItem]:
    return generate_sdi_traffic(
        random.Random(5), default_pki(), ((BOX, ADDRESS),), 8, START, sent_copies=True,
        received_share=0.0,
    )  # fmt: skip


async def test_the_sent_copy_starts_the_invoice_and_the_notifications_follow(
    with_sent_copies: list[SdiItem],
) -> None:
    """Sent copy first (as it happens): one 'invio' event (sent -> sent) per invoice with
    its PEC Message-ID and sending time, then the notifications move it on, and the
    final states are the simulator's."""
    records = await verified_in(with_sent_copies)
    sent = [r for r in records if orjson.loads(r[1] or b"{}")["type"] == "it.pec.invoice-sent"]
    assert len(sent) == sum(1 for i in with_sent_copies if i.kind == "SENT") == 8
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, records)
    schema = released_schema(SDI_INVOICE_STATE)
    published = events(sink)
    for event in published:
        jsonschema.validate(event, schema)
    starts = [e["data"] for e in published if e["data"]["event"] == "invio"]
    assert len(starts) == 8
    assert all(
        (d["before"], d["after"], d["outcome"]) == ("sent", "sent", "advanced") for d in starts
    )
    assert all(d["sent_msgid"] and d["sent_at"] for d in starts)
    finals = {i.nome_file: i.final_state for i in with_sent_copies if i.kind == "SENT"}
    keys = [f"{BOX} {name}".encode() for name in finals]
    assert states(t, keys) == finals
    last = {e["data"]["nome_file"]: e["data"] for e in published}
    assert all(d["sent_msgid"] is not None for d in last.values())  # kept on every step


async def test_a_sent_copy_read_after_the_answers_is_kept_but_not_published(
    with_sent_copies: list[SdiItem],
) -> None:
    """INBOX read before Sent: the invoice already moved on, so its sending is STALE (no
    event), yet the table keeps when and in which PEC message it was sent; read again,
    nothing changes."""
    inbox = [i for i in with_sent_copies if i.kind != "SENT"]
    sent = [i for i in with_sent_copies if i.kind == "SENT"]
    records = await verified_in([*inbox, *sent])
    sink = RecordingSink()
    t = tracker(sink)
    await run(t, records)
    assert not [e for e in events(sink) if e["data"]["event"] == "invio"]
    for item in sent:
        entry = t.lookup(f"{BOX} {item.nome_file}")
        assert entry is not None
        assert item.original is not None
        assert entry.track.sent_msgid == item.original.msgid
        assert entry.track.sent_at == item.original.date
    before = len(sink.sent.get(CHANGELOG, []))
    await run(t, records[-len(sent) :])  # the Sent copies once more
    assert len(sink.sent.get(CHANGELOG, [])) == before


async def test_mail_to_anyone_but_the_sdi_starts_no_invoice() -> None:
    """A Sent copy with an invoice-named attachment to an ordinary PEC address: none."""
    item = generate_sdi_traffic(
        random.Random(5), default_pki(), ((BOX, ADDRESS),), 1, START, sent_copies=True,
        received_share=0.0,
    )[0]  # fmt: skip
    assert item.kind == "SENT"
    raw = item.raw.replace(b"sdi01@pec.fatturapa.it", b"ufficio@pec.example.it")
    replaced = SdiItem(BOX, raw, "SENT", item.nome_file, None, None, item.provider, item.original)
    assert await verified_in([replaced]) == []


# --- retention: the invoices table ends ------------------------------------------------------

CHECKS = "sdi.checks"


@pytest.fixture
async def event_pipeline(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, RecordingSink]]:
    sink = RecordingSink()
    config = settings(tmp_path, store=getattr(request, "param", "memory://"))
    built = build(
        replace(config, deadline_clock="event"),
        registry=CollectorRegistry(),
        trust=TrustStore.from_bytes(anchor_pem()),
        sink=sink,
    )
    built.app.finalize()
    built.app.flow_control.resume()
    yield built, sink
    consumer = built.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


async def checks_sent(p: Pipeline, sink: RecordingSink, at: datetime) -> list[SdiRecord]:
    """Data time reaches ``at`` (a later record elsewhere); the checks one scan sends."""
    p.scanner.clock.observe(at)
    before = len(sink.sent.get(CHECKS, []))
    await p.scanner.scan()
    return sink.sent.get(CHECKS, [])[before:]


@pytest.mark.parametrize("event_pipeline", ["memory://", "rocksdb://"], indirect=True)
async def test_a_final_invoice_is_retired_then_deleted_and_late_mail_never_restarts_it(
    event_pipeline: Any,
) -> None:
    """Accepted: the timer's check retires it a retention after its newest daticert time
    (event clock), the lookup answers 410, an RC read again is late (no event, counted);
    one retention later the marker goes."""
    p, sink = event_pipeline
    rc, ne = await verified(case_files(["RC", "NE-EC01"], progressive="0T1M3"))
    await feed(p, [rc, ne], partition=3)
    key = rc[0].decode()
    entry = p.invoices.lookup(key)
    assert entry is not None
    assert entry.track.state.value == "accepted"
    newest = entry.track.seen_at
    assert newest == START + timedelta(hours=1)
    retention = timedelta(seconds=p.settings.retention_seconds)

    assert await checks_sent(p, sink, newest + retention - timedelta(seconds=1)) == []
    [check] = await checks_sent(p, sink, newest + retention + timedelta(seconds=1))
    assert check[0] == rc[0]
    await feed(p, [check], partition=3)
    marker = p.invoices.lookup(key)
    assert marker is not None
    assert marker.track.retired
    assert marker.track.state.value == "accepted"
    assert p.registry.get_sample_value("pec_table_evictions_total", {"reason": "invoice"}) == 1
    status, body = await get_invoice(p, FakeRouter(owner_elsewhere=False), key=key)
    assert (status, body["key"]) == (410, key)

    published = len(events(sink))
    await feed(p, [rc], partition=3)
    assert len(events(sink)) == published  # no "delivered" for an invoice long accepted
    late = {"kind": "sdi-notification"}
    assert p.registry.get_sample_value("pec_late_observations_total", late) == 1
    assert p.invoices.lookup(key) == marker

    assert await checks_sent(p, sink, newest + 2 * retention - timedelta(seconds=1)) == []
    [check] = await checks_sent(p, sink, newest + 2 * retention + timedelta(seconds=1))
    await feed(p, [check], partition=3)
    assert p.invoices.lookup(key) is None
    assert sink.sent[CHANGELOG][-1] == (rc[0], None, [])  # a tombstone
    assert sink.partitions[CHANGELOG][-1] == 3
    await feed(p, [check], partition=3)  # a check replayed for an invoice gone: late
    late_check = {"kind": "invoice-check"}
    assert p.registry.get_sample_value("pec_late_observations_total", late_check) == 1


async def test_an_open_invoice_is_retired_after_the_open_ttl(event_pipeline: Any) -> None:
    """Delivered and never answered (B2B): kept past the retention of final invoices,
    retired after --invoice-open-ttl-seconds."""
    p, sink = event_pipeline
    [rc] = await verified(case_files(["RC"], progressive="0T1M4"))
    await feed(p, [rc], partition=1)
    seen = START
    retention = timedelta(seconds=p.settings.retention_seconds)
    open_ttl = timedelta(seconds=p.settings.invoice_open_ttl_seconds)
    assert open_ttl > retention
    assert await checks_sent(p, sink, seen + retention + timedelta(days=1)) == []
    [check] = await checks_sent(p, sink, seen + open_ttl + timedelta(seconds=1))
    await feed(p, [check], partition=1)
    entry = p.invoices.lookup(rc[0].decode())
    assert entry is not None
    assert entry.track.retired
    assert entry.track.state.value == "delivered"


async def test_a_check_whose_key_is_not_its_record_key_is_a_dead_letter() -> None:
    """A check is input like any other: a mismatched key changes nothing."""
    sink = RecordingSink()
    t = tracker(sink)
    [rc] = await verified(case_files(["RC"], progressive="0T1M5"))
    await run(t, [rc])
    value, headers = encode_invoice_check(rc[0].decode(), START + timedelta(days=1000))
    await run(t, [(b"someone else", value, list(headers))])
    assert sample(sink, "pec_dlq_total", reason="bad-check") == 1
    entry = t.lookup(rc[0].decode())
    assert entry is not None
    assert not entry.track.retired
