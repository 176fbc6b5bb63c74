"""The parser on every message the simulator makes, on layout variants, and on hostile input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.defects import DefectCode
from pipeline.core.examine import Examined, examine
from pipeline.core.lifecycle import event_for
from pipeline.core.model import ErrorCode, Integrity, Kind, ReceiptVariant, Trust
from pipeline.core.parse import Limits, parse
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import default_pki
from pipeline.simulate.mime import TransferEncoding
from pipeline.simulate.provider import Notice, rewrite_header
from pipeline.simulate.render import HeaderStyle, LineEnding, PartName, RenderOptions
from pipeline.simulate.traffic import TrafficItem, TrafficMix, generate_traffic
from tests.core.test_smime import ORIGINAL, notice, provider
from tests.factories import AT, CERTIFIED, PROVIDER_NAMES, SENDER, make_original, make_pec
from tests.factories import provider as factory_provider

FIELDS = (
    "kind", "msgid", "identificativo", "provider", "sender", "delivery_recipient",
    "timestamp", "variant", "error", "error_detail", "virus",
)  # fmt: skip


# Rare situations made common enough that 80 messages hold every kind.
MIX = TrafficMix(virus=0.08, anomaly=0.1, provider_notices=0.6)


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(11, 80, 8, datetime(2024, 3, 1, 9, tzinfo=UTC), mix=MIX)


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore.from_bytes(default_pki().anchor_pem())


def test_traffic_covers_every_kind(traffic: list[TrafficItem]) -> None:
    """The corpus below holds every kind the parser must recognise."""
    assert {item.truth.kind for item in traffic} == set(Kind)


def test_parse_matches_ground_truth(traffic: list[TrafficItem], trust: TrustStore) -> None:
    """Every field of every simulated message equals the simulator's ground truth."""
    mismatches: list[tuple[str, str, object]] = []
    for item in traffic:
        examined = examine(item.raw, trust)
        message, truth = examined.message, item.truth
        mismatches.extend(
            (item.filename, name, getattr(message, name))
            for name in FIELDS
            if getattr(message, name) != getattr(truth, name)
        )
        addresses = [r.address for r in message.recipients]
        if addresses != [r.address for r in truth.recipients]:
            mismatches.append((item.filename, "recipients", addresses))
        if truth.kind is not Kind.NOT_PEC and message.recipients != truth.recipients:
            mismatches.append((item.filename, "recipient types", message.recipients))
        signature = (examined.signature.integrity, examined.signature.trust)
        if truth.kind is not Kind.NOT_PEC and signature != (truth.integrity, truth.trust):
            mismatches.append((item.filename, "signature", signature))
        if truth.kind.is_receipt and (not examined.disqualifying_defects) != (
            truth.counts_as_evidence
        ):
            mismatches.append((item.filename, "evidence", examined.disqualifying_defects))
        counted = truth.counts_as_evidence and truth.kind is not Kind.PRESA_IN_CARICO
        if (examined.as_receipt() is not None) != counted:
            mismatches.append((item.filename, "lifecycle", examined.as_receipt()))
    assert mismatches == []


# One case per kind and variant a provider emits: (kind, make_pec overrides).
_ASKED = [{"requested_variant": v} for v in ReceiptVariant]
KIND_CASES: list[tuple[Kind, dict[str, Any]]] = [
    *((Kind.POSTA_CERTIFICATA, asked) for asked in _ASKED),
    (Kind.ERRORE, {"requested_variant": None}),
    (Kind.ACCETTAZIONE, {}),
    (Kind.NON_ACCETTAZIONE, {}),
    (Kind.NON_ACCETTAZIONE, {"virus": True}),
    (Kind.PRESA_IN_CARICO, {"to": "posta-certificata@pec.aruba.it"}),
    *((Kind.AVVENUTA_CONSEGNA, asked) for asked in _ASKED),
    (Kind.ERRORE_CONSEGNA, {}),
    (Kind.ERRORE_CONSEGNA, {"virus": True}),
    (Kind.PREAVVISO_ERRORE_CONSEGNA, {"warning_hours": 12}),
    (Kind.PREAVVISO_ERRORE_CONSEGNA, {"warning_hours": 24}),
    (Kind.PREAVVISO_ERRORE_CONSEGNA, {"error_detail": "5.4.1 - Access denied"}),
    (Kind.RILEVAZIONE_VIRUS, {"to": "posta-certificata@pec.aruba.it"}),
]


