"""The strict DER reader: bounds, refusals, and the same report as the asn1crypto path."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from asn1crypto import cms, core
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core import smime
from pipeline.core.der import (
    MAX_DEPTH,
    DerError,
    IndefiniteLengthError,
    Tlv,
    children,
    encode_oid,
    read_integer,
    read_signed_data,
    read_time,
    read_tlv,
)
from pipeline.core.mime import canonical_crlf
from pipeline.core.model import Integrity, SignatureReport, Trust
from pipeline.core.parse import Layout, read_layout
from pipeline.core.trust import TrustStore
from pipeline.simulate import catalogue
from pipeline.simulate.ca import Pki, default_pki
from pipeline.simulate.cms import sign_detached
from tests.factories import PROVIDER_NAMES, make_receipt

AT = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


# One delivery receipt per simulated provider: RSA and ECDSA keys, SHA-1 and SHA-256.
RAWS = [make_receipt(provider=name) for name in PROVIDER_NAMES]
LAYOUTS = [read_layout(raw) for raw in RAWS]
TRUST = TrustStore.from_bytes(default_pki().anchor_pem())


def test_lengths_short_long_and_bounds() -> None:
    """Short and long form lengths; a length running past its container is refused."""
    assert read_tlv(b"\x04\x02ab", 0, 4) == Tlv(0x04, 0, 2, 4)
    long = b"\x04\x81\x80" + b"x" * 0x80
    assert read_tlv(long, 0, len(long)) == Tlv(0x04, 0, 3, len(long))
    with pytest.raises(DerError):
        read_tlv(b"\x04\x03ab", 0, 4)  # truncated contents
    with pytest.raises(DerError):
        read_tlv(b"\x04", 0, 1)  # truncated header
    with pytest.raises(DerError):
        read_tlv(b"\x04\x82\x01", 0, 3)  # truncated length octets
    with pytest.raises(DerError):
        read_tlv(b"\x04\x02ab", 0, 3)  # fits the data but not the container


def test_overlong_and_non_minimal_lengths_are_refused() -> None:
    """More than four length octets, leading zeros, long form for < 128: not DER."""
    huge = b"\x04\x89" + b"\xff" * 9
    with pytest.raises(DerError):
        read_tlv(huge, 0, len(huge))
    with pytest.raises(DerError):
        read_tlv(b"\x04\x81\x05" + b"x" * 5, 0, 8)
    padded = b"\x04\x82\x00\x80" + b"x" * 0x80
    with pytest.raises(DerError):
        read_tlv(padded, 0, len(padded))


def test_indefinite_length_and_high_tags_are_refused() -> None:
    """BER indefinite length is its own error (the caller falls back); so are tags >= 31."""
    with pytest.raises(IndefiniteLengthError):
        read_tlv(b"\x30\x80\x04\x00\x00\x00", 0, 6)
    with pytest.raises(DerError):
        read_tlv(b"\x1f\x81\x00\x00", 0, 4)


def test_children_fill_the_parent_and_depth_is_capped() -> None:
    """Children must end exactly at the parent's end; nesting beyond the cap is refused."""
    data = b"\x30\x06\x02\x01\x01\x04\x01x"
    parent = read_tlv(data, 0, len(data))
    assert [c.tag for c in children(data, parent, 1)] == [0x02, 0x04]
    broken = b"\x30\x05\x02\x01\x01\x04\x01"
    with pytest.raises(DerError):
        children(broken, read_tlv(broken, 0, len(broken)), 1)
    with pytest.raises(DerError):
        children(data, parent, MAX_DEPTH + 1)
    with pytest.raises(DerError):
        children(data, Tlv(0x04, 2, 4, 5), 1)  # a primitive has no children


def test_integers_and_times() -> None:
    """Minimal INTEGERs only; UTCTime and GeneralizedTime in their strict DER forms."""
    assert read_integer(b"\x02\x01\xff", Tlv(0x02, 0, 2, 3)) == -1
    assert read_integer(b"\x02\x02\x00\x80", Tlv(0x02, 0, 2, 4)) == 128
    for bad in (b"\x02\x00", b"\x02\x02\x00\x01", b"\x02\x02\xff\x80"):
        with pytest.raises(DerError):
            read_integer(bad, Tlv(0x02, 0, 2, len(bad)))
    utc = b"\x17\x0d240301100000Z"
    assert read_time(utc, Tlv(0x17, 0, 2, 15)) == AT
    old = b"\x17\x0d990301100000Z"
    assert read_time(old, Tlv(0x17, 0, 2, 15)).year == 1999
    general = b"\x18\x0f20510301100000Z"
    assert read_time(general, Tlv(0x18, 0, 2, 17)) == AT.replace(year=2051)
    malformed = (
        b"\x17\x0b2403011000Z",  # no seconds: asn1crypto's business
        b"\x17\x0d240301100000+",
        b"\x17\x0d241301100000Z",  # month 13
        b"\x17\x0d2\x000301090005Z",  # found by the fuzz profile: int() raised
        b"\x17\x0d 40301100000Z",  # int() would accept the space
        b"\x18\x0f00000301100000Z",  # year 0
    )
    for bad in malformed:
        with pytest.raises(DerError):
            read_time(bad, Tlv(0x17, 0, 2, len(bad)))


