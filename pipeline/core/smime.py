"""S/MIME verification of a PEC message: integrity, trust and signer, reported apart.

A PEC message is ``multipart/signed`` with a detached CMS SignedData (``smime.p7s``) over
the CRLF-canonicalised bytes of its first part. Checked in order:

1. integrity: the signed attributes' messageDigest equals the digest of the signed part
   (SHA-1 accepted: providers used it as late as 2024) and the signer's key verifies the
   signature (RSA PKCS#1 v1.5 / PSS, ECDSA);
2. trust: the signer certificate chains to an anchor key AT the CMS signingTime
   (:mod:`pipeline.core.trust`);
3. signer: its ``posta-certificata@<domain>`` address belongs to the provider whose
   address the message comes from (``From: posta-certificata@pec.aruba.it``). From is not
   signed, so :func:`pipeline.core.examine.issuer_defects` also ties the signer to the
   signed daticert ``identificativo`` where the kind allows it.

The signing time and the trust store are arguments: nothing here reads a clock.
The CMS is read by :mod:`pipeline.core.der` when it has the usual shape, else by
asn1crypto (lazily: only the fields below are decoded); both give the same report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from pipeline.core.defects import DefectCode
from pipeline.core.der import SignedDataFields, read_signed_data, split_certificates
from pipeline.core.mime import canonical_crlf
from pipeline.core.model import Defect, Integrity, SignatureReport, Trust
from pipeline.core.parse import DEFAULT_LIMITS, Layout, Limits, read_layout
from pipeline.core.trust import TrustStore, chain_fingerprints

if TYPE_CHECKING:
    from asn1crypto import cms

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_DIGESTERS: dict[str, Callable[[bytes | memoryview], hashlib._Hash]] = {
    "sha1": hashlib.sha1,
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
# asn1crypto decodes lazily, so malformed DER can raise almost anything (ValueError,
# TypeError, KeyError, IndexError, ...) anywhere in the structure, and cryptography adds
# its own (UnsupportedAlgorithm, DuplicateExtension, InvalidVersion...). The signature
# blob is untrusted input: every such error means "invalid", translated here, once.
_ASN1_ERRORS = (Exception,)


def verify(
    raw: bytes,
    trust: TrustStore,
    *,
    fallback_time: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> SignatureReport:
    """Verify a whole message as stored in the mailbox."""
    return verify_layout(read_layout(raw, limits), trust, fallback_time=fallback_time)


def verify_layout(
    layout: Layout, trust: TrustStore, *, fallback_time: datetime | None = None
) -> SignatureReport:
    """Verify the signature found by :func:`read_layout`.

    ``fallback_time`` is used for the trust check when the CMS has no signingTime
    (e.g. the daticert timestamp).
    """
    if layout.signed_content is None or layout.signature is None:
        return _report(Integrity.MISSING, Trust.UNKNOWN, reason="no-signature")
    try:
        return _verify_cms(layout, trust, fallback_time)
    except _ASN1_ERRORS as exc:
        return _report(
            Integrity.INVALID, Trust.UNKNOWN, reason=DefectCode.CMS_MALFORMED, detail=str(exc)
        )


def _verify_cms(
    layout: Layout, trust: TrustStore, fallback_time: datetime | None
) -> SignatureReport:
    """The DER fast path when it understands the blob, else asn1crypto: one outcome."""
    assert layout.signature is not None
    fields = read_signed_data(layout.signature)
    if fields is not None:
        try:
            return _verify_fields(fields, layout, trust, fallback_time)
        except _ASN1_ERRORS:
            pass  # the asn1crypto path meets the same error and reports it
    return _verify_asn1(layout, trust, fallback_time)


def _verify_fields(
    fields: SignedDataFields, layout: Layout, trust: TrustStore, fallback_time: datetime | None
) -> SignatureReport:
    """:func:`_verify_asn1` over fields read by :mod:`pipeline.core.der`."""
    assert layout.signed_content is not None
    signer = _signer_by_issuer(fields.certificates, fields.issuer, fields.serial)
    if signer is None:
        return _report(
            Integrity.INVALID,
            Trust.UNKNOWN,
            reason=DefectCode.NO_SIGNER_CERTIFICATE,
            digest=fields.digest,
        )
    hash_type = _HASHES[fields.digest]
    if fields.signed_attrs is not None:
        digest_ok = _digest_matches(fields.digest, layout.signed_content, fields.message_digest)
        to_verify: list[bytes] = [fields.signed_attrs]
    else:
        digest_ok = True
        to_verify = list(_content_candidates(bytes(layout.signed_content)))
    signature_ok = any(
        _signature_ok(signer, fields.signature, data, hash_type(), lambda: fields.pss)
        for data in to_verify
    )
    integrity = Integrity.VALID if digest_ok and signature_ok else Integrity.INVALID
    return _outcome(
        signer,
        integrity,
        signing_time=fields.signing_time,
        digest_name=fields.digest,
        layout=layout,
        trust=trust,
        fallback_time=fallback_time,
    )


def _verify_asn1(
    layout: Layout, trust: TrustStore, fallback_time: datetime | None
) -> SignatureReport:
    from asn1crypto import cms  # noqa: PLC0415  (only for signatures der.py leaves to it)

    assert layout.signed_content is not None
    assert layout.signature is not None
    info = cms.ContentInfo.load(layout.signature)
    if info["content_type"].native != "signed_data":
        return _report(Integrity.INVALID, Trust.UNKNOWN, reason=DefectCode.NOT_SIGNED_DATA)
    signed_data = info["content"]
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) == 0:
        return _report(Integrity.INVALID, Trust.UNKNOWN, reason=DefectCode.NO_SIGNER_INFO)
    signer_info = signer_infos[0]
    certificates_der = signed_data["certificates"].dump()
    _load_certificates(certificates_der)  # first: its errors come before the sid's
    signer = _find_signer(signer_info["sid"], certificates_der)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    hash_type = _HASHES.get(digest_name)
    if signer is None:
        return _report(
            Integrity.INVALID, Trust.UNKNOWN, reason=DefectCode.NO_SIGNER_CERTIFICATE,
            digest=digest_name,
        )  # fmt: skip
    if hash_type is None:
        return _report(
            Integrity.INVALID, Trust.UNKNOWN, reason=DefectCode.UNSUPPORTED_DIGEST,
            detail=digest_name, digest=digest_name,
        )  # fmt: skip

    signed_attrs = signer_info["signed_attrs"]
    signing_time = None
    if signed_attrs.contents:  # absent (asn1crypto Void) when the content is signed directly
        attrs = {attr["type"].native: attr["values"][0] for attr in signed_attrs}
        expected = attrs["message_digest"].native if "message_digest" in attrs else None
        if "signing_time" in attrs:
            signing_time = attrs["signing_time"].native
        digest_ok = _digest_matches(digest_name, layout.signed_content, expected)
        to_verify = [b"\x31" + signed_attrs.dump()[1:]]  # signed as a SET, stored as [0]
    else:
        digest_ok = True
        to_verify = list(_content_candidates(bytes(layout.signed_content)))
    signature = signer_info["signature"].native
    algorithm = signer_info["signature_algorithm"]
    signature_ok = any(
        _signature_ok(
            signer, signature, data, hash_type(), lambda: algorithm.signature_algo == "rsassa_pss"
        )
        for data in to_verify
    )
    integrity = Integrity.VALID if digest_ok and signature_ok else Integrity.INVALID
    return _outcome(
        signer,
        integrity,
        signing_time=signing_time,
        digest_name=digest_name,
        layout=layout,
        trust=trust,
        fallback_time=fallback_time,
    )


def _outcome(
    signer: _Signer,
    integrity: Integrity,
    *,
    signing_time: datetime | None,
    digest_name: str,
    layout: Layout,
    trust: TrustStore,
    fallback_time: datetime | None,
) -> SignatureReport:
    at = signing_time or fallback_time
    defects = _signer_defects(signer, layout)
    reason: str | None = "no-signing-time"
    if at is None:
        trust_outcome = Trust.UNKNOWN
    else:
        decision = trust.evaluate(
            signer.certificate, signer.others, at, fingerprints=signer.fingerprints
        )
        trust_outcome = Trust.TRUSTED if decision.trusted else Trust.UNTRUSTED
        reason = decision.reason
    return SignatureReport(
        integrity=integrity,
        trust=trust_outcome,
        signer=signer.common_name,
        signer_email=signer.email,
        signing_time=signing_time,
        digest=digest_name,
        trust_reason=reason,
        defects=defects,
    )


def _digest_matches(digest_name: str, content: memoryview, expected: bytes | None) -> bool:
    """Does the messageDigest match the canonical form, or else the stored bytes?

    The stored bytes are hashed first: mail fetched over IMAP is already CRLF, so the
    canonical form is the same bytes and neither the bare-LF scan nor a rewrite of a
    large body is needed. Same answer as trying :func:`_content_candidates` in turn.
    """
    if expected is None:
        return False
    new = _DIGESTERS.get(digest_name) or (lambda data: hashlib.new(digest_name, data))
    if new(content).digest() == expected:
        return True
    stored = bytes(content)
    canonical = canonical_crlf(stored)
    return canonical is not stored and new(canonical).digest() == expected


def _content_candidates(content: bytes) -> tuple[bytes, ...]:
    """The canonical CRLF form first; the stored bytes as a fallback for odd signers."""
    canonical = canonical_crlf(content)
    return (canonical,) if canonical == content else (canonical, content)


def _signature_ok(
    signer: _Signer,
    signature: bytes,
    data: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    is_pss: Callable[[], bool],
) -> bool:
    """``is_pss`` is asked only for an RSA key (asn1crypto may raise on an unknown OID)."""
    key = signer.key
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if is_pss():
                pss = padding.PSS(padding.MGF1(hash_algorithm), padding.PSS.AUTO)
                key.verify(signature, data, pss, hash_algorithm)
            else:
                key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


class _Signer:
    """The signer certificate, and what each message it signs needs from it, memoised.

    One per (certificates, sid), cached by those bytes: an ``x509.Certificate`` hashes
    its whole DER on every call, so a per-certificate cache lookup costs ~2.5 us, and a
    message made several. Each value is computed where it was always computed (first
    use), so a certificate that makes one of them raise fails at the same step.
    """

    __slots__ = ("_common_name", "_email", "_fingerprints", "_key", "certificate", "others")

    def __init__(
        self, certificate: x509.Certificate, certificates: tuple[x509.Certificate, ...]
    ) -> None:
        self.certificate = certificate
        self.others = tuple(c for c in certificates if c != certificate)  # the chain
        self._key: CertificatePublicKeyTypes | None = None
        self._common_name: tuple[str | None] | None = None
        self._email: tuple[str | None] | None = None
        self._fingerprints: tuple[bytes, ...] | None = None

    @property
    def key(self) -> CertificatePublicKeyTypes:
        if self._key is None:
            self._key = self.certificate.public_key()
        return self._key

    @property
    def common_name(self) -> str | None:
        if self._common_name is None:
            self._common_name = (_common_name(self.certificate),)
        return self._common_name[0]

    @property
    def email(self) -> str | None:
        if self._email is None:
            self._email = (signer_email(self.certificate),)
        return self._email[0]

    @property
    def fingerprints(self) -> tuple[bytes, ...]:
        """The trust store's path key: the signer's and the others' fingerprints."""
        if self._fingerprints is None:
            self._fingerprints = chain_fingerprints(self.certificate, self.others)
        return self._fingerprints


