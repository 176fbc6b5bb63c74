"""Detached CMS (PKCS#7) SignedData, as PEC providers put in ``smime.p7s``.

The structure ``openssl cms -cmsout -print`` shows for a real receipt, and that this builds::

    contentType: pkcs7-signedData
      version: 1
      digestAlgorithms: sha1 | sha256
      encapContentInfo: eContentType pkcs7-data, eContent <ABSENT>   (detached)
      certificates: the provider signer (+ intermediates)
      signerInfos: sid issuerAndSerialNumber, signedAttrs contentType,
                   signingTime (UTCTime), messageDigest; rsaEncryption | ecdsa-with-SHA*

The signing time is an argument (simulated time), never the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pipeline.simulate.ca import Identity


class DigestAlgorithm(StrEnum):
    SHA1 = "sha1"  # still used by real providers in 2024
    SHA256 = "sha256"

    @property
    def micalg(self) -> str:
        """The ``micalg`` parameter of ``multipart/signed`` (RFC 5751 spelling)."""
        return "sha1" if self is DigestAlgorithm.SHA1 else "sha-256"

    def _hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA1() if self is DigestAlgorithm.SHA1 else hashes.SHA256()  # noqa: S303


def _asn1_certificate(identity_cert: bytes) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(identity_cert)


def _signing_time(at: datetime) -> cms.Time:
    """UTCTime before 2050, GeneralizedTime after (RFC 5652 section 11.3)."""
    at = at.astimezone(UTC)
    if at.year < 2050:
        return cms.Time(name="utc_time", value=core.UTCTime(at))
    return cms.Time(name="generalized_time", value=core.GeneralizedTime(at))


def sign_detached(
    content: bytes,
    signer: Identity,
    *,
    signing_time: datetime,
    digest: DigestAlgorithm = DigestAlgorithm.SHA256,
    pss: bool = False,
    extra_attributes: Sequence[cms.CMSAttribute] = (),
) -> bytes:
    """DER ``ContentInfo`` carrying a detached signature over ``content``.

    ``content`` must already be the CRLF-canonical signed part. ``pss`` (RSA keys only)
    signs with RSASSA-PSS and ``extra_attributes`` follow the usual three signed
    attributes: variants no simulated provider uses, for the verifier's tests.
    """
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    cert = _asn1_certificate(der)
    message_digest = hashlib.new(digest.value, content).digest()
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [_signing_time(signing_time)]}),
            cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}),
            *extra_attributes,
        ]
    )
    to_sign = signed_attrs.dump()  # DER with the universal SET tag, as RFC 5652 5.4 says
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey) and pss:
        scheme = padding.PSS(padding.MGF1(digest._hash()), digest._hash().digest_size)
        signature = key.sign(to_sign, scheme, digest._hash())
        signature_algorithm = "rsassa_pss"
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), digest._hash())
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        signature = key.sign(to_sign, ec.ECDSA(digest._hash()))
        signature_algorithm = f"{digest.value}_ecdsa"
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": cert.issuer, "serial_number": cert.serial_number}
                ),
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest.value}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
            "signature": signature,
        }
    )
    certificates = [cert] + [
        _asn1_certificate(c.public_bytes(serialization.Encoding.DER)) for c in signer.chain
    ]
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest.value})],
            "encap_content_info": {"content_type": "data"},
            "certificates": [
                cms.CertificateChoices(name="certificate", value=c) for c in certificates
            ],
            "signer_infos": [signer_info],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(info.dump())