def test_kind_cases_cover_every_kind_and_variant() -> None:
    """The table below names every kind and every receipt variant."""
    assert {kind for kind, _ in KIND_CASES} == set(Kind) - {Kind.NOT_PEC}
    assert {c.get("requested_variant") for k, c in KIND_CASES if k.is_envelope} >= set(
        ReceiptVariant
    )


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@pytest.mark.parametrize(
    ("kind", "changes"),
    KIND_CASES,
    ids=[f"{k}-{'-'.join(map(str, c.values()))}" for k, c in KIND_CASES],
)
def test_every_kind_and_variant_matches_its_truth(
    name: str, kind: Kind, changes: dict[str, Any], trust: TrustStore
) -> None:
    """Each kind and variant from each provider: every parsed field equals the truth,
    no defect, valid and trusted."""
    built = make_pec(kind, provider=name, **changes)
    examined = examine(built.raw, trust)
    message, truth = examined.message, built.truth
    assert {f: getattr(message, f) for f in (*FIELDS, "recipients", "message_id")} == {
        f: getattr(truth, f) for f in (*FIELDS, "recipients", "message_id")
    }
    assert message.kind is kind
    assert message.defects == ()
    assert examined.signature.defects == ()
    assert (examined.signature.integrity, examined.signature.trust) == (
        truth.integrity,
        truth.trust,
    )
    assert (examined.as_receipt() is not None) == (event_for(message) is not None)


VARIANTS = [
    RenderOptions(),
    RenderOptions(header_style=HeaderStyle.LOWER),
    RenderOptions(line_ending=LineEnding.LF, html=True),
    RenderOptions(part_order=(PartName.ORIGINAL, PartName.DATICERT, PartName.TEXT)),
    RenderOptions(part_order=(PartName.DATICERT, PartName.TEXT, PartName.ORIGINAL)),
    RenderOptions(daticert_encoding=TransferEncoding.QUOTED_PRINTABLE, doctype=True),
    RenderOptions(daticert_encoding=TransferEncoding.SEVEN_BIT, daticert_charset="ISO-8859-1"),
    RenderOptions(text_encoding=TransferEncoding.BASE64, legacy_pkcs7=True, fold=False),
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: repr(o)[14:60])
@pytest.mark.parametrize("variant", list(ReceiptVariant))
def test_layout_variants_parse_alike(
    options: RenderOptions, variant: ReceiptVariant, trust: TrustStore
) -> None:
    """Part order, header casing, LF, encodings, DOCTYPE, charset: the same result."""
    raw = provider(default_pki(), options=options).issue(notice(variant=variant))
    examined = examine(raw, trust)
    message = examined.message
    assert message.kind is Kind.AVVENUTA_CONSEGNA
    assert message.msgid == ORIGINAL.msgid
    assert message.identificativo == "opec288.20240301100000.00042.42.1.10@pec.aruba.it"
    assert message.provider == "ARUBA PEC S.p.A."
    assert message.delivery_recipient == "to@pec.other.it"
    assert message.variant is variant
    assert message.error is ErrorCode.NESSUNO
    assert message.defects == ()
    assert (examined.signature.integrity, examined.signature.trust) == (
        Integrity.VALID,
        Trust.TRUSTED,
    )


def test_header_disagreeing_with_daticert(trust: TrustStore) -> None:
    """daticert wins the kind; the disagreement is a defect and the receipt is not counted."""
    raw = provider(default_pki()).issue(notice(Kind.ERRORE_CONSEGNA, error=ErrorCode.NO_DEST))
    forged = raw.replace(b"X-Ricevuta: errore-consegna", b"X-Ricevuta: avvenuta-consegna", 1)
    examined = examine(forged, trust)
    assert examined.message.kind is Kind.ERRORE_CONSEGNA
    assert [d.code for d in examined.message.defects] == ["header-daticert-mismatch"]
    assert examined.as_receipt() is None


CROSS_CHECKS = {"header-variant-mismatch", "header-sender-mismatch", "postacert-missing"}


def test_cross_checks_are_reported_not_disqualifying() -> None:
    """Unsigned headers and a missing original never outweigh the signed daticert."""
    assert all(DefectCode(code).tolerated for code in CROSS_CHECKS)


def _add_header(raw: bytes, line: bytes) -> bytes:
    """Insert a top-level header line after Date (unsigned: the signature still holds)."""
    newline = b"\r\n" if b"\r\n" in raw[:200] else b"\n"
    end = raw.index(newline) + len(newline)
    return raw[:end] + line + newline + raw[end:]


