"""Invoices the organisation sent to the SdI, read from its own Sent copies. Pure, no I/O.

An invoice goes to the SdI as an ordinary PEC message from the organisation's mailbox
to ``sdiNN@pec.fatturapa.it`` (``sdi01`` the first time, then the address the SdI
answered from), with the invoice file attached under its NomeFile::

    From: amministrazione@pec.example.it      (the Sent copy: plain MIME, no envelope)
    To: sdi01@pec.fatturapa.it
    Message-ID: <20240301.42@erp.example.it>
    └── multipart/mixed
        ├── text/plain
        └── application/xml   IT01234567890_0A1B2.xml       (or .xml.p7m, signed)

Each attached file whose name is an invoice file name (not a notification's) gives one
:class:`InvoiceSent`, keyed ``<mailbox> <NomeFile>`` as the SdI's notifications about it
are (:mod:`pipeline.core.received`), so the invoice's lifecycle starts at its sending
(:data:`pipeline.core.sdi_lifecycle.SdiEvent.INVIO`). The copy is the organisation's
own, not evidence: that the PEC message reached the SdI is what its PEC receipts prove
(the message is tracked like any other sent message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.core.inbound import describe_message
from pipeline.core.observation import Submission
from pipeline.core.parse import DEFAULT_LIMITS, Limits
from pipeline.core.received import derived_id
from pipeline.core.sdi import is_sdi_address, sdi_file_name

INVIO_PREFIX = "invio:"  # notification id of a sending: "invio:<Message-ID>"


@dataclass(frozen=True, slots=True)
class InvoiceSent:
    """One invoice file handed to the SdI in one PEC message."""

    key: str  # "<mailbox> <NomeFile>"
    mailbox: str
    nome_file: str  # the attachment's name, as the SdI's notifications will name it
    msgid: str  # the PEC message's Message-ID
    sdi_address: str  # sdiNN@pec.fatturapa.it
    sender: str | None
    at: datetime | None  # when it was sent: the Sent copy's time
    event_id: str  # deterministic: the mailbox, the NomeFile and the Message-ID
    notification_id: str  # "invio:<Message-ID>": applied once per invoice


def sdi_recipient(submission: Submission) -> str | None:
    """The SdI mailbox a sent message went to, if any (lower-cased)."""
    return next((a.lower() for a in submission.recipients if is_sdi_address(a)), None)


def invoices_sent(
    submission: Submission, raw: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[InvoiceSent, ...]:
    """The invoice files a Sent copy handed to the SdI; none for any other message."""
    sdi = sdi_recipient(submission)
    if sdi is None:
        return ()
    content = describe_message(raw, limits)
    names: dict[str, None] = {}
    for part in content.parts:
        name = sdi_file_name(part.info.name or "")
        if name is not None and name.type is None:  # an invoice file, not a notification
            names[name.name] = None
    mailbox, msgid = submission.mailbox, submission.msgid
    return tuple(
        InvoiceSent(
            key=f"{mailbox} {nome_file}",
            mailbox=mailbox,
            nome_file=nome_file,
            msgid=msgid,
            sdi_address=sdi,
            sender=submission.sender,
            at=submission.at,
            event_id=derived_id("invoice-sent", mailbox, nome_file, msgid),
            notification_id=INVIO_PREFIX + msgid,
        )
        for nome_file in names
    )
