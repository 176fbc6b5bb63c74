"""S/MIME verification on real signed messages from the simulator's test CA."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pipeline.core.examine import examine
from pipeline.core.model import Integrity, Kind, ReceiptVariant, Recipient, RecipientType, Trust
from pipeline.core.smime import verify
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import KeyAlgorithm, Pki
from pipeline.simulate.cms import DigestAlgorithm
from pipeline.simulate.provider import Notice, Provider
from pipeline.simulate.render import LineEnding, OriginalMessage, RenderOptions
from pipeline.trust import default_trust_store

AT = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
ORIGINAL = OriginalMessage(
    sender="mario.rossi@pec.example.it",
    recipients=(Recipient("to@pec.other.it", RecipientType.CERTIFICATO),),
    subject="Diffida n. 42",
    msgid="<20240301100000.42@client.example.it>",
    date=AT,
    body="Gentile destinatario,\n",
)


def provider(pki: Pki, **changes: object) -> Provider:
    algorithm = changes.pop("algorithm", KeyAlgorithm.RSA)
    signer = pki.signer("ARUBA PEC S.p.A.", "pec.aruba.it", algorithm)  # type: ignore[arg-type]
    return Provider("ARUBA PEC S.p.A.", "pec.aruba.it", signer, **changes)  # type: ignore[arg-type]


def notice(kind: Kind = Kind.AVVENUTA_CONSEGNA, **changes: object) -> Notice:
    fields: dict[str, object] = {
        "kind": kind,
        "original": ORIGINAL,
        "identificativo": "opec288.20240301100000.00042.42.1.10@pec.aruba.it",
        "at": AT,
        "delivery_recipient": "to@pec.other.it",
    }
    fields.update(changes)
    return Notice(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [k for k in Kind if k is not Kind.NOT_PEC])
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
@pytest.mark.parametrize("digest", list(DigestAlgorithm))
def test_every_kind_verifies(
    pki: Pki, trust: TrustStore, kind: Kind, algorithm: KeyAlgorithm, digest: DigestAlgorithm
) -> None:
    """Every message type, RSA and ECDSA, SHA-1 and SHA-256: valid and trusted."""
    raw = provider(pki, algorithm=algorithm, digest=digest).issue(notice(kind))
    report = verify(raw, trust)
    assert (report.integrity, report.trust) == (Integrity.VALID, Trust.TRUSTED)
    assert report.digest == digest.value
    assert report.signer == "Posta Certificata ARUBA PEC S.p.A."
    assert report.signer_email == "posta-certificata@pec.aruba.it"
    assert report.signing_time == AT
    assert report.counts_as_evidence


@pytest.mark.parametrize("line_ending", list(LineEnding))
@pytest.mark.parametrize("legacy", [False, True])
def test_stored_with_lf_or_legacy_type_still_verifies(
    pki: Pki, trust: TrustStore, line_ending: LineEnding, legacy: bool
) -> None:
    """A mailbox store with bare LF, and application/x-pkcs7-signature, still verify."""
    options = RenderOptions(line_ending=line_ending, legacy_pkcs7=legacy, html=True)
    raw = provider(pki, options=options).issue(notice())
    if line_ending is LineEnding.LF:
        assert b"\r\n" not in raw
    report = verify(raw, trust)
    assert (report.integrity, report.trust) == (Integrity.VALID, Trust.TRUSTED)


def test_one_changed_byte_breaks_integrity(pki: Pki, trust: TrustStore) -> None:
    """Editing the signed body after signing: integrity invalid, trust still reported."""
    raw = provider(pki).issue(notice())
    marker = raw.index(b"Content-Type: application/xml")
    tampered = raw[:marker] + raw[marker:].replace(b"\r\n\r\n", b"\r\n\r\n ", 1)
    report = verify(tampered, trust)
    assert report.integrity is Integrity.INVALID
    assert report.trust is Trust.TRUSTED
    assert not report.counts_as_evidence


def test_unsigned_headers_may_change(pki: Pki, trust: TrustStore) -> None:
    """A rewritten Subject (mailing lists do it) does not touch the signature."""
    raw = provider(pki).issue(notice())
    rewritten = raw.replace(b"Subject: CONSEGNA:", b"Subject: [list] CONSEGNA:", 1)
    assert rewritten != raw
    assert verify(rewritten, trust).integrity is Integrity.VALID


def test_self_signed_and_untrusted_ca(pki: Pki, trust: TrustStore) -> None:
    """Right names but a foreign key: integrity valid, trust untrusted."""
    for signer in (
        pki.self_signed("ARUBA PEC S.p.A.", "pec.aruba.it"),
        pki.untrusted("ARUBA PEC S.p.A.", "pec.aruba.it"),
    ):
        raw = provider(pki).with_signer(signer).issue(notice())
        report = verify(raw, trust)
        assert (report.integrity, report.trust) == (Integrity.VALID, Trust.UNTRUSTED)
        assert report.trust_reason == "no-path-to-anchor"


def test_expired_at_signing_time_is_untrusted(pki: Pki, trust: TrustStore) -> None:
    """A signer certificate that had expired when it signed is untrusted."""
    expired = pki.signer(
        "ARUBA PEC S.p.A.",
        "pec.aruba.it",
        not_before=AT - timedelta(days=800),
        not_after=AT - timedelta(days=1),
    )
    report = verify(provider(pki).with_signer(expired).issue(notice()), trust)
    assert (report.integrity, report.trust) == (Integrity.VALID, Trust.UNTRUSTED)
    assert report.trust_reason == "expired-at-signing-time"


def test_receipt_stays_valid_after_signer_expiry(pki: Pki, trust: TrustStore) -> None:
    """Evaluated at signingTime: a 2019 receipt from a since-expired signer is trusted."""
    old = pki.signer(
        "ARUBA PEC S.p.A.",
        "pec.aruba.it",
        not_before=datetime(2018, 1, 1, tzinfo=UTC),
        not_after=datetime(2020, 1, 1, tzinfo=UTC),
    )
    signed_at = datetime(2019, 6, 1, 12, tzinfo=UTC)
    raw = provider(pki).with_signer(old).issue(notice(at=signed_at))
    report = verify(raw, trust)
    assert report.trust is Trust.TRUSTED
    assert report.signing_time == signed_at


def test_anchor_is_pinned_by_key_not_by_file(pki: Pki) -> None:
    """A re-issued anchor (same key, dates that exclude the signing time) still trusts."""
    old = pki.anchor.certificate
    reissued = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 2, 20, tzinfo=UTC))
        .not_valid_after(datetime(2030, 9, 22, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pki.anchor.key, hashes.SHA256())
    )
    store = TrustStore((reissued,))
    raw = provider(pki).issue(notice(at=datetime(2021, 5, 4, 9, tzinfo=UTC)))
    assert verify(raw, store).trust is Trust.TRUSTED


def test_other_provider_certificate_is_not_evidence(pki: Pki, trust: TrustStore) -> None:
    """A valid certificate of another provider's domain: trusted chain, but a defect."""
    other = pki.signer("Altro Gestore S.p.A.", "pec.altrogestore.it")
    report = verify(provider(pki).with_signer(other).issue(notice()), trust)
    assert (report.integrity, report.trust) == (Integrity.VALID, Trust.TRUSTED)
    assert [d.code for d in report.defects] == ["signer-domain-mismatch"]
    assert not report.counts_as_evidence


