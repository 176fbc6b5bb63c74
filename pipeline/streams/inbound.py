"""Certified mail received: the records verify adds for an envelope in INBOX.

Called by the verify processor for every examined message; everything but an envelope
(``posta-certificata``) or anomaly envelope (``errore``) in INBOX gives nothing::

    envelope in INBOX -> pec.inbound         key "<mailbox>"            it.pec.received
      + each SdI file -> sdi.notifications   key "<mailbox> <NomeFile>" it.pec.sdi-notification
                                                                        it.pec.invoice-received
    Sent copy to the SdI -> sdi.notifications key "<mailbox> <NomeFile>" it.pec.invoice-sent
      (one per invoice file attached; :func:`invoice_sent_records`)

The PEC rules (what an envelope holds, what the SdI's files say, which is evidence) are
in :mod:`pipeline.core.received`; this module only encodes and counts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.inbound import (
    INVOICE_SENT,
    RECEIVED,
    encode,
    inbound_data,
    invoice_sent_data,
    sdi_data,
    sdi_label,
    sdi_type,
)
from pipeline.contracts.metrics import StreamMetrics
from pipeline.contracts.schemas import INBOUND, SDI_INVOICE_SENT, SDI_NOTIFICATION
from pipeline.core.examine import Examined
from pipeline.core.inbound import is_inbound
from pipeline.core.observation import Submission
from pipeline.core.parse import Limits, read_layout
from pipeline.core.received import receive
from pipeline.core.sdi_sent import invoices_sent, sdi_recipient
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record


def inbound_records(  # noqa: PLR0917  (verify's plan passes what it has)
    settings: StreamSettings,
    metrics: StreamMetrics,
    examined: Examined,
    raw: bytes,
    mailbox: str,
    folder: str,
    role: str | None,
    limits: Limits,
) -> list[Record]:
    """The ``pec.inbound`` record of an envelope received, and its SdI records."""
    if not is_inbound(examined.message, role, folder):
        return []
    envelope, sdi = receive(examined, read_layout(raw, limits), mailbox, limits)
    mode = Mode(settings.cloudevents_mode)
    now = datetime.now(UTC)
    value, headers = encode(
        event_id=envelope.event_id,
        mailbox=mailbox,
        type_name=RECEIVED,
        subject=envelope.identificativo,
        at=envelope.daticert_time,
        key=mailbox,
        data=inbound_data(envelope),
        mode=mode,
        dataschema=INBOUND.uri(settings.schema_base),
        processed_at=now,
    )
    records = [Record(settings.inbound_topic, mailbox.encode(), value, headers)]
    metrics.inbound_received(envelope.provider, envelope.signature.value)
    for item in sdi:
        data = sdi_data(item)
        value, headers = encode(
            event_id=item.event_id,
            mailbox=mailbox,
            type_name=sdi_type(item),
            subject=data["nome_file"],
            at=envelope.daticert_time,
            key=item.key,
            data=data,
            mode=mode,
            dataschema=SDI_NOTIFICATION.uri(settings.schema_base),
            processed_at=now,
        )
        records.append(Record(settings.sdi_topic, item.key.encode(), value, headers))
        metrics.sdi_notification(sdi_label(item), item.evidence)
    return records


def invoice_sent_records(
    settings: StreamSettings,
    metrics: StreamMetrics,
    submission: Submission,
    raw: bytes,
    limits: Limits,
) -> list[Record]:
    """An ``it.pec.invoice-sent`` record per invoice file a Sent copy handed to the SdI
    (none, and no MIME walk, for a message to anyone else)."""
    if sdi_recipient(submission) is None:
        return []
    mode = Mode(settings.cloudevents_mode)
    now = datetime.now(UTC)
    records = []
    for item in invoices_sent(submission, raw, limits):
        value, headers = encode(
            event_id=item.event_id,
            mailbox=item.mailbox,
            type_name=INVOICE_SENT,
            subject=item.nome_file,
            at=item.at,
            key=item.key,
            data=invoice_sent_data(item),
            mode=mode,
            dataschema=SDI_INVOICE_SENT.uri(settings.schema_base),
            processed_at=now,
        )
        records.append(Record(settings.sdi_topic, item.key.encode(), value, headers))
        metrics.sdi_notification(INVOICE_SENT, evidence=False)
    return records
