"""Certified mail received: envelope and anomaly envelope described, attachments hashed,
forgeries kept with their verdict, deterministic ids, SdI files read."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import SignatureVerdict
from pipeline.core.examine import examine
from pipeline.core.inbound import describe_inbound, is_inbound
from pipeline.core.model import Kind
from pipeline.core.parse import read_layout
from pipeline.core.received import InvoiceReceived, SdiNotice, receive
from pipeline.core.sdi_lifecycle import InvoiceState
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import default_pki
from pipeline.simulate.mime import to_lf
from pipeline.simulate.provider import Fault
from pipeline.simulate.render import Attachment
from pipeline.simulate.sdi import (
    SdiCase,
    generate_sdi_traffic,
    notification_files,
    sdi_envelope,
    sdi_provider,
)
from tests.factories import anchor_pem, make_pec, provider

PDF = b"%PDF-1.4\n" * 40
TRUST = TrustStore.from_bytes(anchor_pem())
CET = timezone(timedelta(hours=1))
AT = datetime(2024, 3, 1, 10, 0, tzinfo=CET)


def received(raw: bytes, mailbox: str = "ufficio-legale"):  # type: ignore[no-untyped-def]
    return receive(examine(raw, TRUST), read_layout(raw), mailbox)


@pytest.mark.parametrize("name", ["aruba", "poste", "infocert", "namirial"])
def test_envelope_described(name: str) -> None:
    """A posta-certificata envelope: daticert fields, verdict, the original's attachment."""
    envelope, sdi = received(make_pec(Kind.POSTA_CERTIFICATA, provider=name).raw)
    assert envelope.kind is Kind.POSTA_CERTIFICATA
    assert envelope.sender == "mario.rossi@pec.aruba.it"
    assert envelope.signature is SignatureVerdict.VALID_TRUSTED
    assert envelope.evidence
    assert not envelope.anomaly
    assert envelope.anomaly_reason is None
    assert envelope.msgid == "<20240301100000.000001.1a2b3c4d@mario.rossi.client>"
    assert envelope.identificativo is not None
    assert envelope.daticert_time is not None
    assert {r.address for r in envelope.recipients} == {
        "giulia.bianchi@postecert.it",
        "luca.ferrari@gmail.com",
    }
    [attachment] = envelope.attachments
    assert (attachment.name, attachment.content_type, attachment.size) == (
        "fattura_42.pdf",
        "application/pdf",
        len(PDF),
    )
    assert attachment.sha256 == hashlib.sha256(PDF).hexdigest()
    assert sdi == ()


def test_anomaly_envelope() -> None:
    """An errore envelope is an anomaly, with a reason, and its original still described."""
    envelope, _ = received(make_pec(Kind.ERRORE).raw)
    assert envelope.kind is Kind.ERRORE
    assert envelope.anomaly
    assert envelope.anomaly_reason == "not-certified-mail"
    assert [a.name for a in envelope.attachments] == ["fattura_42.pdf"]


def test_attachments_named_in_rfc2231_and_several() -> None:
    """Names keep their case; an RFC 2231 name is decoded; every attachment is listed."""
    attachments = (
        Attachment("Contratto Firmato.PDF", "application/pdf", b"a" * 10),
        Attachment("foto.jpg", "image/jpeg", b"b" * 20),
    )
    envelope, _ = received(make_pec(Kind.POSTA_CERTIFICATA, attachments=attachments).raw)
    assert [(a.name, a.size) for a in envelope.attachments] == [
        ("Contratto Firmato.PDF", 10),
        ("foto.jpg", 20),
    ]


@pytest.mark.parametrize(
    ("fault", "verdict"),
    [
        (Fault.TAMPERED_BODY, SignatureVerdict.INVALID),
        (Fault.MISSING_SIGNATURE, SignatureVerdict.MISSING),
        (Fault.SELF_SIGNED, SignatureVerdict.UNTRUSTED),
        (Fault.UNTRUSTED_CA, SignatureVerdict.UNTRUSTED),
        (Fault.WRONG_PROVIDER, SignatureVerdict.SIGNER_MISMATCH),
    ],
)
def test_forged_envelope_is_described_with_its_verdict(
    fault: Fault, verdict: SignatureVerdict
) -> None:
    """A forged or tampered envelope is published with its verdict and never evidence."""
    envelope, _ = received(make_pec(Kind.POSTA_CERTIFICATA, fault=fault).raw)
    assert envelope.kind is Kind.POSTA_CERTIFICATA
    assert envelope.signature is verdict
    assert not envelope.evidence


def test_same_envelope_twice_same_id() -> None:
    """Read twice, or stored with LF instead of CRLF: the same id; another mailbox: another."""
    raw = make_pec(Kind.POSTA_CERTIFICATA).raw
    first, _ = received(raw)
    again, _ = received(raw)
    lf, _ = received(to_lf(raw))
    other, _ = received(raw, "protocollo")
    assert first.event_id == again.event_id == lf.event_id
    assert other.event_id != first.event_id
    assert first == again
    tampered, _ = received(make_pec(Kind.POSTA_CERTIFICATA, fault=Fault.TAMPERED_BODY).raw)
    assert tampered.receipt_id == first.receipt_id  # the same signature blob ...
    assert tampered.event_id != first.event_id  # ... but never deduplicated with it


