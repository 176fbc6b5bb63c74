"""Generated traffic: deterministic, varied, consistent with its truth; the oracle's rules."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.core.model import DeliveryState, ErrorCode, Kind, RecipientType
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import Fault, catalogue
from pipeline.simulate.traffic import (
    INBOX,
    SENT,
    TrafficItem,
    TrafficMix,
    Truth,
    expected_states,
    generate_traffic,
)
from tests.factories import AT, CERTIFIED, EXTERNAL, MSGID, SENDER, make_pec, make_sent_copy
from tests.simulate.helpers import daticert, parse
from tests.simulate.test_render import assert_daticert_matches

START = datetime(2024, 3, 1, 9, 0)
RICH = TrafficMix(
    rejected=0.08,
    failed=0.08,
    virus=0.05,
    delayed_12h=0.05,
    delayed_24h=0.05,
    late_delivery=0.05,
    final_warning=0.05,
    pending=0.05,
    duplicate=0.08,
    out_of_order=0.15,
    orphan=0.08,
    faulty=0.4,
    ordinary_mail=0.1,
    anomaly=0.1,
    provider_notices=0.6,
)
_SIGNATURE = re.compile(rb'filename="smime.p7s"\r?\n\r?\n[A-Za-z0-9+/=\r\n]+')


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return generate_traffic(5, 150, 6, START, mix=RICH, attachment_size=512)


def _unsigned(raw: bytes) -> bytes:
    return _SIGNATURE.sub(b"", raw)


def test_same_seed_gives_the_same_traffic_apart_from_signatures() -> None:
    """Bytes (signatures aside), truths and order are a function of the seed."""
    first = generate_traffic(3, 30, 4, START)
    second = generate_traffic(3, 30, 4, START)
    assert [_unsigned(i.raw) for i in first] == [_unsigned(i.raw) for i in second]
    assert [(i.mailbox, i.folder, i.truth) for i in first] == [
        (i.mailbox, i.folder, i.truth) for i in second
    ]
    other = generate_traffic(4, 30, 4, START)
    assert [_unsigned(i.raw) for i in other] != [_unsigned(i.raw) for i in first]


def test_arrival_order_is_the_list_order(traffic: list[TrafficItem]) -> None:
    """arrival_order counts 0, 1, ... and arrival times never go backwards."""
    assert [i.arrival_order for i in traffic] == list(range(len(traffic)))
    times = [i.arrival_time for i in traffic]
    assert times == sorted(times)


def test_every_item_reads_back_as_its_truth(traffic: list[TrafficItem]) -> None:
    """stdlib email + ElementTree see what the truth says, except where a fault lies."""
    for item in traffic:
        truth = item.truth
        message = parse(item.raw)
        if truth.kind is Kind.NOT_PEC:
            assert message.get_content_type() != "multipart/signed"
            assert message["Message-ID"] == truth.msgid
            continue
        header = message["X-Trasporto"] if truth.kind.is_envelope else message["X-Ricevuta"]
        if truth.fault is Fault.HEADER_MISMATCH:
            assert header != truth.kind
        else:
            assert header == truth.kind
        if truth.fault is not Fault.REPLAYED:
            assert message["X-Riferimento-Message-ID"] == truth.msgid
        assert message["Message-ID"] == truth.message_id
        if truth.fault is not Fault.MALFORMED_DATICERT and truth.fault is not Fault.REPLAYED:
            assert_daticert_matches(item.raw, truth)


def test_traffic_covers_every_situation(traffic: list[TrafficItem]) -> None:
    """Kinds, variants, faults, providers, digests, line endings and arrival quirks all occur."""
    truths = [i.truth for i in traffic]
    kinds = {t.kind for t in truths}
    assert kinds == set(Kind)
    assert {t.variant for t in truths if t.kind is Kind.AVVENUTA_CONSEGNA and t.fault is None} == {
        "completa",
        "breve",
        "sintetica",
    }
    assert {t.fault for t in truths} == {None, *Fault}
    assert {t.provider for t in truths} >= {
        "ARUBA PEC S.p.A.",
        "Poste Italiane S.p.A.",
        "InfoCert S.p.A.",
        "Namirial S.p.A.",
    }
    heads = [i.raw[:2000] for i in traffic if i.truth.kind is not Kind.NOT_PEC]
    assert any(b"micalg=sha1" in h for h in heads)
    assert any(b"micalg=sha-256" in h for h in heads)
    assert any(b"\r\n" not in i.raw for i in traffic)
    assert any(t.duplicate for t in truths)
    assert any(t.virus for t in truths)
    assert any((t.error_detail or "").startswith("5.4.1") for t in truths)
    assert {t.warning_hours for t in truths} >= {12, 24}
    assert any(t.kind is Kind.ERRORE_CONSEGNA and t.error is ErrorCode.ALTRO for t in truths)
    recipients = [t.recipients for t in truths if t.kind is Kind.ACCETTAZIONE]
    assert any(len(r) > 1 for r in recipients)
    assert any(x.type is RecipientType.ESTERNO for r in recipients for x in r)


def test_duplicates_are_byte_identical(traffic: list[TrafficItem]) -> None:
    """A duplicate is the same raw receipt delivered again, later."""
    originals = {i.raw: i for i in traffic if not i.truth.duplicate}
    duplicates = [i for i in traffic if i.truth.duplicate]
    assert duplicates
    for item in duplicates:
        first = originals[item.raw]
        assert first.arrival_order < item.arrival_order
        assert first.mailbox == item.mailbox


def test_orphans_and_out_of_order_arrivals(traffic: list[TrafficItem]) -> None:
    """Some receipts have no Sent copy; some acceptances arrive after a delivery receipt."""
    sent = {(i.mailbox, i.truth.msgid) for i in traffic if i.folder == SENT}
    accepted = {
        (i.mailbox, i.truth.msgid): i.arrival_order
        for i in traffic
        if i.truth.kind is Kind.ACCETTAZIONE and i.truth.fault is None
    }
    genuine = [i for i in traffic if i.truth.kind.is_receipt and i.truth.fault is None]
    orphans = {(i.mailbox, i.truth.msgid) for i in genuine} - sent
    assert orphans, "no orphan"
    assert all(i.truth.orphan == ((i.mailbox, i.truth.msgid) in orphans) for i in genuine)
    late = [
        i
        for i in traffic
        if i.truth.kind is Kind.AVVENUTA_CONSEGNA
        and i.truth.fault is None
        and accepted.get((i.mailbox, i.truth.msgid), -1) > i.arrival_order
    ]
    assert late, "no delivery before its acceptance"


def test_items_land_in_the_right_mailbox_and_folder(traffic: list[TrafficItem]) -> None:
    """Receipts and Sent copies in the sender's box; envelopes in a recipient's INBOX."""
    for item in traffic:
        truth = item.truth
        if item.folder == SENT:
            assert truth.kind is Kind.NOT_PEC
            assert item.mailbox == truth.sender
        elif truth.kind.is_receipt and truth.fault is None:
            assert item.mailbox == truth.sender
        elif truth.kind is Kind.POSTA_CERTIFICATA:
            assert item.mailbox in {r.address for r in truth.recipients}
        assert item.folder in (INBOX, SENT)


def test_provider_notices_go_from_the_recipients_provider_to_the_senders(
    traffic: list[TrafficItem],
) -> None:
    """presa-in-carico and rilevazione-virus: signed by the recipient's provider (another
    than the sender's), addressed to the sender's provider, at most one presa-in-carico
    per message and provider; each rilevazione-virus is followed by the sender provider's
    errore-consegna for a virus."""
    names = {p.domain: p.name for p in catalogue(default_pki())}
    notices = [
        i
        for i in traffic
        if i.truth.kind in (Kind.PRESA_IN_CARICO, Kind.RILEVAZIONE_VIRUS) and i.truth.fault is None
    ]
    assert {i.truth.kind for i in notices} == {Kind.PRESA_IN_CARICO, Kind.RILEVAZIONE_VIRUS}
    presa: set[tuple[str | None, str | None]] = set()
    for item in notices:
        truth, headers = item.truth, parse(item.raw)
        sender_domain = item.mailbox.split("@", 1)[1]
        assert item.folder == INBOX
        assert item.mailbox == truth.sender
        assert headers["To"] == f"posta-certificata@{sender_domain}"
        assert truth.provider != names[sender_domain]
        if truth.kind is Kind.RILEVAZIONE_VIRUS:
            assert truth.delivery_recipient is not None
            recipient_domain = truth.delivery_recipient.split("@", 1)[1]
            assert truth.provider == names[recipient_domain]
            assert truth.virus
            assert truth.error is ErrorCode.VIRUS
            assert any(
                other.truth.kind is Kind.ERRORE_CONSEGNA
                and other.truth.msgid == truth.msgid
                and other.truth.delivery_recipient == truth.delivery_recipient
                and other.truth.error is ErrorCode.VIRUS
                and other.truth.provider == names[sender_domain]
                for other in traffic
            )
        else:
            assert truth.delivery_recipient is None
            if not truth.duplicate:
                assert (truth.msgid, truth.provider) not in presa
                presa.add((truth.msgid, truth.provider))


def test_provider_notices_rate_zero_keeps_them_with_the_providers() -> None:
    """provider_notices=0: no presa-in-carico nor rilevazione-virus in any mailbox."""
    items = generate_traffic(5, 60, 6, START, mix=replace(RICH, provider_notices=0.0))
    kinds = {i.truth.kind for i in items}
    assert Kind.PRESA_IN_CARICO not in kinds
    assert Kind.RILEVAZIONE_VIRUS not in kinds


def test_generated_states_reach_every_outcome(traffic: list[TrafficItem]) -> None:
    """The oracle over generated traffic has every state a sent message can end in."""
    states = expected_states(traffic)
    reached = {s for per in states.values() for s in per.values()}
    assert reached == set(DeliveryState) - {DeliveryState.SUBMITTED}
    assert all(
        mailbox.endswith(("aruba.it", "postecert.it", "legalmail.it", "sicurezzapostale.it"))
        for mailbox, _ in states
    )


@pytest.mark.parametrize("size", [50_000, 2_000_000])
def test_attachment_size_sets_envelope_size(size: int) -> None:
    """~50 KB and ~2 MB envelopes for benchmarks; receipts without the original stay small."""
    mix = TrafficMix(variants=(0.0, 0.0, 1.0), faulty=0.0, ordinary_mail=0.0, anomaly=0.0)
    items = generate_traffic(1, 2, 2, START, mix=mix, attachment_size=size)
    sent = [len(i.raw) for i in items if i.folder == SENT]
    assert all(size < n < size * 1.5 for n in sent)
    receipts = [len(i.raw) for i in items if i.truth.kind.is_receipt]
    assert receipts
    assert all(n < 10_000 for n in receipts)


def test_arguments_are_checked_and_progress_reported() -> None:
    """Bad sizes raise ValueError; progress(done) is called once per message."""
    with pytest.raises(ValueError, match="mailboxes"):
        generate_traffic(1, 1, 0, START)
    seen: list[int] = []
    generate_traffic(1, 3, 1, datetime(2024, 3, 1, 8, tzinfo=UTC), progress=seen.append)
    assert seen == [1, 2, 3]


# The oracle's rules, pinned on hand-made receipts.


def _items(*built: tuple[bytes, Truth], folder: str = INBOX) -> list[TrafficItem]:
    return [
        TrafficItem(SENDER, SENT if t.kind is Kind.NOT_PEC else folder, raw, n, AT, t)
        for n, (raw, t) in enumerate(built)
    ]


def _states(*built: object) -> dict[str, DeliveryState]:
    pairs = [(b.raw, b.truth) for b in built]  # type: ignore[attr-defined]
    result = expected_states(_items(*pairs))
    return result[(SENDER, MSGID)]


def test_oracle_sent_copy_alone_is_submitted() -> None:
    """Nothing but the Sent copy: every recipient submitted."""
    assert _states(make_sent_copy()) == {
        CERTIFIED: DeliveryState.SUBMITTED,
        EXTERNAL: DeliveryState.SUBMITTED,
    }


def test_oracle_external_recipients_stop_at_accepted() -> None:
    """Acceptance + delivery: certified delivered, esterno accepted."""
    got = _states(make_sent_copy(), make_pec(Kind.ACCETTAZIONE), make_pec())
    assert got == {CERTIFIED: DeliveryState.DELIVERED, EXTERNAL: DeliveryState.ACCEPTED}


@pytest.mark.parametrize(
    ("receipts", "expected"),
    [
        ([12], DeliveryState.DELAYED_12H),
        ([12, 24], DeliveryState.DELAYED_24H),
        ([12, 24, "delivered"], DeliveryState.DELIVERED),
        (["5.4.1"], DeliveryState.DELIVERY_FAILED),
        (["no-dest"], DeliveryState.DELIVERY_FAILED),
        (["virus"], DeliveryState.VIRUS),
        (["rilevazione-virus"], DeliveryState.VIRUS),
        (["presa-in-carico", "rilevazione-virus", "virus"], DeliveryState.VIRUS),
        (["presa-in-carico"], DeliveryState.ACCEPTED),
        (["presa-in-carico", "delivered"], DeliveryState.DELIVERED),
        (["forged-delivery"], DeliveryState.ACCEPTED),
        (["tampered-delivery"], DeliveryState.ACCEPTED),
        ([], DeliveryState.ACCEPTED),
    ],
)
def test_oracle_per_recipient_outcomes(receipts: list[object], expected: DeliveryState) -> None:
    """Warnings, late delivery, the 5.4.1 quirk, virus; a presa-in-carico changes nothing;
    forged and tampered never count."""
    made = {
        12: lambda: make_pec(Kind.PREAVVISO_ERRORE_CONSEGNA, warning_hours=12),
        24: lambda: make_pec(Kind.PREAVVISO_ERRORE_CONSEGNA, warning_hours=24),
        "delivered": make_pec,
        "5.4.1": lambda: make_pec(Kind.PREAVVISO_ERRORE_CONSEGNA, error_detail="5.4.1 - denied"),
        "no-dest": lambda: make_pec(Kind.ERRORE_CONSEGNA),
        "virus": lambda: make_pec(Kind.ERRORE_CONSEGNA, virus=True),
        "rilevazione-virus": lambda: make_pec(Kind.RILEVAZIONE_VIRUS, delivery_recipient=CERTIFIED),
        "presa-in-carico": lambda: make_pec(Kind.PRESA_IN_CARICO),
        "forged-delivery": lambda: make_pec(fault=Fault.SELF_SIGNED),
        "tampered-delivery": lambda: make_pec(fault=Fault.TAMPERED_BODY),
    }
    built = [make_pec(Kind.ACCETTAZIONE)] + [made[r]() for r in receipts]  # type: ignore[index]
    for _ in range(3):  # arrival order never matters
        random.Random(len(receipts)).shuffle(built)
        assert _states(*built)[CERTIFIED] is expected


def test_oracle_rejection_covers_every_recipient() -> None:
    """non-accettazione: all recipients rejected, external ones too."""
    got = _states(make_pec(Kind.NON_ACCETTAZIONE), make_sent_copy())
    assert got == {CERTIFIED: DeliveryState.REJECTED, EXTERNAL: DeliveryState.REJECTED}


def test_oracle_ignores_header_only_claims() -> None:
    """A replayed or header-mismatched receipt is not evidence for anyone."""
    replayed = make_pec(fault=Fault.REPLAYED)
    mismatch = make_pec(Kind.ERRORE_CONSEGNA, fault=Fault.HEADER_MISMATCH)
    assert parse(mismatch.raw)["X-Ricevuta"] == "avvenuta-consegna"
    assert daticert(mismatch.raw).get("tipo") == "errore-consegna"
    states = expected_states(_items((replayed.raw, replayed.truth), (mismatch.raw, mismatch.truth)))
    assert states == {}


def test_oracle_keys_are_per_sender_mailbox() -> None:
    """The same msgid sent from two mailboxes is two messages."""
    built = make_pec(Kind.ACCETTAZIONE)
    other = TrafficItem("altro@pec.aruba.it", INBOX, built.raw, 1, AT + timedelta(1), built.truth)
    states = expected_states([*_items((built.raw, built.truth)), other])
    assert set(states) == {(SENDER, MSGID), ("altro@pec.aruba.it", MSGID)}


_DIGEST_SCRIPT = """
import hashlib, re
from datetime import datetime
from pipeline.simulate.traffic import generate_traffic
sig = re.compile(rb'filename="smime.p7s"\\r?\\n\\r?\\n[A-Za-z0-9+/=\\r\\n]+')
digest = hashlib.sha256()
for item in generate_traffic(8, 20, 3, datetime(2024, 3, 1, 9)):
    digest.update(sig.sub(b"", item.raw) + repr(item.truth).encode())
print(digest.hexdigest())
"""


def test_same_seed_gives_the_same_bytes_across_processes() -> None:
    """Fresh keys per process change only the signatures, nothing else."""
    runs = {
        subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
