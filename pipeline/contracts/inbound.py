"""``pec.inbound`` and ``sdi.notifications`` as CloudEvents on Kafka (same binding as
``pec.state-changes``, :mod:`pipeline.contracts.cloudevents`).

``pec.inbound``, key = the mailbox id (one mailbox's mail stays in order)::

    {"specversion": "1.0", "id": "9f2c…", "source": "pectrack/ufficio-legale",
     "type": "it.pec.received", "subject": "opec288.20240301100005.00001.01.1.1@pec.aruba.it",
     "time": "2024-03-01T10:00:05+01:00", "datacontenttype": "application/json",
     "dataschema": "https://pectrack.example/schemas/inbound/1.json",
     "partitionkey": "ufficio-legale",
     "data": {"mailbox": "ufficio-legale", "kind": "posta-certificata",
              "sender": "mario.rossi@pec.aruba.it", "signature": "valid-trusted",
              "anomaly": false, "attachments": [{"name": "fattura_42.pdf",
              "content_type": "application/pdf", "size": 360, "sha256": "…"}], …}}

``sdi.notifications``, key = ``<mailbox> <NomeFile>`` (one invoice's notifications stay
in order): type ``it.pec.sdi-notification`` (RC, NS, MC, NE, DT, AT about an invoice the
organisation sent) or ``it.pec.invoice-received`` (an invoice the SdI delivered, with
its FileMetadati), or ``it.pec.invoice-sent`` (an invoice file the organisation handed
to the SdI, from its own Sent copy: the start of the invoice's lifecycle).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.contracts.cloudevents import Mode, encode_cloudevent
from pipeline.contracts.codec import iso
from pipeline.contracts.headers import Headers
from pipeline.core.inbound import AttachmentInfo
from pipeline.core.received import InboundEnvelope, InvoiceReceived, SdiNotice, SdiRecord
from pipeline.core.sdi import Invoice, Notification
from pipeline.core.sdi_lifecycle import SdiEvent
from pipeline.core.sdi_sent import InvoiceSent
from pipeline.core.xades import XadesCheck

RECEIVED = "received"
SDI_NOTIFICATION = "sdi-notification"
INVOICE_RECEIVED = "invoice-received"
INVOICE_SENT = "invoice-sent"


def _attachment(item: AttachmentInfo) -> dict[str, Any]:
    return {
        "name": item.name,
        "content_type": item.content_type,
        "size": item.size,
        "sha256": item.sha256,
    }


def inbound_data(envelope: InboundEnvelope) -> dict[str, Any]:
    return {
        "mailbox": envelope.mailbox,
        "kind": envelope.kind.value,
        "sender": envelope.sender,
        "recipients": [{"address": r.address, "type": r.type.value} for r in envelope.recipients],
        "subject": envelope.subject,
        "identificativo": envelope.identificativo,
        "msgid": envelope.msgid,
        "provider": envelope.provider,
        "daticert_time": iso(envelope.daticert_time),
        "signature": envelope.signature.value,
        "evidence": envelope.evidence,
        "anomaly": envelope.anomaly,
        "anomaly_reason": envelope.anomaly_reason,
        "attachments": [_attachment(a) for a in envelope.attachments],
        "defects": list(envelope.defects),
        "receipt_id": envelope.receipt_id,
    }


def _envelope_ref(envelope: InboundEnvelope) -> dict[str, Any]:
    """The PEC envelope an SdI record came in: enough to find it on ``pec.inbound``."""
    return {
        "event_id": envelope.event_id,
        "sender": envelope.sender,
        "identificativo": envelope.identificativo,
        "daticert_time": iso(envelope.daticert_time),
        "signature": envelope.signature.value,
    }


def _notification(notification: Notification) -> dict[str, Any]:
    return {
        "type": notification.type.value,
        "file_name": notification.file_name,
        "nome_file": notification.nome_file,
        "identificativo_sdi": notification.identificativo_sdi,
        "message_id": notification.message_id,
        "received_at": iso(notification.received_at),
        "delivered_at": iso(notification.delivered_at),
        "esito": notification.esito,
        "errors": [{"code": e.code, "description": e.description} for e in notification.errors],
        "description": notification.description,
        "recipient_code": notification.recipient_code,
        "format": notification.format,
        "xades_present": notification.signed,
        "xades": _xades(notification.xades),
        "defects": [d.code for d in notification.defects],
    }


def _xades(check: XadesCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "intact": check.intact,
        "signer": check.signer,
        "issuer": check.issuer,
        "reason": check.reason,
    }


def _invoice(invoice: Invoice) -> dict[str, Any]:
    return {
        "file_name": invoice.file_name,
        "format": invoice.format,
        "sender_vat": invoice.sender_vat,
        "sender_name": invoice.sender_name,
        "buyer_vat": invoice.buyer_vat,
        "p7m": invoice.p7m,
        "documents": [
            {
                "number": d.number,
                "date": d.date,
                "amount": d.amount,
                "currency": d.currency,
                "document_type": d.document_type,
            }
            for d in invoice.documents
        ],
        "defects": [d.code for d in invoice.defects],
    }


def sdi_data(record: SdiRecord) -> dict[str, Any]:
    common = {
        "key": record.key,
        "mailbox": record.mailbox,
        "evidence": record.evidence,
        "envelope": _envelope_ref(record.envelope),
    }
    if isinstance(record, SdiNotice):
        notification = record.notification
        return common | {
            "nome_file": notification.nome_file or notification.file_name,
            "identificativo_sdi": notification.identificativo_sdi,
            "notification": _notification(notification),
            "lifecycle_event": record.event.value if record.event else None,
            "invoice_state": record.implied_state.value if record.implied_state else None,
            "notification_id": record.notification_id,
        }
    meta = record.metadata
    return common | {
        "nome_file": record.nome_file,
        "identificativo_sdi": meta.identificativo_sdi if meta else None,
        "metadata": _notification(meta) if meta else None,
        "invoice": _invoice(record.invoice) if record.invoice else None,
    }


def invoice_sent_data(item: InvoiceSent) -> dict[str, Any]:
    """The ``data`` of an ``it.pec.invoice-sent`` event (schema ``sdi-invoice-sent``)."""
    return {
        "key": item.key,
        "mailbox": item.mailbox,
        "nome_file": item.nome_file,
        "msgid": item.msgid,
        "sdi_address": item.sdi_address,
        "sender": item.sender,
        "sent_at": iso(item.at),
        "evidence": False,  # the organisation's own copy
        "lifecycle_event": SdiEvent.INVIO.value,
        "notification_id": item.notification_id,
    }


def sdi_type(record: SdiRecord) -> str:
    return SDI_NOTIFICATION if isinstance(record, SdiNotice) else INVOICE_RECEIVED


def sdi_label(record: SdiRecord) -> str:
    """The ``type`` label of ``pec_sdi_notifications_total``: RC, NS, MC, NE, DT, AT or
    invoice-received (bounded)."""
    if isinstance(record, InvoiceReceived):
        return INVOICE_RECEIVED
    return record.notification.type.value


def encode(
    *,
    event_id: str,
    mailbox: str,
    type_name: str,
    subject: str | None,
    at: datetime | None,
    key: str,
    data: dict[str, Any],
    mode: Mode,
    dataschema: str,
    processed_at: datetime,
) -> tuple[bytes, Headers]:
    """One record's value and headers in ``mode``; ``time`` is the evidence's time (the
    envelope's daticert time), the processing time only where there is none."""
    return encode_cloudevent(
        event_id=event_id,
        mailbox=mailbox,
        type_name=type_name,
        subject=subject,
        time=at or processed_at,
        key=key,
        data=data,
        mode=mode,
        dataschema=dataschema,
    )
