"""Parse any message a PEC mailbox can hold into a :class:`PecMessage`. Never raises.

Classification follows the headers (``X-Trasporto: posta-certificata``,
``X-Ricevuta: avvenuta-consegna``; names case-insensitive) AND daticert.xml, which is
signed and therefore the authority: when they disagree, daticert wins and the message
carries a ``header-daticert-mismatch`` defect. The Subject is never used to classify:
"AVVISO DI NON ACCETTAZIONE:" contains "ACCETTAZIONE:".

Other unsigned headers that restate daticert are cross-checked too: ``X-TipoRicevuta``
against ``<ricevuta tipo>`` (``header-variant-mismatch``) and ``X-Mittente`` against
``<mittente>`` (``header-sender-mismatch``). An envelope, or a ``completa`` delivery
receipt, without its ``message/rfc822`` postacert.eml part is ``postacert-missing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from pipeline.core.daticert import Daticert, parse_daticert
from pipeline.core.defects import DefectCode
from pipeline.core.keys import normalise_address, normalise_identificativo, normalise_msgid
from pipeline.core.mime import (
    Headers,
    Part,
    decode_words,
    entity_at,
    multipart_spans,
    parse_content_type,
    split_entity,
)
from pipeline.core.model import (
    Defect,
    ErrorCode,
    Kind,
    PecMessage,
    ReceiptVariant,
    Recipient,
    RecipientType,
)

SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_KINDS = {kind.value: kind for kind in Kind if kind is not Kind.NOT_PEC}
_TRANSPORT = {"posta-certificata": Kind.POSTA_CERTIFICATA, "errore": Kind.ERRORE}
# Enum(value) by a dict: the same member (or none) without Enum.__call__ per message.
_ERRORS = {code.value: code for code in ErrorCode}
_VARIANTS = {variant.value: variant for variant in ReceiptVariant}
_RECIPIENT_TYPES = {kind.value: kind for kind in RecipientType}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps for hostile input; a message over a cap is reported, not processed."""

    max_message_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = 256 * 1024
    max_daticert_bytes: int = 256 * 1024
    max_signature_bytes: int = 1024 * 1024
    max_parts: int = 64


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Layout:
    """Where things are in a message: found once, shared by :func:`parse` and verification.

    ``signed_content`` is the first part of ``multipart/signed`` exactly as stored (not yet
    CRLF-canonicalised; a view of the message's bytes, not a copy); ``signature`` the
    decoded DER of ``smime.p7s``; ``children`` the parts of the signed (or unsigned)
    ``multipart/mixed``.
    """

    headers: Headers
    signed: bool
    signed_content: memoryview | None
    signature: bytes | None
    children: tuple[Part, ...]
    defects: tuple[Defect, ...]


