"""The processors, driven through faust's agent test context with a recording sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.exceptions import SameNode
from faust.types import TP
from prometheus_client import CollectorRegistry

from pipeline.contracts.codec import dumps, observation_to_dict
from pipeline.contracts.metrics import MAX_PROVIDER_LABELS
from pipeline.core.keys import correlation_key
from pipeline.core.lifecycle import Event, Receipt
from pipeline.core.model import Kind, Recipient, RecipientType
from pipeline.core.observation import Evidence, Submission
from pipeline.core.trust import TrustStore
from pipeline.simulate.provider import Fault
from pipeline.streams.app import Pipeline, build, lookup_key
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from tests.factories import (
    AT,
    CERTIFIED,
    EXTERNAL,
    MSGID,
    OTHER_MSGID,
    anchor_pem,
    make_pec,
    make_receipt,
    make_sent_copy,
)

BOX = "studio-rossi"
KEY = correlation_key(BOX, MSGID).encode()
HEADERS = {"mailbox": BOX.encode(), "folder": b"INBOX"}


@pytest.fixture
async def pipeline(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, RecordingSink]]:
    """The worker's processors on the memory store, or on RocksDB when a test asks for
    it with ``@pytest.mark.parametrize("pipeline", ["rocksdb://"], indirect=True)``."""
    sink = RecordingSink()
    settings = StreamSettings(
        metrics_port=None,
        web_port=16066,
        deadline_clock="event",
        store=getattr(request, "param", "memory://"),
        datadir=str(tmp_path / "state"),
        archive="none",  # the archive has its own tests (tests/evidence)
    )
    built = build(
        settings,
        registry=CollectorRegistry(),
        trust=TrustStore.from_bytes(anchor_pem()),
        sink=sink,
    )
    built.app.finalize()
    built.app.flow_control.resume()
    yield built, sink
    # ``stream.events()`` makes faust create its consumer, whose thread owns an event
    # loop that only a running worker would close: close it here.
    consumer = built.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


def records(sink: RecordingSink, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value, _ in sink.sent.get(topic, [])]


def metric(p: Pipeline, name: str, **labels: str) -> float:
    value = p.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def verify(p: Pipeline, raw: bytes, folder: str = "INBOX") -> None:
    async with p.app.agents["pectrack.verify"].test_context() as agent:
        await agent.put(raw, key=BOX.encode(), headers={**HEADERS, "folder": folder.encode()})


async def correlate_all(p: Pipeline, sink: RecordingSink, partition: int = 0) -> None:
    """Feed everything verify sent to pec.receipts into the correlate agent, in order."""
    pending = sink.sent.pop("pec.receipts", [])
    async with p.app.agents["pectrack.correlate"].test_context() as agent:
        for key, value, _ in pending:
            await agent.put(value, key=key, partition=partition)


async def test_verify_routes_a_receipt_by_correlation_key(pipeline: Any) -> None:
    """A trusted delivery receipt becomes an evidence observation keyed by mailbox+msgid."""
    p, sink = pipeline
    await verify(p, make_receipt(Kind.AVVENUTA_CONSEGNA))
    [(key, value, _)] = sink.sent["pec.receipts"]
    observation = orjson.loads(value)
    assert key == KEY
    assert observation["type"] == "evidence"
    assert observation["event"] == "deliver"
    assert observation["recipient"] == CERTIFIED
    assert metric(p, "pec_processed_records_total", processor="verify") == 1


async def test_verify_sent_copy_is_a_submission(pipeline: Any) -> None:
    """The Sent-folder copy registers the message; the same mail in INBOX is ignored."""
    p, sink = pipeline
    sent = make_sent_copy().raw
    await verify(p, sent, folder="Posta inviata")
    await verify(p, sent, folder="INBOX")
    [observation] = records(sink, "pec.receipts")
    assert observation["type"] == "submission"
    assert observation["msgid"] == MSGID
    assert metric(p, "pec_ignored_total", reason="ordinary-mail") == 1


async def test_verify_forged_receipt_is_a_suspect_not_evidence(pipeline: Any) -> None:
    """A self-signed receipt is reported as untrusted-signer, never as evidence."""
    p, sink = pipeline
    await verify(p, make_pec(Kind.AVVENUTA_CONSEGNA, fault=Fault.SELF_SIGNED).raw)
    [observation] = records(sink, "pec.receipts")
    assert observation["type"] == "suspect"
    assert observation["event"] == "untrusted-signer"


async def test_verify_unroutable_goes_to_dlq_with_reason(pipeline: Any) -> None:
    """A receipt with no Message-ID anywhere is a dead letter with the reason in headers."""
    p, sink = pipeline
    raw = b"X-Ricevuta: accettazione\r\nFrom: x@y\r\n\r\nno daticert\r\n"
    await verify(p, raw)
    [(_, value, headers)] = sink.sent["pec.dlq"]
    assert value == raw
    assert ("reason", b"receipt-without-msgid") in headers
    assert ("mailbox", BOX.encode()) in headers
    assert "pec.receipts" not in sink.sent
    assert metric(p, "pec_dlq_total", reason="receipt-without-msgid") == 1


@pytest.mark.parametrize("pipeline", ["memory://", "rocksdb://"], indirect=True)
async def test_correlate_full_lifecycle(pipeline: Any) -> None:
    """Sent copy, acceptance, delivery: one event per transition and the latest state."""
    p, sink = pipeline
    await verify(p, make_sent_copy().raw, folder="Sent")
    await verify(p, make_receipt(Kind.ACCETTAZIONE))
    await verify(p, make_receipt(Kind.AVVENUTA_CONSEGNA, at=AT + timedelta(minutes=3)))
    await correlate_all(p, sink)
    events = records(sink, "pec.state-changes")
    certified = [e["data"] for e in events if e["data"]["recipient"] == CERTIFIED]
    assert [(e["from_state"], e["to_state"]) for e in certified] == [
        (None, "submitted"),
        ("submitted", "accepted"),
        ("accepted", "delivered"),
    ]
    accepted_at = datetime.fromisoformat(certified[1]["daticert_time"])
    delivered_at = datetime.fromisoformat(certified[2]["daticert_time"])
    assert delivered_at - accepted_at > timedelta(minutes=2)
    assert certified[2]["latency_seconds"] == (delivered_at - accepted_at).total_seconds()
    assert certified[2]["latency_from"] == "acceptance"
    assert len({e["id"] for e in events}) == len(events)
    state = records(sink, "pec.message-state")[-1]
    assert {r["address"]: r["state"] for r in state["recipients"]}[CERTIFIED] == "delivered"
    assert p.table.store.lookup(KEY) is not None
    # the state change is written to the changelog, on the record's partition, after the
    # events and the message state were acknowledged
    changelog = p.table.changelog_topic.get_topic_name()
    assert {key for key, _, _ in sink.sent[changelog]} == {KEY}  # one per key and batch
    correlated = [t for t in sink.order if t != "pec.receipts"]
    for position, topic in enumerate(correlated):
        if topic == changelog:  # the last write for its record: nothing of it follows
            assert correlated[position - 1] == "pec.message-state"
    assert (
        metric(p, "pec_receipts_total", kind="avvenuta-consegna", provider="ARUBA PEC S.p.A.") == 1
    )
    aruba = "ARUBA PEC S.p.A."  # issued both receipts: each ends a phase
    assert metric(p, "pec_delivery_latency_seconds_count", phase="delivery", provider=aruba) == 1
    # the acceptance ends the phase of both recipients, the certified and the external one
    assert metric(p, "pec_delivery_latency_seconds_count", phase="acceptance", provider=aruba) == 2


async def test_latency_provider_label_is_bounded(pipeline: Any) -> None:
    """pec_delivery_latency_seconds{provider}: the receipt's provider, "unknown" when it
    names none, "other" once the provider-label cap is reached."""
    p, _ = pipeline

    async def accepted(msgid: str, provider: str | None) -> None:
        key = correlation_key(BOX, msgid)
        receipt = Receipt(msgid, Event.ACCEPT, (Recipient(CERTIFIED, RecipientType.CERTIFICATO),),
                          None, AT + timedelta(seconds=30))  # fmt: skip
        for observation in (
            Submission(key, BOX, msgid, None, (CERTIFIED,), AT),
            Evidence(key, BOX, msgid, receipt, "accettazione", provider),
        ):
            await p.correlator.handle(key.encode(), dumps(observation_to_dict(observation)))

    def count(provider: str) -> float:
        return metric(
            p, "pec_delivery_latency_seconds_count", phase="acceptance", provider=provider
        )

    await accepted("<1@c>", None)
    for n in range(MAX_PROVIDER_LABELS):
        p.metrics.provider_label(f"Provider {n}")
    await accepted("<2@c>", "Provider 3")
    await accepted("<3@c>", "One provider too many")
    assert (count("unknown"), count("Provider 3"), count("other")) == (1, 1, 1)
    assert metric(p, "pec_delivery_latency_seconds_sum", phase="acceptance", provider="other") == 30


async def test_correlate_duplicate_receipt_changes_nothing(pipeline: Any) -> None:
    """The same receipt ingested twice: no second event, no state write."""
    p, sink = pipeline
    raw = make_receipt(Kind.AVVENUTA_CONSEGNA)
    await verify(p, raw)
    await correlate_all(p, sink)
    first = len(sink.sent["pec.state-changes"])
    await verify(p, raw)
    await correlate_all(p, sink)
    assert len(sink.sent["pec.state-changes"]) == first
    assert len(sink.sent["pec.message-state"]) == 1


async def test_correlate_suspect_is_reported_once(pipeline: Any) -> None:
    """A tampered receipt: one signature-invalid event however often it is seen."""
    p, sink = pipeline
    raw = make_pec(Kind.AVVENUTA_CONSEGNA, fault=Fault.TAMPERED_BODY).raw
    for _ in range(2):
        await verify(p, raw)
        await correlate_all(p, sink)
    [event] = records(sink, "pec.state-changes")
    assert event["type"] == "it.pec.signature-invalid"
    assert event["data"]["to_state"] is None
    assert metric(p, "pec_signature_failures_total", reason="signature-invalid") == 1


@pytest.mark.parametrize(
    ("fault", "event_type", "signature"),
    [
        (None, "it.pec.state-change", "valid-trusted"),
        (Fault.TAMPERED_BODY, "it.pec.signature-invalid", "invalid"),
        (Fault.MISSING_SIGNATURE, "it.pec.signature-invalid", "missing"),
        (Fault.SELF_SIGNED, "it.pec.untrusted-signer", "untrusted"),
        (Fault.UNTRUSTED_CA, "it.pec.untrusted-signer", "untrusted"),
        (Fault.EXPIRED_SIGNER, "it.pec.untrusted-signer", "untrusted"),
        (Fault.WRONG_PROVIDER, "it.pec.receipt-rejected", "signer-mismatch"),
        (Fault.HEADER_MISMATCH, "it.pec.receipt-rejected", "valid-trusted"),
    ],
)
async def test_event_signature_is_what_the_check_found(
    pipeline: Any, fault: Fault | None, event_type: str, signature: str
) -> None:
    """The signature field of a receipt's event says why it failed, not only that it passed."""
    p, sink = pipeline
    await verify(p, make_pec(Kind.AVVENUTA_CONSEGNA, fault=fault).raw)
    await correlate_all(p, sink)
    [event] = records(sink, "pec.state-changes")
    assert (event["type"], event["data"]["signature"]) == (event_type, signature)


