"""The one place where domain values become wire data (JSON via orjson).

Field names are the documented ones of ``pectrack inspect --json``; the stream
processors' event schema builds on the same functions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from pipeline.core.examine import Examined
from pipeline.core.model import PecMessage, SignatureReport


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def signature_to_dict(report: SignatureReport) -> dict[str, Any]:
    return {
        "integrity": report.integrity.value,
        "trust": report.trust.value,
        "trust_reason": report.trust_reason,
        "signer": report.signer,
        "signer_email": report.signer_email,
        "signing_time": _iso(report.signing_time),
        "digest": report.digest,
    }


def message_to_dict(message: PecMessage) -> dict[str, Any]:
    return {
        "kind": message.kind.value,
        "msgid": message.msgid,
        "identificativo": message.identificativo,
        "provider": message.provider,
        "sender": message.sender,
        "recipient": message.delivery_recipient,
        "recipients": [{"address": r.address, "type": r.type.value} for r in message.recipients],
        "timestamp": _iso(message.timestamp),
        "variant": message.variant.value if message.variant else None,
        "error": message.error.value if message.error else None,
        "error_detail": message.error_detail,
        "virus": message.virus,
        "subject": message.subject,
    }


def examined_to_dict(examined: Examined) -> dict[str, Any]:
    """``pectrack inspect --json`` output for one message (without the ``file`` key)."""
    data = message_to_dict(examined.message)
    data["signature"] = signature_to_dict(examined.signature)
    data["receipt_id"] = examined.receipt_id
    data["defects"] = [str(d) for d in examined.message.defects + examined.signature.defects]
    return data


def dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)