def test_oid_encoding() -> None:
    """OIDs encode as DER does (the signedData content type)."""
    assert encode_oid("1.2.840.113549.1.7.2") == bytes.fromhex("2a864886f70d010702")


@pytest.mark.parametrize("layout", LAYOUTS, ids=PROVIDER_NAMES)
def test_reads_what_asn1crypto_reads(layout: Layout) -> None:
    """Every provider's signature: the same fields as asn1crypto decodes."""
    assert layout.signature is not None
    fields = read_signed_data(layout.signature)
    assert fields is not None
    signed_data = cms.ContentInfo.load(layout.signature)["content"]
    signer_info = signed_data["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
    sid = signer_info["sid"].chosen
    assert fields.certificates == signed_data["certificates"].dump()
    assert fields.issuer == sid["issuer"].dump()
    assert fields.serial == sid["serial_number"].native
    assert fields.digest == signer_info["digest_algorithm"]["algorithm"].native
    assert fields.message_digest == attrs["message_digest"]
    assert fields.signing_time == attrs["signing_time"]
    assert fields.signing_time is not None
    assert fields.signature == signer_info["signature"].native
    assert fields.signed_attrs == b"\x31" + signer_info["signed_attrs"].dump()[1:]
    assert not fields.pss


def _indefinite(blob: bytes) -> bytes:
    """The same ContentInfo with a BER indefinite outer length, as some providers send."""
    outer = read_tlv(blob, 0, len(blob))
    return b"\x30\x80" + blob[outer.body : outer.end] + b"\x00\x00"


def test_indefinite_length_falls_back_to_asn1crypto(trust: TrustStore) -> None:
    """A BER signature is not read here, and the message still verifies (asn1crypto)."""
    layout = LAYOUTS[0]
    assert layout.signature is not None
    ber = dataclasses.replace(layout, signature=_indefinite(layout.signature))
    assert read_signed_data(ber.signature or b"") is None
    report = smime.verify_layout(ber, trust)
    assert (report.integrity, report.trust) == (Integrity.VALID, Trust.TRUSTED)
    assert report == smime.verify_layout(layout, trust)


def test_unread_shapes_fall_back() -> None:
    """Trailing bytes, a header asn1crypto would re-encode, garbage: ``None``, no raise."""
    signature = LAYOUTS[0].signature
    assert signature is not None
    assert read_signed_data(signature + b"\x00") is None
    assert read_signed_data(b"") is None
    assert read_signed_data(b"\x30\x84\xff\xff\xff\xff") is None
    # [0] certificates of length 0x180: asn1crypto's dump() re-encodes such a header.
    certs = b"\xa0\x82\x01\x80" + b"\x04\x82\x01\x7c" + b"x" * 0x17C
    version, digests, encap = b"\x02\x01\x01", b"\x31\x00", b"\x30\x00"
    signed = version + digests + encap + certs + b"\x31\x00"
    assert Tlv(0xA0, 0, 4, 4 + 0x180).header_ends_with_0x80
    body = b"\x06\x09" + encode_oid("1.2.840.113549.1.7.2")
    inner = b"\x30\x82" + len(signed).to_bytes(2, "big") + signed
    explicit = b"\xa0\x82" + len(inner).to_bytes(2, "big") + inner
    content = body + explicit
    blob = b"\x30\x82" + len(content).to_bytes(2, "big") + content
    assert read_tlv(blob, 0, len(blob)).end == len(blob)
    assert read_signed_data(blob) is None


def _capabilities(size: int) -> cms.CMSAttribute:
    """An smimeCapabilities attribute padded with ``size`` bytes of parameters."""
    capability = cms.SMIMECapabilityIdentifier(
        {"capability_id": "1.2.3.4", "parameters": core.OctetString(b"p" * size)}
    )
    return cms.CMSAttribute({"type": "smime_capabilities", "values": [[capability]]})


def test_pss_and_extra_attributes_give_the_same_report(pki: Pki, trust: TrustStore) -> None:
    """RSASSA-PSS, smimeCapabilities, and a signed-attribute length asn1crypto re-encodes."""
    layout = LAYOUTS[0]  # the RSA provider
    assert layout.signed_content is not None
    identity = catalogue(pki)[0].signer
    content = canonical_crlf(bytes(layout.signed_content))
    cases = {"pss": sign_detached(content, identity, signing_time=AT, pss=True)}
    for size in range(300):
        blob = sign_detached(
            content, identity, signing_time=AT, extra_attributes=(_capabilities(size),)
        )
        signer_info = cms.ContentInfo.load(blob)["content"]["signer_infos"][0]
        length = len(signer_info["signed_attrs"].contents)
        if length > 0x80 and length & 0xFF == 0x80:
            cases["re-encoded"] = blob
        cases.setdefault("capabilities", blob)
    assert set(cases) == {"pss", "re-encoded", "capabilities"}
    pss_fields = read_signed_data(cases["pss"])
    assert pss_fields is not None
    assert pss_fields.pss
    assert read_signed_data(cases["capabilities"]) is not None
    assert read_signed_data(cases["re-encoded"]) is None
    for blob in cases.values():
        changed = dataclasses.replace(layout, signature=blob)
        fast, slow = _both_paths(changed, trust)
        assert slow.integrity is Integrity.VALID
        assert fast in (None, slow)


def _guarded(run: Callable[[], SignatureReport]) -> SignatureReport | Exception:
    try:
        return run()
    except Exception as exc:  # what verify_layout turns into cms-malformed
        return exc


def _both_paths(
    layout: Layout, trust: TrustStore
) -> tuple[SignatureReport | None, SignatureReport]:
    """(fast path's report or None when it defers, the asn1crypto path's report).

    When the fast path raises, the real code falls back; the asn1crypto path must then
    report the message as malformed too.
    """
    slow_result = _guarded(lambda: smime._verify_asn1(layout, trust, None))
    slow = (
        smime._report(
            Integrity.INVALID, Trust.UNKNOWN, reason="cms-malformed", detail=str(slow_result)
        )
        if isinstance(slow_result, Exception)
        else slow_result
    )
    assert layout.signature is not None
    fields = read_signed_data(layout.signature)
    if fields is None:
        return None, slow
    fast = _guarded(lambda: smime._verify_fields(fields, layout, trust, None))
    if isinstance(fast, Exception):
        assert slow.trust_reason == "cms-malformed", (fast, slow)
        return None, slow
    return fast, slow


def _header_offsets(blob: bytes) -> list[int]:
    """Where every identifier and length octet of the (valid) DER lies."""
    found: list[int] = []
    offset, stack = 0, [len(blob)]
    while stack:
        if offset >= stack[-1]:
            offset = stack.pop()
            continue
        element = read_tlv(blob, offset, stack[-1])
        found.extend(range(element.start, element.body))
        if element.tag & 0x20:
            stack.append(element.end)
            offset = element.body
        else:
            offset = element.end
    return found


HEADERS = [_header_offsets(layout.signature or b"") for layout in LAYOUTS]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[int, bytes]:
    """A provider's signature with a header byte, a tail byte or a span changed."""
    index = draw(st.integers(0, len(LAYOUTS) - 1))
    blob = bytearray(LAYOUTS[index].signature or b"")
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["header", "tail", "any", "insert", "delete"]))
        if how == "header":
            position = draw(st.sampled_from(HEADERS[index]))
        elif how == "tail":  # the SignerInfo lies at the end, after the certificates
            position = len(blob) - 1 - draw(st.integers(0, min(600, len(blob) - 1)))
        else:
            position = draw(st.integers(0, max(0, len(blob) - 1)))
        if how == "insert":
            blob[position:position] = draw(st.binary(min_size=1, max_size=3))
        elif how == "delete":
            del blob[position : position + draw(st.integers(1, 3))]
        elif blob:
            blob[position] = draw(st.integers(0, 255))
    return index, bytes(blob)