async def test_correlate_bad_record_goes_to_dlq(pipeline: Any) -> None:
    """A record on pec.receipts that is not an observation is a dead letter."""
    p, sink = pipeline
    async with p.app.agents["pectrack.correlate"].test_context() as agent:
        await agent.put(b"{not json", key=b"k")
    [(_, value, headers)] = sink.sent["pec.dlq"]
    assert value == b"{not json"
    assert headers[0] == ("reason", b"bad-observation")
    assert headers[1][0] == "detail"


async def test_correlate_poison_records_are_dead_letters(pipeline: Any) -> None:
    """JSON of the wrong shape, a tombstone, a key that is not the record's: dead letters,
    and the record after them is still applied."""
    p, sink = pipeline
    await verify(p, make_receipt(Kind.ACCETTAZIONE))
    [(_, good, _)] = sink.sent.pop("pec.receipts")
    evidence = orjson.loads(good)
    poison = [
        (KEY, b"[1]"),
        (KEY, None),
        (KEY, orjson.dumps(evidence | {"recipients": [{"address": 7, "type": "certificato"}]})),
        (KEY, orjson.dumps(evidence | {"at": "2024-03-01T10:00:00"})),  # no UTC offset
        (b"another key", good),
    ]
    async with p.app.agents["pectrack.correlate"].test_context() as agent:
        for key, value in poison:
            await agent.put(value, key=key)
        await agent.put(good, key=KEY)
    dead = sink.sent["pec.dlq"]
    assert [value for _, value, _ in dead] == [value or b"" for _, value in poison]
    assert all(("reason", b"bad-observation") in headers for _, _, headers in dead)
    assert metric(p, "pec_dlq_total", reason="bad-observation") == len(poison)
    events = records(sink, "pec.state-changes")
    assert events
    assert {e["data"]["to_state"] for e in events} == {"accepted"}


