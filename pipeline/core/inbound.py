"""Certified mail received: what an envelope (or anomaly envelope) in INBOX brings.

A ``posta-certificata`` envelope, or an ``errore`` anomaly envelope (*busta di
anomalia*: ordinary mail that reached a PEC mailbox), carries the original message as
``postacert.eml``::

    multipart/signed
    └── multipart/mixed
        ├── text/plain                       the provider's notice
        ├── application/xml  daticert.xml
        └── message/rfc822   postacert.eml   <- the original: its attachments are described
            └── multipart/mixed
                ├── text/plain               the body (not an attachment)
                └── application/pdf  fattura.pdf

:func:`describe_inbound` reads that original and lists its attachments: name, content
type, decoded size and SHA-256, never their content (:class:`AttachmentInfo`). The
bytes stay available to the core (:class:`OriginalPart`) for the SdI reader, and only
there. Nesting, part count and decoded sizes are capped like the rest of the parser.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.core.defects import DefectCode
from pipeline.core.mime import Part, decode_words, entity_at, multipart_spans, parse_content_type
from pipeline.core.model import Defect, Kind, PecMessage
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits

MAX_DEPTH = 8
MAX_ATTACHMENTS = 256


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One attachment of the original message, described (its content never leaves)."""

    name: str | None  # the file name as given (case kept), RFC 2047 decoded
    content_type: str
    size: int  # decoded bytes
    sha256: str  # of the decoded bytes


@dataclass(frozen=True, slots=True)
class OriginalPart:
    """An attachment with its decoded bytes: for the core's own readers (SdI), never
    published. ``data`` is ``None`` when it could not be decoded within the limits, or
    was not asked for (``describe_inbound``'s ``keep``)."""

    info: AttachmentInfo
    data: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class InboundContent:
    """What postacert.eml holds: its own subject and sender, and its attachments."""

    found: bool  # a message/rfc822 part was there
    subject: str | None
    parts: tuple[OriginalPart, ...]
    defects: tuple[Defect, ...]

    @property
    def attachments(self) -> tuple[AttachmentInfo, ...]:
        return tuple(part.info for part in self.parts)


def is_inbound(message: PecMessage, folder_role: str | None, folder: str) -> bool:
    """An envelope or anomaly envelope in the INBOX (``folder-role: inbox``)."""
    in_inbox = folder_role == "inbox" if folder_role else folder.strip().lower() == "inbox"
    return in_inbox and message.kind in (Kind.POSTA_CERTIFICATA, Kind.ERRORE)


def describe_inbound(
    layout: Layout,
    limits: Limits = DEFAULT_LIMITS,
    keep: Callable[[str | None], bool] = lambda _name: False,
) -> InboundContent:
    """The original message of an envelope (``layout`` from :func:`parse.read_layout`).

    Only the attachments whose name ``keep`` accepts keep their decoded bytes (the SdI's
    files): a 50 MB envelope's PDFs are hashed and let go.
    """
    original = next((c for c in layout.children if c.content_type[0] == "message/rfc822"), None)
    if original is None:
        return InboundContent(False, None, (), (Defect(DefectCode.POSTACERT_MISSING),))
    defects: list[Defect] = []
    cte = (original.headers.get("content-transfer-encoding") or "").strip().lower()
    if cte in ("base64", "quoted-printable"):  # not allowed by RFC 2046, seen anyway
        data = original.decoded(limits.max_message_bytes)
        if data is None:
            return InboundContent(True, None, (), (Defect(DefectCode.POSTACERT_UNDECODABLE, cte),))
        source, start, end = data, 0, len(data)
    else:
        source, start, end = original.source, original.start, original.end
    message = entity_at(source, start, end, max_header_bytes=limits.max_header_bytes)
    subject = decode_words(message.headers.get("subject") or "") or None
    parts: list[OriginalPart] = []
    _walk(message, 0, True, _Walk(limits, keep, parts, defects))
    return InboundContent(True, subject, tuple(parts), tuple(defects))


