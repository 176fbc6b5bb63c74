"""PEC message rendering: daticert.xml, the human notice, the signed layout.

A receipt leaves here as (signed part, then top-level message)::

    multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256
    ├── multipart/mixed                     <- signed_part(): these exact bytes are signed
    │   ├── text/plain | multipart/alternative
    │   ├── application/xml; name="daticert.xml"
    │   └── message/rfc822; name="postacert.eml"   (envelopes, completa receipts)
    └── application/pkcs7-signature; name="smime.p7s"

The quirks real providers show are :class:`RenderOptions` fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from enum import StrEnum
from xml.sax.saxutils import escape, quoteattr

from pipeline.core.model import ErrorCode, Kind, ReceiptVariant, Recipient
from pipeline.simulate import mime
from pipeline.simulate.mime import CRLF, Part, TransferEncoding


class PartName(StrEnum):
    TEXT = "text"
    DATICERT = "daticert"
    ORIGINAL = "original"


class HeaderStyle(StrEnum):
    CANONICAL = "canonical"  # X-Ricevuta, X-TipoRicevuta
    LOWER = "lower"  # x-ricevuta, X-Tiporicevuta


class LineEnding(StrEnum):
    CRLF = "crlf"
    LF = "lf"  # as a mailbox store on disk keeps it; the signature covers the CRLF form


_LOWER_NAMES = {
    "X-Ricevuta": "x-ricevuta",
    "X-Trasporto": "x-trasporto",
    "X-TipoRicevuta": "X-Tiporicevuta",
    "X-Riferimento-Message-ID": "X-Riferimento-Message-Id",
    "X-VerificaSicurezza": "X-Verificasicurezza",
    "X-Mittente": "x-mittente",
}


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How one provider lays its messages out. Every combination is valid PEC."""

    part_order: tuple[PartName, ...] = (PartName.TEXT, PartName.DATICERT, PartName.ORIGINAL)
    legacy_pkcs7: bool = False  # application/x-pkcs7-signature
    header_style: HeaderStyle = HeaderStyle.CANONICAL
    line_ending: LineEnding = LineEnding.CRLF
    daticert_encoding: TransferEncoding = TransferEncoding.BASE64
    text_encoding: TransferEncoding = TransferEncoding.QUOTED_PRINTABLE
    html: bool = False  # multipart/alternative text + html notice
    doctype: bool = False  # <!DOCTYPE postacert SYSTEM "Daticert.dtd">
    daticert_charset: str = "UTF-8"  # or "ISO-8859-1"
    fold: bool = True  # fold long headers and Content-Type parameters

    def header_name(self, name: str) -> str:
        if self.header_style is HeaderStyle.LOWER:
            return _LOWER_NAMES.get(name, name)
        return name

    @property
    def signature_type(self) -> str:
        kind = "x-pkcs7-signature" if self.legacy_pkcs7 else "pkcs7-signature"
        return f"application/{kind}"


@dataclass(frozen=True, slots=True)
class Daticert:
    """The content of ``daticert.xml``; ``timestamp`` is shown in its own UTC offset."""

    kind: Kind
    error: ErrorCode
    sender: str
    recipients: tuple[Recipient, ...]
    subject: str
    provider: str
    timestamp: datetime
    identificativo: str
    msgid: str
    variant: ReceiptVariant | None = None
    delivery_recipient: str | None = None
    error_detail: str | None = None


