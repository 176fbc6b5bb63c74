"""The SdI's XAdES signature on its notification files: intact or not, and who signed.

The SdI signs each notification it sends (RC, NS, MC, NE, DT, AT, MT) with an enveloped
XAdES signature, a ``ds:Signature`` child of the root element::

    <types:RicevutaConsegna ...>
      <IdentificativoSdI>111</IdentificativoSdI> ...
      <ds:Signature>
        <ds:SignedInfo> <ds:Reference URI="">           (the document, enveloped)
                        <ds:Reference URI="#...">       (xades:SignedProperties)
        <ds:SignatureValue/> <ds:KeyInfo><ds:X509Data><ds:X509Certificate/>
        <ds:Object><xades:QualifyingProperties> ... SigningCertificate(V2) ...

:func:`check_xades` verifies it with signxml's ``XAdESVerifier`` (lxml's parser with
entities off; the file has already passed :mod:`pipeline.core.sdi_xml`'s hardened
reader, which refuses any DTD) against the certificate the signature carries:

* **checked**: the signature value over ``SignedInfo`` with that certificate's key; the
  digest of every ``Reference``; that one of them is the whole document (``URI=""``, so
  what :mod:`pipeline.core.sdi` reads is what was signed); the ``ds:Signature`` sits
  under the root; the ``SigningCertificate``/``SigningCertificateV2`` digest in the
  signed properties equals that certificate;
* **not checked**: that the certificate chains to a trust anchor (pectrack ships none
  for the SdI: its subject and issuer are reported, for a consumer who holds one),
  revocation, the signing time against the certificate's validity. SHA-1 is accepted,
  as for the PEC providers' own signatures.

So ``intact`` says the file is byte for byte (after canonicalisation) what the holder of
that certificate signed. Bad input is data: a broken, truncated or hostile signature is
``intact=False`` with the reason, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from cryptography import x509

__all__ = ["XadesCheck", "check_xades"]

MAX_REASON_CHARS: Final = 200
MAX_NAME_CHARS: Final = 300
# the first certificate the signature carries (the signer's, by XAdES practice)
_CERTIFICATE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?X509Certificate\s*>([^<]{1,65536})<")


@dataclass(frozen=True, slots=True)
class XadesCheck:
    """The verdict on one file's XAdES signature (see the module)."""

    intact: bool
    signer: str | None  # the certificate's subject, RFC 4514
    issuer: str | None
    reason: str | None  # why not intact


def check_xades(data: bytes, root: str) -> XadesCheck:
    """Verify the enveloped XAdES signature of ``data`` (a file known to carry one);
    ``root``: its root element's name in lxml's ``{namespace}local`` form."""
    certificate = _signer_certificate(data)
    if certificate is None:
        return XadesCheck(False, None, None, "no readable X509Certificate in the signature")
    signer = certificate.subject.rfc4514_string()[:MAX_NAME_CHARS]
    issuer = certificate.issuer.rfc4514_string()[:MAX_NAME_CHARS]
    reason = _verify(data, certificate, root)
    return XadesCheck(reason is None, signer, issuer, reason)


def _signer_certificate(data: bytes) -> x509.Certificate | None:
    match = _CERTIFICATE.search(data)
    if match is None:
        return None
    try:
        der = base64.b64decode(b"".join(match[1].split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        return None


def _verify(data: bytes, certificate: x509.Certificate, root: str) -> str | None:
    """None when intact, else why not."""
    # imported on first use: only SdI files need signxml and lxml (start-up of inspect)
    from signxml.algorithms import DigestAlgorithm, SignatureMethod  # noqa: PLC0415
    from signxml.xades.xades import (  # noqa: PLC0415
        XAdESSignatureConfiguration,
        XAdESVerifier,
    )

    config = XAdESSignatureConfiguration(
        location="./",  # a child of the root: enveloped, as the SdI signs
        expect_references=True,  # any number: the document, the signed properties, ...
        signature_methods=frozenset(m for m in SignatureMethod if not m.name.startswith("HMAC")),
        digest_algorithms=frozenset(DigestAlgorithm),
    )
    try:
        results = XAdESVerifier().verify(data, x509_cert=certificate, expect_config=config)
    except Exception as exc:  # any failure on hostile input is a verdict, never raised
        return f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
    if not any(r.signed_xml is not None and r.signed_xml.tag == root for r in results):
        return "no reference covers the whole document"
    return None
