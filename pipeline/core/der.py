"""A strict DER reader for the few CMS fields a PEC signature check reads. Pure, no I/O.

asn1crypto decodes lazily but generically, and walking to the signed attributes of a
``smime.p7s`` through it cost more than the RSA verification. This module reads
exactly the common shape of a provider's detached signature straight from the bytes::

    ContentInfo  SEQUENCE { contentType = signedData, [0] EXPLICIT SignedData }
    SignedData   SEQUENCE { version, digestAlgorithms SET, encapContentInfo SEQUENCE,
                            [0] certificates?, [1] crls?, signerInfos SET OF (exactly 1) }
    SignerInfo   SEQUENCE { version, sid IssuerAndSerialNumber, digestAlgorithm,
                            [0] signedAttrs?, signatureAlgorithm, signature OCTET STRING,
                            [1] unsignedAttrs? }

It is a fast path, not a second verifier: :func:`read_signed_data` returns ``None`` for
anything it does not fully understand (BER indefinite lengths, which some providers emit,
non-minimal lengths or integers, a subjectKeyIdentifier sid, several signers, an
algorithm or signed attribute it does not know, trailing bytes), and the caller then uses
asn1crypto, so the outcome is the same either way. Every length is checked against the
bytes that hold it and nesting is capped (:data:`MAX_DEPTH`); bad input raises
:class:`DerError` inside this module and never leaves it from :func:`read_signed_data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

MAX_DEPTH = 10  # the walk below goes 8 deep (ContentInfo ... an attribute's value)
_MAX_LENGTH_OCTETS = 4  # 4 GiB: far beyond any signature we accept

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_1 = 0xA1  # [1] constructed


class DerError(ValueError):
    """The bytes are not DER this reader accepts (malformed, BER or unsupported)."""


class IndefiniteLengthError(DerError):
    """A BER indefinite length (``0x80``): valid BER, but not for this reader."""


class Tlv(NamedTuple):
    """One element: its identifier octet and where its header and contents lie."""

    tag: int
    start: int  # first byte of the identifier
    body: int  # first byte of the contents
    end: int  # one past the last byte of the contents

    @property
    def header_ends_with_0x80(self) -> bool:
        """asn1crypto treats such a header as indefinite and re-encodes on ``dump()``."""
        return self.body - self.start > 2 and (self.end - self.body) & 0xFF == 0x80


_new_tlv = tuple.__new__


def encode_oid(dotted: str) -> bytes:
    """``"1.2.840.113549.1.7.2"`` -> the contents octets of that OBJECT IDENTIFIER."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def read_tlv(data: bytes, offset: int, limit: int) -> Tlv:
    """The element starting at ``offset``; it must end at or before ``limit``."""
    if offset < 0 or offset + 2 > limit or limit > len(data):
        raise DerError(f"no complete header at {offset}")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used by the fields read here")
    first = data[offset + 1]
    body = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise IndefiniteLengthError(f"indefinite length at {offset}")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or body + count > limit:
            raise DerError(f"bad length octets at {offset}")
        length = int.from_bytes(data[body : body + count], "big")
        if data[body] == 0 or length < 0x80:
            raise DerError(f"non-minimal length at {offset}")
        body += count
    end = body + length
    if end > limit:
        raise DerError(f"length {length} at {offset} runs past its container")
    return _new_tlv(Tlv, (tag, offset, body, end))  # Tlv(...) without its Python __new__


def children(data: bytes, parent: Tlv, depth: int) -> list[Tlv]:
    """Every element inside a constructed ``parent``; they must fill it exactly."""
    if depth > MAX_DEPTH:
        raise DerError("nested too deep")
    if not parent.tag & 0x20:
        raise DerError("a primitive element has no children")
    found = []
    offset, end = parent.body, parent.end
    while offset < end:
        element = read_tlv(data, offset, end)
        found.append(element)
        offset = element.end
    return found


def expect(element: Tlv, tag: int) -> Tlv:
    if element.tag != tag:
        raise DerError(f"expected tag {tag:#04x}, found {element.tag:#04x} at {element.start}")
    return element


def read_integer(data: bytes, element: Tlv) -> int:
    """A minimally encoded INTEGER (two's complement)."""
    contents = data[expect(element, INTEGER).body : element.end]
    if not contents:
        raise DerError("empty INTEGER")
    if len(contents) > 1 and (
        (contents[0] == 0 and contents[1] < 0x80) or (contents[0] == 0xFF and contents[1] >= 0x80)
    ):
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(contents, "big", signed=True)