def zona(at: datetime) -> str:
    """``+0100`` for a time in CET."""
    offset = at.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def render_daticert(
    data: Daticert, *, charset: str = "UTF-8", doctype: bool = False, ascii_only: bool = False
) -> bytes:
    """daticert.xml bytes (``\\n`` line ends); ``ascii_only`` turns non-ASCII into ``&#NNN;``.

    >>> render_daticert(d)  # doctest: +SKIP
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<postacert tipo="accettazione" errore="nessuno">...'
    """
    at = data.timestamp
    lines = [f'<?xml version="1.0" encoding="{charset}"?>']
    if doctype:
        lines.append('<!DOCTYPE postacert SYSTEM "Daticert.dtd">')
    lines.append(f"<postacert tipo={quoteattr(data.kind)} errore={quoteattr(data.error)}>")
    lines.append("  <intestazione>")
    lines.append(f"    <mittente>{escape(data.sender)}</mittente>")
    lines.extend(
        f'    <destinatari tipo="{r.type}">{escape(r.address)}</destinatari>'
        for r in data.recipients
    )
    lines.append(f"    <risposte>{escape(data.sender)}</risposte>")
    lines.append(f"    <oggetto>{escape(data.subject)}</oggetto>")
    lines.append("  </intestazione>")
    lines.append("  <dati>")
    lines.append(f"    <gestore-emittente>{escape(data.provider)}</gestore-emittente>")
    lines.append(
        f'    <data zona="{zona(at)}"><giorno>{at:%d/%m/%Y}</giorno><ora>{at:%H:%M:%S}</ora></data>'
    )
    lines.append(f"    <identificativo>{escape(data.identificativo)}</identificativo>")
    lines.append(f"    <msgid>{escape(data.msgid)}</msgid>")
    if data.variant is not None:
        lines.append(f'    <ricevuta tipo="{data.variant}"/>')
    if data.delivery_recipient is not None:
        lines.append(f"    <consegna>{escape(data.delivery_recipient)}</consegna>")
    if data.error_detail is not None:
        lines.append(f"    <errore-esteso>{escape(data.error_detail)}</errore-esteso>")
    lines.append("  </dati>")
    lines.append("</postacert>")
    text = "\n".join(lines) + "\n"
    if ascii_only:
        return text.encode("ascii", "xmlcharrefreplace")
    return text.encode(charset, "xmlcharrefreplace")


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    """What the user's client submitted: plain RFC 5322 mail, as kept in the Sent folder."""

    sender: str
    recipients: tuple[Recipient, ...]
    subject: str
    msgid: str  # "<20240301100000.1a2b@client.example>"
    date: datetime
    body: str
    attachments: tuple[Attachment, ...] = ()
    requested_variant: ReceiptVariant | None = ReceiptVariant.COMPLETA  # None: not PEC-aware


def render_original(
    msg: OriginalMessage, *, message_id: str | None = None, breve: bool = False
) -> bytes:
    """The submitted message (CRLF). Providers pass ``message_id=<identificativo>``.

    ``breve`` replaces every attachment with a text part holding its SHA-1 hash.
    """
    headers = [
        mime.header("Date", format_datetime(msg.date)),
        mime.header("From", msg.sender),
        mime.header("To", ", ".join(r.address for r in msg.recipients)),
        mime.header("Subject", msg.subject),
        mime.header("Message-ID", message_id or msg.msgid),
    ]
    if msg.requested_variant is not None:
        headers.append(f"X-TipoRicevuta: {msg.requested_variant}")
    headers.append("MIME-Version: 1.0")
    text = mime.leaf(
        "text/plain",
        msg.body.encode(),
        TransferEncoding.QUOTED_PRINTABLE,
        params=[("charset", "UTF-8")],
    )
    if not msg.attachments:
        return Part((*headers, *text.headers), text.body).to_bytes()
    parts = [text]
    for attachment in msg.attachments:
        if breve:
            digest = hashlib.sha1(attachment.data).hexdigest()  # noqa: S324
            parts.append(
                mime.leaf(
                    "text/plain",
                    f"SHA1: {digest}\n".encode(),
                    TransferEncoding.SEVEN_BIT,
                    filename=attachment.filename + ".hash",
                )
            )
        else:
            parts.append(
                mime.leaf(
                    attachment.mime_type,
                    attachment.data,
                    TransferEncoding.BASE64,
                    params=[("name", attachment.filename)],
                    filename=attachment.filename,
                )
            )
    body = mime.multipart("mixed", parts, "orig:" + msg.msgid, fold=False)
    return Part((*headers, *body.headers), body.body).to_bytes()


