"""Byte-level MIME: boundaries, exact signed bytes, encodings, hostile shapes."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.mime import (
    canonical_crlf,
    decode_body,
    decode_words,
    entity_at,
    header_end,
    header_section,
    multipart_spans,
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


def _split_params_by_char(text: str) -> list[str]:
    """The former character loop, kept as the oracle for the faster split."""
    chunks: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            chunks.append("".join(current))
            current = []
        else:
            current.append(char)
    chunks.append("".join(current))
    return [chunk for chunk in chunks if chunk.strip()]


@given(st.text(alphabet=st.sampled_from('ab ;="\\\t'), max_size=40))
def test_param_split_matches_the_character_loop(text: str) -> None:
    """Semicolons inside quotes, unbalanced quotes: the same chunks as the old loop."""
    from pipeline.core.mime import _split_params  # noqa: PLC0415 - the private helper

    assert _split_params(text) == _split_params_by_char(text)


def test_content_type_is_parsed_once_per_part() -> None:
    """A part caches its parsed Content-Type; equal values, same object the second time."""
    part = split_entity(
        b'Content-Type: application/xml; name="daticert.xml"\r\n\r\n<x/>', max_header_bytes=1000
    )
    first = part.content_type
    assert first == ("application/xml", {"name": "daticert.xml"})
    assert part.content_type is first


def test_entity_body_is_a_span_of_the_message() -> None:
    """The body is not copied: a view of the message bytes, and ``body`` copies on demand."""
    raw = b"A: 1\r\n\r\nbody bytes"
    part = split_entity(raw, max_header_bytes=1000)
    assert part.source is raw
    assert (part.start, part.end) == (8, len(raw))
    assert part.view == b"body bytes"
    assert part.body == b"body bytes"
    assert (
        entity_at(b"xx" + raw + b"yy", 2, 2 + len(raw), max_header_bytes=1000).body == b"body bytes"
    )


def _split_multipart_copying(body: bytes, boundary: str, max_parts: int) -> list[bytes] | None:
    """The former implementation (slices at every level), the oracle for the spans."""
    if not boundary or len(boundary) > 200:
        return None
    # bytes.find rather than a regex: every message has its own boundary, and compiling
    # a pattern per message cost more than the rest of the parse.
    dash_boundary = b"--" + boundary.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    start: int | None = None
    position = 0
    while (found := body.find(dash_boundary, position)) >= 0:
        position = found + len(dash_boundary)
        if found > 0 and body[found - 1] != 0x0A:  # not at the start of a line
            continue
        closing = body.startswith(b"--", position)
        eol = body.find(b"\n", position)
        rest = body[position + (2 if closing else 0) : len(body) if eol < 0 else eol]
        if rest.strip(b" \t\r"):  # "--boundaryX": a longer line, not a delimiter
            continue
        if start is not None:
            cut = found - 1 if found >= 1 and body[found - 1] == 0x0A else found
            if cut >= 1 and body[cut - 1] == 0x0D:
                cut -= 1
            parts.append(body[start:cut])
            if len(parts) > max_parts:
                return None
        if closing:  # what follows the close delimiter is the epilogue
            return parts if start is not None else None
        start = len(body) if eol < 0 else eol + 1
        position = start
    if start is None:
        return None
    parts.append(body[start:])  # no close delimiter: keep what we have (a defect upstream)
    return parts if len(parts) <= max_parts else None


@given(
    st.lists(
        st.sampled_from([b"--b", b"--b--", b"\r\n", b"\n", b"x", b"--bx", b" ", b"\r"]), max_size=30
    ),
    st.binary(max_size=4),
    st.binary(max_size=4),
)
def test_spans_inside_a_larger_buffer_match_the_copy(
    pieces: list[bytes], head: bytes, tail: bytes
) -> None:
    """Offsets within a bigger message give exactly the parts of the copied body."""
    body = b"".join(pieces)
    source = head + body + tail
    spans = multipart_spans(source, len(head), len(head) + len(body), "b", 64)
    parts = split_multipart(body, "b", 64)
    assert parts == _split_multipart_copying(body, "b", 64)
    assert (None if spans is None else [source[s:e] for s, e in spans]) == parts
    if spans is not None:
        assert all(len(head) <= s <= e <= len(head) + len(body) for s, e in spans)


def test_short_header_blocks_and_content_types_are_cached_safely() -> None:
    """Repeated short blocks share one parse; long ones are not kept; dicts stay private."""
    short = (
        b'Content-Type: application/xml; name="daticert.xml"\r\nContent-Transfer-Encoding: base64'
    )
    assert parse_headers(short) is parse_headers(short)
    long = short + b"\r\nX-Padding: " + b"p" * 300
    assert parse_headers(long) == parse_headers(long)
    assert parse_headers(long) is not parse_headers(long)
    value = 'application/xml; name="daticert.xml"'
    first = parse_content_type(value)[1]
    first["name"] = "changed"
    assert parse_content_type(value) == ("application/xml", {"name": "daticert.xml"})


@given(
    st.binary(max_size=60).map(lambda b: bytes(b"\r\nxa"[x % 4] for x in b)),
    st.integers(0, 70),
    st.integers(0, 70),
    st.integers(1, 12),
)
def test_header_end_matches_the_regex(data: bytes, start: int, endpos: int, window: int) -> None:
    """Finding the blank line with bytes.find gives the regex's match, windowed or not."""
    from pipeline.core.mime import _HEADER_END  # noqa: PLC0415 - the former way

    start, endpos = min(start, len(data)), min(endpos, len(data))
    match = _HEADER_END.search(data, start, endpos)
    expected = None if match is None else (match.start(), match.end())
    assert header_end(data, start, endpos, window) == expected
    assert header_end(data, start, endpos) == expected


def test_header_section_stops_at_the_first_blank_line_and_is_bounded() -> None:
    """CRLF or LF mail; a header block that never ends is cut at the limit."""
    assert header_section(b"A: b\r\nC: d\r\n\r\nbody\r\n\r\n", 100) == b"A: b\r\nC: d\r\n\r\n"
    assert header_section(b"A: b\n\nbody", 100) == b"A: b\n\n"
    assert header_section(b"A: b" * 100, 10) == b"A: bA: bA:"
    assert header_section(b"A: b\n\nbody", 3) == b"A: "
