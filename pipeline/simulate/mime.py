"""Byte-exact MIME building blocks: headers, transfer encodings, multiparts.

Everything is built with CRLF line endings, by hand rather than with ``email.generator``,
so the bytes are exactly what a provider would emit and exactly what was signed::

    Subject: =?UTF-8?Q?CONSEGNA:_Fattura_n.=C2=B042?=
    Content-Type: multipart/signed; protocol="application/pkcs7-signature";
    \tmicalg=sha-256; boundary="----=_Part_3fa2c1d0e4b5a697"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

CRLF = b"\r\n"
MAX_LINE = 76


class TransferEncoding(StrEnum):
    BASE64 = "base64"
    QUOTED_PRINTABLE = "quoted-printable"
    SEVEN_BIT = "7bit"


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: its header lines (without line endings) and its encoded body."""

    headers: tuple[str, ...]
    body: bytes

    def to_bytes(self) -> bytes:
        head = CRLF.join(h.encode("ascii") for h in self.headers)
        return head + CRLF + CRLF + self.body


def boundary(seed: str) -> str:
    """A deterministic boundary that cannot occur in base64 or quoted-printable bodies."""
    return "----=_Part_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def crlf(text: str) -> str:
    """Normalise any line endings in ``text`` to CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def encode_body(data: bytes, encoding: TransferEncoding) -> bytes:
    """Transfer-encode ``data`` (text given with ``\\n`` line breaks); output uses CRLF."""
    if encoding is TransferEncoding.BASE64:
        encoded = base64.encodebytes(data)
    elif encoding is TransferEncoding.QUOTED_PRINTABLE:
        encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True)
        if not encoded.endswith(b"\n"):
            encoded += b"\n"
    else:
        encoded = data.replace(b"\r\n", b"\n")
        if not encoded.endswith(b"\n"):
            encoded += b"\n"
    return encoded.replace(b"\n", CRLF)


def _q_word(text: str) -> list[str]:
    """RFC 2047 Q encoded-words, each at most 75 characters, split on character bounds."""
    words: list[str] = []
    current = ""
    for char in text:
        raw = char.encode("utf-8")
        if char == " ":
            piece = "_"
        elif char.isascii() and (char.isalnum() or char in "!*+-/.,:;"):
            piece = char
        else:
            piece = "".join(f"={b:02X}" for b in raw)
        if len(current) + len(piece) > 75 - len("=?UTF-8?Q??="):
            words.append(f"=?UTF-8?Q?{current}?=")
            current = ""
        current += piece
    words.append(f"=?UTF-8?Q?{current}?=")
    return words


def header(name: str, value: str, *, fold: bool = True) -> str:
    """One header field, Q-encoded if not ASCII, folded at spaces past 78 columns.

    The result may contain ``\\r\\n`` followed by whitespace (a folded header).
    """
    if not value.isascii():
        return f"{name}: " + "\r\n ".join(_q_word(value))
    line = f"{name}: {value}"
    if not fold or len(line) <= 78:
        return line
    out: list[str] = []
    current = ""
    for index, word in enumerate(line.split(" ")):
        if index > 1 and len(current) + 1 + len(word) > 78:  # never fold right after "Name:"
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out)


def content_type(value: str, params: Sequence[tuple[str, str]], *, fold: bool) -> str:
    """``Content-Type`` with quoted parameters, one per line when ``fold``."""
    rendered = [f"{k}={v}" if k == "micalg" else f'{k}="{v}"' for k, v in params]
    if not rendered:
        return f"Content-Type: {value}"
    if fold:
        return f"Content-Type: {value};\r\n\t" + ";\r\n\t".join(rendered)
    return f"Content-Type: {value}; " + "; ".join(rendered)


def multipart(subtype: str, parts: Sequence[Part], tag: str, *, fold: bool) -> Part:
    """A multipart entity whose body ends with the close delimiter and one CRLF."""
    mark = boundary(tag)
    body = b"This is a multi-part message in MIME format." + CRLF
    for part in parts:
        body += CRLF + b"--" + mark.encode() + CRLF + part.to_bytes()
    body += CRLF + b"--" + mark.encode() + b"--" + CRLF
    return Part((content_type(f"multipart/{subtype}", [("boundary", mark)], fold=fold),), body)


def leaf(
    mime_type: str,
    data: bytes,
    encoding: TransferEncoding,
    *,
    params: Sequence[tuple[str, str]] = (),
    filename: str | None = None,
    inline: bool = False,
    fold: bool = False,
) -> Part:
    """A non-multipart entity: ``data`` transfer-encoded under its headers."""
    headers = [content_type(mime_type, params, fold=fold), f"Content-Transfer-Encoding: {encoding}"]
    if filename is not None:
        disposition = "inline" if inline else "attachment"
        headers.append(f'Content-Disposition: {disposition}; filename="{filename}"')
    return Part(tuple(headers), encode_body(data, encoding))


def to_lf(raw: bytes) -> bytes:
    """What a mailbox store on disk often makes of a message: bare LF line endings."""
    return raw.replace(CRLF, b"\n")