@lru_cache(maxsize=1024)
def _signer_by_issuer(certificates_der: bytes, issuer_der: bytes, serial: int) -> _Signer | None:
    """The signer named by an issuerAndSerialNumber sid, from the CMS certificates field."""
    certificates = _load_certificates(certificates_der)
    cert = next(
        (c for c in certificates if c.serial_number == serial and _issuer_der(c) == issuer_der),
        None,
    )
    return None if cert is None else _Signer(cert, certificates)


@lru_cache(maxsize=4096)
def _load_certificates(der: bytes) -> tuple[x509.Certificate, ...]:
    """The CMS ``certificates`` set, cached by its bytes: providers embed the same few."""
    if not der:
        return ()
    plain = split_certificates(der)
    if plain is not None:  # the usual field: asn1crypto would give these same bytes
        return tuple(x509.load_der_x509_certificate(cert) for cert in plain)
    from asn1crypto import cms  # noqa: PLC0415  (imported only when needed: start-up)

    choices = cms.CertificateSet.load(b"\x31" + der[1:])
    return tuple(
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in choices
        if choice.name == "certificate"
    )


def _find_signer(sid: cms.SignerIdentifier, certificates_der: bytes) -> _Signer | None:
    if sid.name == "issuer_and_serial_number":
        serial = sid.chosen["serial_number"].native
        return _signer_by_issuer(certificates_der, sid.chosen["issuer"].dump(), serial)
    certificates = _load_certificates(certificates_der)
    key_id = sid.chosen.native
    for cert in certificates:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            continue
        if ski.digest == key_id:
            return _Signer(cert, certificates)
    return None