def test_is_inbound_only_for_envelopes_in_inbox() -> None:
    """Envelopes in INBOX are inbound; receipts and Sent copies are not."""
    envelope = examine(make_pec(Kind.POSTA_CERTIFICATA).raw, TRUST).message
    receipt = examine(make_pec(Kind.ACCETTAZIONE).raw, TRUST).message
    assert is_inbound(envelope, "inbox", "INBOX")
    assert is_inbound(envelope, None, "INBOX")
    assert not is_inbound(envelope, "sent", "Sent")
    assert not is_inbound(receipt, "inbox", "INBOX")


def test_receipt_without_original_has_no_content() -> None:
    """Where no postacert.eml is attached there is nothing to describe."""
    layout = read_layout(make_pec(Kind.ACCETTAZIONE).raw)
    content = describe_inbound(layout)
    assert not content.found
    assert content.attachments == ()


def test_sdi_traffic_every_kind() -> None:
    """Every envelope of simulated SdI traffic gives its notice or received invoice, and the
    notices of one invoice fold to the simulator's final state."""
    pki = default_pki()
    items = generate_sdi_traffic(
        random.Random(3),
        pki,
        (("amministrazione", "amm@pec.example.it"),),
        24,
        AT,
        received_share=0.25,
    )
    seen: dict[str, set[InvoiceState]] = {}
    expected: dict[str, str] = {}
    kinds = set()
    for item in items:
        envelope, records = received(item.raw, item.mailbox)
        assert envelope.evidence
        [record] = records
        kinds.add(item.kind)
        if item.kind == "MT":
            assert isinstance(record, InvoiceReceived)
            assert record.invoice is not None
            assert record.invoice.defects == ()
            assert record.metadata is not None
            assert record.nome_file == item.nome_file
            continue
        assert isinstance(record, SdiNotice)
        assert record.evidence
        assert record.notification.nome_file == item.nome_file
        assert record.implied_state is not None
        seen.setdefault(item.nome_file, set()).add(record.implied_state)
        assert item.final_state is not None
        expected[item.nome_file] = item.final_state
    assert kinds == {"RC", "NS", "MC", "NE", "DT", "AT", "MT"}
    rank = list(InvoiceState)
    for nome_file, states in seen.items():
        assert max(states, key=rank.index).value == expected[nome_file]


def test_sdi_file_from_someone_else_is_not_evidence() -> None:
    """An RC-named file sent by an ordinary PEC sender is published, never as evidence."""
    case = SdiCase("IT", "01234567890", "0A1B2", "4713", AT)
    fake = provider("aruba")
    raw = sdi_envelope(fake, "amm@pec.example.it", notification_files(case, "RC", AT), "x", AT, 1)
    envelope, [record] = received(raw)
    assert envelope.evidence  # a genuine envelope ...
    assert isinstance(record, SdiNotice)
    assert not record.evidence  # ... but not from the SdI's domain
    genuine = sdi_envelope(
        sdi_provider(default_pki()),
        "amm@pec.example.it",
        notification_files(case, "RC", AT),
        "x",
        AT,
        1,
    )
    _, [real] = received(genuine)
    assert isinstance(real, SdiNotice)
    assert real.evidence


ENVELOPE = make_pec(Kind.POSTA_CERTIFICATA).raw


@given(st.integers(0, len(ENVELOPE) - 1), st.binary(min_size=1, max_size=64))
@settings(max_examples=200)
def test_mutated_envelopes_never_raise(position: int, noise: bytes) -> None:
    """Bytes spliced anywhere into an envelope give a description (maybe with defects),
    never an exception."""
    raw = ENVELOPE[:position] + noise + ENVELOPE[position + len(noise) :]
    envelope, _ = received(raw)
    assert envelope.event_id


def test_deep_nesting_is_capped() -> None:
    """An original nested deeper than the cap is a defect, not a recursion."""
    inner = b"Content-Type: text/plain\r\n\r\nx"
    for level in range(12):
        inner = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
            + inner
            + f"\r\n--b{level}--".encode()
        )
    raw = make_pec(Kind.POSTA_CERTIFICATA).raw
    layout = read_layout(raw)
    original = next(c for c in layout.children if c.content_type[0] == "message/rfc822")
    swapped = raw[: original.start] + b"Subject: x\r\n" + inner + raw[original.end :]
    content = describe_inbound(read_layout(swapped))
    assert "attachments-too-deep" in {d.code for d in content.defects}


def test_sdi_named_garbage_is_a_defect_of_the_envelope() -> None:
    """A file named like an RC that is not the SdI's XML gives no notice, and the envelope
    says so (it is listed among the attachments, never silently skipped)."""
    case = SdiCase("IT", "01234567890", "0A1B2", "4713", AT)
    files = (Attachment(case.file_name("RC"), "application/xml", b"<not-sdi/>"),)
    raw = sdi_envelope(sdi_provider(default_pki()), "amm@pec.example.it", files, "x", AT, 1)
    envelope, records = received(raw)
    assert records == ()
    assert "sdi-file-unreadable" in envelope.defects
    assert [a.name for a in envelope.attachments] == [case.file_name("RC")]
