"""What examine caches per provider never decides for the next message.

The signer certificate (its parse, key, chain and path to the anchor), the bytes of a
signature up to its SignerInfo and the shape of the rest (:mod:`pipeline.core.der`) are
read once per provider. These tests warm every cache with a good message of one signer
and then show the checks that belong to each message still run: the digest of THIS
content, the signature over THIS message's signed attributes, validity at THIS time.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.core import der
from pipeline.core.examine import examine
from pipeline.core.model import Integrity, Kind, Recipient, RecipientType, Trust
from pipeline.core.parse import read_layout
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import Pki
from pipeline.simulate.provider import Notice, Provider
from pipeline.simulate.render import OriginalMessage
from tests.factories import PROVIDER_NAMES, make_receipt

AT = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
ORIGINAL = OriginalMessage(
    sender="mario.rossi@pec.example.it",
    recipients=(Recipient("to@pec.other.it", RecipientType.CERTIFICATO),),
    subject="Diffida n. 42",
    msgid="<20240301100000.42@client.example.it>",
    date=AT,
    body="Gentile destinatario,\n",
)


def notice(at: datetime = AT, number: int = 42) -> Notice:
    return Notice(
        Kind.AVVENUTA_CONSEGNA,
        ORIGINAL,
        f"opec288.20240301100000.{number:05d}.42.1.10@pec.aruba.it",
        at,
        delivery_recipient="to@pec.other.it",
    )


@pytest.fixture(scope="module")
def aruba(pki: Pki) -> Provider:
    signer = pki.signer("ARUBA PEC S.p.A.", "pec.aruba.it")
    return Provider("ARUBA PEC S.p.A.", "pec.aruba.it", signer)


def _signature_span(raw: bytes) -> tuple[int, bytes]:
    layout = read_layout(raw)
    assert layout.signature is not None
    return len(layout.signature), layout.signature


def _fresh_read(blob: bytes) -> der.SignedDataFields | None:
    """read_signed_data with no cached head or tail: the whole walk."""
    heads, tails = dict(der._HEADS), dict(der._TAILS)
    der._HEADS.clear()
    der._TAILS.clear()
    try:
        return der.read_signed_data(blob)
    finally:
        der._HEADS.clear()
        der._TAILS.clear()
        der._HEADS.update(heads)
        der._TAILS.update(tails)


def test_same_certificate_tampered_content_is_invalid(aruba: Provider, trust: TrustStore) -> None:
    """A good message of a signer, then one of the same signer with its body changed, then
    a good one again: only the tampered one is invalid (nothing cached passes it)."""
    good = aruba.issue(notice())
    assert examine(good, trust).signature.integrity is Integrity.VALID
    marker = good.index(b"Content-Type: application/xml")
    tampered = good[:marker] + good[marker:].replace(b"\r\n\r\n", b"\r\n\r\n ", 1)
    assert _signature_span(tampered) == _signature_span(good)  # the same cached signature
    report = examine(tampered, trust).signature
    assert report.integrity is Integrity.INVALID
    assert report.trust is Trust.TRUSTED  # the certificate is fine; the content is not
    assert examine(good, trust).signature.integrity is Integrity.VALID


def test_changed_values_in_a_cached_signature_shape_are_checked(
    aruba: Provider, trust: TrustStore
) -> None:
    """The signing time and the messageDigest are read from where the provider's last
    signature had them; changed there, the signature over the attributes fails."""
    good = aruba.issue(notice())
    examine(good, trust)
    layout = read_layout(good)
    assert layout.signature is not None
    fields = der.read_signed_data(layout.signature)
    assert fields is not None
    assert fields.signing_time == AT
    assert fields.message_digest is not None
    time_at = layout.signature.index(b"240301100000Z")
    for where in (time_at + 1, layout.signature.index(fields.message_digest)):
        changed = bytearray(layout.signature)
        changed[where] = ord("3") if where == time_at + 1 else changed[where] ^ 0x01
        encoded = _reencode(good, layout.signature, bytes(changed))
        examined = examine(encoded, trust)
        assert examined.signature.integrity is Integrity.INVALID, where
    assert examine(good, trust).signature.integrity is Integrity.VALID


def _reencode(raw: bytes, old: bytes, new: bytes) -> bytes:
    """``raw`` with its smime.p7s replaced by ``new`` (same length, base64 as stored)."""
    start = raw.index(b'filename="smime.p7s"')
    body = raw.index(b"\r\n\r\n", start) + 4
    end = raw.index(b"\r\n\r\n", body)
    stored = raw[body:end]
    assert base64.b64decode(stored) == old
    lines = base64.b64encode(new)
    width = stored.index(b"\r\n") if b"\r\n" in stored else len(stored)
    wrapped = b"\r\n".join(lines[i : i + width] for i in range(0, len(lines), width))
    return raw[:body] + wrapped + raw[end:]


def test_validity_is_checked_at_each_signing_time(pki: Pki, trust: TrustStore) -> None:
    """One certificate, its path cached by a message inside its validity: a message it
    signed after its expiry is untrusted, and one inside is trusted again."""
    short = pki.signer(
        "ARUBA PEC S.p.A.",
        "pec.aruba.it",
        not_before=AT - timedelta(days=30),
        not_after=AT + timedelta(days=1),
    )
    provider = Provider("ARUBA PEC S.p.A.", "pec.aruba.it", short)
    inside, after = provider.issue(notice()), provider.issue(notice(AT + timedelta(days=2), 43))
    for raw, expected in (
        (inside, Trust.TRUSTED),
        (after, Trust.UNTRUSTED),
        (inside, Trust.TRUSTED),
    ):
        report = examine(raw, trust).signature
        assert (report.integrity, report.trust) == (Integrity.VALID, expected)
    assert examine(after, trust).signature.trust_reason == "expired-at-signing-time"


def test_a_cached_tail_reads_what_the_walk_reads(aruba: Provider) -> None:
    """Signatures of one provider and length: read after another, the same fields as a
    walk with nothing cached; a changed byte outside the values: the walk's answer."""
    blobs: dict[int, list[bytes]] = {}
    for number in range(12):
        raw = aruba.issue(notice(AT + timedelta(minutes=number), 100 + number))
        size, blob = _signature_span(raw)
        blobs.setdefault(size, []).append(blob)
    same_length = max(blobs.values(), key=len)
    assert len(same_length) >= 2
    for blob in same_length:
        assert der.read_signed_data(blob) == _fresh_read(blob)
    first = same_length[0]
    der.read_signed_data(first)
    tail = der._TAILS[len(first)]
    offset, expected = tail.same[-1]  # e.g. the signatureAlgorithm or the signature's header
    for delta in range(len(expected)):
        changed = bytearray(first)
        changed[offset + delta] ^= 0x01
        der.read_signed_data(first)  # the template is the unchanged one's
        assert der.read_signed_data(bytes(changed)) == _fresh_read(bytes(changed))


def test_certificates_split_as_asn1crypto_splits_them() -> None:
    """The CMS certificates field of every simulated provider: the same certificates as
    asn1crypto's CertificateSet; other choices or BER are left to asn1crypto."""
    from asn1crypto import cms  # noqa: PLC0415

    for name in PROVIDER_NAMES:
        layout = read_layout(make_receipt(provider=name))
        assert layout.signature is not None
        fields = der.read_signed_data(layout.signature)
        assert fields is not None
        assert fields.certificates
        expected = tuple(
            choice.chosen.dump()
            for choice in cms.CertificateSet.load(b"\x31" + fields.certificates[1:])
        )
        assert der.split_certificates(fields.certificates) == expected
        assert len(expected) >= 1
        field = fields.certificates
        at = der.read_tlv(field, 0, len(field)).body  # the first certificate's tag
        assert field[at] == der.SEQUENCE
        other_choice = field[:at] + bytes((0xA1,)) + field[at + 1 :]  # [1] attribute cert
        assert der.split_certificates(other_choice) is None
        assert der.split_certificates(field + b"\x00") is None