@given(mutated())
def test_fast_and_asn1crypto_paths_agree_on_mutations(case: tuple[int, bytes]) -> None:
    """Mutated signatures of every provider: the fast path defers or gives the same report."""
    index, blob = case
    layout = dataclasses.replace(LAYOUTS[index], signature=blob)
    fast, slow = _both_paths(layout, TRUST)
    assert fast is None or fast == slow
    assert smime.verify_layout(layout, TRUST) == slow


@given(st.integers(0, len(RAWS) - 1), st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_messages_agree(index: int, where: int, value: int) -> None:
    """A changed byte anywhere in a whole message: fast path and asn1crypto agree."""
    raw = bytearray(RAWS[index])
    raw[where % len(raw)] = value
    layout = read_layout(bytes(raw))
    if layout.signature is None or layout.signed_content is None:
        return
    fast, slow = _both_paths(layout, TRUST)
    assert fast is None or fast == slow


def test_unmutated_messages_take_the_fast_path(trust: TrustStore) -> None:
    """The fast path is really used for every provider, with the asn1crypto report."""
    for layout in LAYOUTS:
        fast, slow = _both_paths(layout, trust)
        assert fast == slow
        assert (slow.integrity, slow.trust) == (Integrity.VALID, Trust.TRUSTED)


def test_a_cached_head_is_used_only_for_the_same_bytes() -> None:
    """The walk up to the digestAlgorithm is reused per provider, never across bytes."""
    signature = LAYOUTS[0].signature
    assert signature is not None
    first = read_signed_data(signature)
    assert first is not None
    serial = first.serial.to_bytes((first.serial.bit_length() + 8) // 8, "big", signed=True)
    where = signature.rindex(b"\x02" + bytes((len(serial),)) + serial)  # the sid, not the cert
    changed = bytearray(signature)
    changed[where + 2 + len(serial) - 1] ^= 0x01  # the sid's serial, same length
    second = read_signed_data(bytes(changed))
    assert second is not None
    assert second.serial == first.serial ^ 0x01
    assert read_signed_data(signature) == first
