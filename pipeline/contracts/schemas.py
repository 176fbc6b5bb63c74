"""The published contracts: which schema each record follows, its URI, and the documents.

Every record pectrack writes for others, or reads from them, follows a JSON Schema with a
name and an integer version. The version is in the record (``dataschema`` of an event,
``schema`` of a message state) as an absolute URI under a base the operator chooses::

    https://pectrack.example/schemas/state-change/2.json
    <------------ schema base ------><-- Contract.path -->

The URI is a name: it resolves only where the operator publishes ``schemas/`` (the
default base is a placeholder domain). The documents ship in this package
(``pipeline/schemas``, read with :func:`schema_document`); docs/schemas.md gives the rule
for when a version moves. Releasing a version freezes ``schemas/<name>/<N>.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from pipeline.contracts.cloudevents import Mode, encode_event
from pipeline.contracts.codec import dumps, message_state_to_dict
from pipeline.contracts.headers import Headers
from pipeline.core import Tracked, TrackEvent

__all__ = [
    "DEFAULT_SCHEMA_BASE",
    "INBOUND",
    "MESSAGE_STATE",
    "SDI_INVOICE_SENT",
    "SDI_INVOICE_STATE",
    "SDI_NOTIFICATION",
    "STATE_CHANGE",
    "SUBMISSION",
    "Contract",
    "Publication",
    "released_schema",
    "schema_document",
    "state_change_value_schema",
]

DEFAULT_SCHEMA_BASE = "https://pectrack.example/schemas/"


@dataclass(frozen=True, slots=True)
class Contract:
    """A record schema: ``name`` and the ``version`` records written today follow."""

    name: str
    version: int

    @property
    def path(self) -> str:
        """Where the released version lives under ``schemas/`` (and under the base)."""
        return f"{self.name}/{self.version}.json"

    @property
    def current(self) -> str:
        """The working document under ``schemas/``: the released version plus any
        compatible change made since (docs/schemas.md)."""
        return f"{self.name}.schema.json"

    def uri(self, base: str = DEFAULT_SCHEMA_BASE) -> str:
        return base + self.path


STATE_CHANGE = Contract("state-change", 2)  # pec.state-changes (the CloudEvent)
MESSAGE_STATE = Contract("message-state", 2)  # pec.message-state
SUBMISSION = Contract("submission", 2)  # pec.submissions (an input)
INBOUND = Contract("inbound", 1)  # pec.inbound (it.pec.received)
SDI_NOTIFICATION = Contract("sdi-notification", 1)  # sdi.notifications
SDI_INVOICE_SENT = Contract("sdi-invoice-sent", 1)  # sdi.notifications, it.pec.invoice-sent
SDI_INVOICE_STATE = Contract("sdi-invoice-state", 1)  # sdi.invoice-states
CONTRACTS = (
    STATE_CHANGE,
    MESSAGE_STATE,
    SUBMISSION,
    INBOUND,
    SDI_NOTIFICATION,
    SDI_INVOICE_SENT,
    SDI_INVOICE_STATE,
)


def check_schema_base(base: str) -> str:
    """An absolute URI ending in ``/`` (``ValueError`` otherwise)."""
    parts = urlsplit(base)
    if not (parts.scheme and parts.netloc and base.endswith("/")):
        raise ValueError(f"schema base must be an absolute URI ending in '/', not {base!r}")
    return base


def schema_document(path: str) -> dict[str, Any]:
    """A JSON Schema shipped in the package, by its path under ``schemas/``
    (``"state-change/2.json"``, ``"state-change.schema.json"``)."""
    resource = resources.files("pipeline").joinpath("schemas", *path.split("/"))
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


def state_change_value_schema(mode: Mode) -> dict[str, Any]:
    """The JSON Schema of a ``pec.state-changes`` record *value* in ``mode``: the whole
    event (structured), or its ``data`` alone (binary) — what a schema registry checks."""
    event = schema_document(STATE_CHANGE.current)
    if mode is Mode.STRUCTURED:
        return event
    return {
        "$schema": event["$schema"],
        "title": "pec.state-changes record value in CloudEvents binary mode: the data",
        **event["properties"]["data"],
        "$defs": event["$defs"],
    }


def released_schema(contract: Contract) -> dict[str, Any]:
    """The frozen document of ``contract``'s version, as released."""
    return schema_document(contract.path)


@dataclass(frozen=True, slots=True)
class Publication:
    """How the workers write their outputs: the events' binding mode and the schema base.

    ``state_change`` gives the value and headers of a ``pec.state-changes`` record,
    ``message_state`` the value of a ``pec.message-state`` record.
    """

    mode: Mode = Mode.STRUCTURED
    schema_base: str = DEFAULT_SCHEMA_BASE

    def state_change(self, event: TrackEvent) -> tuple[bytes, Headers]:
        return encode_event(
            event,
            mode=self.mode,
            dataschema=STATE_CHANGE.uri(self.schema_base),
            processed_at=datetime.now(UTC),
        )

    def message_state(self, tracked: Tracked) -> bytes:
        return dumps(self.message_state_dict(tracked))

    def message_state_dict(self, tracked: Tracked) -> dict[str, Any]:
        return message_state_to_dict(tracked, MESSAGE_STATE.uri(self.schema_base))