async def test_deadline_scan_flags_and_receipt_clears(pipeline: Any) -> None:
    """No acceptance past the timeout: the timer asks, correlate flags; acceptance clears."""
    p, sink = pipeline
    await verify(p, make_sent_copy(date=AT).raw, folder="Sent")
    await correlate_all(p, sink)
    # the event clock follows daticert time; a later receipt elsewhere moves it on
    p.correlator.clock.advance(AT + timedelta(hours=2))
    assert await p.scanner.scan() == 1
    assert metric(p, "pec_messages_inflight") == 1
    await correlate_all(p, sink)
    overdue = [e for e in records(sink, "pec.state-changes") if e["type"] == "it.pec.overdue"]
    assert [e["data"]["reason"] for e in overdue] == ["no-acceptance"]
    assert await p.scanner.scan() == 0  # already flagged: not asked again
    assert metric(p, "pec_messages_overdue") == 1
    await verify(p, make_receipt(Kind.ACCETTAZIONE))
    await correlate_all(p, sink)
    cleared = [
        e for e in records(sink, "pec.state-changes") if e["type"] == "it.pec.overdue-cleared"
    ]
    assert len(cleared) == 1


def of_type(sink: RecordingSink, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in records(sink, "pec.state-changes") if e["type"] == kind]


