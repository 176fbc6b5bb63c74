"""Deterministic PEC mailbox traffic with its ground truth.

``generate_traffic(seed=7, messages=100, mailboxes=5, start=...)`` plays users submitting
certified mail through four simulated providers and returns every message that lands in
a mailbox (receipts and envelopes in INBOX, the user's own copy in Sent), in arrival
order, each with the parse a correct tracker must produce (:class:`Truth`).
:func:`expected_states` folds the receipts that are legal evidence into the final
:class:`DeliveryState` of every (sender mailbox, original msgid, recipient).

The bytes are a function of the seed except the signatures (keys are made per process).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime

from pipeline.core.model import DeliveryState, ErrorCode, Kind
from pipeline.simulate.ca import Pki, default_pki
from pipeline.simulate.provider import CET
from pipeline.simulate.scenario import Scenario
from pipeline.simulate.truth import (
    INBOX,
    SENT,
    TrafficItem,
    TrafficMix,
    Truth,
    faulty_truth,
    notice_truth,
    plain_truth,
)

# The traffic API in one place: value types and truth helpers live in truth.py, the
# scenario engine in scenario.py.
__all__ = [
    "INBOX",
    "SENT",
    "TrafficItem",
    "TrafficMix",
    "Truth",
    "expected_states",
    "faulty_truth",
    "generate_traffic",
    "notice_truth",
    "plain_truth",
]


def generate_traffic(
    seed: int,
    messages: int,
    mailboxes: int,
    start: datetime,
    *,
    mix: TrafficMix | None = None,
    attachment_size: int = 2048,
    pki: Pki | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[TrafficItem]:
    """Every item in arrival order (``arrival_order`` 0, 1, ...). ``start`` is naive CET or
    aware; ``attachment_size`` bytes of attachment per message (0 for none);
    ``progress(done)`` is called after each message."""
    if messages < 0 or mailboxes < 1:
        raise ValueError("messages must be >= 0 and mailboxes >= 1")
    start = start if start.tzinfo else start.replace(tzinfo=CET)
    start = start.replace(microsecond=0)
    scenario = Scenario(
        random.Random(seed),  # noqa: S311 -- simulation, not crypto
        pki or default_pki(),
        mix or TrafficMix(),
        start,
    )
    scenario.populate(mailboxes)
    for index in range(messages):
        scenario.message(index, attachment_size)
        if progress is not None:
            progress(index + 1)
    pending = sorted(scenario.pending, key=lambda p: (p[0], p[1]))
    return [
        TrafficItem(mailbox, folder, raw, order, at, truth)
        for order, (at, _seq, mailbox, folder, raw, truth) in enumerate(pending)
    ]


_RANK = {
    DeliveryState.SUBMITTED: 0,
    DeliveryState.ACCEPTED: 1,
    DeliveryState.DELAYED_12H: 2,
    DeliveryState.DELAYED_24H: 3,
    DeliveryState.REJECTED: 4,
    DeliveryState.DELIVERED: 4,
    DeliveryState.DELIVERY_FAILED: 4,
    DeliveryState.VIRUS: 4,
}


def _receipt_state(truth: Truth) -> DeliveryState | None:
    if truth.kind is Kind.ACCETTAZIONE:
        return DeliveryState.ACCEPTED
    if truth.kind is Kind.NON_ACCETTAZIONE:
        return DeliveryState.REJECTED
    if truth.kind is Kind.AVVENUTA_CONSEGNA:
        return DeliveryState.DELIVERED
    if truth.kind is Kind.RILEVAZIONE_VIRUS:
        return DeliveryState.VIRUS
    if truth.kind is Kind.ERRORE_CONSEGNA:
        return (
            DeliveryState.VIRUS if truth.error is ErrorCode.VIRUS else DeliveryState.DELIVERY_FAILED
        )
    if truth.kind is Kind.PREAVVISO_ERRORE_CONSEGNA:
        if (truth.error_detail or "").startswith("5.4.1"):
            return DeliveryState.DELIVERY_FAILED  # the provider quirk: a final failure
        return DeliveryState.DELAYED_24H if truth.warning_hours == 24 else DeliveryState.DELAYED_12H
    return None


def expected_states(
    items: Iterable[TrafficItem],
) -> dict[tuple[str, str], dict[str, DeliveryState]]:
    """(sender mailbox, original msgid) -> recipient -> final state, from evidence only.

    A state moves only forward (accepted < 12 h < 24 h warning < final) and the first
    final receipt wins, so arrival order and duplicates do not matter.
    """
    states: dict[tuple[str, str], dict[str, DeliveryState]] = {}
    for item in items:
        truth = item.truth
        is_sent_copy = item.folder == SENT and truth.kind is Kind.NOT_PEC
        if truth.msgid is None or not (is_sent_copy or truth.counts_as_evidence):
            continue
        new = _receipt_state(truth)
        if new is None and not is_sent_copy:
            continue  # a presa-in-carico: evidence of nothing the sender tracks
        per_recipient = states.setdefault((item.mailbox, truth.msgid), {})
        for recipient in truth.recipients:
            per_recipient.setdefault(recipient.address, DeliveryState.SUBMITTED)
        if new is None:
            continue
        targets = (
            [truth.delivery_recipient]
            if truth.delivery_recipient is not None
            else [r.address for r in truth.recipients]
        )
        for address in targets:
            current = per_recipient.get(address, DeliveryState.SUBMITTED)
            if _RANK[new] > _RANK[current]:
                per_recipient[address] = new
    return states
