"""The test PKI has the shape of the real one (AgID CA1 and provider signers)."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.simulate.ca import KeyAlgorithm, Pki, default_pki, private_key


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_anchor_is_a_self_signed_ca_named_like_agid_ca1() -> None:
    """The anchor is a CA, self-issued, CN "Test AgID CA1"."""
    anchor = default_pki().anchor.certificate
    assert _cn(anchor.subject) == "Test AgID CA1"
    assert anchor.subject == anchor.issuer
    assert anchor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    anchor.verify_directly_issued_by(anchor)


def test_provider_signer_looks_like_a_real_one() -> None:
    """CN, email SAN, emailProtection, digitalSignature+nonRepudiation, issued by the anchor."""
    pki = default_pki()
    cert = pki.signer("ARUBA PEC S.p.A.", "pec.aruba.it").certificate
    assert _cn(cert.subject) == "Posta Certificata ARUBA PEC S.p.A."
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["posta-certificata@pec.aruba.it"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.content_commitment
    assert not usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(pki.anchor.certificate)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048


def test_ecdsa_signer_uses_p256() -> None:
    """The ECDSA option gives a P-256 key, still issued by the anchor."""
    pki = default_pki()
    cert = pki.signer("Namirial S.p.A.", "sicurezzapostale.it", KeyAlgorithm.ECDSA).certificate
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(pki.anchor.certificate)


def test_validity_dates_are_parameters() -> None:
    """A signer can be made expired (or not yet valid) at a chosen time."""
    not_before = datetime(2019, 1, 1, tzinfo=UTC)
    not_after = datetime(2020, 1, 1, tzinfo=UTC)
    cert = (
        default_pki()
        .signer("Old S.p.A.", "pec.old.it", not_before=not_before, not_after=not_after)
        .certificate
    )
    assert cert.not_valid_before_utc == not_before
    assert cert.not_valid_after_utc == not_after


def test_forgery_identities_do_not_chain_to_the_anchor() -> None:
    """Self-signed and untrusted-CA signers carry the right names but another issuer."""
    pki = default_pki()
    self_signed = pki.self_signed("ARUBA PEC S.p.A.", "pec.aruba.it").certificate
    untrusted = pki.untrusted("ARUBA PEC S.p.A.", "pec.aruba.it").certificate
    assert self_signed.issuer == self_signed.subject
    self_signed.verify_directly_issued_by(self_signed)
    assert untrusted.issuer == pki.untrusted_ca.certificate.subject
    untrusted.verify_directly_issued_by(pki.untrusted_ca.certificate)
    for cert in (self_signed, untrusted):
        assert _cn(cert.subject) == "Posta Certificata ARUBA PEC S.p.A."
        assert cert.issuer != pki.anchor.certificate.subject


def test_signer_of_another_domain_is_genuine_but_names_that_domain() -> None:
    """A valid certificate for another provider: trusted, yet the wrong signer."""
    cert = default_pki().signer("Altro Gestore S.p.A.", "pec.altrogestore.it").certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["posta-certificata@pec.altrogestore.it"]


def test_keys_and_certificates_are_cached_per_process() -> None:
    """Keys are made once per name; the same signer is the same object."""
    assert private_key("x", KeyAlgorithm.ECDSA) is private_key("x", KeyAlgorithm.ECDSA)
    pki = default_pki()
    assert pki.signer("A", "a.it") is pki.signer("A", "a.it")
    assert default_pki() is pki


def test_a_second_pki_with_the_same_names_reuses_the_anchor_key() -> None:
    """Keys are cached by name, so a fresh Pki chains to the same anchor key."""
    other = Pki()
    assert other.anchor.key is default_pki().anchor.key


def test_anchor_pem_loads_as_the_anchor() -> None:
    """The exported trust store is the anchor certificate in PEM."""
    pem = default_pki().anchor_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert x509.load_pem_x509_certificate(pem) == default_pki().anchor.certificate
