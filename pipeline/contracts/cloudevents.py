"""``pec.state-changes`` as CloudEvents on Kafka: the binding, for workers and consumers.

The worker writes each event in one of the two content modes of the CloudEvents Kafka
protocol binding (1.0); the record key is the correlation key in both:

- **structured** (the default): the whole event is the JSON value, and the header
  ``content-type: application/cloudevents+json; charset=UTF-8`` says so::

      content-type: application/cloudevents+json; charset=UTF-8
      {"specversion": "1.0", "id": "5c0f…", "source": "pectrack/ufficio-legale",
       "type": "it.pec.state-change", "subject": "<20240301.42@erp.example.it>",
       "time": "2024-03-01T11:03:00+01:00", "datacontenttype": "application/json",
       "dataschema": "https://pectrack.example/schemas/state-change/2.json",
       "partitionkey": "ufficio-legale <20240301.42@erp.example.it>", "data": {…}}

- **binary**: each attribute is a ``ce_<name>`` header, the value is ``data`` alone::

      ce_specversion: 1.0   ce_id: 5c0f…   ce_type: it.pec.state-change   …
      content-type: application/json
      {"key": "ufficio-legale <20240301.42@erp.example.it>", "to_state": "delivered", …}

As the binding says, the ``content-type`` header alone decides the mode: a value starting
``application/cloudevents`` is structured, anything else (or none) is binary.

A consumer needs only :func:`decode_record`::

    from pipeline.contracts.cloudevents import decode_record

    async for record in consumer:                      # aiokafka
        event = decode_record(record.headers, record.value)
        print(event.id, event.msgid, event.recipient, event.to_state)

Errors: :class:`pipeline.contracts.codec.DecodeError` for a record that is not a pectrack event.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import orjson

from pipeline.contracts.codec import (
    DecodeError,
    event_to_dict,
    provenance_from_dict,
    read_enum,
    read_opt_enum,
    read_opt_str,
    read_str,
    read_time,
)
from pipeline.contracts.headers import CONTENT_TYPE_HEADER, HEADER_PREFIX, Headers
from pipeline.core import DeliveryState, EventType, Provenance, SignatureVerdict, TrackEvent

__all__ = [
    "BINARY_CONTENT_TYPE",
    "CONTENT_TYPE_HEADER",
    "HEADER_PREFIX",
    "STRUCTURED_CONTENT_TYPE",
    "TYPE_PREFIX",
    "DecodeError",
    "Mode",
    "StateChange",
    "decode_record",
    "encode_event",
    "read_cloudevent",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
BINARY_CONTENT_TYPE = "application/json"  # the data's content type (datacontenttype)
TYPE_PREFIX = "it.pec."
SPECVERSION = "1.0"
# The CloudEvents partitioning extension: the Kafka key, so an SDK maps it back and forth.
PARTITIONKEY = "partitionkey"

_EnumT = TypeVar("_EnumT", bound=enum.Enum)


class Mode(enum.Enum):
    """The binding's content mode: where the attributes travel."""

    STRUCTURED = "structured"  # in the JSON value, with the data
    BINARY = "binary"  # as ce_* headers; the value is the data


# --- writing (the correlate processor) ------------------------------------------------------


def encode_event(
    event: TrackEvent, *, mode: Mode, dataschema: str, processed_at: datetime
) -> tuple[bytes, Headers]:
    """The value and headers of one ``pec.state-changes`` record.

    ``time`` is when the event happened by the evidence: the daticert time of the receipt,
    the submission time for a submission, the deadline clock for an overdue flag. Only an
    event without any such time (a Sent copy without a Date) takes ``processed_at``.
    """
    return encode_cloudevent(
        event_id=event.event_id,
        mailbox=event.mailbox,
        type_name=event.type.value,
        subject=event.msgid,
        time=event.at if event.at is not None else processed_at,
        key=event.key,
        data=event_to_dict(event),
        mode=mode,
        dataschema=dataschema,
    )


def encode_cloudevent(
    *,
    event_id: str,
    mailbox: str,
    type_name: str,
    subject: str | None,
    time: datetime,
    key: str,
    data: dict[str, Any],
    mode: Mode,
    dataschema: str,
) -> tuple[bytes, Headers]:
    """One pectrack CloudEvent (``it.pec.<type_name>``, source ``pectrack/<mailbox>``,
    partition key ``key``) as a Kafka record's value and headers in ``mode``."""
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": f"pectrack/{quote(mailbox, safe='')}",
        "type": f"{TYPE_PREFIX}{type_name}",
    }
    if subject:
        attributes["subject"] = subject
    attributes |= {
        "time": time.isoformat(),
        "datacontenttype": BINARY_CONTENT_TYPE,
        "dataschema": dataschema,
        PARTITIONKEY: key,
    }
    if mode is Mode.STRUCTURED:
        headers = [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())]
        return orjson.dumps(attributes | {"data": data}), headers
    headers = [(CONTENT_TYPE_HEADER, BINARY_CONTENT_TYPE.encode())]
    headers += [
        (HEADER_PREFIX + name, str(value).encode())
        for name, value in attributes.items()
        if name != "datacontenttype"  # the content-type header carries it
    ]
    return orjson.dumps(data), headers


