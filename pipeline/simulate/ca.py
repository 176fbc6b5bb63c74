"""A test PKI shaped like the real PEC one, generated at run time.

The anchor mirrors AgID CA1; provider signers look like the certificates real providers
sign receipts with::

    Subject: CN=Posta Certificata ARUBA PEC S.p.A., O=ARUBA PEC S.p.A., C=IT
    Issuer:  CN=Test AgID CA1, O=Test Agenzia per l'Italia Digitale, C=IT
    X509v3 Subject Alternative Name: email:posta-certificata@pec.aruba.it
    X509v3 Key Usage: critical, Digital Signature, Non Repudiation
    X509v3 Extended Key Usage: E-mail Protection

Keys are cached per process by name (RSA-2048 generation costs ~50 ms), so a test suite
builds the whole PKI once. Nothing here reads the clock: validity dates are arguments.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DEFAULT_NOT_BEFORE = datetime(2015, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2040, 1, 1, tzinfo=UTC)


class KeyAlgorithm(StrEnum):
    RSA = "rsa"  # RSA-2048, what most providers use
    ECDSA = "ecdsa"  # P-256


@dataclass(frozen=True, slots=True, eq=False)
class Identity:
    """A certificate with its private key and the intermediates a signer embeds."""

    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def common_name(self) -> str:
        attrs = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@functools.cache
def private_key(name: str, algorithm: KeyAlgorithm = KeyAlgorithm.RSA) -> PrivateKey:
    """The process-wide key for ``name``: the same object on every call."""
    if algorithm is KeyAlgorithm.ECDSA:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _serial(*parts: str) -> int:
    """A stable positive serial number, so two certificates never collide in a test."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:16], "big") >> 1


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_ca(
    common_name: str = "Test AgID CA1",
    *,
    organisation: str = "Test Agenzia per l'Italia Digitale",
    not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
) -> Identity:
    """A self-signed root CA (RSA), like AgID CA1."""
    key = private_key(f"ca:{common_name}")
    name = _name(common_name, organisation)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial("ca", common_name, not_before.isoformat()))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(certificate=cert, key=key)


def issue_provider_signer(
    issuer: Identity | None,
    provider_name: str,
    domain: str,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
    not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
) -> Identity:
    """The certificate a provider signs PEC messages with.

    ``issuer=None`` makes it self-signed: the shape of a forgery.
    """
    key = private_key(f"provider:{provider_name}:{domain}", algorithm)
    subject = _name(f"Posta Certificata {provider_name}", provider_name)
    issuer_name = subject if issuer is None else issuer.certificate.subject
    signing_key: PrivateKey = key if issuer is None else issuer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(
            _serial(
                "signer",
                issuer_name.rfc4514_string(),
                provider_name,
                domain,
                algorithm,
                not_before.isoformat(),
                not_after.isoformat(),
            )
        )
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(f"posta-certificata@{domain}")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    return Identity(certificate=cert, key=key)


class Pki:
    """The trusted anchor, an untrusted second CA, and provider signers issued on demand.

    >>> pki = default_pki()
    >>> pki.signer("ARUBA PEC S.p.A.", "pec.aruba.it").common_name
    'Posta Certificata ARUBA PEC S.p.A.'
    """

    __slots__ = ("_signers", "anchor", "untrusted_ca")

    def __init__(self, anchor_name: str = "Test AgID CA1") -> None:
        self.anchor = issue_ca(anchor_name)
        self.untrusted_ca = issue_ca("Untrusted Test CA", organisation="Not A Trust Service")
        self._signers: dict[tuple[str, str, str, KeyAlgorithm, datetime, datetime], Identity] = {}

    def anchor_pem(self) -> bytes:
        """The trust store the verifier loads (``pectrack inspect --trust anchor.pem``)."""
        return self.anchor.certificate_pem()

    def _issue(
        self,
        issuer: str,
        provider_name: str,
        domain: str,
        *,
        algorithm: KeyAlgorithm,
        not_before: datetime,
        not_after: datetime,
    ) -> Identity:
        key = (issuer, provider_name, domain, algorithm, not_before, not_after)
        if key not in self._signers:
            ca = {"anchor": self.anchor, "untrusted": self.untrusted_ca, "self": None}[issuer]
            self._signers[key] = issue_provider_signer(
                ca,
                provider_name,
                domain,
                algorithm=algorithm,
                not_before=not_before,
                not_after=not_after,
            )
        return self._signers[key]

    def signer(
        self,
        provider_name: str,
        domain: str,
        algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
        *,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> Identity:
        """A genuine provider signer issued by the anchor (pass dates to make it expired)."""
        return self._issue(
            "anchor",
            provider_name,
            domain,
            algorithm=algorithm,
            not_before=not_before,
            not_after=not_after,
        )

    def self_signed(
        self, provider_name: str, domain: str, algorithm: KeyAlgorithm = KeyAlgorithm.RSA
    ) -> Identity:
        """A forgery: right names, but signed by its own key."""
        return self._issue(
            "self",
            provider_name,
            domain,
            algorithm=algorithm,
            not_before=DEFAULT_NOT_BEFORE,
            not_after=DEFAULT_NOT_AFTER,
        )

    def untrusted(
        self, provider_name: str, domain: str, algorithm: KeyAlgorithm = KeyAlgorithm.RSA
    ) -> Identity:
        """Right names, issued by a CA that is not in the trust store."""
        return self._issue(
            "untrusted",
            provider_name,
            domain,
            algorithm=algorithm,
            not_before=DEFAULT_NOT_BEFORE,
            not_after=DEFAULT_NOT_AFTER,
        )


@functools.cache
def default_pki() -> Pki:
    """The process-wide test PKI: one anchor shared by every simulated provider."""
    return Pki()
