"""Just enough MIME, on bytes, for signed PEC messages.

The stdlib ``email`` parser re-serialises what it reads and, with ``policy.default``, reads
~250 messages/s; a signature must be checked over the exact bytes of the signed part. So we
split on boundaries ourselves, keep every part's raw bytes, and decode only what we read::

    Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="b1"

    --b1
    Content-Type: multipart/mixed; boundary="b2"      <- signed bytes start here
    ...
    --b2--                                            <- ... and end before the CRLF
    --b1
    Content-Type: application/pkcs7-signature; name="smime.p7s"

Nothing here raises on bad input: callers get ``None`` or empty results and record defects.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from functools import lru_cache

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class Headers:
    """Header fields in order; names compared case-insensitively (``X-Tiporicevuta``)."""

    fields: tuple[tuple[str, str], ...]
    _first: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def get(self, name: str) -> str | None:
        """The first field of that name: a dict built on the first call (a message's
        headers are asked a dozen times; a cached part's block, for every message)."""
        first = self._first
        if first is None:
            first = dict(reversed(self.fields))  # the earliest of a name is written last
            object.__setattr__(self, "_first", first)  # a cache, not a change
        return first.get(name.lower())

    def get_all(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.fields if key == wanted)


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: parsed headers and where its raw, still-encoded body lies.

    The body is a span of ``source`` (the whole message), not a copy: a 2 MB envelope
    nests four entities deep, and slicing each level cost more than verifying it.
    """

    headers: Headers
    source: bytes = field(repr=False)
    start: int
    end: int
    header_overflow: bool = False
    _content_type: tuple[str, dict[str, str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def body(self) -> bytes:
        """The raw body as a new ``bytes`` (a copy: prefer :attr:`view` for large parts)."""
        return self.source[self.start : self.end]

    @property
    def view(self) -> memoryview:
        """The raw body without copying it."""
        return memoryview(self.source)[self.start : self.end]

    @property
    def content_type(self) -> tuple[str, dict[str, str]]:
        """Parsed once per part: the layout reader and the daticert search both ask."""
        parsed = self._content_type
        if parsed is None:
            parsed = parse_content_type(self.headers.get("content-type"))
            object.__setattr__(self, "_content_type", parsed)  # a cache, not a change
        return parsed

    def decoded(self, limit: int) -> bytes | None:
        """The body with its Content-Transfer-Encoding undone, or ``None`` if broken/oversize."""
        return decode_body(self.view, self.headers.get("content-transfer-encoding"), limit)


def split_entity(raw: bytes, *, max_header_bytes: int) -> Part:
    """Split ``raw`` into headers and body. Oversized header blocks are cut and flagged."""
    return entity_at(raw, 0, len(raw), max_header_bytes=max_header_bytes)


def entity_at(source: bytes, start: int, end: int, *, max_header_bytes: int) -> Part:
    """:func:`split_entity` of ``source[start:end]``, without copying the body."""
    blank = header_end(source, start, min(end, start + max_header_bytes + 4))
    if blank is None:
        if end - start > max_header_bytes:
            headers = parse_headers(source[start : start + max_header_bytes])
            return Part(headers, source, end, end, header_overflow=True)
        # Headers only, or a body without a blank line before it (a broken part).
        return Part(parse_headers(source[start:end]), source, end, end)
    return Part(parse_headers(source[start : blank[0]]), source, blank[1], end)


def header_end(
    source: bytes, start: int, endpos: int, window: int = 8192
) -> tuple[int, int] | None:
    """Where the first blank line (``\\r?\\n\\r?\\n``) in ``source[start:endpos]`` lies.

    The same match as ``_HEADER_END.search(source, start, endpos)``, found with
    ``bytes.find`` in the first ``window`` bytes (where header blocks end) rather than a
    regex stepping byte by byte; past the window, the regex. The ending the mail uses
    is searched first and the other only up to it: in CRLF mail an unbounded search
    for LF LF would run to the end of the window.
    """
    limit = min(endpos, start + window)
    first = source.find(b"\n", start, limit)
    if first < 0:
        lf = crlf = -1
    elif first > start and source[first - 1] == 0x0D:  # CRLF mail: CRLF CRLF ends it
        crlf = source.find(b"\n\r\n", first, limit)
        lf = source.find(b"\n\n", first, crlf + 2 if crlf >= 0 else limit)
    else:  # LF mail; either order finds the first, the other search is only bounded
        lf = source.find(b"\n\n", first, limit)
        crlf = source.find(b"\n\r\n", first, lf + 2 if lf >= 0 else limit)
    if lf < 0 and crlf < 0:
        if limit == endpos:
            return None
        match = _HEADER_END.search(source, start, endpos)
        return None if match is None else (match.start(), match.end())
    # An earlier match would lie inside the window too, so the first found is the first.
    if crlf >= 0 and (lf < 0 or crlf < lf):
        newline, stop = crlf, crlf + 3
    else:
        newline, stop = lf, lf + 2
    if newline > start and source[newline - 1] == 0x0D:  # the regex starts at that CR
        return newline - 1, stop
    return newline, stop


def header_section(raw: bytes, limit: int) -> bytes:
    """``raw``'s header section up to and including its blank line, at most ``limit``
    bytes (the first ``limit`` bytes when no blank line comes before)."""
    end = header_end(raw, 0, min(len(raw), limit))
    return raw[: end[1]] if end else raw[:limit]


# Header blocks and Content-Type values that repeat from message to message (a provider's
# daticert, text and smime.p7s part headers; their Content-Types) are parsed once. Only
# short ones are kept, so hostile input can hold at most a few hundred KB here.
_CACHED_CHARS = 256
_CACHE_ENTRIES = 1024


def parse_headers(block: bytes, max_fields: int = 500) -> Headers:
    """Unfold and split a header block; undecodable bytes survive as surrogates."""
    if len(block) <= _CACHED_CHARS:
        return _parse_short_headers(block, max_fields)
    return _parse_headers(block, max_fields)


@lru_cache(maxsize=_CACHE_ENTRIES)
def _parse_short_headers(block: bytes, max_fields: int) -> Headers:
    return _parse_headers(block, max_fields)  # Headers is immutable: safe to share


def _parse_headers(block: bytes, max_fields: int) -> Headers:
    text = _unfold(block.decode("utf-8", "surrogateescape"))
    fields: list[tuple[str, str]] = []
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if not sep or not name or name[0] in " \t":
            continue
        name = name.strip()
        if " " in name:
            continue
        fields.append((name.lower(), value.strip()))
        if len(fields) >= max_fields:
            break
    return Headers(tuple(fields))


def _unfold(text: str) -> str:
    """``_FOLD.sub("", text)``: the line break before a continuation line goes.

    When every line ends the same way (all CRLF, or all bare LF) the two fixed
    replacements do exactly what the regex does, at a fraction of its cost: neither can
    make a new match for the other, since what each leaves is the space or tab.
    """
    newlines = text.count("\n")
    if not newlines:
        return text
    crlf = text.count("\r\n")
    if crlf == newlines:
        return text.replace("\r\n ", " ").replace("\r\n\t", "\t")
    if crlf == 0:
        return text.replace("\n ", " ").replace("\n\t", "\t")
    return _FOLD.sub("", text)


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``multipart/signed; boundary="b"`` -> (``"multipart/signed"``, ``{"boundary": "b"}``)."""
    if not value:
        return "text/plain", {}
    if len(value) <= _CACHED_CHARS:
        ctype, items = _parse_short_content_type(value)
        return ctype, dict(items)  # a fresh dict: callers may keep or change theirs
    ctype, params = _parse_content_type(value)
    return ctype, params


@lru_cache(maxsize=_CACHE_ENTRIES)
def _parse_short_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    ctype, params = _parse_content_type(value)
    return ctype, tuple(params.items())


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for chunk in _split_params(rest):
        key, eq, val = chunk.partition("=")
        if eq:
            params[key.strip().lower()] = _unquote(val.strip())
    return head.strip().lower(), params


def _split_params(text: str) -> list[str]:
    """Split on the semicolons outside double quotes (an even number of quotes before)."""
    if '"' not in text:
        return [chunk for chunk in text.split(";") if chunk.strip()]
    chunks: list[str] = []
    pending: str | None = None
    for piece in text.split(";"):
        pending = piece if pending is None else f"{pending};{piece}"
        if pending.count('"') % 2 == 0:
            chunks.append(pending)
            pending = None
    if pending is not None:
        chunks.append(pending)
    return [chunk for chunk in chunks if chunk.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def split_multipart(body: bytes, boundary: str, max_parts: int) -> list[bytes] | None:
    """The raw bytes of each body part, exactly as they stand between delimiter lines.

    The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so each
    part ends without it: these are the bytes a detached signature covers. ``None`` when
    the boundary never occurs or there are more than ``max_parts`` parts.
    """
    spans = multipart_spans(body, 0, len(body), boundary, max_parts)
    return None if spans is None else [body[start:end] for start, end in spans]


def multipart_spans(
    source: bytes, begin: int, end: int, boundary: str, max_parts: int
) -> list[tuple[int, int]] | None:
    """:func:`split_multipart` of ``source[begin:end]`` as ``(start, end)`` offsets."""
    if not boundary or len(boundary) > 200:
        return None
    # bytes.find rather than a regex: every message has its own boundary, and compiling
    # a pattern per message cost more than the rest of the parse.
    dash_boundary = b"--" + boundary.encode("utf-8", "surrogateescape")
    spans: list[tuple[int, int]] = []
    start: int | None = None
    position = begin
    while (found := source.find(dash_boundary, position, end)) >= 0:
        position = found + len(dash_boundary)
        if found > begin and source[found - 1] != 0x0A:  # not at the start of a line
            continue
        closing = source.startswith(b"--", position, end)
        eol = source.find(b"\n", position, end)
        line_end = end if eol < 0 else eol
        rest = source[position + (2 if closing else 0) : line_end]
        if rest.strip(b" \t\r"):  # "--boundaryX": a longer line, not a delimiter
            continue
        if start is not None:
            cut = found - 1 if found > begin and source[found - 1] == 0x0A else found
            if cut > begin and source[cut - 1] == 0x0D:
                cut -= 1
            spans.append((start, max(start, cut)))
            if len(spans) > max_parts:
                return None
        if closing:  # what follows the close delimiter is the epilogue
            return spans if start is not None else None
        start = end if eol < 0 else eol + 1
        position = start
    if start is None:
        return None
    spans.append((start, end))  # no close delimiter: keep what we have (a defect upstream)
    return spans if len(spans) <= max_parts else None


def canonical_crlf(data: bytes) -> bytes:
    """Bare LF line endings to CRLF: the form S/MIME signs (RFC 5751 §3.1.1)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # already canonical: two C scans instead of a rewrite
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def decode_body(body: bytes | memoryview, encoding: str | None, limit: int) -> bytes | None:
    """Undo a Content-Transfer-Encoding; ``None`` if the result would pass ``limit`` bytes."""
    name = (encoding or "7bit").strip().lower()
    try:
        if name == "base64":
            if len(body) > 2 * limit + 4096:  # base64 only shrinks; allow for line breaks
                return None
            data = binascii.a2b_base64(body, strict_mode=False)
        elif name == "quoted-printable":
            if len(body) > limit * 3 + 4096:
                return None
            data = binascii.a2b_qp(body)
        else:
            return bytes(body) if len(body) <= limit else None
    except (binascii.Error, ValueError):
        return None
    return data if len(data) <= limit else None


def decode_words(value: str) -> str:
    """RFC 2047 encoded words (``=?UTF-8?Q?Fattura_n=C2=B0_42?=``) to text; never raises."""
    if "=?" not in value:
        return value
    from email.header import decode_header, make_header  # noqa: PLC0415 (start-up: rarely used)

    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value