async def test_no_final_receipt_within_the_delivery_window_is_overdue_until_it_arrives(
    pipeline: Any,
) -> None:
    """Accepted, no delivery receipt 24 h later: overdue (no-delivery) for the certified
    recipient only, and the gauge counts it; the late delivery receipt clears both."""
    p, sink = pipeline
    await verify(p, make_sent_copy().raw, folder="Sent")
    await verify(p, make_receipt(Kind.ACCETTAZIONE))
    await correlate_all(p, sink)
    window = timedelta(seconds=p.settings.delivery_window_seconds)
    p.correlator.clock.advance(AT + window - timedelta(minutes=1))
    assert await p.scanner.scan() == 0  # not yet: the window runs from acceptance
    p.correlator.clock.advance(AT + window + timedelta(minutes=1))
    assert await p.scanner.scan() == 1
    await correlate_all(p, sink)
    [overdue] = of_type(sink, "it.pec.overdue")
    assert (overdue["recipient"], overdue["reason"]) == (CERTIFIED, "no-delivery")
    assert overdue["to_state"] == "accepted"
    assert await p.scanner.scan() == 0  # flagged once, not asked again
    assert metric(p, "pec_messages_overdue") == 1
    assert metric(p, "pec_messages_inflight") == 1

    late = AT + window + timedelta(hours=2)
    await verify(p, make_receipt(Kind.AVVENUTA_CONSEGNA, at=late))
    await correlate_all(p, sink)
    [cleared] = of_type(sink, "it.pec.overdue-cleared")
    assert (cleared["recipient"], cleared["reason"]) == (CERTIFIED, "no-delivery")
    assert cleared["to_state"] == "delivered"
    assert len(of_type(sink, "it.pec.overdue")) == 1
    await p.scanner.scan()
    assert metric(p, "pec_messages_overdue") == 0
    assert metric(p, "pec_messages_inflight") == 0
    state = records(sink, "pec.message-state")[-1]
    assert state["overdue"] == []


async def test_external_recipients_never_go_overdue(pipeline: Any) -> None:
    """An esterno recipient gets no delivery receipt: accepted is final, never overdue."""
    p, sink = pipeline
    external = (Recipient(EXTERNAL, RecipientType.ESTERNO),)
    await verify(p, make_sent_copy(recipients=external).raw, folder="Sent")
    await verify(p, make_receipt(Kind.ACCETTAZIONE, recipients=external))
    await correlate_all(p, sink)
    p.correlator.clock.advance(AT + timedelta(days=30))
    assert await p.scanner.scan() == 0
    await correlate_all(p, sink)
    assert of_type(sink, "it.pec.overdue") == []
    assert metric(p, "pec_messages_overdue") == 0
    assert metric(p, "pec_messages_inflight") == 0
    state = records(sink, "pec.message-state")[-1]
    assert [(r["address"], r["state"], r["final"]) for r in state["recipients"]] == [
        (EXTERNAL, "accepted", True)
    ]