@lru_cache(maxsize=4096)
def signer_email(cert: x509.Certificate) -> str | None:
    """``posta-certificata@pec.aruba.it`` from the SAN, else from the subject."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = san.get_values_for_type(x509.RFC822Name)
        if emails:
            return emails[0].lower()
    except x509.ExtensionNotFound:
        pass
    attrs = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    return str(attrs[0].value).lower() if attrs else None


@lru_cache(maxsize=4096)
def _issuer_der(cert: x509.Certificate) -> bytes:
    """The issuer Name as DER, once per certificate (matched against every CMS sid)."""
    return cert.issuer.public_bytes()


@lru_cache(maxsize=4096)
def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def _signer_defects(signer: _Signer, layout: Layout) -> tuple[Defect, ...]:
    """The signer must be the provider the message comes from (its From domain)."""
    email = signer.email
    sender = _address(layout.headers.get("from") or "")
    if email is None:
        return (Defect(DefectCode.SIGNER_WITHOUT_EMAIL, signer.common_name or ""),)
    if not sender:
        return (Defect(DefectCode.SIGNER_DOMAIN_UNVERIFIABLE, "no From address"),)
    if not same_provider_domain(email.rpartition("@")[2], sender.rpartition("@")[2]):
        return (Defect(DefectCode.SIGNER_DOMAIN_MISMATCH, f"signed by {email}, from {sender}"),)
    return ()


def same_provider_domain(signer: str, sender: str) -> bool:
    """``pec.aruba.it`` and ``aruba.it`` are one provider; ``pec.altrogestore.it`` is not.

    Providers sign from ``posta-certificata@<domain>`` and some write their From with a
    parent or child of the certificate's domain, so a label-boundary suffix match in
    either direction counts; a bare public suffix (``it``) never does.
    """
    signer, sender = signer.lower().rstrip("."), sender.lower().rstrip(".")
    if signer == sender:
        return True
    shorter, longer = sorted((signer, sender), key=len)
    return shorter.count(".") >= 1 and longer.endswith("." + shorter)


def _address(value: str) -> str:
    """``"Per conto di: x" <posta-certificata@pec.aruba.it>`` -> the bracketed address."""
    start, end = value.rfind("<"), value.rfind(">")
    if 0 <= start < end:
        return value[start + 1 : end].strip().lower()
    bare = value.strip()
    if "@" in bare and not any(c in bare for c in ' "(,'):
        return bare.lower()
    return parseaddr(value)[1].lower()


def _report(
    integrity: Integrity,
    trust: Trust,
    *,
    reason: str,
    detail: str = "",
    digest: str | None = None,
) -> SignatureReport:
    defects = (Defect(DefectCode(reason), detail[:200]),) if integrity is Integrity.INVALID else ()
    return SignatureReport(
        integrity=integrity,
        trust=trust,
        signer=None,
        signer_email=None,
        signing_time=None,
        digest=digest,
        trust_reason=reason,
        defects=defects,
    )
