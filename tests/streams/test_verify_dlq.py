"""The verify processor dead-letters unreadable mail, with the reason in the headers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import StreamMetrics
from pipeline.core.trust import TrustStore
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import RecordingSink
from pipeline.streams.verify import DLQ_MAX_VALUE_BYTES, Verifier
from tests.factories import anchor_pem, make_ordinary_mail

BOX = b"studio-rossi"
HEADERS = {"mailbox": BOX, "folder": b"INBOX", "internal-date": b"2024-03-01T10:00:00+01:00"}
BROKEN = (
    b"From: fornitore@example.com\r\nSubject: Fattura\r\nContent-Type: multipart/mixed\r\n"
    b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nciao\r\n--x--\r\n"
)


@pytest.mark.parametrize("processes", [0, 1])
async def test_unreadable_mail_reaches_the_dlq(processes: int) -> None:
    """Broken MIME and non-mail bytes go to pec.dlq unchanged, with reason and detail
    headers and the source headers kept; ordinary mail is still only counted as ignored."""
    sink = RecordingSink()
    registry = CollectorRegistry()
    settings = StreamSettings(verify_processes=processes, metrics_port=None)
    verifier = Verifier(
        settings, TrustStore.from_bytes(anchor_pem()), sink, StreamMetrics(registry)
    )
    stale = {**HEADERS, "reason": b"old", "detail": b"old"}  # a replayed dead letter
    try:
        await verifier.handle_batch(
            [
                (BOX, BROKEN, stale),
                (BOX, make_ordinary_mail().raw, HEADERS),
                (BOX, b"\x00\x01 not mail \xff", HEADERS),
            ]
        )
    finally:
        verifier.close()
    [(key, value, headers), (_, junk, junk_headers)] = sink.sent["pec.dlq"]
    assert (key, value) == (BOX, BROKEN)
    assert headers == [
        *((name, value) for name, value in HEADERS.items()),
        ("reason", b"mime-malformed"),
        ("detail", b"multipart body without its boundary"),
    ]
    assert junk == b"\x00\x01 not mail \xff"
    assert ("reason", b"not-rfc5322") in junk_headers
    assert "pec.receipts" not in sink.sent
    for reason in ("mime-malformed", "not-rfc5322"):
        assert registry.get_sample_value("pec_dlq_total", {"reason": reason}) == 1
    assert registry.get_sample_value("pec_ignored_total", {"reason": "ordinary-mail"}) == 1


async def test_folder_role_decides_which_ordinary_mail_is_a_sent_copy() -> None:
    """The agents' ``folder-role`` header: an ``archive`` folder's ordinary mail is not a
    submission; ``sent`` is; without the header, every folder but INBOX is (older agents)."""
    sink = RecordingSink()
    registry = CollectorRegistry()
    settings = StreamSettings(metrics_port=None)
    verifier = Verifier(
        settings, TrustStore.from_bytes(anchor_pem()), sink, StreamMetrics(registry)
    )
    mail = make_ordinary_mail().raw
    in_folder = {**HEADERS, "folder": b"Archivio"}
    try:
        await verifier.handle_batch(
            [
                (BOX, mail, {**in_folder, "folder-role": b"archive"}),
                (BOX, mail, {**in_folder, "folder-role": b"sent"}),
                (BOX, mail, in_folder),
                (BOX, mail, {**HEADERS, "folder-role": b"inbox"}),
            ]
        )
    finally:
        verifier.close()
    assert len(sink.sent["pec.receipts"]) == 2
    assert registry.get_sample_value("pec_ignored_total", {"reason": "ordinary-mail"}) == 2


async def test_a_dead_letter_too_large_for_kafka_keeps_its_header_section() -> None:
    """Unreadable mail bigger than a producer request may be is dead-lettered by its
    header section, marked ``truncated`` with its size, instead of failing the batch."""
    sink = RecordingSink()
    registry = CollectorRegistry()
    verifier = Verifier(
        StreamSettings(metrics_port=None),
        TrustStore.from_bytes(anchor_pem()),
        sink,
        StreamMetrics(registry),
    )
    head, _, body = BROKEN.partition(b"\r\n\r\n")
    huge = head + b"\r\n\r\n" + body * (DLQ_MAX_VALUE_BYTES // len(body) + 1)
    try:
        await verifier.handle_batch([(BOX, huge, HEADERS), (BOX, BROKEN, HEADERS)])
    finally:
        verifier.close()
    [(_, value, headers), (_, whole, whole_headers)] = sink.sent["pec.dlq"]
    assert value == head + b"\r\n\r\n"
    assert ("truncated", b"header-section") in headers
    assert ("size", str(len(huge)).encode()) in headers
    assert ("reason", b"mime-malformed") in headers
    assert whole == BROKEN
    assert not any(name == "truncated" for name, _ in whole_headers)
