"""examine(): checks that need both the parsed message and the signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.contracts.codec import examined_to_dict
from pipeline.core.examine import ISSUER_SIGNED_KINDS, examine
from pipeline.core.model import Integrity, Kind, Trust
from pipeline.core.trust import TrustStore
from pipeline.simulate.provider import Fault, rewrite_header
from pipeline.simulate.traffic import TrafficItem, generate_traffic
from tests.factories import PROVIDER_NAMES, make_pec

GENUINE_KINDS = [k for k in Kind if k is not Kind.NOT_PEC]


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(13, 120, 8, datetime(2024, 3, 1, 9, tzinfo=UTC))


def _codes(raw: bytes, trust: TrustStore) -> list[str]:
    examined = examine(raw, trust)
    return [d.code for d in examined.message.defects + examined.signature.defects]


def test_wrong_provider_with_from_rewritten_is_disqualified(trust: TrustStore) -> None:
    """Another provider's valid certificate and From rewritten to match it: the signed
    identificativo still names the real issuer, so the acceptance is not evidence."""
    built = make_pec(Kind.ACCETTAZIONE, fault=Fault.WRONG_PROVIDER)
    signer = examine(built.raw, trust).signature.signer_email
    assert signer == "posta-certificata@pec.altrogestore.it"
    raw = rewrite_header(built.raw, "From", signer)
    examined = examine(raw, trust)
    signature = examined.signature
    assert (signature.integrity, signature.trust) == (Integrity.VALID, Trust.TRUSTED)
    assert [d.code for d in signature.defects] == ["signer-not-issuer"]
    assert "pec.aruba.it" in signature.defects[0].detail
    assert not signature.counts_as_evidence
    assert "signer-not-issuer" in [d.code for d in examined.disqualifying_defects]
    assert examined.as_receipt() is None
    shown = examined_to_dict(examined)["defects"]
    assert any(d.startswith("signer-not-issuer: ") for d in shown)  # what inspect prints


@pytest.mark.parametrize("kind", sorted(ISSUER_SIGNED_KINDS))
def test_every_issuer_signed_kind_is_checked(kind: Kind, trust: TrustStore) -> None:
    """Envelopes, acceptances, rejections and warnings: a foreign signer is caught."""
    built = make_pec(kind, fault=Fault.WRONG_PROVIDER)
    raw = rewrite_header(built.raw, "From", "posta-certificata@pec.altrogestore.it")
    assert "signer-not-issuer" in _codes(raw, trust)


@pytest.mark.parametrize(
    "kind", [k for k in GENUINE_KINDS if k not in ISSUER_SIGNED_KINDS], ids=str
)
def test_recipient_signed_kinds_are_not_tied_to_the_identificativo(
    kind: Kind, trust: TrustStore
) -> None:
    """The recipient's provider signs these about the sender provider's identificativo:
    no signer-not-issuer (the From check still applies)."""
    built = make_pec(kind, fault=Fault.WRONG_PROVIDER)
    raw = rewrite_header(built.raw, "From", "posta-certificata@pec.altrogestore.it")
    assert "signer-not-issuer" not in _codes(raw, trust)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@pytest.mark.parametrize("kind", GENUINE_KINDS, ids=str)
def test_genuine_messages_have_no_issuer_defect(name: str, kind: Kind, trust: TrustStore) -> None:
    """Every kind from each of the four simulated providers passes the check."""
    examined = examine(make_pec(kind, provider=name).raw, trust)
    assert examined.signature.defects == ()
    assert examined.signature.counts_as_evidence


def test_genuine_traffic_has_no_issuer_defect(
    traffic: list[TrafficItem], trust: TrustStore
) -> None:
    """Receipts signed by the recipient's provider about the sender provider's
    identificativo, across providers: never a signer-not-issuer."""
    genuine = [i for i in traffic if i.truth.kind is not Kind.NOT_PEC and i.truth.fault is None]
    assert {i.truth.kind for i in genuine} >= set(ISSUER_SIGNED_KINDS)
    flagged = [i.filename for i in genuine if "signer-not-issuer" in _codes(i.raw, trust)]
    assert flagged == []


def test_identificativo_of_a_child_or_parent_domain_matches(trust: TrustStore) -> None:
    """Legalmail-style ids (``...posta-certificata@legalmail.it``) and a provider that mints
    ids under a sub-domain of its certificate's domain both pass."""
    for ident in (
        "opec288.20240301100000.00001.01.1.1.posta-certificata@pec.aruba.it",
        "opec288.20240301100000.00001.01.1.1@smtp.pec.aruba.it",
        "opec288.20240301100000.00001.01.1.1@aruba.it",
    ):
        raw = make_pec(Kind.ACCETTAZIONE, identificativo=ident).raw
        assert "signer-not-issuer" not in _codes(raw, trust), ident


def test_missing_identificativo_is_not_checked(trust: TrustStore) -> None:
    """No domain in the identificativo: nothing to compare, no signer-not-issuer."""
    raw = make_pec(Kind.ACCETTAZIONE, identificativo="opec288.20240301100000.1").raw
    assert "signer-not-issuer" not in _codes(raw, trust)