def _codes(examined: Examined) -> list[str]:
    return [d.code for d in examined.message.defects]


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_x_tiporicevuta_disagreeing_with_daticert(name: str, trust: TrustStore) -> None:
    """An envelope whose X-TipoRicevuta (any casing of the name) says breve while daticert
    says completa: reported, daticert's variant kept."""
    raw = make_pec(Kind.POSTA_CERTIFICATA, provider=name).raw
    examined = examine(rewrite_header(raw, "X-TipoRicevuta", "breve"), trust)
    assert _codes(examined) == ["header-variant-mismatch"]
    assert examined.message.variant is ReceiptVariant.COMPLETA
    assert examined.disqualifying_defects == ()
    same = examine(rewrite_header(raw, "x-tiporicevuta", " COMPLETA "), trust)
    assert _codes(same) == []


def test_x_tiporicevuta_on_a_receipt_is_reported_but_tolerated(trust: TrustStore) -> None:
    """A completa delivery receipt with X-TipoRicevuta: sintetica is still evidence."""
    raw = _add_header(make_pec(Kind.AVVENUTA_CONSEGNA).raw, b"X-Tiporicevuta: sintetica")
    examined = examine(raw, trust)
    assert _codes(examined) == ["header-variant-mismatch"]
    assert examined.as_receipt() is not None
    sintetica = make_pec(Kind.AVVENUTA_CONSEGNA, requested_variant=ReceiptVariant.SINTETICA)
    agreeing = examine(_add_header(sintetica.raw, b"X-TipoRicevuta: Sintetica"), trust)
    assert _codes(agreeing) == []


def test_x_tiporicevuta_without_daticert_variant_is_not_compared(trust: TrustStore) -> None:
    """An acceptance has no <ricevuta tipo>: nothing to compare X-TipoRicevuta with."""
    raw = _add_header(make_pec(Kind.ACCETTAZIONE).raw, b"X-TipoRicevuta: breve")
    assert _codes(examine(raw, trust)) == []


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_x_mittente_disagreeing_with_daticert(name: str, trust: TrustStore) -> None:
    """X-Mittente naming someone else than <mittente>: reported, still evidence; the
    sender comes from daticert."""
    raw = make_pec(Kind.ERRORE_CONSEGNA, provider=name).raw
    examined = examine(rewrite_header(raw, "X-Mittente", "altro@pec.aruba.it"), trust)
    assert _codes(examined) == ["header-sender-mismatch"]
    assert examined.message.sender == SENDER
    assert examined.as_receipt() is not None


@pytest.mark.parametrize(
    "value",
    [
        "Mario.Rossi@PEC.Aruba.IT",
        '"Mario Rossi" <mario.rossi@pec.aruba.it>',
        f" {SENDER} ",
        f"{SENDER} (Mario)",
    ],
)
def test_x_mittente_compares_addresses_case_insensitively(value: str, trust: TrustStore) -> None:
    """Case, a display name, a comment and spaces around the address are no disagreement."""
    raw = rewrite_header(make_pec(Kind.RILEVAZIONE_VIRUS).raw, "X-Mittente", value)
    assert _codes(examine(raw, trust)) == []


@pytest.mark.parametrize(
    ("kind", "variant"),
    [
        (Kind.POSTA_CERTIFICATA, ReceiptVariant.COMPLETA),
        (Kind.POSTA_CERTIFICATA, ReceiptVariant.SINTETICA),
        (Kind.AVVENUTA_CONSEGNA, ReceiptVariant.COMPLETA),
    ],
)
def test_original_missing_where_it_belongs(
    kind: Kind, variant: ReceiptVariant, trust: TrustStore
) -> None:
    """An envelope (whatever was asked) or a completa delivery receipt signed without
    postacert.eml: postacert-missing, reported; the receipt still counts."""
    built = make_pec(kind, requested_variant=variant)
    notice_ = Notice(
        kind,
        make_original(requested_variant=variant),
        built.truth.identificativo or "",
        AT,
        delivery_recipient=built.truth.delivery_recipient,
    )
    raw = factory_provider("aruba").issue(notice_, without_original=True)
    assert b"message/rfc822" not in raw
    examined = examine(raw, trust)
    assert _codes(examined) == ["postacert-missing"]
    assert examined.disqualifying_defects == ()
    assert (examined.as_receipt() is not None) == (kind is Kind.AVVENUTA_CONSEGNA)