OTHER_KEY = correlation_key(BOX, OTHER_MSGID).encode()


async def two_messages_on_two_partitions(p: Pipeline, sink: RecordingSink) -> None:
    """KEY on partition 0 and OTHER_KEY on partition 1, both submitted and never accepted."""
    await verify(p, make_sent_copy().raw, folder="Sent")
    await correlate_all(p, sink, partition=0)
    await verify(p, make_sent_copy(msgid=OTHER_MSGID).raw, folder="Sent")
    await correlate_all(p, sink, partition=1)
    p.correlator.clock.advance(AT + timedelta(hours=2))  # past the acceptance timeout


async def test_a_revoked_partition_leaves_the_local_store(pipeline: Any) -> None:
    """A partition that moves to another worker is dropped whole: its keys, index and
    tally (it is recovered from the changelog if it comes back)."""
    p, sink = pipeline
    await two_messages_on_two_partitions(p, sink)
    changelog = p.table.changelog_topic.get_topic_name()
    await p.table.data.on_rebalance({TP(changelog, 0)}, {TP(changelog, 1)}, set())
    assert p.table.store.lookup(KEY) is not None
    assert p.table.store.lookup(OTHER_KEY) is None
    assert sorted(p.table.store.local_partitions()) == [0]


async def test_deadline_scan_covers_only_assigned_partitions(pipeline: Any) -> None:
    """After a rebalance, keys of partitions owned elsewhere are neither counted in the
    gauges nor checked."""
    p, sink = pipeline
    await two_messages_on_two_partitions(p, sink)
    assert await p.scanner.scan() == 2  # no consumer group: every key is this worker's
    assert metric(p, "pec_messages_inflight") == 2
    sink.sent.pop("pec.receipts")

    p.scanner.assigned = lambda: {0}  # partition 1 moved to another worker
    assert await p.scanner.scan() == 1
    [(key, _, _)] = sink.sent.pop("pec.receipts")
    assert key == KEY
    assert metric(p, "pec_messages_inflight") == 1


async def test_changelog_recovery_fills_each_partition_with_its_index_and_tally(
    pipeline: Any,
) -> None:
    """Records faust restores from the changelog land in their partition, counted in its
    tally and indexed by due time, and a tombstone takes them out again."""
    p, sink = pipeline
    await two_messages_on_two_partitions(p, sink)
    [(_, first, _), (_, second, _)] = sink.sent["pectrack-pectrack-messages-changelog"]
    p.table.data.partitions.clear()

    def restored(key: bytes, value: bytes | None, partition: int, offset: int) -> Any:
        message = SimpleNamespace(key=key, value=value, partition=partition, offset=offset)
        return SimpleNamespace(key=key, message=message)

    batch = [restored(KEY, first, 3, 7), restored(OTHER_KEY, second, 2, 8)]
    p.table.data.apply_changelog_batch(batch, None, None)
    assert p.table.store.partition(3).get(KEY) == first
    assert p.table.store.partition(3).tally().inflight == 1
    assert await p.scanner.scan() == 2  # both are past their acceptance deadline
    p.table.data.apply_changelog_batch([restored(OTHER_KEY, None, 2, 9)], None, None)
    assert p.table.store.partition(2).get(OTHER_KEY) is None
    assert p.table.store.partition(2).tally().inflight == 0
    assert await p.scanner.scan() == 1  # KEY again (no check applied yet); OTHER_KEY left


