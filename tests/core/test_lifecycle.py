"""The lifecycle table: complete, monotone, idempotent, order-insensitive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.lifecycle import (
    TRANSITIONS,
    Event,
    Outcome,
    Receipt,
    apply,
    event_for,
    new_message,
    record_submission,
)
from pipeline.core.model import (
    DeliveryState,
    ErrorCode,
    Kind,
    PecMessage,
    Recipient,
    RecipientType,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CERT = Recipient("to@pec.other.it", RecipientType.CERTIFICATO)
EXT = Recipient("someone@gmail.com", RecipientType.ESTERNO)
RANK = [
    DeliveryState.SUBMITTED,
    DeliveryState.ACCEPTED,
    DeliveryState.DELAYED_12H,
    DeliveryState.DELAYED_24H,
    DeliveryState.REJECTED,
    DeliveryState.DELIVERY_FAILED,
    DeliveryState.VIRUS,
    DeliveryState.DELIVERED,
]


def receipt(rid: str, event: Event, to: str | None = CERT.address, minutes: int = 0) -> Receipt:
    return Receipt(rid, event, (CERT, EXT), to, T0 + timedelta(minutes=minutes))


def final_states(receipts: list[Receipt]) -> dict[str, DeliveryState]:
    state = record_submission(new_message("<m@client>"), "me@pec.example.it", (CERT.address,), T0)
    for item in receipts:
        state, _ = apply(state, item)
    return {r.address: r.state for r in state.recipients}


def test_table_is_complete() -> None:
    """Every (state, event) pair has an explicit entry: nothing falls through."""
    assert {(s, e) for s in DeliveryState for e in Event} == set(TRANSITIONS)


def test_table_never_moves_down() -> None:
    """Transitions are monotone in rank, which makes the final state order-insensitive."""
    for (before, _event), (after, _outcome) in TRANSITIONS.items():
        assert RANK.index(after) >= RANK.index(before), (before, after)


def test_happy_path() -> None:
    """Acceptance then delivery: submitted -> accepted -> delivered for the certified one."""
    state = record_submission(new_message("<m@client>"), "me@pec.example.it", (CERT.address,), T0)
    state, changes = apply(state, receipt("a", Event.ACCEPT, None, 1))
    assert {(t.recipient, t.after, t.outcome) for t in changes} == {
        (CERT.address, DeliveryState.ACCEPTED, Outcome.ADVANCED),
        (EXT.address, DeliveryState.ACCEPTED, Outcome.ADVANCED),
    }
    assert state.accepted_at == T0 + timedelta(minutes=1)
    state, changes = apply(state, receipt("d", Event.DELIVER, minutes=5))
    assert [(t.before, t.after, t.outcome) for t in changes] == [
        (DeliveryState.ACCEPTED, DeliveryState.DELIVERED, Outcome.ADVANCED)
    ]
    assert state.is_final  # the external recipient stops at accepted


def test_external_recipient_expects_no_delivery() -> None:
    """An esterno recipient is final once accepted; a certified one is not."""
    state, _ = apply(new_message("<m@client>"), receipt("a", Event.ACCEPT, None))
    ext, cert = state.recipient(EXT.address), state.recipient(CERT.address)
    assert ext is not None
    assert ext.is_final
    assert cert is not None
    assert not cert.is_final


def test_same_receipt_twice_changes_nothing() -> None:
    """Re-ingesting a receipt is a DUPLICATE with the same state."""
    state, _ = apply(new_message("<m@client>"), receipt("a", Event.ACCEPT, None))
    again, changes = apply(state, receipt("a", Event.ACCEPT, None))
    assert again == state
    assert {t.outcome for t in changes} == {Outcome.DUPLICATE}


def test_duplicate_warning_does_not_count_as_second() -> None:
    """The same 12 h warning twice stays delayed-12h; a second distinct one is 24 h."""
    assert final_states([receipt("w1", Event.WARN), receipt("w1", Event.WARN)]) == {
        CERT.address: DeliveryState.DELAYED_12H
    }
    assert final_states([receipt("w1", Event.WARN), receipt("w2", Event.WARN)]) == {
        CERT.address: DeliveryState.DELAYED_24H
    }


def test_delivery_before_acceptance_is_recorded() -> None:
    """A delivery seen first is applied and flagged out of order, not dropped."""
    state = new_message("<m@client>")
    state, changes = apply(state, receipt("d", Event.DELIVER))
    assert changes[0].outcome is Outcome.OUT_OF_ORDER
    assert changes[0].after is DeliveryState.DELIVERED
    state, changes = apply(state, receipt("a", Event.ACCEPT, None))
    cert_change = next(t for t in changes if t.recipient == CERT.address)
    assert cert_change.outcome is Outcome.STALE
    assert state.recipient(CERT.address).state is DeliveryState.DELIVERED  # type: ignore[union-attr]


def test_failure_after_delivery_is_a_conflict() -> None:
    """A contradiction is reported as CONFLICT and the delivery stands."""
    state, _ = apply(new_message("<m@client>"), receipt("d", Event.DELIVER))
    _, changes = apply(state, receipt("f", Event.FAIL))
    assert (changes[0].outcome, changes[0].after) == (Outcome.CONFLICT, DeliveryState.DELIVERED)


def test_delivery_after_24h_warning() -> None:
    """Warnings are not final: a delivery after the 24 h warning still delivers."""
    receipts = [
        receipt("a", Event.ACCEPT, None),
        receipt("w1", Event.WARN, minutes=720),
        receipt("w2", Event.WARN, minutes=1440),
        receipt("d", Event.DELIVER, minutes=1500),
    ]
    assert final_states(receipts)[CERT.address] is DeliveryState.DELIVERED


def test_receipt_without_recipient_is_invalid_when_ambiguous() -> None:
    """A per-recipient receipt naming nobody, with two certified recipients, is INVALID."""
    state = record_submission(new_message("<m@client>"), None, ("a@pec.x.it", "b@pec.y.it"), T0)
    after, changes = apply(state, receipt("d", Event.DELIVER, to=None))
    assert after == state
    assert [t.outcome for t in changes] == [Outcome.INVALID]


def test_submission_keeps_types_from_acceptance() -> None:
    """An acceptance before the Sent copy still marks the external recipient esterno."""
    state, _ = apply(new_message("<m@client>"), receipt("a", Event.ACCEPT, None))
    state = record_submission(state, "me@pec.example.it", (EXT.address, CERT.address), T0)
    assert state.recipient(EXT.address).type is RecipientType.ESTERNO  # type: ignore[union-attr]
    assert state.submitted_at == T0
    assert state.submitted


def test_submission_without_date_keeps_the_known_time() -> None:
    """A second, undated registration neither erases the submission time nor orphans."""
    state = record_submission(new_message("<m@client>"), None, (CERT.address,), T0)
    state = record_submission(state, None, (CERT.address,), None)
    assert state.submitted_at == T0
    assert state.submitted
    undated = record_submission(new_message("<n@client>"), None, (CERT.address,), None)
    assert undated.submitted
    assert undated.submitted_at is None


def _message(kind: Kind, error: ErrorCode | None = None, detail: str | None = None) -> PecMessage:
    return PecMessage(
        kind, "<m@c>", None, None, None, (), None, None, None, error, detail, None, None,
        False, (),
    )  # fmt: skip


def test_event_mapping() -> None:
    """Kinds map to events; virus failures and the 5.4.1 warning quirk are special."""
    assert event_for(_message(Kind.ACCETTAZIONE)) is Event.ACCEPT
    assert event_for(_message(Kind.NON_ACCETTAZIONE)) is Event.REJECT
    assert event_for(_message(Kind.AVVENUTA_CONSEGNA)) is Event.DELIVER
    assert event_for(_message(Kind.ERRORE_CONSEGNA, ErrorCode.NO_DEST)) is Event.FAIL
    assert event_for(_message(Kind.ERRORE_CONSEGNA, ErrorCode.VIRUS)) is Event.VIRUS
    assert event_for(_message(Kind.RILEVAZIONE_VIRUS)) is Event.VIRUS
    assert event_for(_message(Kind.PREAVVISO_ERRORE_CONSEGNA)) is Event.WARN
    quirk = _message(Kind.PREAVVISO_ERRORE_CONSEGNA, detail="5.4.1 - Recipient address rejected")
    assert event_for(quirk) is Event.FAIL
    for kind in (Kind.POSTA_CERTIFICATA, Kind.ERRORE, Kind.PRESA_IN_CARICO, Kind.NOT_PEC):
        assert event_for(_message(kind)) is None


MESSAGE_WIDE = (Event.ACCEPT, Event.REJECT)
receipts_strategy = st.lists(
    st.tuples(st.sampled_from(list(Event)), st.sampled_from(["r1", "r2", "r3", "r4", "r5"])),
    max_size=12,
).map(
    lambda items: [
        receipt(f"{event.value}-{rid}", event, None if event in MESSAGE_WIDE else CERT.address)
        for event, rid in items
    ]
)


@given(receipts_strategy, st.randoms(use_true_random=False))
def test_final_state_is_order_insensitive(receipts: list[Receipt], rnd: object) -> None:
    """Any permutation of the same receipts ends in the same state for every recipient."""
    shuffled = list(receipts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert final_states(receipts) == final_states(shuffled)


@given(receipts_strategy)
def test_applying_everything_twice_is_idempotent(receipts: list[Receipt]) -> None:
    """Re-ingesting every receipt after the first pass changes nothing."""
    state = new_message("<m@client>")
    for item in receipts:
        state, _ = apply(state, item)
    again = state
    for item in receipts:
        again, changes = apply(again, item)
        assert all(t.outcome is Outcome.DUPLICATE for t in changes)
    assert again == state