@pytest.mark.parametrize("variant", [ReceiptVariant.BREVE, ReceiptVariant.SINTETICA])
def test_no_original_expected_in_breve_or_sintetica_receipts(
    variant: ReceiptVariant, trust: TrustStore
) -> None:
    """Only completa delivery receipts must carry the original."""
    original = make_original(requested_variant=variant)
    notice_ = Notice(
        Kind.AVVENUTA_CONSEGNA, original, "id.1@pec.aruba.it", AT, delivery_recipient=CERTIFIED
    )
    raw = factory_provider("aruba").issue(notice_, without_original=True)
    assert _codes(examine(raw, trust)) == []


def test_genuine_traffic_has_no_cross_check_defect(
    traffic: list[TrafficItem], trust: TrustStore
) -> None:
    """Every genuine simulated message: headers agree with daticert, originals attached."""
    found = [
        (item.filename, code)
        for item in traffic
        if item.truth.fault is None
        for code in _codes(examine(item.raw, trust))
        if code in CROSS_CHECKS
    ]
    assert found == []


def test_ordinary_mail_is_not_pec() -> None:
    """A plain message (e.g. the Sent copy) is not-pec, keyed by its own Message-ID."""
    raw = (
        b"From: Mario Rossi <mario.rossi@pec.example.it>\r\nTo: a@pec.x.it, B <b@pec.y.it>\r\n"
        b"Cc: c@gmail.com\r\nSubject: =?UTF-8?Q?Diffida_n=C2=B0_1?=\r\n"
        b"Message-ID: <abc@client>\r\n\r\nbody\r\n"
    )
    message = parse(raw)
    assert message.kind is Kind.NOT_PEC
    assert message.msgid == "<abc@client>"
    assert message.sender == "mario.rossi@pec.example.it"
    assert [r.address for r in message.recipients] == ["a@pec.x.it", "b@pec.y.it", "c@gmail.com"]
    assert message.subject == "Diffida n° 1"
    assert message.defects == ()


def test_headers_only_pec_is_flagged() -> None:
    """X-Ricevuta without daticert or signature: kind from headers, two defects."""
    raw = b"X-Ricevuta: accettazione\r\nX-Riferimento-Message-ID: <a@b>\r\n\r\nhello\r\n"
    message = parse(raw)
    assert message.kind is Kind.ACCETTAZIONE
    assert message.msgid == "<a@b>"
    assert {d.code for d in message.defects} == {"daticert-missing", "signature-missing"}


def test_mime_nesting_bomb_is_not_followed() -> None:
    """Thousands of nested multiparts: no recursion, an ordinary result."""
    depth = 5000
    raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for level in range(1, depth):
        raw += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (
            level - 1,
            level,
        )
    message = parse(raw)
    assert message.kind is Kind.NOT_PEC


def test_huge_headers_are_capped() -> None:
    """A header block beyond the cap is a defect; parsing stops there."""
    raw = b"X-Ricevuta: accettazione\r\nX-Junk: " + b"a" * 300_000 + b"\r\n\r\nbody"
    message = parse(raw, Limits(max_header_bytes=64 * 1024))
    assert "headers-too-large" in {d.code for d in message.defects}


def test_oversize_message_is_reported_not_read() -> None:
    """Over the message cap: a defect, no body processing."""
    raw = provider(default_pki()).issue(notice())
    message = parse(raw, Limits(max_message_bytes=1000))
    assert message.defects[0].code == "message-too-large"


def test_base64_bomb_in_daticert() -> None:
    """A daticert part far over its cap is refused before decoding."""
    big = base64.encodebytes(b"<postacert>" + b" " * 2_000_000 + b"</postacert>")
    raw = (
        b"X-Ricevuta: accettazione\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: application/xml; name=daticert.xml\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + big + b"\r\n--x--\r\n"
    )
    message = parse(raw)
    assert "daticert-too-large-or-undecodable" in {d.code for d in message.defects}


def test_too_many_parts() -> None:
    """More parts than the cap: malformed MIME, not a loop over a million parts."""
    raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + (
        b"--x\r\n\r\n.\r\n" * 1000
    )
    assert "mime-malformed" in {d.code for d in parse(raw).defects}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_never_raises_on_random_bytes(raw: bytes) -> None:
    """Any bytes at all: a result, never an exception."""
    assert isinstance(parse(raw).kind, Kind)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_never_raises_on_mutated_pec(data: st.DataObject) -> None:
    """A real signed receipt with bytes flipped, cut or inserted: never an exception."""
    raw = bytearray(provider(default_pki()).issue(notice()))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[position : position + data.draw(st.integers(1, 400))]
        else:
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=50))
        if not raw:
            raw = bytearray(b"x")
    examined = examine(bytes(raw), TrustStore.from_bytes(default_pki().anchor_pem()))
    assert examined.signature.integrity in set(Integrity)