def describe_message(
    raw: bytes,
    limits: Limits = DEFAULT_LIMITS,
    keep: Callable[[str | None], bool] = lambda _name: False,
) -> InboundContent:
    """The attachments of a whole message (a Sent copy is the original itself, no
    envelope around it), as :func:`describe_inbound` lists those of ``postacert.eml``."""
    message = entity_at(raw, 0, len(raw), max_header_bytes=limits.max_header_bytes)
    subject = decode_words(message.headers.get("subject") or "") or None
    parts: list[OriginalPart] = []
    defects: list[Defect] = []
    _walk(message, 0, True, _Walk(limits, keep, parts, defects))
    return InboundContent(True, subject, tuple(parts), tuple(defects))


@dataclass(frozen=True, slots=True)
class _Walk:
    limits: Limits
    keep: Callable[[str | None], bool]
    parts: list[OriginalPart]
    defects: list[Defect]


def _walk(entity: Part, depth: int, first_text: bool, walk: _Walk) -> bool:
    """Collect the attachments under ``entity``; returns whether the body text (the
    first text part without a name) is still to be found."""
    limits, parts, defects = walk.limits, walk.parts, walk.defects
    ctype, params = entity.content_type
    if ctype.startswith("multipart/"):
        if depth >= MAX_DEPTH:
            defects.append(Defect(DefectCode.ATTACHMENTS_TOO_DEEP, f"deeper than {MAX_DEPTH}"))
            return first_text
        spans = multipart_spans(
            entity.source, entity.start, entity.end, params.get("boundary", ""), limits.max_parts
        )
        if spans is None:
            defects.append(Defect(DefectCode.POSTACERT_MIME_MALFORMED, ctype))
            return first_text
        for start, end in spans:
            child = entity_at(entity.source, start, end, max_header_bytes=limits.max_header_bytes)
            first_text = _walk(child, depth + 1, first_text, walk)
        return first_text
    name = attachment_name(entity)
    disposition = (entity.headers.get("content-disposition") or "").strip().lower()
    is_body = (
        name is None
        and not disposition.startswith("attachment")
        and ctype.startswith("text/")
        and (first_text or ctype == "text/html")
    )
    if is_body:
        return False
    if len(parts) >= MAX_ATTACHMENTS:
        if len(parts) == MAX_ATTACHMENTS:
            defects.append(Defect(DefectCode.TOO_MANY_ATTACHMENTS, f"over {MAX_ATTACHMENTS}"))
        return first_text
    data = entity.decoded(limits.max_message_bytes)
    if data is None:
        defects.append(Defect(DefectCode.ATTACHMENT_UNDECODABLE, (name or ctype)[:100]))
        raw = bytes(entity.view)
        info = AttachmentInfo(name, ctype, len(raw), hashlib.sha256(raw).hexdigest())
    else:
        info = AttachmentInfo(name, ctype, len(data), hashlib.sha256(data).hexdigest())
    parts.append(OriginalPart(info, data if walk.keep(name) else None))
    return first_text


def attachment_name(part: Part) -> str | None:
    """``Content-Disposition: attachment; filename="IT01234567890_00001_RC_001.xml"``
    (or ``Content-Type: ...; name=...``): the name with its case kept, RFC 2047 and
    RFC 2231 (``filename*=UTF-8''...``) decoded, any directory part dropped."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = part.headers.get(header)
        if not value:
            continue
        params = parse_content_type(value)[1]
        name = params.get(param)
        if name is None and (extended := params.get(param + "*")):
            name = _rfc2231(extended)
        if name:
            cleaned = decode_words(name).strip().replace("\\", "/").rpartition("/")[2]
            return cleaned[:255] or None
    return None


def _rfc2231(value: str) -> str:
    """``UTF-8''fattura%20n.1.pdf`` -> ``fattura n.1.pdf``."""
    charset, _, rest = value.partition("'")
    _, _, text = rest.partition("'")
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%" and _HEX.fullmatch(text[i + 1 : i + 3]):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(text[i].encode("utf-8", "surrogateescape"))
            i += 1
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


_HEX = re.compile(r"[0-9A-Fa-f]{2}")