async def test_register_submission_topic(pipeline: Any) -> None:
    """A sending system's submission record is registered; a bad one is a dead letter."""
    p, sink = pipeline
    good = orjson.dumps(
        {"mailbox": BOX, "msgid": MSGID, "recipients": [CERTIFIED], "submitted_at": AT.isoformat()}
    )
    bad = [
        b'{"mailbox": ""}',
        b'{"mailbox": "a", "msgid": "<x@y>", "sender": 123}',
        b'{"mailbox": "a", "msgid": "<x@y>", "recipients": [1]}',
        b"[1]",
        b"not json",
        None,  # a tombstone
    ]
    async with p.app.agents["pectrack.register"].test_context() as agent:
        for value in bad:
            await agent.put(value, key=BOX.encode())
        await agent.put(good, key=BOX.encode())
    [(key, value, _)] = sink.sent["pec.receipts"]
    assert key == KEY
    assert orjson.loads(value)["type"] == "submission"
    assert len(sink.sent["pec.dlq"]) == len(bad)
    assert all(("reason", b"bad-submission") in h for _, _, h in sink.sent["pec.dlq"])
    assert metric(p, "pec_dlq_total", reason="bad-submission") == len(bad)


class FakeRouter:
    """faust's router at the boundary: the key's owner is this worker, or another one."""

    def __init__(self, owner_elsewhere: bool) -> None:
        self.owner_elsewhere = owner_elsewhere
        self.keys: list[str] = []

    async def route_req(self, table_name: str, key: str, web: Any, request: Any) -> Any:
        self.keys.append(key)
        if not self.owner_elsewhere:
            raise SameNode()
        return web.json({"proxied": key})


async def get_message(p: Pipeline, router: FakeRouter, **query: str) -> tuple[int, Any]:
    p.app.router = router
    view = p.app.web.views["/message/"]
    response = await view.get(SimpleNamespace(query=query))
    return response.status, orjson.loads(response.body)


def test_lookup_key_from_mailbox_and_msgid() -> None:
    """key is taken as it is; mailbox and msgid are normalised like verify's keys."""
    key = "ufficio-legale <20240301.42@erp.example.it>"
    assert lookup_key({"key": key}) == key
    assert lookup_key({"mailbox": "Ufficio-Legale", "msgid": " 20240301.42@erp.example.it"}) == key
    assert lookup_key({"mailbox": "ufficio-legale", "msgid": "<20240301.42@erp.example.it>"}) == key
    assert lookup_key({"mailbox": "ufficio-legale"}) is None
    assert lookup_key({"mailbox": " ", "msgid": "<x@y>"}) is None
    assert lookup_key({"key": ""}) is None


@pytest.mark.parametrize("pipeline", ["memory://", "rocksdb://"], indirect=True)
async def test_lookup_by_mailbox_and_msgid_is_routed_and_answered(pipeline: Any) -> None:
    """?mailbox=&msgid= finds the message the exact key finds, through the owner's routing."""
    p, sink = pipeline
    await verify(p, make_sent_copy().raw, folder="Sent")
    await correlate_all(p, sink)
    bare_msgid = MSGID.strip("<>")

    here = FakeRouter(owner_elsewhere=False)
    status, by_parts = await get_message(p, here, mailbox=BOX.upper(), msgid=bare_msgid)
    assert status == 200
    assert by_parts["key"] == KEY.decode()
    assert await get_message(p, here, key=KEY.decode()) == (200, by_parts)
    assert here.keys == [KEY.decode(), KEY.decode()]

    elsewhere = FakeRouter(owner_elsewhere=True)
    assert await get_message(p, elsewhere, mailbox=BOX, msgid=MSGID) == (
        200,
        {"proxied": KEY.decode()},
    )
    status, unknown = await get_message(p, here, mailbox=BOX, msgid="<nope@x>")
    assert (status, unknown["key"]) == (404, correlation_key(BOX, "<nope@x>"))
    assert (await get_message(p, here, mailbox=BOX))[0] == 400


async def test_lookup_of_a_retired_message_says_it_is_gone(pipeline: Any) -> None:
    """Past its retention a finished message answers 410: its final state is on
    pec.message-state, the table keeps only a marker."""
    p, sink = pipeline
    external = (Recipient(EXTERNAL, RecipientType.ESTERNO),)
    await verify(p, make_sent_copy(recipients=external).raw, folder="Sent")
    await verify(p, make_receipt(Kind.ACCETTAZIONE, recipients=external))
    await correlate_all(p, sink)
    here = FakeRouter(owner_elsewhere=False)
    assert (await get_message(p, here, key=KEY.decode()))[0] == 200
    p.correlator.clock.advance(AT + timedelta(days=31))
    assert await p.scanner.scan() == 1
    await correlate_all(p, sink)
    status, body = await get_message(p, here, key=KEY.decode())
    assert (status, body["key"]) == (410, KEY.decode())
