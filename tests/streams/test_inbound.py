"""verify publishes pec.inbound and sdi.notifications: every envelope kind, forgeries with
their verdict, the same envelope twice, records valid against the released schemas."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import jsonschema
import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import INBOUND, SDI_NOTIFICATION, released_schema
from pipeline.core.model import Kind
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import Fault
from pipeline.simulate.sdi import generate_sdi_traffic
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from pipeline.streams.verify import Verifier
from tests.factories import anchor_pem, make_pec

CET = timezone(timedelta(hours=1))
BOX = "amministrazione"


def verifier(mode: str = "structured") -> tuple[Verifier, RecordingSink, CollectorRegistry]:
    sink, registry = RecordingSink(), CollectorRegistry()
    settings = StreamSettings(metrics_port=None, cloudevents_mode=mode)
    trust = TrustStore.from_bytes(anchor_pem())
    return Verifier(settings, trust, sink, StreamMetrics(registry)), sink, registry


async def feed(v: Verifier, raws: list[bytes], folder: bytes = b"INBOX") -> None:
    headers = {"mailbox": BOX.encode(), "folder": folder, "folder-role": b"inbox"}
    if folder != b"INBOX":
        headers["folder-role"] = b"sent"
    await v.handle_batch([(BOX.encode(), raw, headers) for raw in raws])


def events(sink: RecordingSink, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value, _ in sink.sent.get(topic, [])]


async def test_every_envelope_kind_and_forgery_published() -> None:
    """Envelope, anomaly envelope and forged/tampered envelopes each give one valid event
    with their verdict; receipts give none; pec_inbound_total counts them."""
    v, sink, registry = verifier()
    raws = [
        make_pec(Kind.POSTA_CERTIFICATA).raw,
        make_pec(Kind.ERRORE).raw,
        make_pec(Kind.POSTA_CERTIFICATA, fault=Fault.TAMPERED_BODY).raw,
        make_pec(Kind.POSTA_CERTIFICATA, fault=Fault.SELF_SIGNED).raw,
        make_pec(Kind.ACCETTAZIONE).raw,
    ]
    await feed(v, raws)
    published = events(sink, "pec.inbound")
    validator = jsonschema.Draft202012Validator(released_schema(INBOUND))
    for event in published:
        validator.validate(event)
    assert [
        (e["data"]["kind"], e["data"]["signature"], e["data"]["anomaly"]) for e in published
    ] == [
        ("posta-certificata", "valid-trusted", False),
        ("errore", "valid-trusted", True),
        ("posta-certificata", "invalid", False),
        ("posta-certificata", "untrusted", False),
    ]
    assert {key for key, _, _ in sink.sent["pec.inbound"]} == {BOX.encode()}
    assert published[0]["type"] == "it.pec.received"
    assert published[0]["data"]["attachments"][0]["name"] == "fattura_42.pdf"
    assert "content" not in published[0]["data"]["attachments"][0]
    sample = registry.get_sample_value
    assert (
        sample("pec_inbound_total", {"provider": "ARUBA PEC S.p.A.", "signature": "invalid"}) == 1
    )
    assert (
        sample("pec_inbound_total", {"provider": "ARUBA PEC S.p.A.", "signature": "valid-trusted"})
        == 2
    )


async def test_same_envelope_twice_same_id_and_not_from_sent() -> None:
    """Read twice: two records with one id. A Sent-folder envelope is not inbound."""
    v, sink, _ = verifier()
    raw = make_pec(Kind.POSTA_CERTIFICATA).raw
    await feed(v, [raw, raw])
    await feed(v, [raw], folder=b"Sent")
    ids = [e["id"] for e in events(sink, "pec.inbound")]
    assert len(ids) == 2
    assert ids[0] == ids[1]


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_sdi_traffic_published(mode: str) -> None:
    """Every SdI notification type and received invoices reach sdi.notifications, keyed by
    invoice, valid against the schema (the data alone in binary mode)."""
    v, sink, registry = verifier(mode)
    items = generate_sdi_traffic(
        random.Random(5), default_pki(), ((BOX, "amm@pec.example.it"),), 20,
        datetime(2024, 3, 1, 9, tzinfo=CET), received_share=0.25,
    )  # fmt: skip
    await feed(v, [item.raw for item in items])
    sent = sink.sent["sdi.notifications"]
    assert len(sent) == len(items)
    schema = released_schema(SDI_NOTIFICATION)
    validator = jsonschema.Draft202012Validator(
        schema
        if mode == "structured"
        else {**schema["properties"]["data"], "$defs": schema["$defs"]}
    )
    types = set()
    for item, (key, value, headers) in zip(items, sent, strict=True):
        payload = orjson.loads(value)
        validator.validate(payload)
        data = payload["data"] if mode == "structured" else payload
        assert key == f"{BOX} {item.nome_file}".encode()
        assert data["evidence"] is True
        if item.kind == "MT":
            assert data["invoice"]["documents"][0]["amount"]
            types.add("invoice-received")
        else:
            assert data["notification"]["type"] == item.kind
            types.add(item.kind)
        if mode == "binary":
            assert dict(headers)["ce_type"] in (
                b"it.pec.sdi-notification",
                b"it.pec.invoice-received",
            )
    assert types == {"RC", "NS", "MC", "NE", "DT", "AT", "invoice-received"}
    total = sum(
        registry.get_sample_value("pec_sdi_notifications_total", {"type": t, "evidence": "true"})
        or 0
        for t in types
    )
    assert total == len(items)