def test_missing_and_garbage_signature(pki: Pki, trust: TrustStore) -> None:
    """No smime.p7s: missing/unknown. A garbage one: invalid, never an exception."""
    raw = provider(pki).issue(notice())
    head, _, _ = raw.partition(b"Content-Type: application/pkcs7-signature")
    boundary_line = head.rstrip(b"\r\n").rsplit(b"\r\n", 1)[1]
    missing = head.rstrip(b"\r\n").rsplit(b"\r\n", 1)[0] + b"\r\n" + boundary_line + b"--\r\n"
    report = verify(missing, trust)
    assert (report.integrity, report.trust) == (Integrity.MISSING, Trust.UNKNOWN)
    garbage = (
        head + b"Content-Type: application/pkcs7-signature\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x30\x82\xff\xff not der")
        + boundary_line + b"--\r\n"
    )  # fmt: skip
    report = verify(garbage, trust)
    assert report.integrity is Integrity.INVALID
    assert report.trust is Trust.UNKNOWN


def test_real_agid_anchor_does_not_trust_the_test_ca(pki: Pki) -> None:
    """The shipped store holds AgID CA1; simulator mail is untrusted against it."""
    store = default_trust_store()
    subjects = [a.subject.rfc4514_string() for a in store.anchors]
    assert any("CN=AgID CA1" in s for s in subjects)
    assert verify(provider(pki).issue(notice()), store).trust is Trust.UNTRUSTED


def test_examine_counts_only_evidence(pki: Pki, trust: TrustStore) -> None:
    """A good delivery receipt becomes a lifecycle receipt; a forged one does not."""
    good = examine(provider(pki).issue(notice()), trust)
    receipt = good.as_receipt()
    assert receipt is not None
    assert receipt.delivery_recipient == "to@pec.other.it"
    forged_raw = provider(pki).with_signer(pki.self_signed("X", "pec.aruba.it")).issue(notice())
    forged = examine(forged_raw, trust)
    assert forged.as_receipt() is None
    assert "signer-untrusted" in [d.code for d in forged.disqualifying_defects]


def test_receipt_id_ignores_line_endings(pki: Pki, trust: TrustStore) -> None:
    """The same receipt stored with CRLF and with LF has one receipt id."""
    raw = provider(pki).issue(notice(variant=ReceiptVariant.BREVE))
    as_lf = raw.replace(b"\r\n", b"\n")
    assert examine(raw, trust).receipt_id == examine(as_lf, trust).receipt_id


def test_provider_domain_match() -> None:
    """Parent/child domains of one provider match; other providers and bare TLDs do not."""
    from pipeline.core.smime import same_provider_domain  # noqa: PLC0415

    assert same_provider_domain("pec.aruba.it", "pec.aruba.it")
    assert same_provider_domain("pec.aruba.it", "aruba.it")
    assert same_provider_domain("legalmail.it", "pec.legalmail.it")
    assert not same_provider_domain("pec.altrogestore.it", "pec.aruba.it")
    assert not same_provider_domain("aruba.it", "notaruba.it")
    assert not same_provider_domain("it", "aruba.it")


def test_trust_key_given_or_computed_is_the_same(pki: Pki, trust: TrustStore) -> None:
    """evaluate() with the caller's chain fingerprints decides as it does without them."""
    from pipeline.core.trust import chain_fingerprints  # noqa: PLC0415

    signer = pki.signer("ARUBA PEC S.p.A.", "pec.aruba.it").certificate
    for at in (AT, datetime(2100, 1, 1, tzinfo=UTC)):
        given = trust.evaluate(signer, (), at, fingerprints=chain_fingerprints(signer, ()))
        assert given == trust.evaluate(signer, (), at)
    assert trust.evaluate(signer, (), AT).trusted
    assert trust.evaluate(signer, (), datetime(2100, 1, 1, tzinfo=UTC)).reason == (
        "expired-at-signing-time"
    )
