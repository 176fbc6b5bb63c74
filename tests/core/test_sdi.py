"""The SdI reader: file names, every notification type, invoices plain and .p7m, hostile XML."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.sdi import (
    NotificationType,
    is_sdi_address,
    read_invoice,
    read_notification,
    sdi_file_name,
    unwrap_p7m,
)
from pipeline.simulate.ca import default_pki
from pipeline.simulate.sdi import (
    InvoiceBody,
    SdiCase,
    invoice_xml,
    notification_xml,
    sign_attached,
)

CET = timezone(timedelta(hours=1))
AT = datetime(2024, 3, 1, 10, 0, tzinfo=CET)
CASE = SdiCase("IT", "01234567890", "0A1B2", "4713", AT)


def test_file_names() -> None:
    """Notification, metadata and invoice names are told apart; the case of letters kept."""
    rc = sdi_file_name("IT01234567890_0A1B2_RC_001.xml")
    assert rc is not None
    assert (rc.base, rc.type, rc.signed) == ("IT01234567890_0A1B2", NotificationType.RC, False)
    invoice = sdi_file_name("IT01234567890_0A1B2.xml.p7m")
    assert invoice is not None
    assert (invoice.type, invoice.signed) == (None, True)
    assert sdi_file_name("IT01234567890_0A1B2_XX_001.xml") is None
    assert sdi_file_name("fattura.pdf") is None
    assert sdi_file_name("IT01234567890_0A1B2_RC_001.xml.bak") is None


@pytest.mark.parametrize(
    ("kind", "esito", "expected"),
    [
        ("RC", None, NotificationType.RC),
        ("NS", None, NotificationType.NS),
        ("MC", None, NotificationType.MC),
        ("NE", "EC01", NotificationType.NE),
        ("NE", "EC02", NotificationType.NE),
        ("DT", None, NotificationType.DT),
        ("AT", None, NotificationType.AT),
        ("MT", None, NotificationType.MT),
    ],
)
def test_every_notification_type(kind: str, esito: str | None, expected: NotificationType) -> None:
    """Each type is read with its NomeFile, IdentificativoSdI and MessageId, no defect."""
    data = notification_xml(CASE, kind, AT + timedelta(minutes=5), esito)
    notification, defects = read_notification(CASE.file_name(kind), data)
    assert defects == ()
    assert notification is not None
    assert notification.type is expected
    assert notification.nome_file == "IT01234567890_0A1B2.xml"
    assert notification.identificativo_sdi == "4713"
    assert notification.message_id
    assert notification.namespace == "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
    if kind == "NE":
        assert notification.esito == esito
    if kind == "RC":
        assert notification.delivered_at == AT + timedelta(minutes=5)
        assert notification.received_at == AT
        assert notification.recipient_code == "UFE9JK"
    if kind == "NS":
        assert [e.code for e in notification.errors] == ["00404", "00200"]
        assert notification.errors[0].description == "Fattura duplicata"
    if kind == "MT":
        assert notification.format == "FPR12"


def test_real_shape_without_prefix_and_other_namespace() -> None:
    """A default-namespace root and the Agenzia's newer messaggi namespace are read too."""
    data = (
        b'<RicevutaConsegna xmlns="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/'
        b'messaggi/v1.0" versione="1.0"><IdentificativoSdI>1</IdentificativoSdI>'
        b"<NomeFile>IT01234567890_0A1B2.xml</NomeFile><MessageId>9</MessageId>"
        b"</RicevutaConsegna>"
    )
    notification, defects = read_notification("IT01234567890_0A1B2_RC_001.xml", data)
    assert defects == ()
    assert notification is not None
    assert notification.identificativo_sdi == "1"


