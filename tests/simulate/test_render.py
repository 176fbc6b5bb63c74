"""Every kind and layout variant has the real PEC structure, read back with stdlib email."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest

from pipeline.core.model import ErrorCode, Kind, ReceiptVariant
from pipeline.simulate.mime import TransferEncoding
from pipeline.simulate.provider import SUBJECT_PREFIX
from pipeline.simulate.render import HeaderStyle, LineEnding, PartName, render_daticert
from pipeline.simulate.traffic import Truth
from tests.factories import EXTERNAL, MSGID, SENDER, make_ordinary_mail, make_pec, make_sent_copy
from tests.simulate.helpers import daticert, daticert_bytes, daticert_part, mixed_parts, parse

PEC_KINDS = [k for k in Kind if k is not Kind.NOT_PEC]


def _dati(root: ET.Element, tag: str) -> str | None:
    element = root.find(f"dati/{tag}")
    return None if element is None else element.text


def assert_daticert_matches(raw: bytes, truth: Truth) -> None:
    """Every daticert field a parser reads equals the truth."""
    root = daticert(raw)
    assert root.tag == "postacert"
    assert root.get("tipo") == truth.kind
    assert root.get("errore") == truth.error
    assert root.findtext("intestazione/mittente") == truth.sender
    listed = [(d.text, d.get("tipo")) for d in root.findall("intestazione/destinatari")]
    assert listed == [(r.address, r.type) for r in truth.recipients]
    assert _dati(root, "gestore-emittente") == truth.provider
    assert _dati(root, "identificativo") == truth.identificativo
    assert _dati(root, "msgid") == truth.msgid
    data = root.find("dati/data")
    assert data is not None
    assert truth.timestamp is not None
    stamp = f"{data.findtext('giorno')} {data.findtext('ora')} {data.get('zona')}"
    assert datetime.strptime(stamp, "%d/%m/%Y %H:%M:%S %z") == truth.timestamp
    ricevuta = root.find("dati/ricevuta")
    assert (ricevuta.get("tipo") if ricevuta is not None else None) == truth.variant
    assert _dati(root, "consegna") == truth.delivery_recipient
    assert _dati(root, "errore-esteso") == truth.error_detail


@pytest.mark.parametrize("kind", PEC_KINDS)
def test_every_kind_has_the_signed_layout_and_headers(kind: Kind) -> None:
    """multipart/signed around multipart/mixed + smime.p7s; X-* headers per the table."""
    built = make_pec(kind)
    message, truth = parse(built.raw), built.truth
    assert message.get_content_type() == "multipart/signed"
    assert message.get_param("protocol") == "application/pkcs7-signature"
    assert message.get_param("micalg") == "sha1"  # the default provider signs with SHA-1
    signed, p7s = message.get_payload()  # type: ignore[misc]
    assert signed.get_content_type() == "multipart/mixed"
    assert p7s.get_content_type() == "application/pkcs7-signature"
    assert p7s.get_filename() == "smime.p7s"
    assert p7s["Content-Transfer-Encoding"] == "base64"
    assert message["MIME-Version"] == "1.0"
    assert message["Subject"] == SUBJECT_PREFIX[kind] + "Fattura n. 42"
    assert message["X-Riferimento-Message-ID"] == MSGID
    assert message["Message-ID"] == truth.message_id
    header = "X-Trasporto" if kind.is_envelope else "X-Ricevuta"
    assert message[header] == kind.value
    assert message["X-Ricevuta" if kind.is_envelope else "X-Trasporto"] is None
    assert message["X-VerificaSicurezza"] is None
    if kind.is_envelope:
        assert message["From"] == f'"Per conto di: {SENDER}" <posta-certificata@pec.aruba.it>'
        assert message["Reply-To"] == SENDER
    else:
        assert message["From"] == "posta-certificata@pec.aruba.it"
        assert message["To"] == SENDER
    assert_daticert_matches(built.raw, truth)
    assert daticert_part(built.raw).get_content_type() == "application/xml"


@pytest.mark.parametrize(
    ("kind", "variant", "attached"),
    [
        (Kind.POSTA_CERTIFICATA, ReceiptVariant.COMPLETA, "original"),
        (Kind.ERRORE, None, "original"),
        (Kind.AVVENUTA_CONSEGNA, ReceiptVariant.COMPLETA, "original"),
        (Kind.AVVENUTA_CONSEGNA, ReceiptVariant.BREVE, "hashes"),
        (Kind.AVVENUTA_CONSEGNA, ReceiptVariant.SINTETICA, None),
        (Kind.ACCETTAZIONE, None, None),
        (Kind.ERRORE_CONSEGNA, None, None),
    ],
)
def test_postacert_eml_is_attached_per_kind_and_variant(
    kind: Kind, variant: ReceiptVariant | None, attached: str | None
) -> None:
    """completa attaches the original, breve replaces attachments by hashes, sintetica none."""
    built = make_pec(kind, requested_variant=variant or ReceiptVariant.COMPLETA)
    found = [p for p in mixed_parts(built.raw) if p.get_content_type() == "message/rfc822"]
    if attached is None:
        assert found == []
        return
    (part,) = found
    assert part.get_param("name") == "postacert.eml"
    inner = part.get_payload(0)
    expected_id = MSGID if kind is Kind.ERRORE else f"<{built.truth.identificativo}>"
    assert inner["Message-ID"] == expected_id  # providers rewrite it to the identificativo
    names = [p.get_filename() for p in inner.walk() if p.get_filename()]
    assert names == (["fattura_42.pdf"] if attached == "original" else ["fattura_42.pdf.hash"])
    if attached == "hashes":
        hashed = next(p for p in inner.walk() if p.get_filename())
        assert re.fullmatch(r"SHA1: [0-9a-f]{40}\s*", hashed.get_content())


def test_envelope_carries_the_requested_receipt_type() -> None:
    """X-TipoRicevuta on envelopes echoes daticert <ricevuta tipo>."""
    built = make_pec(Kind.POSTA_CERTIFICATA, requested_variant=ReceiptVariant.BREVE)
    assert parse(built.raw)["X-TipoRicevuta"] == "breve"
    assert built.truth.variant is ReceiptVariant.BREVE
    assert_daticert_matches(built.raw, built.truth)


@pytest.mark.parametrize("kind", [Kind.NON_ACCETTAZIONE, Kind.ERRORE_CONSEGNA])
def test_virus_variants(kind: Kind) -> None:
    """Virus receipts: X-VerificaSicurezza: errore, "PER VIRUS" subject, errore="virus"."""
    built = make_pec(kind, virus=True)
    message = parse(built.raw)
    assert message["X-VerificaSicurezza"] == "errore"
    assert "PER VIRUS: " in message["Subject"]
    assert daticert(built.raw).get("errore") == "virus"
    assert built.truth.virus
    assert built.truth.error is ErrorCode.VIRUS


def test_provider_quirks_are_reproducible() -> None:
    """A nonexistent mailbox as errore="altro"; a final-failure warning starting "5.4.1"."""
    altro = make_pec(Kind.ERRORE_CONSEGNA, error=ErrorCode.ALTRO)
    assert daticert(altro.raw).get("errore") == "altro"
    final = make_pec(Kind.PREAVVISO_ERRORE_CONSEGNA, error_detail="5.4.1 - Access denied")
    assert daticert(final.raw).findtext("dati/errore-esteso", "").startswith("5.4.1")


@pytest.mark.parametrize(
    "order",
    [
        (PartName.TEXT, PartName.DATICERT, PartName.ORIGINAL),
        (PartName.DATICERT, PartName.TEXT, PartName.ORIGINAL),
        (PartName.ORIGINAL, PartName.DATICERT, PartName.TEXT),
    ],
)
def test_part_order_is_an_option(order: tuple[PartName, ...]) -> None:
    """The children of the signed part come in the order asked for."""
    raw = make_pec(Kind.POSTA_CERTIFICATA, part_order=order).raw
    types = [p.get_content_type() for p in mixed_parts(raw)]
    by_name = {
        PartName.TEXT: "text/plain",
        PartName.DATICERT: "application/xml",
        PartName.ORIGINAL: "message/rfc822",
    }
    assert types == [by_name[name] for name in order]


def test_legacy_x_pkcs7_signature_type() -> None:
    """application/x-pkcs7-signature in both the protocol parameter and the part."""
    message = parse(make_pec(legacy_pkcs7=True).raw)
    assert message.get_param("protocol") == "application/x-pkcs7-signature"
    assert message.get_payload(1).get_content_type() == "application/x-pkcs7-signature"


def test_lowercase_header_names() -> None:
    """x-ricevuta and X-Tiporicevuta as some providers write them; readers still match."""
    receipt = make_pec(header_style=HeaderStyle.LOWER).raw
    envelope = make_pec(Kind.POSTA_CERTIFICATA, header_style=HeaderStyle.LOWER).raw
    assert b"\r\nx-ricevuta: avvenuta-consegna\r\n" in receipt
    assert b"\r\nX-Tiporicevuta: completa\r\n" in envelope
    assert b"X-TipoRicevuta" not in envelope.split(b"\r\n\r\n")[0]
    assert parse(receipt)["X-Ricevuta"] == "avvenuta-consegna"


def test_bare_lf_storage() -> None:
    """The LF variant has no CR at all and still reads the same."""
    lf = make_pec(line_ending=LineEnding.LF)
    crlf = make_pec(line_ending=LineEnding.CRLF)
    assert b"\r" not in lf.raw
    assert b"\r\n" in crlf.raw
    assert parse(lf.raw)["X-Ricevuta"] == "avvenuta-consegna"
    assert_daticert_matches(lf.raw, lf.truth)


@pytest.mark.parametrize("encoding", list(TransferEncoding))
@pytest.mark.parametrize("charset", ["UTF-8", "ISO-8859-1"])
def test_daticert_transfer_encodings_and_charsets(encoding: TransferEncoding, charset: str) -> None:
    """base64, quoted-printable or 7bit; UTF-8 or ISO-8859-1: the same XML comes back."""
    subject = "Richiesta di accesso agli atti n° 7 — più urgente"
    built = make_pec(daticert_encoding=encoding, daticert_charset=charset, subject=subject)
    assert daticert_part(built.raw)["Content-Transfer-Encoding"] == encoding.value
    data = daticert_bytes(built.raw)
    assert data.startswith(f'<?xml version="1.0" encoding="{charset}"?>'.encode())
    if encoding is TransferEncoding.SEVEN_BIT:
        assert data.isascii()
    elif charset == "ISO-8859-1":
        assert "più".encode("latin-1") in data
    assert daticert(built.raw).findtext("intestazione/oggetto") == subject


def test_msgid_and_subject_are_xml_escaped() -> None:
    """<msgid>&lt;id@client&gt;</msgid>; markup in the subject is escaped too."""
    built = make_pec(subject="A <b> & C", daticert_encoding=TransferEncoding.SEVEN_BIT)
    data = daticert_bytes(built.raw)
    assert b"<msgid>&lt;20240301100000.000001.1a2b3c4d@mario.rossi.client&gt;</msgid>" in data
    assert b"<oggetto>A &lt;b&gt; &amp; C</oggetto>" in data


def test_doctype_line_is_optional() -> None:
    """Older providers emit <!DOCTYPE postacert SYSTEM "Daticert.dtd">."""
    with_doctype = daticert_bytes(make_pec(doctype=True).raw)
    assert b'<!DOCTYPE postacert SYSTEM "Daticert.dtd">' in with_doctype
    assert b"<!DOCTYPE" not in daticert_bytes(make_pec(doctype=False).raw)


@pytest.mark.parametrize("encoding", [TransferEncoding.QUOTED_PRINTABLE, TransferEncoding.BASE64])
@pytest.mark.parametrize("html", [False, True])
def test_notice_text_encodings_and_html_alternative(encoding: TransferEncoding, html: bool) -> None:
    """The human notice: quoted-printable or base64, optionally text+html alternative."""
    raw = make_pec(text_encoding=encoding, html=html).raw
    first = next(p for p in mixed_parts(raw) if p.get_content_maintype() in ("text", "multipart"))
    if html:
        assert first.get_content_type() == "multipart/alternative"
        plain, rich = first.get_payload()  # type: ignore[misc]
        assert rich.get_content_type() == "text/html"
        assert "è stato consegnato" in rich.get_content()
    else:
        plain = first
    assert plain["Content-Transfer-Encoding"] == encoding.value
    assert "è stato consegnato nella casella di destinazione" in plain.get_content()


def test_long_headers_are_folded_and_non_ascii_subjects_encoded() -> None:
    """Folded From; =?UTF-8?Q?...?= Subject; stdlib unfolds and decodes both."""
    subject = "Convocazione assemblea: verbale 1042 — urgente, con allegati e più"
    built = make_pec(Kind.POSTA_CERTIFICATA, subject=subject)
    head = built.raw.split(b"\r\n\r\n")[0]
    assert b"=?UTF-8?Q?" in head
    assert b'From: "Per conto di: mario.rossi@pec.aruba.it"\r\n <posta-certificata' in head
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert parse(built.raw)["Subject"] == "POSTA CERTIFICATA: " + subject
    unfolded = make_pec(Kind.POSTA_CERTIFICATA, fold=False).raw.split(b"\r\n\r\n")[0]
    assert b"Content-Type: multipart/signed; protocol=" in unfolded


def test_sent_copy_and_ordinary_mail_are_plain_rfc5322() -> None:
    """The Sent copy keeps the client Message-ID and X-TipoRicevuta; nothing is signed."""
    sent = make_sent_copy()
    message = parse(sent.raw)
    assert message.get_content_type() == "multipart/mixed"
    assert message["Message-ID"] == MSGID
    assert message["X-TipoRicevuta"] == "completa"
    assert EXTERNAL in message["To"]
    assert sent.truth.kind is Kind.NOT_PEC
    assert sent.truth.msgid == MSGID
    ordinary = parse(make_ordinary_mail().raw)
    assert ordinary.get_content_type() == "text/plain"
    assert ordinary["X-TipoRicevuta"] is None
    assert ordinary["X-Ricevuta"] is None


def test_render_daticert_shows_the_documented_layout() -> None:
    """The daticert of pec-format.md, element by element."""
    built = make_pec(Kind.ERRORE_CONSEGNA)
    xml = daticert_bytes(built.raw).decode()
    assert '<postacert tipo="errore-consegna" errore="no-dest">' in xml
    assert '<destinatari tipo="certificato">giulia.bianchi@postecert.it</destinatari>' in xml
    assert '<destinatari tipo="esterno">luca.ferrari@gmail.com</destinatari>' in xml
    assert '<data zona="+0100"><giorno>01/03/2024</giorno><ora>10:00:05</ora></data>' in xml
    assert "<consegna>giulia.bianchi@postecert.it</consegna>" in xml
    assert "<errore-esteso>5.1.1 - Utente non riconosciuto</errore-esteso>" in xml
    assert render_daticert  # the public renderer is what the provider uses


def test_sub_second_times_are_cut_to_daticert_precision() -> None:
    """daticert has whole seconds; the truth says the same."""
    built = make_pec(at=datetime(2024, 7, 1, 12, 0, 5, 987654).astimezone())
    assert built.truth.timestamp is not None
    assert built.truth.timestamp.microsecond == 0
    assert_daticert_matches(built.raw, built.truth)
