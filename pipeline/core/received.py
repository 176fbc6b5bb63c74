"""From an envelope examined in INBOX to what the workers publish about it.

::

    envelope from mario.rossi@pec.aruba.it, postacert.eml with contratto.pdf
        -> InboundEnvelope (pec.inbound, it.pec.received)
    envelope from sdi01@pec.fatturapa.it, IT01234567890_00001_RC_001.xml inside
        -> InboundEnvelope + SdiNotice(RC, nome_file IT01234567890_00001.xml)
    envelope from sdi01@pec.fatturapa.it, IT09876543210_0A1B2.xml.p7m + ..._MT_001.xml
        -> InboundEnvelope + InvoiceReceived
    the same with a tampered body
        -> the same records, signature "invalid", evidence false (never dropped)

Every id is derived from what was received (the mailbox, the envelope's
:func:`pipeline.core.examine.receipt_id`, the file name), so a replay, or the same
envelope read twice, gives the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from pipeline.core.correlate import SignatureVerdict
from pipeline.core.defects import DefectCode
from pipeline.core.examine import Examined
from pipeline.core.inbound import AttachmentInfo, InboundContent, OriginalPart, describe_inbound
from pipeline.core.model import ErrorCode, Kind, Recipient
from pipeline.core.observation import signature_verdict
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits
from pipeline.core.sdi import (
    Invoice,
    Notification,
    NotificationType,
    is_sdi_address,
    read_invoice,
    read_notification,
    sdi_file_name,
)
from pipeline.core.sdi_lifecycle import InvoiceState, SdiEvent, event_for, implied_state

ANOMALY_REASON_DEFAULT = "not-certified-mail"  # what an errore envelope is for (DM 2/11/2005)


@dataclass(frozen=True, slots=True)
class InboundEnvelope:
    event_id: str
    mailbox: str
    kind: Kind  # posta-certificata or errore
    sender: str | None  # daticert mittente
    recipients: tuple[Recipient, ...]  # daticert destinatari
    subject: str | None
    identificativo: str | None
    msgid: str | None
    provider: str | None
    daticert_time: datetime | None
    signature: SignatureVerdict
    evidence: bool  # valid, trusted, the right signer and no disqualifying defect
    anomaly: bool
    anomaly_reason: str | None
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    receipt_id: str


@dataclass(frozen=True, slots=True)
class SdiNotice:
    """An SdI notification about an invoice the organisation sent."""

    event_id: str
    mailbox: str
    key: str  # "<mailbox> <NomeFile>": one invoice's notifications stay in order
    notification: Notification
    event: SdiEvent | None
    implied_state: InvoiceState | None  # where this notification alone leads the invoice
    notification_id: str  # for the lifecycle's duplicate check: type and SdI MessageId
    envelope: InboundEnvelope
    evidence: bool  # the envelope is evidence AND it comes from the SdI


@dataclass(frozen=True, slots=True)
class InvoiceReceived:
    """An invoice delivered by the SdI: the FatturaPA file and its FileMetadati."""

    event_id: str
    mailbox: str
    key: str
    nome_file: str
    metadata: Notification | None
    invoice: Invoice | None
    envelope: InboundEnvelope
    evidence: bool


SdiRecord = SdiNotice | InvoiceReceived


def derived_id(*parts: str) -> str:
    """A record id derived from what was received: the same parts, the same id."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def receive(
    examined: Examined, layout: Layout, mailbox: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[InboundEnvelope, tuple[SdiRecord, ...]]:
    """Describe an envelope received in ``mailbox`` and read the SdI files it carries."""
    content = describe_inbound(
        layout, limits, keep=lambda name: sdi_file_name(name or "") is not None
    )
    files = _read_sdi_files(content)
    envelope = _envelope(examined, content, mailbox, files.unreadable)
    return envelope, _sdi_records(envelope, files)


@dataclass(frozen=True, slots=True)
class _SdiFiles:
    notifications: tuple[Notification, ...]  # about invoices sent
    metadata: dict[str, Notification]  # FileMetadati by NomeFile base
    invoices: dict[str, OriginalPart]  # invoice files by NomeFile base
    unreadable: tuple[str, ...]  # names of SdI-named files that are not SdI XML


