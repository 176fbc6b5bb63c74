"""Invoices handed to the SdI, read from the organisation's own Sent copies."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.core.model import Recipient, RecipientType
from pipeline.core.observation import Submission
from pipeline.core.sdi_sent import INVIO_PREFIX, invoices_sent, sdi_recipient
from pipeline.simulate.render import Attachment, OriginalMessage, render_original

AT = datetime(2024, 3, 1, 9, tzinfo=UTC)
BOX = "amministrazione"
MSGID = "<20240301.42@erp.example.it>"


def sent(to: str, *files: tuple[str, bytes]) -> tuple[Submission, bytes]:
    original = OriginalMessage(
        sender="amm@pec.example.it",
        recipients=(Recipient(to, RecipientType.CERTIFICATO),),
        subject="Invio fatture",
        msgid=MSGID,
        date=AT,
        body="In allegato.\n",
        attachments=tuple(
            Attachment(name, "application/octet-stream", data) for name, data in files
        ),
        requested_variant=None,
    )
    submission = Submission(f"{BOX} {MSGID}", BOX, MSGID, original.sender, (to,), AT)
    return submission, render_original(original)


def test_each_invoice_file_to_the_sdi_is_one_sending() -> None:
    """Invoice files (plain and .p7m, case kept) count; a notification-named file and a
    PDF do not."""
    submission, raw = sent(
        "SDI01@pec.fatturapa.it",
        ("IT01234567890_0A1B2.xml", b"<p:FatturaElettronica/>"),
        ("IT01234567890_0A1B3.xml.p7m", b"\x30\x80"),
        ("IT01234567890_0A1B2_RC_001.xml", b"<x/>"),
        ("fattura.pdf", b"%PDF"),
    )
    found = invoices_sent(submission, raw)
    assert [s.nome_file for s in found] == [
        "IT01234567890_0A1B2.xml",
        "IT01234567890_0A1B3.xml.p7m",
    ]
    first = found[0]
    assert first.key == f"{BOX} IT01234567890_0A1B2.xml"
    assert (first.msgid, first.sdi_address, first.at) == (MSGID, "sdi01@pec.fatturapa.it", AT)
    assert first.notification_id == INVIO_PREFIX + MSGID
    assert invoices_sent(submission, raw) == found  # ids derived, not random
    assert len({s.event_id for s in found}) == 2


def test_a_message_to_anyone_else_is_no_sending() -> None:
    submission, raw = sent("ufficio@pec.example.it", ("IT01234567890_0A1B2.xml", b"<x/>"))
    assert sdi_recipient(submission) is None
    assert invoices_sent(submission, raw) == ()


def test_a_message_to_the_sdi_without_an_invoice_file_is_no_sending() -> None:
    submission, raw = sent("sdi07@pec.fatturapa.it", ("lettera.pdf", b"%PDF"))
    assert sdi_recipient(submission) == "sdi07@pec.fatturapa.it"
    assert invoices_sent(submission, raw) == ()
