"""Trust: does a provider's signing certificate chain to a PEC anchor at the signing time?

The anchor since ~2018 is AgID CA1, re-issued with the same key (the 2025 issue is "not
yet valid" in 2021 yet signs the 2020-2023 provider certificates), so anchors are pinned
by public key, never by one certificate file, and an anchor's own dates are not checked.
Every other certificate on the path must be valid AT the signing time: a receipt stays
legal evidence after its signer's certificate expires.

A store is built from bytes (PEM or DER) by the caller: the core reads no files.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_PATH = 6
_SHA256 = hashes.SHA256()
_CACHE_SIZE = 4096


def spki_fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo: the identity of a key across re-issues."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


@lru_cache(maxsize=_CACHE_SIZE)
def _fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER, once per certificate (the path cache key)."""
    return cert.fingerprint(_SHA256)


def chain_fingerprints(
    signer: x509.Certificate, others: tuple[x509.Certificate, ...]
) -> tuple[bytes, ...]:
    """The key :meth:`TrustStore.evaluate` caches a verified path under."""
    return (_fingerprint(signer), *(_fingerprint(c) for c in others))


def load_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate in PEM bytes (several allowed) or one DER certificate."""
    if b"-----BEGIN" in data:
        return tuple(x509.load_pem_x509_certificates(data))
    return (x509.load_der_x509_certificate(data),)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Does ``issuer``'s key verify ``cert``'s signature (name match checked by callers)?"""
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            params = cert.signature_algorithm_parameters
            hash_algorithm = cert.signature_hash_algorithm
            if hash_algorithm is None or not isinstance(params, padding.PKCS1v15 | padding.PSS):
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            params = cert.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class TrustDecision:
    trusted: bool
    reason: str | None
    path: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True, slots=True)
class _Path:
    """A verified path and each certificate's validity, read once (the time check is
    per message; reading a date from a certificate makes a new datetime each time)."""

    certificates: tuple[x509.Certificate, ...]
    validity: tuple[tuple[datetime, datetime], ...] = field(init=False)

    def __post_init__(self) -> None:
        windows = tuple((c.not_valid_before_utc, c.not_valid_after_utc) for c in self.certificates)
        object.__setattr__(self, "validity", windows)


@dataclass(slots=True)
class TrustStore:
    """Anchors (pinned by key) plus optional intermediates; caches verified paths.

    The cache holds which path verifies, keyed by the signer certificate's fingerprint;
    the time check is redone on every call (it depends on the signing time).
    """

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    _anchor_keys: frozenset[bytes] = field(init=False)
    _paths: OrderedDict[tuple[bytes, ...], _Path | str] = field(
        init=False, default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        self._anchor_keys = frozenset(spki_fingerprint(anchor) for anchor in self.anchors)

    @classmethod
    def from_bytes(cls, *blobs: bytes) -> TrustStore:
        """Anchors from PEM/DER bytes; every certificate in them becomes an anchor."""
        anchors: list[x509.Certificate] = []
        for blob in blobs:
            anchors.extend(load_certificates(blob))
        return cls(tuple(anchors))

    def evaluate(
        self,
        signer: x509.Certificate,
        others: tuple[x509.Certificate, ...],
        at: datetime,
        *,
        fingerprints: tuple[bytes, ...] | None = None,
    ) -> TrustDecision:
        """Chain ``signer`` (via ``others`` from the CMS and the store's intermediates)
        to an anchor key, then check every non-anchor certificate is valid ``at``.

        ``fingerprints`` is :func:`chain_fingerprints` of the same certificates, for a
        caller that keeps it (hashing a certificate object costs more than this lookup).
        """
        key = fingerprints if fingerprints is not None else chain_fingerprints(signer, others)
        found = self._paths.get(key)
        if found is None:
            built = self._build_path(signer, others)
            found = built if isinstance(built, str) else _Path(built)
            self._paths[key] = found
            if len(self._paths) > _CACHE_SIZE:
                self._paths.popitem(last=False)
        if isinstance(found, str):
            return TrustDecision(False, found)
        path = found.certificates
        for not_before, not_after in found.validity:
            if at < not_before:
                return TrustDecision(False, "not-yet-valid-at-signing-time", path)
            if at > not_after:
                return TrustDecision(False, "expired-at-signing-time", path)
        return TrustDecision(True, None, path)

    def _build_path(
        self, signer: x509.Certificate, others: tuple[x509.Certificate, ...]
    ) -> tuple[x509.Certificate, ...] | str:
        if not _for_email(signer):
            return "signer-not-for-email"
        pool = others + self.intermediates
        path = [signer]
        current = signer
        for _ in range(MAX_PATH):
            if spki_fingerprint(current) in self._anchor_keys and len(path) > 1:
                return tuple(path[:-1])
            anchor = self._anchor_for(current)
            if anchor is not None:
                return tuple(path)
            issuer = next(
                (
                    cand
                    for cand in pool
                    if cand.subject == current.issuer
                    and cand not in path
                    and _is_ca(cand)
                    and issued_by(current, cand)
                ),
                None,
            )
            if issuer is None:
                return "no-path-to-anchor"
            path.append(issuer)
            current = issuer
        return "path-too-long"

    def _anchor_for(self, cert: x509.Certificate) -> x509.Certificate | None:
        """An anchor whose key signed ``cert``; name-matching anchors are tried first."""
        ranked = sorted(self.anchors, key=lambda anchor: anchor.subject != cert.issuer)
        return next((anchor for anchor in ranked if issued_by(cert, anchor)), None)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _for_email(cert: x509.Certificate) -> bool:
    """A signer with an ExtendedKeyUsage must allow emailProtection (or any purpose)."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return (
        ExtendedKeyUsageOID.EMAIL_PROTECTION in usages
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
    )
