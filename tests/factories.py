"""Real, signed PEC messages for tests, from the simulated providers and the test PKI.

    from tests.factories import anchor_pem, make_pec, make_receipt

    raw = make_receipt(Kind.AVVENUTA_CONSEGNA)                      # bytes, as stored
    raw = make_receipt(Kind.ERRORE_CONSEGNA, virus=True, line_ending=LineEnding.LF)
    built = make_pec(Kind.ACCETTAZIONE, provider="poste", fault=Fault.SELF_SIGNED)
    built.raw, built.truth.kind, built.truth.trust                  # Trust.UNTRUSTED

Keyword overrides are routed by name to :class:`OriginalMessage` (``subject``, ``msgid``,
``recipients``...), :class:`Notice` (``error``, ``delivery_recipient``, ``at``...) or
:class:`RenderOptions` (``part_order``, ``line_ending``, ``legacy_pkcs7``...). The PKI is
built once per process (``default_pki``), so every call after the first is fast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.core.model import ErrorCode, Kind, Recipient, RecipientType
from pipeline.simulate.ca import Pki, default_pki
from pipeline.simulate.provider import CET, Fault, Notice, Provider, catalogue, forge
from pipeline.simulate.render import (
    Attachment,
    OriginalMessage,
    RenderOptions,
    render_original,
)
from pipeline.simulate.traffic import Truth, faulty_truth, notice_truth, plain_truth

AT = datetime(2024, 3, 1, 10, 0, 0, tzinfo=CET)
SENDER = "mario.rossi@pec.aruba.it"
CERTIFIED = "giulia.bianchi@postecert.it"
EXTERNAL = "luca.ferrari@gmail.com"
MSGID = "<20240301100000.000001.1a2b3c4d@mario.rossi.client>"
OTHER_MSGID = "<20240301110000.000002.5e6f7a8b@mario.rossi.client>"  # what a replay claims
PROVIDER_NAMES = ("aruba", "poste", "infocert", "namirial")

_ORIGINAL_FIELDS = {f.name for f in fields(OriginalMessage)}
_NOTICE_FIELDS = {f.name for f in fields(Notice)} - {"kind", "original"}
_OPTION_FIELDS = {f.name for f in fields(RenderOptions)}

# What each kind says when the test does not care.
_DEFAULTS: dict[Kind, dict[str, Any]] = {
    Kind.NON_ACCETTAZIONE: {"error": ErrorCode.ALTRO, "error_detail": "5.7.1 - non accettato"},
    Kind.ERRORE_CONSEGNA: {
        "error": ErrorCode.NO_DEST,
        "error_detail": "5.1.1 - Utente non riconosciuto",
    },
    Kind.PREAVVISO_ERRORE_CONSEGNA: {
        "error": ErrorCode.ALTRO,
        "error_detail": "4.4.7 - messaggio non consegnato entro le prime 12 ore",
    },
    Kind.RILEVAZIONE_VIRUS: {"error": ErrorCode.VIRUS, "error_detail": "EICAR-Test-File"},
}
_PER_RECIPIENT = frozenset(
    {Kind.AVVENUTA_CONSEGNA, Kind.ERRORE_CONSEGNA, Kind.PREAVVISO_ERRORE_CONSEGNA}
)


@dataclass(frozen=True, slots=True)
class Built:
    """A raw message and what a correct parser and verifier must say about it."""

    raw: bytes
    truth: Truth


def pki() -> Pki:
    """The process-wide test PKI (session-scoped in effect)."""
    return default_pki()


def anchor_pem() -> bytes:
    """The PEM trust store that makes every genuine simulated message trusted."""
    return default_pki().anchor_pem()


def write_anchor(directory: Path) -> Path:
    """``directory/anchor.pem``, for code that loads its trust store from a file."""
    path = directory / "anchor.pem"
    path.write_bytes(anchor_pem())
    return path


def provider(name: str = "aruba", **changes: Any) -> Provider:
    """One of ``aruba`` (RSA, SHA-1), ``poste`` (ECDSA, legacy layout), ``infocert``
    (html, 7bit daticert) or ``namirial`` (ECDSA, SHA-1, LF), with fields changed."""
    chosen = catalogue(default_pki())[PROVIDER_NAMES.index(name)]
    return replace(chosen, **changes) if changes else chosen


def make_original(**overrides: Any) -> OriginalMessage:
    """The submission every default receipt is about: one certified, one external."""
    base = OriginalMessage(
        sender=SENDER,
        recipients=(
            Recipient(CERTIFIED, RecipientType.CERTIFICATO),
            Recipient(EXTERNAL, RecipientType.ESTERNO),
        ),
        subject="Fattura n. 42",
        msgid=MSGID,
        date=AT,
        body="Gentile cliente,\nin allegato la fattura.\n",
        attachments=(Attachment("fattura_42.pdf", "application/pdf", b"%PDF-1.4\n" * 40),),
    )
    return replace(base, **overrides) if overrides else base


def _split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    original, notice, options = {}, {}, {}
    for key, value in overrides.items():
        if key in _ORIGINAL_FIELDS:
            original[key] = value
        elif key in _NOTICE_FIELDS:
            notice[key] = value
        elif key in _OPTION_FIELDS:
            options[key] = value
        else:
            raise TypeError(f"unknown override {key!r}")
    return original, notice, options


def make_pec(
    kind: Kind = Kind.AVVENUTA_CONSEGNA,
    *,
    provider: str | Provider = "aruba",
    fault: Fault | None = None,
    signing_time: datetime | None = None,
    replay_msgid: str = OTHER_MSGID,
    warning_hours: int | None = None,
    **overrides: Any,
) -> Built:
    """A signed PEC message of ``kind`` with its :class:`Truth`; ``fault`` makes it
    defective (a :attr:`Fault.REPLAYED` one names ``replay_msgid`` in its headers);
    ``warning_hours`` (12 or 24) makes a preavviso the first or second warning."""
    chosen = _provider(provider)
    original_changes, notice_changes, option_changes = _split(overrides)
    original = make_original(**original_changes)
    notice_fields: dict[str, Any] = {
        "identificativo": chosen.identificativo(AT, 1),
        "at": AT.replace(second=5),
        **_DEFAULTS.get(kind, {}),
    }
    if kind is not Kind.POSTA_CERTIFICATA and kind is not Kind.ERRORE:
        notice_fields["message_id"] = f"<{kind}.1@{chosen.domain}>"
    if kind in _PER_RECIPIENT:
        first = next(r for r in original.recipients if r.type is RecipientType.CERTIFICATO)
        notice_fields["delivery_recipient"] = first.address
    if notice_changes.get("virus") and kind in (Kind.ERRORE_CONSEGNA, Kind.NON_ACCETTAZIONE):
        notice_fields["error"] = ErrorCode.VIRUS
    if warning_hours is not None:
        notice_fields["error_detail"] = (
            f"4.4.7 - messaggio non consegnato entro {warning_hours} ore"
        )
    notice_fields.update(notice_changes)
    notice = Notice(kind, original, **notice_fields)
    options = replace(chosen.options, **option_changes) if option_changes else chosen.options
    chosen = replace(chosen, options=options)
    truth = notice_truth(chosen, notice, warning_hours=warning_hours)
    if fault is not None:
        raw = forge(chosen, notice, fault, default_pki(), replay_msgid=replay_msgid)
        return Built(raw, faulty_truth(truth, fault))
    return Built(chosen.issue(notice, signing_time=signing_time), truth)


def make_receipt(kind: Kind = Kind.AVVENUTA_CONSEGNA, **overrides: Any) -> bytes:
    """Just the bytes of :func:`make_pec`."""
    return make_pec(kind, **overrides).raw


def make_sent_copy(**overrides: Any) -> Built:
    """The user's own submission as it sits in the Sent folder (ordinary mail)."""
    original = make_original(**overrides)
    return Built(render_original(original), plain_truth(original))


def make_ordinary_mail(**overrides: Any) -> Built:
    """Non-PEC mail that lands in a PEC mailbox."""
    defaults: dict[str, Any] = {
        "sender": "newsletter@example.com",
        "recipients": (Recipient(SENDER, RecipientType.CERTIFICATO),),
        "subject": "Offerte di marzo",
        "msgid": "<newsletter.1@example.com>",
        "attachments": (),
        "requested_variant": None,
    }
    defaults.update(overrides)
    return make_sent_copy(**defaults)


def _provider(chosen: str | Provider) -> Provider:
    return provider(chosen) if isinstance(chosen, str) else chosen
