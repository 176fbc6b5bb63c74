"""Whole messages verify with openssl; every tampering and forgery helper does what it says."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509

from pipeline.core.model import Integrity, Kind, Trust
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import (
    Fault,
    expected_signature,
    rewrite_header,
    strip_signature,
    tamper_body,
)
from pipeline.simulate.render import LineEnding
from tests.factories import (
    AT,
    MSGID,
    OTHER_MSGID,
    PROVIDER_NAMES,
    anchor_pem,
    make_pec,
    write_anchor,
)
from tests.simulate.helpers import (
    OPENSSL,
    canonical,
    daticert,
    needs_openssl,
    parse,
    signature,
    verify_message,
)

SIGNED_AT = AT.replace(second=5)


@needs_openssl
@pytest.mark.parametrize("name", PROVIDER_NAMES)
@pytest.mark.parametrize("kind", [Kind.POSTA_CERTIFICATA, Kind.AVVENUTA_CONSEGNA])
def test_every_provider_layout_verifies_with_openssl(name: str, kind: Kind, tmp_path: Path) -> None:
    """Signed part cut at the boundaries (CRLF-canonical) + smime.p7s verify at signing time."""
    raw = make_pec(kind, provider=name).raw
    result = verify_message(raw, anchor_pem(), SIGNED_AT, tmp_path)
    assert result.returncode == 0, result.stderr


@needs_openssl
def test_lf_stored_message_verifies_after_canonicalisation(tmp_path: Path) -> None:
    """The signature covers the CRLF form; an LF copy verifies once canonicalised."""
    raw = make_pec(line_ending=LineEnding.LF).raw
    assert b"\r" not in raw
    result = verify_message(raw, anchor_pem(), SIGNED_AT, tmp_path)
    assert result.returncode == 0, result.stderr


@needs_openssl
def test_openssl_reads_the_whole_smime_message(tmp_path: Path) -> None:
    """openssl's own S/MIME parser finds the same signed part: the framing is standard.

    Without ``-binary``: in binary mode openssl keeps the CR of the empty epilogue line
    after the inner close delimiter, a known quirk of its MIME splitter.
    """
    assert OPENSSL is not None
    (tmp_path / "msg.eml").write_bytes(make_pec(provider="infocert").raw)
    (tmp_path / "anchor.pem").write_bytes(anchor_pem())
    result = subprocess.run(
        [
            OPENSSL, "cms", "-verify", "-in", str(tmp_path / "msg.eml"),
            "-CAfile", str(tmp_path / "anchor.pem"), "-purpose", "any",
            "-attime", str(int(SIGNED_AT.timestamp())), "-out", str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out").read_bytes().startswith(b"Content-Type: multipart/mixed")


def test_signing_time_is_the_simulated_time() -> None:
    """The CMS signingTime is the daticert time, not the clock."""
    der = signature(make_pec().raw)
    attrs = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]
    assert attrs[1]["values"][0].native == SIGNED_AT


@needs_openssl
def test_tamper_body_breaks_the_signature(tmp_path: Path) -> None:
    """One flipped byte in the signed notice: openssl refuses, daticert still parses."""
    raw = make_pec().raw
    tampered = tamper_body(raw)
    assert len(tampered) == len(raw)
    assert sum(a != b for a, b in zip(raw, tampered, strict=True)) == 1
    assert verify_message(tampered, anchor_pem(), SIGNED_AT, tmp_path).returncode != 0
    assert daticert(tampered).get("tipo") == "avvenuta-consegna"


def test_strip_signature_leaves_only_the_content() -> None:
    """The missing-signature message is multipart/signed with one part."""
    message = parse(strip_signature(make_pec().raw))
    assert message.get_content_type() == "multipart/signed"
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == ["multipart/mixed"]


@pytest.mark.parametrize("line_ending", list(LineEnding))
def test_rewrite_header_changes_one_unsigned_header(line_ending: LineEnding) -> None:
    """Top-level headers are rewritten in place, with their original spelling and endings."""
    raw = make_pec(line_ending=line_ending).raw
    changed = rewrite_header(raw, "x-riferimento-message-id", "<other@client>")
    assert parse(changed)["X-Riferimento-Message-ID"] == "<other@client>"
    assert b"X-Riferimento-Message-ID: <other@client>" in changed
    assert changed.split(b"X-Ricevuta")[1] == raw.split(b"X-Ricevuta")[1]


def _signer_certificate(raw: bytes) -> x509.Certificate:
    der = signature(raw)
    first = cms.ContentInfo.load(der)["content"]["certificates"][0].chosen.dump()
    return x509.load_der_x509_certificate(first)


@needs_openssl
@pytest.mark.parametrize("fault", list(Fault))
def test_every_fault_is_what_it_claims(fault: Fault, tmp_path: Path) -> None:
    """openssl and the headers show each defect; the truth says what a verifier must report."""
    built = make_pec(fault=fault)
    raw, truth = built.raw, built.truth
    assert truth.fault is fault
    assert (truth.integrity, truth.trust) == expected_signature(fault)
    assert not truth.counts_as_evidence
    if fault is Fault.MISSING_SIGNATURE:
        assert truth.integrity is Integrity.MISSING
        assert len(parse(raw).get_payload()) == 1  # type: ignore[arg-type]
        return
    result = verify_message(raw, anchor_pem(), SIGNED_AT, tmp_path)
    verified = result.returncode == 0
    assert verified == (truth.integrity is Integrity.VALID and truth.trust is Trust.TRUSTED)
    message = parse(raw)
    signer_email = (
        _signer_certificate(raw)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.RFC822Name)[0]
    )
    if fault is Fault.WRONG_PROVIDER:
        assert signer_email == "posta-certificata@pec.altrogestore.it"
        assert daticert(raw).findtext("dati/gestore-emittente") == "ARUBA PEC S.p.A."
    elif fault is Fault.HEADER_MISMATCH:
        assert message["X-Ricevuta"] == "errore-consegna"
        assert daticert(raw).get("tipo") == "avvenuta-consegna"
    elif fault is Fault.MALFORMED_DATICERT:
        with pytest.raises(Exception, match="no element found"):
            daticert(raw)
        assert truth.identificativo is None
        assert truth.msgid == MSGID
    elif fault is Fault.EXPIRED_SIGNER:
        assert _signer_certificate(raw).not_valid_after_utc < SIGNED_AT
        assert "expired" in result.stderr
    elif fault is Fault.REPLAYED:
        assert message["X-Riferimento-Message-ID"] == OTHER_MSGID
        assert daticert(raw).findtext("dati/msgid") == MSGID


@needs_openssl
def test_expired_signer_still_verifies_inside_its_validity(tmp_path: Path) -> None:
    """The expired forgery is a genuine certificate: it verifies at an earlier time."""
    raw = make_pec(fault=Fault.EXPIRED_SIGNER).raw
    earlier = SIGNED_AT - timedelta(days=30)
    assert verify_message(raw, anchor_pem(), earlier, tmp_path).returncode == 0


def test_genuine_signer_matches_the_daticert_provider() -> None:
    """A genuine receipt is signed by posta-certificata@ its own provider's domain."""
    for name in PROVIDER_NAMES:
        built = make_pec(provider=name)
        cert = _signer_certificate(built.raw)
        common_name = cert.subject.rfc4514_string()
        assert f"CN=Posta Certificata {built.truth.provider}" in common_name
        assert cert.issuer == default_pki().anchor.certificate.subject


def test_canonical_form_is_idempotent() -> None:
    """CRLF and LF copies of one message have the same canonical bytes."""
    lf = make_pec(line_ending=LineEnding.LF).raw
    crlf = make_pec(line_ending=LineEnding.CRLF).raw
    assert canonical(lf) == canonical(crlf).replace(signature_b64(crlf), signature_b64(lf))


def signature_b64(raw: bytes) -> bytes:
    return canonical(raw).split(b'filename="smime.p7s"\r\n\r\n')[1]


def test_write_anchor_gives_the_trust_store_file(tmp_path: Path) -> None:
    """factories.write_anchor writes the PEM every genuine message chains to."""
    path = write_anchor(tmp_path)
    assert path.read_bytes() == anchor_pem()
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    assert _signer_certificate(make_pec().raw).issuer == cert.subject