def _notice_part(text: str, opts: RenderOptions, tag: str) -> Part:
    plain = mime.leaf(
        "text/plain",
        text.encode(),
        opts.text_encoding,
        params=[("charset", "UTF-8"), ("format", "flowed")],
    )
    if not opts.html:
        return plain
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n") if p)
    html = f"<html><head><title>PEC</title></head><body>{paragraphs}</body></html>\n"
    html_part = mime.leaf(
        "text/html", html.encode(), opts.text_encoding, params=[("charset", "UTF-8")]
    )
    return mime.multipart("alternative", [plain, html_part], "alt:" + tag, fold=opts.fold)


def signed_part(
    notice: str,
    daticert: Daticert,
    original: bytes | None,
    opts: RenderOptions,
    *,
    malformed_daticert: bool = False,
) -> bytes:
    """The ``multipart/mixed`` entity, CRLF, exactly the bytes the CMS signature covers.

    ``malformed_daticert`` cuts the XML short (unclosed ``<dati>``), still validly signed.
    """
    ascii_only = opts.daticert_encoding is TransferEncoding.SEVEN_BIT
    xml = render_daticert(
        daticert, charset=opts.daticert_charset, doctype=opts.doctype, ascii_only=ascii_only
    )
    if malformed_daticert:
        xml = xml[: xml.index(b"</dati>")]
    tag = f"{daticert.identificativo}:{daticert.kind}:{daticert.delivery_recipient}"
    parts = {
        PartName.TEXT: _notice_part(notice, opts, tag),
        PartName.DATICERT: mime.leaf(
            "application/xml",
            xml,
            opts.daticert_encoding,
            params=[("name", "daticert.xml")],
            filename="daticert.xml",
            inline=True,
        ),
    }
    if original is not None:
        parts[PartName.ORIGINAL] = mime.leaf(
            "message/rfc822",
            original,
            TransferEncoding.SEVEN_BIT,
            params=[("name", "postacert.eml")],
            filename="postacert.eml",
            inline=True,
        )
    ordered = [parts[name] for name in opts.part_order if name in parts]
    return mime.multipart("mixed", ordered, "mixed:" + tag, fold=opts.fold).to_bytes()


def assemble(
    headers: Sequence[tuple[str, str]],
    signed: bytes,
    signature: bytes,
    *,
    micalg: str,
    opts: RenderOptions,
    tag: str,
) -> bytes:
    """The whole message: top-level headers, then ``signed`` and ``smime.p7s`` in a
    ``multipart/signed``. Line endings follow ``opts.line_ending``."""
    lines = [mime.header(opts.header_name(n), v, fold=opts.fold) for n, v in headers]
    mark = mime.boundary("signed:" + tag)
    lines.append("MIME-Version: 1.0")
    lines.append(
        mime.content_type(
            "multipart/signed",
            [("protocol", opts.signature_type), ("micalg", micalg), ("boundary", mark)],
            fold=opts.fold,
        )
    )
    smime = mime.leaf(
        opts.signature_type,
        signature,
        TransferEncoding.BASE64,
        params=[("name", "smime.p7s")],
        filename="smime.p7s",
    )
    delimiter = b"--" + mark.encode()
    raw = (
        CRLF.join(line.encode("ascii") for line in lines)
        + CRLF
        + CRLF
        + b"This is an S/MIME signed message"
        + CRLF
        + CRLF
        + delimiter
        + CRLF
        + signed
        + CRLF
        + delimiter
        + CRLF
        + smime.to_bytes()
        + CRLF
        + delimiter
        + b"--"
        + CRLF
    )
    return mime.to_lf(raw) if opts.line_ending is LineEnding.LF else raw