# --- reading (any consumer) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange:
    """One decoded ``pec.state-changes`` event: its CloudEvents attributes and its data.

    ``type`` is the event type without ``it.pec.``; ``from_state``/``to_state`` are set
    for transitions (``type`` ``state-change``) and ``None`` where the event has none.
    """

    id: str
    type: EventType
    source: str
    time: datetime
    dataschema: str
    key: str  # the correlation key, also the Kafka key
    mailbox: str
    msgid: str
    recipient: str | None
    from_state: DeliveryState | None
    to_state: DeliveryState | None
    receipt_kind: str | None
    receipt_id: str | None
    provider: str | None
    daticert_time: datetime | None
    latency_seconds: float | None
    latency_from: str | None
    outcome: str | None
    reason: str | None
    signature: SignatureVerdict | None
    # Where the receipt (or Sent copy) that caused the event was read and archived; None
    # for events no message caused, and in events of releases before the field.
    evidence: Provenance | None = None

    @property
    def is_final_failure(self) -> bool:
        """A transition into a state that ends delivery unsuccessfully."""
        return self.to_state in _FAILED

    @property
    def is_delivery(self) -> bool:
        return self.to_state is DeliveryState.DELIVERED


_FAILED = frozenset({DeliveryState.DELIVERY_FAILED, DeliveryState.VIRUS, DeliveryState.REJECTED})


def decode_record(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]], value: bytes | None
) -> StateChange:
    """A ``pec.state-changes`` record, in either mode, as a :class:`StateChange`.

    ``headers`` as aiokafka gives them (``record.headers``) or as a mapping. The mode is
    the ``content-type`` header's: ``application/cloudevents+json`` is structured, anything
    else binary. Raises :class:`DecodeError` for anything else, including a record written
    before the binding (no header; ``dataschema`` ``pectrack.state-change/1``).
    """
    attributes, data = read_cloudevent(headers, value)
    return _state_change(attributes, data)


def read_cloudevent(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]], value: bytes | None
) -> tuple[dict[str, Any], object]:
    """Any pectrack CloudEvent record, in either mode, as its attributes and its data
    (still to be checked): the mode is the ``content-type`` header's, as for
    :func:`decode_record`. :class:`DecodeError` if it is neither mode."""
    fields = _headers(headers)
    content_type = fields.get(CONTENT_TYPE_HEADER, "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("application/cloudevents"):
        if media_type != "application/cloudevents+json":
            raise DecodeError(f"structured mode in an unsupported format: {media_type[:40]!r}")
        envelope = _json_object(value, "event")
        data = envelope.pop("data", None)
        return envelope, data
    attributes: dict[str, Any] = {
        name.removeprefix(HEADER_PREFIX): text
        for name, text in fields.items()
        if name.startswith(HEADER_PREFIX)
    }
    if not attributes:
        raise DecodeError("no content-type: application/cloudevents+json and no ce_ headers")
    if media_type and media_type != BINARY_CONTENT_TYPE:
        raise DecodeError(f"binary mode with data of type {media_type[:40]!r}")
    return attributes, _json_object(value, "data")


def _headers(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    try:
        # Header names are case-insensitive in the binding; the first of a name wins.
        out: dict[str, str] = {}
        for name, raw in pairs:
            out.setdefault(name.lower(), bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a header is not UTF-8: {exc}") from exc
    return out


def _json_object(value: bytes | None, what: str) -> dict[str, Any]:
    if value is None:
        raise DecodeError(f"no value: expected the {what} as JSON")
    try:
        loaded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"the {what} is not JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise DecodeError(f"the {what} is not a JSON object")
    return loaded


def _state_change(attributes: Mapping[str, Any], data: object) -> StateChange:
    if attributes.get("specversion") != SPECVERSION:
        raise DecodeError(f"specversion: expected {SPECVERSION!r}")
    if not isinstance(data, dict):
        raise DecodeError("data: expected a JSON object")
    kind = read_str(attributes, "type", non_empty=True)
    if not kind.startswith(TYPE_PREFIX):
        raise DecodeError(f"type: not a pectrack event: {kind[:40]!r}")
    latency = data.get("latency_seconds")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise DecodeError("latency_seconds: expected a number or null")
    time = read_time(attributes, "time")
    if time is None:
        raise DecodeError("time: expected a non-empty string")
    event_type = read_enum(EventType, {"type": kind.removeprefix(TYPE_PREFIX)}, "type")
    return StateChange(
        id=read_str(attributes, "id", non_empty=True),
        type=event_type,
        source=read_str(attributes, "source", non_empty=True),
        time=time,
        dataschema=read_str(attributes, "dataschema", non_empty=True),
        key=read_str(data, "key", non_empty=True),
        mailbox=read_str(data, "mailbox", non_empty=True),
        msgid=read_str(data, "msgid", non_empty=True),
        recipient=read_opt_str(data, "recipient"),
        from_state=read_opt_enum(DeliveryState, data, "from_state"),
        to_state=read_opt_enum(DeliveryState, data, "to_state"),
        receipt_kind=read_opt_str(data, "receipt_kind"),
        receipt_id=read_opt_str(data, "receipt_id"),
        provider=read_opt_str(data, "provider"),
        daticert_time=read_time(data, "daticert_time"),
        latency_seconds=float(latency) if latency is not None else None,
        latency_from=read_opt_str(data, "latency_from"),
        outcome=read_opt_str(data, "outcome"),
        reason=read_opt_str(data, "reason"),
        signature=read_opt_enum(SignatureVerdict, data, "signature"),
        evidence=provenance_from_dict(data["evidence"]) if data.get("evidence") else None,
    )
