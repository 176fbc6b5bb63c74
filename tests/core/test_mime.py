"""Byte-level MIME: boundaries, exact signed bytes, encodings, hostile shapes."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.mime import (
    canonical_crlf,
    decode_body,
    decode_words,
    parse_content_type,
    parse_headers,
    split_entity,
    split_multipart,
)


def test_headers_are_unfolded_and_case_insensitive() -> None:
    """Folded values are joined and names match in any casing (X-Tiporicevuta)."""
    headers = parse_headers(b"X-Tiporicevuta: completa\r\nSubject: a\r\n b\r\nX-Ricevuta:consegna")
    assert headers.get("X-TipoRicevuta") == "completa"
    assert headers.get("subject") == "a b"
    assert headers.get("x-ricevuta") == "consegna"


def test_content_type_params() -> None:
    """Quoted parameters with semicolons inside are kept whole."""
    ctype, params = parse_content_type(
        'Multipart/Signed; protocol="application/pkcs7-signature"; micalg=sha1;\r\n'
        ' boundary="----=_Part;1"'
    )
    assert ctype == "multipart/signed"
    assert params == {
        "protocol": "application/pkcs7-signature",
        "micalg": "sha1",
        "boundary": "----=_Part;1",
    }


def test_multipart_parts_exclude_the_delimiter_line_break() -> None:
    """Each part ends before the CRLF that precedes the next delimiter (RFC 2046)."""
    body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n\r\n--b--\r\nepilogue"
    assert split_multipart(body, "b", 10) == [b"A: 1\r\n\r\none", b"\r\ntwo\r\n"]


def test_multipart_with_lf_only() -> None:
    """LF-only stores split the same way."""
    assert split_multipart(b"--b\nA: 1\n\none\n--b--\n", "b", 10) == [b"A: 1\n\none"]


def test_boundary_prefix_does_not_split() -> None:
    """A line starting with the boundary followed by other text is not a delimiter."""
    body = b"--b\r\n\r\n--bx not a delimiter\r\n--b--"
    assert split_multipart(body, "b", 10) == [b"\r\n--bx not a delimiter"]


def test_missing_boundary_and_too_many_parts() -> None:
    """No delimiter, or more parts than allowed, gives None (a defect upstream)."""
    assert split_multipart(b"no parts here", "b", 10) is None
    assert split_multipart(b"--b\r\n\r\nx\r\n" * 100 + b"--b--", "b", 10) is None


def test_canonical_crlf() -> None:
    """Bare LF becomes CRLF; existing CRLF stays."""
    assert canonical_crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"


def test_decode_body_encodings_and_cap() -> None:
    """base64 and quoted-printable decode; over the cap gives None."""
    assert decode_body(base64.encodebytes(b"hello"), "base64", 100) == b"hello"
    assert decode_body(b"caf=C3=A9", "Quoted-Printable", 100) == "café".encode()
    assert decode_body(b"x" * 200, "7bit", 100) is None
    assert decode_body(base64.encodebytes(b"y" * 1000), "base64", 100) is None


def test_split_entity_caps_header_size() -> None:
    """An endless header block is cut at the cap and flagged."""
    part = split_entity(b"X-A: " + b"a" * 10_000, max_header_bytes=1000)
    assert part.header_overflow


def test_encoded_words() -> None:
    """RFC 2047 subjects decode; broken ones are returned as they are."""
    assert decode_words("=?UTF-8?Q?Fattura_n=C2=B0_42?=") == "Fattura n° 42"
    assert decode_words("=?bogus?Q?x?=") == "=?bogus?Q?x?="


@given(st.binary(max_size=4096), st.text(min_size=1, max_size=20))
def test_split_multipart_never_raises(body: bytes, boundary: str) -> None:
    """Arbitrary bodies and boundaries never raise."""
    result = split_multipart(body, boundary, 64)
    assert result is None or isinstance(result, list)
