"""The SdI's XAdES signature on its notification files (pipeline.core.xades)."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml.xades.xades import XAdESSigner

from pipeline.core.sdi import read_notification
from pipeline.core.xades import XadesCheck, check_xades
from pipeline.simulate.ca import default_pki
from pipeline.simulate.sdi import SdiCase, notification_xml, sdi_signer, sign_xades

CET = timezone(timedelta(hours=1))
AT = datetime(2024, 3, 1, 10, 0, tzinfo=CET)
CASE = SdiCase("IT", "01234567890", "0A1B2", "4713", AT)
ROOT = "{http://www.fatturapa.gov.it/sdi/messaggi/v1.0}RicevutaConsegna"
SIGNER = sdi_signer(default_pki())
SIGNED_RC = sign_xades(notification_xml(CASE, "RC", AT + timedelta(minutes=5)), SIGNER)


@pytest.mark.parametrize("kind", ["RC", "NS", "MC", "NE", "DT", "AT", "MT"])
def test_signed_notifications_verify(kind: str) -> None:
    """Every type, signed as the SdI signs: intact, with the signer's names."""
    data = sign_xades(notification_xml(CASE, kind, AT, "EC01" if kind == "NE" else None), SIGNER)
    notification, defects = read_notification(CASE.file_name(kind), data)
    assert defects == ()
    assert notification is not None
    assert notification.signed
    assert notification.xades is not None
    assert notification.xades.intact, notification.xades.reason
    assert notification.xades.reason is None
    assert notification.xades.signer is not None
    assert "Sistema di Interscambio" in notification.xades.signer
    assert notification.xades.issuer is not None
    assert "Test AgID CA1" in notification.xades.issuer


def test_unsigned_notification_has_no_verdict() -> None:
    notification, _ = read_notification(CASE.file_name("RC"), notification_xml(CASE, "RC", AT))
    assert notification is not None
    assert (notification.signed, notification.xades) == (False, None)


def test_changed_content_is_not_intact() -> None:
    """One field changed after signing: read as it says, but the signature says so."""
    tampered = SIGNED_RC.replace(b">4713<", b">4714<")
    notification, _ = read_notification(CASE.file_name("RC"), tampered)
    assert notification is not None
    assert notification.identificativo_sdi == "4714"
    assert notification.xades is not None
    assert not notification.xades.intact
    assert "Digest" in (notification.xades.reason or "")


def test_changed_signature_value_is_not_intact() -> None:
    value = re.search(rb"<ds:SignatureValue>([^<]+)<", SIGNED_RC)
    assert value is not None
    raw = bytearray(base64.b64decode(b"".join(value[1].split())))
    raw[10] ^= 0xFF
    tampered = SIGNED_RC.replace(value[1], base64.b64encode(bytes(raw)))
    check = check_xades(tampered, ROOT)
    assert not check.intact
    assert check.reason


def test_another_certificate_is_not_intact() -> None:
    """The signature re-labelled with somebody else's certificate does not verify."""
    other = default_pki().signer("Altro Gestore S.p.A.", "pec.altrogestore.it")
    theirs = base64.b64encode(other.certificate.public_bytes(serialization.Encoding.DER))
    swapped = re.sub(rb"(<ds:X509Certificate>)[^<]+", lambda m: m[1] + theirs, SIGNED_RC)
    check = check_xades(swapped, ROOT)
    assert not check.intact
    assert check.signer is not None
    assert "Altro Gestore" in check.signer


def test_a_signature_over_part_of_the_document_is_not_intact() -> None:
    """Signed: one element only. The rest could say anything: not accepted as intact."""
    data = notification_xml(CASE, "RC", AT).replace(
        b"<IdentificativoSdI>", b'<IdentificativoSdI Id="part">'
    )
    signed = XAdESSigner().sign(
        etree.fromstring(data), key=SIGNER.key, cert=[SIGNER.certificate], reference_uri="#part"
    )
    partial = etree.tostring(signed)
    check = check_xades(partial, ROOT)
    assert not check.intact
    assert check.reason == "no reference covers the whole document"
    assert check_xades(partial, "{urn:x}Other").reason == "no reference covers the whole document"


@pytest.mark.parametrize(
    "data",
    [
        b"<a/>",
        b"<a><ds:X509Certificate>not base64!</ds:X509Certificate></a>",
        SIGNED_RC[: len(SIGNED_RC) // 2],
        SIGNED_RC.replace(b"</ds:Signature>", b""),
    ],
)
def test_broken_input_is_a_verdict(data: bytes) -> None:
    check = check_xades(data, ROOT)
    assert isinstance(check, XadesCheck)
    assert not check.intact
    assert check.reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(SIGNED_RC) - 1), st.integers(1, 255))
def test_never_raises_on_a_changed_byte(position: int, flip: int) -> None:
    """Any byte of a signed file changed: a verdict, never an exception."""
    data = bytearray(SIGNED_RC)
    data[position] ^= flip
    check = check_xades(bytes(data), ROOT)
    assert isinstance(check, XadesCheck)
    assert check.intact or check.reason