def test_disagreements_are_defects() -> None:
    """Root vs file-name type, foreign namespace, another NomeFile, a bad Esito."""
    data = notification_xml(CASE, "NS", AT).replace(
        b"http://www.fatturapa.gov.it/sdi/messaggi/v1.0", b"urn:other"
    )
    notification, defects = read_notification(CASE.file_name("RC"), data)
    assert notification is not None
    assert {d.code for d in defects} == {"sdi-namespace", "sdi-type-mismatch"}
    other = SdiCase("IT", "01234567890", "ZZZZZ", "4713", AT)
    _, defects = read_notification(CASE.file_name("RC"), notification_xml(other, "RC", AT))
    assert [d.code for d in defects] == ["sdi-nomefile-mismatch"]
    _, defects = read_notification(CASE.file_name("NE"), notification_xml(CASE, "NE", AT, "EC09"))
    assert [d.code for d in defects] == ["sdi-esito"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            b"<RicevutaConsegna>&b;</RicevutaConsegna>",
            "xml-entity-forbidden",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<RicevutaConsegna>&e;</RicevutaConsegna>",
            "xml-entity-forbidden",
        ),
        (
            b"<RicevutaConsegna>" + b"<a>" * 40 + b"</a>" * 40 + b"</RicevutaConsegna>",
            "xml-too-deep",
        ),
        (b"<RicevutaConsegna><NomeFile>", "xml-malformed"),
        (b"<Altro/>", "sdi-unknown-root"),
        (b"x" * 600_000, "xml-too-large"),
    ],
)
def test_hostile_xml_is_a_defect(data: bytes, code: str) -> None:
    """Entities, external references, depth, size, broken XML: no result, one defect."""
    notification, defects = read_notification(CASE.file_name("RC"), data)
    assert notification is None
    assert [d.code for d in defects] == [code]


@given(st.binary(max_size=2000))
def test_reader_never_raises(data: bytes) -> None:
    """Random bytes give a result or defects, never an exception."""
    notification, defects = read_notification(CASE.file_name("RC"), data)
    assert notification is not None or defects
    invoice = read_invoice("IT01234567890_0A1B2.xml.p7m", data)
    assert invoice.defects or invoice.documents


BODIES = (
    InvoiceBody("42/2024", "2024-03-01", "1220.00"),
    InvoiceBody("43/2024", "2024-03-02", "10.50"),
)


def test_invoice_plain_and_p7m() -> None:
    """A FatturaPA lotto, plain or CAdES-wrapped: sender VAT, numbers, dates, amounts."""
    xml = invoice_xml("01234567890", "Fornitore S.r.l.", "09876543210", BODIES)
    signer = default_pki().signer("Fornitore S.r.l.", "fornitore.example.it")
    for name, data in (
        ("IT01234567890_0A1B2.xml", xml),
        ("IT01234567890_0A1B2.xml.p7m", sign_attached(xml, signer)),
    ):
        invoice = read_invoice(name, data)
        assert invoice.defects == ()
        assert invoice.format == "FPR12"
        assert invoice.sender_vat == "IT01234567890"
        assert invoice.buyer_vat == "IT09876543210"
        assert invoice.p7m is name.endswith(".p7m")
        assert [(d.number, d.date, d.amount) for d in invoice.documents] == [
            ("42/2024", "2024-03-01", "1220.00"),
            ("43/2024", "2024-03-02", "10.50"),
        ]


def test_p7m_in_base64_and_broken() -> None:
    """A base64 .p7m (seen in the wild) is unwrapped; garbage is a p7m-unreadable defect."""
    signer = default_pki().signer("Fornitore S.r.l.", "fornitore.example.it")
    der = sign_attached(b"<x/>", signer)
    assert unwrap_p7m(base64.encodebytes(der)) == b"<x/>"
    invoice = read_invoice("IT01234567890_0A1B2.xml.p7m", b"\x30\x03\x02\x01\x01")
    assert [d.code for d in invoice.defects] == ["p7m-unreadable"]


def test_sdi_address() -> None:
    """Only the SdI's own domain counts, compared case-insensitively."""
    assert is_sdi_address("sdi01@pec.fatturapa.it")
    assert is_sdi_address("SDI27@PEC.FATTURAPA.IT")
    assert not is_sdi_address("sdi01@pec.fatturapa.it.evil.example")
    assert not is_sdi_address(None)