def read_layout(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Layout:
    """Find the headers, the signed part, the signature and the parts of a message."""
    defects: list[Defect] = []
    if len(raw) > limits.max_message_bytes:
        top = split_entity(raw[: limits.max_header_bytes], max_header_bytes=limits.max_header_bytes)
        defects.append(Defect(DefectCode.MESSAGE_TOO_LARGE, f"{len(raw)} bytes"))
        return Layout(top.headers, False, None, None, (), tuple(defects))
    top = split_entity(raw, max_header_bytes=limits.max_header_bytes)
    if top.header_overflow:
        defects.append(
            Defect(DefectCode.HEADERS_TOO_LARGE, f"over {limits.max_header_bytes} bytes")
        )
    ctype, params = top.content_type
    if ctype == "multipart/signed":
        return _read_signed(top, params.get("boundary", ""), limits, defects)
    children: tuple[Part, ...] = ()
    if ctype.startswith("multipart/"):
        children = _children(top, params.get("boundary", ""), limits, defects)
    return Layout(top.headers, False, None, None, children, tuple(defects))


def _read_signed(top: Part, boundary: str, limits: Limits, defects: list[Defect]) -> Layout:
    source, max_header = top.source, limits.max_header_bytes
    spans = multipart_spans(source, top.start, top.end, boundary, limits.max_parts)
    if not spans:
        defects.append(Defect(DefectCode.MIME_MALFORMED, "multipart/signed without its boundary"))
        return Layout(top.headers, True, None, None, (), tuple(defects))
    signature = None
    for start, end in spans[1:]:
        part = entity_at(source, start, end, max_header_bytes=max_header)
        if part.content_type[0] in SIGNATURE_TYPES:
            signature = part.decoded(limits.max_signature_bytes)
            if signature is None:
                defects.append(
                    Defect(DefectCode.SIGNATURE_UNDECODABLE, "smime.p7s is not valid base64")
                )
            break
    else:
        defects.append(
            Defect(DefectCode.SIGNATURE_PART_MISSING, "multipart/signed without smime.p7s")
        )
    content_start, content_end = spans[0]
    content = entity_at(source, content_start, content_end, max_header_bytes=max_header)
    ctype, params = content.content_type
    if ctype.startswith("multipart/"):
        children = _children(content, params.get("boundary", ""), limits, defects)
    else:
        children = (content,)
    signed_content = memoryview(source)[content_start:content_end]
    return Layout(top.headers, True, signed_content, signature, children, tuple(defects))


def _children(
    entity: Part, boundary: str, limits: Limits, defects: list[Defect]
) -> tuple[Part, ...]:
    spans = multipart_spans(entity.source, entity.start, entity.end, boundary, limits.max_parts)
    if spans is None:
        defects.append(Defect(DefectCode.MIME_MALFORMED, "multipart body without its boundary"))
        return ()
    max_header = limits.max_header_bytes
    return tuple(
        entity_at(entity.source, start, end, max_header_bytes=max_header) for start, end in spans
    )


def part_filename(part: Part) -> str:
    """The part's file name from Content-Disposition or Content-Type, lower-cased."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = part.headers.get(header)
        if value and param in value.lower():
            name = parse_content_type(value)[1].get(param)
            if name:
                return decode_words(name).strip().lower()
    return ""


def find_daticert(children: tuple[Part, ...]) -> Part | None:
    """``daticert.xml`` by name; else the only ``application/xml`` part."""
    xml_parts = []
    for part in children:
        if part_filename(part) == "daticert.xml":
            return part
        if part.content_type[0] in ("application/xml", "text/xml"):
            xml_parts.append(part)
    return xml_parts[0] if len(xml_parts) == 1 else None


def parse(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> PecMessage:
    """Parse one message (bytes as stored in the mailbox). Bad input yields defects."""
    return parse_layout(read_layout(raw, limits), limits)


def parse_layout(layout: Layout, limits: Limits = DEFAULT_LIMITS) -> PecMessage:
    headers = layout.headers
    defects = list(layout.defects)
    header_kind = _header_kind(headers, defects)
    daticert = None
    part = find_daticert(layout.children)
    if part is not None:
        data = part.decoded(limits.max_daticert_bytes)
        if data is None:
            defects.append(Defect(DefectCode.DATICERT_TOO_LARGE_OR_UNDECODABLE))
        else:
            daticert, xml_defects = parse_daticert(data)
            defects.extend(xml_defects)
    kind = _kind(header_kind, daticert, defects)
    if kind is Kind.NOT_PEC:
        return _ordinary(headers, tuple(defects))
    if daticert is None and part is None:
        defects.append(Defect(DefectCode.DATICERT_MISSING, "a PEC message without daticert.xml"))
    if not layout.signed:
        defects.append(
            Defect(DefectCode.SIGNATURE_MISSING, "a PEC message that is not multipart/signed")
        )
    return _pec(kind, headers, daticert or _EMPTY, defects, layout.children)


_EMPTY = Daticert(None, None, None, (), None, None, None, None, None, None, None, None)


def _header_kind(headers: Headers, defects: list[Defect]) -> Kind | None:
    transport = (headers.get("x-trasporto") or "").strip().lower()
    ricevuta = (headers.get("x-ricevuta") or "").strip().lower()
    if transport and ricevuta:
        defects.append(Defect(DefectCode.HEADER_CONFLICT, "both X-Trasporto and X-Ricevuta"))
    if transport:
        if transport in _TRANSPORT:
            return _TRANSPORT[transport]
        defects.append(Defect(DefectCode.HEADER_UNKNOWN_KIND, f"X-Trasporto: {transport[:60]}"))
    if ricevuta:
        kind = _KINDS.get(ricevuta)
        if kind is not None and kind.is_receipt:
            return kind
        defects.append(Defect(DefectCode.HEADER_UNKNOWN_KIND, f"X-Ricevuta: {ricevuta[:60]}"))
    return None


def _kind(header_kind: Kind | None, daticert: Daticert | None, defects: list[Defect]) -> Kind:
    tipo = (daticert.tipo or "").strip().lower() if daticert else ""
    daticert_kind = _KINDS.get(tipo)
    if tipo and daticert_kind is None:
        defects.append(Defect(DefectCode.DATICERT_UNKNOWN_KIND, f"tipo={tipo[:60]!r}"))
    if daticert_kind is not None:
        if header_kind is not None and header_kind is not daticert_kind:
            defects.append(
                Defect(
                    DefectCode.HEADER_DATICERT_MISMATCH,
                    f"headers say {header_kind.value}, daticert says {daticert_kind.value}",
                )
            )
        return daticert_kind
    return header_kind or Kind.NOT_PEC


def _ordinary(headers: Headers, defects: tuple[Defect, ...]) -> PecMessage:
    """Ordinary mail, e.g. the user's own message in the Sent folder."""
    recipients = tuple(
        Recipient(address, RecipientType.CERTIFICATO)
        for _, addr in getaddresses(list(headers.get_all("to") + headers.get_all("cc")))
        if (address := normalise_address(addr))
    )
    return PecMessage(
        kind=Kind.NOT_PEC,
        msgid=normalise_msgid(headers.get("message-id")),
        identificativo=None,
        provider=None,
        sender=normalise_address(parseaddr(headers.get("from") or "")[1]),
        recipients=recipients,
        delivery_recipient=None,
        timestamp=_date(headers.get("date")),
        variant=None,
        error=None,
        error_detail=None,
        subject=decode_words(headers.get("subject") or "") or None,
        message_id=normalise_msgid(headers.get("message-id")),
        virus=False,
        defects=defects,
    )


def _date(value: str | None) -> datetime | None:
    """An RFC 5322 Date with a zone, else ``None`` (a naive date is no evidence of time)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _pec(
    kind: Kind, headers: Headers, dc: Daticert, defects: list[Defect], children: tuple[Part, ...]
) -> PecMessage:
    msgid = _msgid(kind, headers, dc, defects)
    error = _error(dc, defects)
    virus = error is ErrorCode.VIRUS or (
        (headers.get("x-verificasicurezza") or "").strip().lower() == "errore"
    )
    asked = headers.get("x-tiporicevuta")
    variant = _variant(dc.ricevuta or asked, defects)
    _cross_check(asked, headers.get("x-mittente"), dc, defects)
    if _carries_original(kind, variant) and not any(
        part.content_type[0] == "message/rfc822" for part in children
    ):
        defects.append(Defect(DefectCode.POSTACERT_MISSING, f"{kind.value} without postacert.eml"))
    recipients = tuple(
        Recipient(address, _recipient_type(tipo, defects))
        for raw_address, tipo in dc.destinatari
        if (address := normalise_address(raw_address))
    )
    sender = normalise_address(dc.mittente) or normalise_address(
        parseaddr(headers.get("x-mittente") or headers.get("reply-to") or "")[1]
    )
    if dc.timestamp is None and dc.tipo is not None:
        defects.append(Defect(DefectCode.DATICERT_NO_TIMESTAMP))
    return PecMessage(
        kind=kind,
        msgid=msgid,
        identificativo=normalise_identificativo(dc.identificativo),
        provider=dc.gestore,
        sender=sender,
        recipients=recipients,
        delivery_recipient=normalise_address(dc.consegna),
        timestamp=dc.timestamp,
        variant=variant,
        error=error,
        error_detail=dc.errore_esteso,
        subject=dc.oggetto
        if dc.oggetto is not None
        else decode_words(headers.get("subject") or "") or None,
        message_id=normalise_msgid(headers.get("message-id")),
        virus=virus,
        defects=tuple(defects),
    )


def _cross_check(
    asked: str | None, claimed_sender: str | None, dc: Daticert, defects: list[Defect]
) -> None:
    """Unsigned headers that restate daticert must agree with it, where both are present.

    ``X-TipoRicevuta: completa`` vs ``<ricevuta tipo="completa"/>``, and
    ``X-Mittente: mario.rossi@pec.aruba.it`` vs ``<mittente>``: case-insensitive.
    """
    header_variant = (asked or "").strip().lower()
    daticert_variant = (dc.ricevuta or "").strip().lower()
    if header_variant and daticert_variant and header_variant != daticert_variant:
        defects.append(
            Defect(
                DefectCode.HEADER_VARIANT_MISMATCH,
                f"X-TipoRicevuta {header_variant[:30]}, daticert ricevuta {daticert_variant[:30]}",
            )
        )
    header_sender = _bare_address(claimed_sender)
    daticert_sender = _bare_address(dc.mittente)
    if header_sender and daticert_sender and header_sender != daticert_sender:
        defects.append(
            Defect(
                DefectCode.HEADER_SENDER_MISMATCH,
                f"X-Mittente {header_sender[:100]}, daticert mittente {daticert_sender[:100]}",
            )
        )


def _bare_address(value: str | None) -> str | None:
    """``Mario.Rossi@PEC.aruba.it`` or ``"Mario" <mario.rossi@pec.aruba.it>``, lower-cased."""
    value = (value or "").strip()
    if not value:
        return None
    if not any(c in value for c in '<",( '):
        return normalise_address(value)  # the usual bare address: no parseaddr
    return normalise_address(parseaddr(value)[1])


def _carries_original(kind: Kind, variant: ReceiptVariant | None) -> bool:
    """An envelope and a ``completa`` delivery receipt attach the original message."""
    return kind is Kind.POSTA_CERTIFICATA or (
        kind is Kind.AVVENUTA_CONSEGNA and variant is ReceiptVariant.COMPLETA
    )


def _msgid(kind: Kind, headers: Headers, dc: Daticert, defects: list[Defect]) -> str | None:
    from_daticert = normalise_msgid(dc.msgid)
    from_header = normalise_msgid(headers.get("x-riferimento-message-id"))
    if from_daticert and from_header and from_daticert != from_header:
        defects.append(
            Defect(
                DefectCode.MSGID_MISMATCH,
                f"X-Riferimento-Message-ID {from_header} but daticert msgid {from_daticert}",
            )
        )
    if from_daticert is None and kind.is_receipt and dc.tipo is not None:
        defects.append(Defect(DefectCode.DATICERT_NO_MSGID))
    return from_daticert or from_header


def _error(dc: Daticert, defects: list[Defect]) -> ErrorCode | None:
    if dc.errore is None:
        return None
    try:
        return _ERRORS[dc.errore.strip().lower()]
    except KeyError:
        defects.append(Defect(DefectCode.DATICERT_UNKNOWN_ERROR, f"errore={dc.errore[:60]!r}"))
        return ErrorCode.ALTRO


def _variant(value: str | None, defects: list[Defect]) -> ReceiptVariant | None:
    if not value:
        return None
    try:
        return _VARIANTS[value.strip().lower()]
    except KeyError:
        defects.append(Defect(DefectCode.UNKNOWN_RECEIPT_VARIANT, value[:60]))
        return None


def _recipient_type(tipo: str | None, defects: list[Defect]) -> RecipientType:
    try:
        return _RECIPIENT_TYPES[(tipo or "").strip().lower()]
    except KeyError:
        # A recipient of unknown type is assumed certified: waiting for a receipt that
        # never comes is visible (overdue); ignoring one that does come is not.
        defects.append(Defect(DefectCode.DATICERT_UNKNOWN_RECIPIENT_TYPE, f"tipo={tipo!r}"))
        return RecipientType.CERTIFICATO