def _read_sdi_files(content: InboundContent) -> _SdiFiles:
    notifications: list[Notification] = []
    metadata: dict[str, Notification] = {}
    invoices: dict[str, OriginalPart] = {}
    unreadable: list[str] = []
    for part in content.parts:
        name = sdi_file_name(part.info.name or "")
        if name is None:
            continue
        if name.type is None:
            invoices.setdefault(name.base, part)
            continue
        notification, _defects = read_notification(name.name, part.data or b"")
        if notification is None:
            unreadable.append(name.name)
        elif name.type is NotificationType.MT:
            metadata.setdefault(name.base, notification)
        else:
            notifications.append(notification)
    return _SdiFiles(tuple(notifications), metadata, invoices, tuple(unreadable))


def _envelope(
    examined: Examined, content: InboundContent, mailbox: str, unreadable: tuple[str, ...]
) -> InboundEnvelope:
    message = examined.message
    anomaly = message.kind is Kind.ERRORE
    reason = None
    if anomaly:
        reason = message.error_detail or (
            message.error.value
            if message.error not in (None, ErrorCode.NESSUNO)
            else ANOMALY_REASON_DEFAULT
        )
    verdict = signature_verdict(examined)
    defects = [d.code for d in message.defects] + [d.code for d in examined.signature.defects]
    defects += [d.code for d in content.defects if d.code is not DefectCode.POSTACERT_MISSING]
    if unreadable:  # named like the SdI's files, but not its XML: listed, never read
        defects.append(DefectCode.SDI_FILE_UNREADABLE)
    return InboundEnvelope(
        # The verdict is part of the id: a tampered copy keeps the genuine signature blob
        # (hence its receipt_id) and must not be deduplicated away as the genuine one.
        event_id=derived_id("inbound", mailbox, examined.receipt_id, verdict.value),
        mailbox=mailbox,
        kind=message.kind,
        sender=message.sender,
        recipients=message.recipients,
        subject=message.subject,
        identificativo=message.identificativo,
        msgid=message.msgid,
        provider=message.provider,
        daticert_time=message.timestamp,
        signature=verdict,
        evidence=not examined.disqualifying_defects,
        anomaly=anomaly,
        anomaly_reason=reason,
        attachments=content.attachments,
        defects=tuple(dict.fromkeys(defects)),
        receipt_id=examined.receipt_id,
    )


def _sdi_records(envelope: InboundEnvelope, files: _SdiFiles) -> tuple[SdiRecord, ...]:
    from_sdi = envelope.evidence and is_sdi_address(envelope.sender)
    records: list[SdiRecord] = [_notice(envelope, n, from_sdi) for n in files.notifications]
    metadata, invoices = files.metadata, files.invoices
    for base in sorted(set(metadata) | set(invoices)):
        invoice_part = invoices.get(base)
        meta = metadata.get(base)
        invoice = (
            read_invoice(invoice_part.info.name or "", invoice_part.data or b"")
            if invoice_part
            else None
        )
        nome_file = (
            (meta.nome_file if meta else None)
            or (invoice_part.info.name if invoice_part else None)
            or base
        )
        records.append(
            InvoiceReceived(
                event_id=derived_id("invoice-received", envelope.event_id, base),
                mailbox=envelope.mailbox,
                key=f"{envelope.mailbox} {nome_file}",
                nome_file=nome_file,
                metadata=meta,
                invoice=invoice,
                envelope=envelope,
                evidence=from_sdi,
            )
        )
    return tuple(records)


def _notice(envelope: InboundEnvelope, notification: Notification, from_sdi: bool) -> SdiNotice:
    event = event_for(notification)
    nome_file = notification.nome_file or notification.file_name
    sdi_id = notification.message_id
    return SdiNotice(
        event_id=derived_id("sdi", envelope.event_id, notification.file_name),
        mailbox=envelope.mailbox,
        key=f"{envelope.mailbox} {nome_file}",
        notification=notification,
        event=event,
        implied_state=implied_state(event) if event is not None else None,
        notification_id=f"{notification.type}:{sdi_id}" if sdi_id else notification.file_name,
        envelope=envelope,
        evidence=from_sdi and not notification.defects,
    )
