"""The detached CMS signer makes real CMS: openssl verifies it, and refuses tampering."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.serialization import Encoding

from pipeline.simulate.ca import Identity, KeyAlgorithm, default_pki
from pipeline.simulate.cms import DigestAlgorithm, sign_detached
from tests.simulate.helpers import needs_openssl, openssl_verify

AT = datetime(2024, 3, 1, 9, 0, 1, tzinfo=UTC)
CONTENT = b'Content-Type: text/plain; charset="UTF-8"\r\n\r\nIl giorno 01/03/2024 ...\r\n'


def _signer(algorithm: KeyAlgorithm = KeyAlgorithm.RSA) -> Identity:
    return default_pki().signer("ARUBA PEC S.p.A.", "pec.aruba.it", algorithm)


@needs_openssl
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
@pytest.mark.parametrize("digest", list(DigestAlgorithm))
def test_openssl_verifies_the_signature(
    algorithm: KeyAlgorithm, digest: DigestAlgorithm, tmp_path: Path
) -> None:
    """RSA and ECDSA, SHA-1 and SHA-256: openssl cms -verify accepts against the anchor."""
    der = sign_detached(CONTENT, _signer(algorithm), signing_time=AT, digest=digest)
    result = openssl_verify(CONTENT, der, default_pki().anchor_pem(), AT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


@needs_openssl
def test_openssl_rejects_one_changed_byte(tmp_path: Path) -> None:
    """One byte of content changed after signing fails verification."""
    der = sign_detached(CONTENT, _signer(), signing_time=AT)
    tampered = CONTENT.replace(b"giorno", b"Giorno")
    result = openssl_verify(tampered, der, default_pki().anchor_pem(), AT, tmp_path)
    assert result.returncode != 0
    assert "content verify error" in result.stderr


@needs_openssl
def test_openssl_rejects_signers_outside_the_trust_store(tmp_path: Path) -> None:
    """Self-signed and untrusted-CA signers do not verify against the anchor."""
    pki = default_pki()
    for signer in (pki.self_signed("X", "pec.x.it"), pki.untrusted("X", "pec.x.it")):
        der = sign_detached(CONTENT, signer, signing_time=AT)
        result = openssl_verify(CONTENT, der, pki.anchor_pem(), AT, tmp_path)
        assert result.returncode != 0
        unchecked = openssl_verify(CONTENT, der, pki.anchor_pem(), AT, tmp_path, "-noverify")
        assert unchecked.returncode == 0, unchecked.stderr


@needs_openssl
def test_openssl_rejects_a_signer_expired_at_signing_time(tmp_path: Path) -> None:
    """A certificate that expired before the signing time fails at that time."""
    expired = default_pki().signer(
        "ARUBA PEC S.p.A.",
        "pec.aruba.it",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2023, 1, 1, tzinfo=UTC),
    )
    der = sign_detached(CONTENT, expired, signing_time=AT)
    result = openssl_verify(CONTENT, der, default_pki().anchor_pem(), AT, tmp_path)
    assert result.returncode != 0
    assert "expired" in result.stderr


def test_structure_is_that_of_a_provider_signature() -> None:
    """Detached, v1, issuerAndSerialNumber, signed attributes in order, signer embedded."""
    signer = _signer()
    der = sign_detached(CONTENT, signer, signing_time=AT, digest=DigestAlgorithm.SHA1)
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    assert signed["version"].native == "v1"
    assert signed["encap_content_info"]["content_type"].native == "data"
    assert signed["encap_content_info"]["content"].native is None  # detached
    assert [a["algorithm"].native for a in signed["digest_algorithms"]] == ["sha1"]
    (certificate,) = signed["certificates"]
    assert certificate.chosen.dump() == signer.certificate.public_bytes(Encoding.DER)
    (signer_info,) = signed["signer_infos"]
    sid = signer_info["sid"]
    assert sid.name == "issuer_and_serial_number"
    assert sid.chosen["serial_number"].native == signer.certificate.serial_number
    attrs = signer_info["signed_attrs"]
    assert [a["type"].native for a in attrs] == ["content_type", "signing_time", "message_digest"]
    signing_time = attrs[1]["values"][0]
    assert signing_time.name == "utc_time"
    assert signing_time.native == AT
    assert attrs[2]["values"][0].native == hashlib.sha1(CONTENT).digest()
    assert signer_info["signature_algorithm"]["algorithm"].native == "rsassa_pkcs1v15"


def test_ecdsa_signature_algorithm_names_the_digest() -> None:
    """ECDSA signer infos say ecdsa-with-SHA256."""
    der = sign_detached(CONTENT, _signer(KeyAlgorithm.ECDSA), signing_time=AT)
    signer_info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"


def test_signing_time_from_2050_is_generalized_time() -> None:
    """RFC 5652: UTCTime up to 2049, GeneralizedTime after."""
    later = datetime(2051, 1, 1, tzinfo=UTC)
    der = sign_detached(CONTENT, _signer(), signing_time=later)
    attrs = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]
    assert attrs[1]["values"][0].name == "generalized_time"
    assert attrs[1]["values"][0].native == later


def test_micalg_spelling() -> None:
    """multipart/signed says sha1 and sha-256."""
    assert DigestAlgorithm.SHA1.micalg == "sha1"
    assert DigestAlgorithm.SHA256.micalg == "sha-256"


def test_intermediates_are_embedded_with_the_signer() -> None:
    """Certificates listed in Identity.chain travel in SignedData.certificates (a DER SET)."""
    anchor = default_pki().anchor.certificate
    signer = replace(_signer(), chain=(anchor,))
    der = sign_detached(CONTENT, signer, signing_time=AT)
    embedded = [c.chosen.dump() for c in cms.ContentInfo.load(der)["content"]["certificates"]]
    assert sorted(embedded) == sorted(
        [signer.certificate.public_bytes(Encoding.DER), anchor.public_bytes(Encoding.DER)]
    )