def read_time(data: bytes, element: Tlv) -> datetime:
    """UTCTime ``YYMMDDHHMMSSZ`` or GeneralizedTime ``YYYYMMDDHHMMSSZ``, nothing looser."""
    text = data[element.body : element.end]
    digits = text[:-1]
    if not (digits.isdigit() and text.endswith(b"Z")):  # bytes.isdigit: ASCII 0-9 only
        raise DerError("not a Time this reader accepts")
    if element.tag == UTC_TIME and len(text) == 13:  # YYMMDDHHMMSSZ
        year = int(digits[0:2])
        year += 2000 if year < 50 else 1900  # RFC 5280: 1950-2049
        rest = digits[2:]
    elif element.tag == GENERALIZED_TIME and len(text) == 15:  # YYYYMMDDHHMMSSZ
        year = int(digits[0:4])
        rest = digits[4:]
    else:
        raise DerError("not a Time this reader accepts")
    if year < 1:
        raise DerError("year 0")
    try:
        return datetime(
            year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]),
            int(rest[8:10]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise DerError(str(exc)) from exc


SIGNED_DATA = encode_oid("1.2.840.113549.1.7.2")
_DIGESTS = {
    encode_oid("1.3.14.3.2.26"): "sha1",
    encode_oid("2.16.840.1.101.3.4.2.4"): "sha224",
    encode_oid("2.16.840.1.101.3.4.2.1"): "sha256",
    encode_oid("2.16.840.1.101.3.4.2.2"): "sha384",
    encode_oid("2.16.840.1.101.3.4.2.3"): "sha512",
}
_RSASSA_PSS = encode_oid("1.2.840.113549.1.1.10")
# Signature algorithms read here; for an RSA key every one but PSS means PKCS#1 v1.5 (the
# hash is the SignerInfo's digestAlgorithm), as in the asn1crypto path.
_SIGNATURES = frozenset(
    {
        _RSASSA_PSS,
        *(encode_oid(f"1.2.840.113549.1.1.{n}") for n in (1, 5, 11, 12, 13, 14)),
        *(encode_oid(f"1.2.840.10045.4.{n}") for n in ("1", "3.1", "3.2", "3.3", "3.4")),
    }
)
_CONTENT_TYPE = encode_oid("1.2.840.113549.1.9.3")
_MESSAGE_DIGEST = encode_oid("1.2.840.113549.1.9.4")
_SIGNING_TIME = encode_oid("1.2.840.113549.1.9.5")
# Signed attributes whose first value asn1crypto decodes as a SEQUENCE: skipped here
# (smimeCapabilities, CMSAlgorithmProtection, ESS signingCertificate v1 and v2).
_SEQUENCE_ATTRIBUTES = frozenset(
    {
        encode_oid("1.2.840.113549.1.9.15"),
        encode_oid("1.2.840.113549.1.9.52"),
        encode_oid("1.2.840.113549.1.9.16.2.12"),
        encode_oid("1.2.840.113549.1.9.16.2.47"),
    }
)


@dataclass(frozen=True, slots=True)
class SignedDataFields:
    """What the signature check reads from a ContentInfo with one signer."""

    certificates: bytes  # the [0] certificates field as stored; b"" when absent
    issuer: bytes  # the sid's issuer Name, DER
    serial: int
    digest: str  # "sha1", "sha256", ...
    signed_attrs: bytes | None  # the signed attributes re-tagged as a SET: what was signed
    message_digest: bytes | None
    signing_time: datetime | None
    signature: bytes
    pss: bool  # RSASSA-PSS rather than PKCS#1 v1.5 (for an RSA signer)


def read_signed_data(blob: bytes) -> SignedDataFields | None:
    """The fields of a DER ContentInfo/SignedData, or ``None`` for "ask asn1crypto"."""
    try:
        return _read_content_info(blob)
    except (ValueError, IndexError):  # DerError, and any slip in the checks above
        return None


def _only(found: list[Tlv], count: int) -> list[Tlv]:
    if len(found) != count:
        raise DerError(f"expected {count} elements, found {len(found)}")
    return found


@dataclass(frozen=True, slots=True)
class _Head:
    """What the bytes of a signature up to its SignerInfo's digestAlgorithm say.

    A provider's signatures share these bytes (headers with their lengths, the
    certificates, the sid): the same bytes say the same, so they are read once per
    provider (and length) and only the rest, which changes every message, is walked.
    """

    prefix: bytes  # blob[:tail]
    certificates: bytes
    issuer: bytes
    serial: int
    digest: str
    tail: int  # where the SignerInfo's fields after digestAlgorithm start
    end: int  # where the SignerInfo ends (the blob ends there too)


@dataclass(frozen=True, slots=True)
class _Tail:
    """Where the values lie in the rest of a SignerInfo read before, and the bytes around
    them (everything else: tags, lengths, attribute types, algorithms).

    A provider's next signature of the same length differs only inside the values
    (signingTime, messageDigest, signature): when every other byte is the same, a walk
    would meet the same elements at the same offsets, so the values are read from there
    directly (the time still parsed and checked). One differing byte: the walk.
    """

    head: _Head  # the head this tail follows (its offset is where ``same`` starts)
    same: tuple[tuple[int, bytes], ...]  # (offset, bytes) that must be equal
    attrs: tuple[int, int] | None
    message_digest: tuple[int, int] | None
    signing_time: Tlv | None
    signature: tuple[int, int]
    pss: bool

    def read(self, blob: bytes, head: _Head) -> SignedDataFields | None:
        """The fields, or ``None`` when ``blob`` differs outside the values (or the
        head is another one: two threads may replace a length's head and tail apart)."""
        if head is not self.head:
            return None
        for offset, expected in self.same:
            if not blob.startswith(expected, offset):
                return None
        attrs, digest, time = self.attrs, self.message_digest, self.signing_time
        return SignedDataFields(
            certificates=head.certificates,
            issuer=head.issuer,
            serial=head.serial,
            digest=head.digest,
            signed_attrs=None if attrs is None else b"\x31" + blob[attrs[0] + 1 : attrs[1]],
            message_digest=None if digest is None else blob[digest[0] : digest[1]],
            signing_time=None if time is None else read_time(blob, time),
            signature=blob[self.signature[0] : self.signature[1]],
            pss=self.pss,
        )


_HEADS: dict[int, _Head] = {}  # by the blob's length; at most _MAX_HEADS
_TAILS: dict[int, _Tail] = {}  # for the head of the same length
_MAX_HEADS = 64


def _read_content_info(blob: bytes) -> SignedDataFields:
    size = len(blob)
    head = _HEADS.get(size)
    if head is None or not blob.startswith(head.prefix):
        head = _read_head(blob)
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
            _TAILS.clear()
        _HEADS[size] = head
        _TAILS.pop(size, None)
    else:
        tail = _TAILS.get(size)
        fields = None if tail is None else tail.read(blob, head)
        if fields is not None:
            return fields
    fields, _TAILS[size] = _read_tail(blob, head)
    return fields


def _read_head(blob: bytes) -> _Head:
    info = expect(read_tlv(blob, 0, len(blob)), SEQUENCE)
    if info.end != len(blob):
        raise DerError("bytes after the ContentInfo")
    content_type, explicit = _only(children(blob, info, 1), 2)
    if blob[expect(content_type, OID).body : content_type.end] != SIGNED_DATA:
        raise DerError("not signedData")
    (signed_data,) = _only(children(blob, expect(explicit, CONTEXT_0), 2), 1)
    fields = children(blob, expect(signed_data, SEQUENCE), 3)
    if len(fields) < 4:
        raise DerError("SignedData too short")
    expect(fields[0], INTEGER)
    expect(fields[1], SET)
    expect(fields[2], SEQUENCE)
    optional = fields[3:-1]
    certificates = b""
    if optional and optional[0].tag == CONTEXT_0:
        cert_field = optional.pop(0)
        if cert_field.header_ends_with_0x80:
            raise DerError("asn1crypto would re-encode this certificates field")
        certificates = blob[cert_field.start : cert_field.end]
    if optional and optional[0].tag == CONTEXT_1:
        optional.pop(0)
    if optional:
        raise DerError("unexpected SignedData field")
    (signer_info,) = _only(children(blob, expect(fields[-1], SET), 4), 1)
    expect(signer_info, SEQUENCE)
    version = expect(read_tlv(blob, signer_info.body, signer_info.end), INTEGER)
    sid = expect(read_tlv(blob, version.end, signer_info.end), SEQUENCE)
    issuer, serial = _only(children(blob, sid, 6), 2)
    if expect(issuer, SEQUENCE).header_ends_with_0x80:
        raise DerError("asn1crypto would re-encode this issuer")
    digest_algorithm = read_tlv(blob, sid.end, signer_info.end)
    digest = _DIGESTS.get(_algorithm(blob, digest_algorithm))
    if digest is None:
        raise DerError("digest algorithm not read here")
    return _Head(
        prefix=blob[: digest_algorithm.end],
        certificates=certificates,
        issuer=blob[issuer.start : issuer.end],
        serial=read_integer(blob, serial),
        digest=digest,
        tail=digest_algorithm.end,
        end=signer_info.end,
    )


def _read_tail(blob: bytes, head: _Head) -> tuple[SignedDataFields, _Tail]:
    """The SignerInfo after its digestAlgorithm: [0] signedAttrs?, signatureAlgorithm,
    signature, [1] unsignedAttrs? (with the three before them: five to seven fields);
    and where its values lie, for the next signature (:class:`_Tail`)."""
    rest = children(blob, Tlv(SEQUENCE, head.tail, head.tail, head.end), 5)
    if not 2 <= len(rest) <= 4:
        raise DerError("SignerInfo has the wrong number of fields")
    attrs: Tlv | None = None
    if rest[0].tag == CONTEXT_0:
        attrs = rest.pop(0)
    if len(rest) == 3:  # [1] unsignedAttrs present
        expect(rest.pop(), CONTEXT_1)
    if len(rest) != 2:  # signatureAlgorithm, signature
        raise DerError("SignerInfo has the wrong shape")
    signature_oid = _algorithm(blob, rest[0])
    if signature_oid not in _SIGNATURES:
        raise DerError("signature algorithm not read here")
    signature = expect(rest[1], OCTET_STRING)
    found = _Found()
    signed = None
    if attrs is not None:
        _signed_attributes(blob, attrs, found)
        signed = b"\x31" + blob[attrs.start + 1 : attrs.end]  # signed as a SET, stored as [0]
    fields = SignedDataFields(
        certificates=head.certificates,
        issuer=head.issuer,
        serial=head.serial,
        digest=head.digest,
        signed_attrs=signed,
        message_digest=found.message_digest,
        signing_time=found.signing_time,
        signature=blob[signature.body : signature.end],
        pss=signature_oid == _RSASSA_PSS,
    )
    values = [(signature.body, signature.end)]
    if found.digest_at is not None:
        values.append(found.digest_at)
    if found.time_at is not None:
        values.append((found.time_at.body, found.time_at.end))
    same, offset = [], head.tail
    for start, end in sorted(values):
        if start > offset:
            same.append((offset, blob[offset:start]))
        offset = max(offset, end)
    if offset < head.end:
        same.append((offset, blob[offset : head.end]))
    tail = _Tail(
        head=head,
        same=tuple(same),
        attrs=None if attrs is None else (attrs.start, attrs.end),
        message_digest=found.digest_at,
        signing_time=found.time_at,
        signature=(signature.body, signature.end),
        pss=fields.pss,
    )
    return fields, tail


def _algorithm(blob: bytes, element: Tlv) -> bytes:
    """An AlgorithmIdentifier's OID; its parameters (if any) are one element, not read."""
    known = _ENCODED_ALGORITHMS.get(blob[element.start : element.end])
    if known is not None:
        return known
    found = children(blob, expect(element, SEQUENCE), 6)
    if not 1 <= len(found) <= 2:  # algorithm, parameters
        raise DerError("AlgorithmIdentifier has the wrong shape")
    return blob[expect(found[0], OID).body : found[0].end]


class _Found:
    """messageDigest and signingTime as read so far, and where their contents lie."""

    __slots__ = ("digest_at", "message_digest", "signing_time", "time_at")

    def __init__(self) -> None:
        self.message_digest: bytes | None = None
        self.digest_at: tuple[int, int] | None = None
        self.signing_time: datetime | None = None
        self.time_at: Tlv | None = None

    def digest(self, blob: bytes, start: int, end: int) -> None:
        self.message_digest, self.digest_at = blob[start:end], (start, end)

    def signed_at(self, blob: bytes, element: Tlv) -> None:
        self.signing_time, self.time_at = read_time(blob, element), element


def _signed_attributes(blob: bytes, attrs: Tlv, found: _Found) -> None:
    """messageDigest and signingTime; a later attribute of one type wins, as in a dict."""
    if attrs.end == attrs.body or attrs.header_ends_with_0x80:
        raise DerError("empty or re-encoded signed attributes: leave them to asn1crypto")
    for attr in children(blob, attrs, 6):
        for head, oid in _ATTRIBUTE_HEADS:  # the usual encodings, checked in one call each
            if blob.startswith(head, attr.start):
                value = attr.start + len(head)
                if oid == _MESSAGE_DIGEST:
                    found.digest(blob, value, attr.end)
                elif oid == _SIGNING_TIME:
                    found.signed_at(blob, Tlv(UTC_TIME, value - 2, value, attr.end))
                break
        else:
            _attribute(blob, attr, found)


def _attribute(blob: bytes, attr: Tlv, found: _Found) -> None:
    """One signed attribute read element by element (messageDigest, signingTime)."""
    kind, values = _only(children(blob, expect(attr, SEQUENCE), 7), 2)
    oid = blob[expect(kind, OID).body : kind.end]
    first = children(blob, expect(values, SET), 8)[0]  # IndexError: none -> asn1crypto
    if oid == _MESSAGE_DIGEST:
        found.digest(blob, expect(first, OCTET_STRING).body, first.end)
    elif oid == _SIGNING_TIME:
        found.signed_at(blob, first)
    elif oid == _CONTENT_TYPE:
        expect(first, OID)
    elif oid in _SEQUENCE_ATTRIBUTES:
        expect(first, SEQUENCE)
    else:
        raise DerError("signed attribute not read here")


def _attribute_head(oid: bytes, value_tag: int, value_length: int) -> bytes:
    """``SEQUENCE { oid, SET { value } }`` up to the value's contents (short lengths)."""
    kind = bytes((OID, len(oid))) + oid
    values = bytes((SET, 2 + value_length, value_tag, value_length))
    return bytes((SEQUENCE, len(kind) + len(values) + value_length)) + kind + values


# Whole encodings that need no walking: each head fixes every tag and length up to the
# value's contents, so a match reads exactly what _attribute() would. The contentType
# value is any OID (it is not checked), a messageDigest is 20 or 32 bytes (SHA-1/256).
_ATTRIBUTE_HEADS = (
    (_attribute_head(_CONTENT_TYPE, OID, 9), _CONTENT_TYPE),
    (_attribute_head(_SIGNING_TIME, UTC_TIME, 13), _SIGNING_TIME),
    (_attribute_head(_MESSAGE_DIGEST, OCTET_STRING, 20), _MESSAGE_DIGEST),
    (_attribute_head(_MESSAGE_DIGEST, OCTET_STRING, 32), _MESSAGE_DIGEST),
)


def _encoded_algorithms(oids: frozenset[bytes]) -> dict[bytes, bytes]:
    """Each AlgorithmIdentifier as DER, without and with NULL parameters -> its OID."""
    encoded = {}
    for oid in oids:
        kind = bytes((OID, len(oid))) + oid
        encoded[bytes((SEQUENCE, len(kind))) + kind] = oid
        encoded[bytes((SEQUENCE, len(kind) + 2)) + kind + bytes((NULL, 0))] = oid
    return encoded


_ENCODED_ALGORITHMS = _encoded_algorithms(frozenset(_DIGESTS) | _SIGNATURES)


def split_certificates(field: bytes) -> tuple[bytes, ...] | None:
    """Each certificate's DER in a CMS ``certificates`` field (``[0] IMPLICIT SET``), as
    asn1crypto's ``CertificateSet`` gives them; ``None`` for "ask asn1crypto": anything
    but plain DER certificates filling the field exactly (other choices, BER, a header
    asn1crypto would re-encode)."""
    try:
        whole = read_tlv(field, 0, len(field))
        if whole.end != len(field) or whole.header_ends_with_0x80:
            return None
        found = children(field, whole, 1)
    except (ValueError, IndexError):
        return None
    if any(cert.tag != SEQUENCE or cert.header_ends_with_0x80 for cert in found):
        return None
    return tuple(field[cert.start : cert.end] for cert in found)
