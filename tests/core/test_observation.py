"""observe_message(): the signature verdict a suspect receipt carries to its event."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.core.correlate import EventType, SignatureVerdict
from pipeline.core.defects import DefectCode
from pipeline.core.examine import Examined, examine
from pipeline.core.model import Defect, Kind
from pipeline.core.observation import SuspectReceipt, observe_message, signature_verdict
from pipeline.core.trust import TrustStore
from pipeline.simulate.provider import Fault
from tests.factories import make_pec


def _suspect(examined: Examined) -> SuspectReceipt:
    outcome = observe_message(examined, "box-1", sent_copy=False)
    assert isinstance(outcome, SuspectReceipt), outcome
    return outcome


@pytest.mark.parametrize(
    ("fault", "verdict"),
    [
        (None, SignatureVerdict.VALID_TRUSTED),
        (Fault.TAMPERED_BODY, SignatureVerdict.INVALID),
        (Fault.MISSING_SIGNATURE, SignatureVerdict.MISSING),
        (Fault.SELF_SIGNED, SignatureVerdict.UNTRUSTED),
        (Fault.UNTRUSTED_CA, SignatureVerdict.UNTRUSTED),
        (Fault.EXPIRED_SIGNER, SignatureVerdict.UNTRUSTED),
        (Fault.WRONG_PROVIDER, SignatureVerdict.SIGNER_MISMATCH),
        (Fault.HEADER_MISMATCH, SignatureVerdict.VALID_TRUSTED),
    ],
)
def test_verdict_names_the_check_that_failed(
    fault: Fault | None, verdict: SignatureVerdict, trust: TrustStore
) -> None:
    """Valid and trusted is only said of a signature that is both."""
    assert signature_verdict(examine(make_pec(Kind.AVVENUTA_CONSEGNA, fault=fault).raw, trust)) == (
        verdict
    )


def test_unsigned_receipt_with_many_long_defects_is_still_missing(trust: TrustStore) -> None:
    """The verdict is taken from the signature check, not from the reason text: that is
    cut at 500 characters and the signature's own defect comes last in it."""
    examined = examine(make_pec(Kind.AVVENUTA_CONSEGNA, fault=Fault.MISSING_SIGNATURE).raw, trust)
    noise = tuple(Defect(DefectCode.HEADER_DATICERT_MISMATCH, f"{n}" + "x" * 200) for n in range(4))
    crowded = replace(examined, message=replace(examined.message, defects=noise))
    suspect = _suspect(crowded).suspect
    assert "signature-missing" not in suspect.reason  # what the old re-parsing relied on
    assert suspect.event is EventType.SIGNATURE_INVALID
    assert suspect.signature is SignatureVerdict.MISSING


def test_valid_trusted_receipt_rejected_for_headers_keeps_its_verdict(trust: TrustStore) -> None:
    """A receipt refused for a defect outside its signature says so in ``reason``; its
    signature verdict stays valid-trusted."""
    examined = examine(make_pec(Kind.AVVENUTA_CONSEGNA, fault=Fault.HEADER_MISMATCH).raw, trust)
    suspect = _suspect(examined).suspect
    assert suspect.event is EventType.RECEIPT_REJECTED
    assert suspect.signature is SignatureVerdict.VALID_TRUSTED
    assert suspect.reason
