"""What the pipeline must publish for simulated traffic, computed from ground truth.

Final states come from the simulator's own oracle (``expected_states``), which knows
nothing of the pipeline. State-change events are derived from the truth of each item
(never from parsing it) folded through the lifecycle table in arrival order — the order
the correlate processor sees a mailbox's records when verify runs with concurrency 1.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from pipeline.core.correlate import Deadlines, SignatureVerdict, Suspect, Tracked
from pipeline.core.keys import correlation_key
from pipeline.core.lifecycle import Receipt, event_for
from pipeline.core.model import Integrity, Kind, PecMessage, Trust
from pipeline.core.observation import (
    Evidence,
    Submission,
    SuspectReceipt,
    apply_observation,
    suspect_event,
)
from pipeline.simulate.traffic import SENT, TrafficItem, Truth, expected_states

# The truth knows integrity and trust, not the signer checks: events' signature is not compared.
_VERDICTS = {
    Integrity.MISSING: SignatureVerdict.MISSING,
    Integrity.INVALID: SignatureVerdict.INVALID,
}

EventShape = tuple[str, str | None, str, str | None, str | None]  # key, recipient, type, from, to


def final_states(items: Iterable[TrafficItem]) -> dict[str, dict[str, str]]:
    """correlation key -> recipient -> final state name."""
    return {
        correlation_key(mailbox, msgid): {r: s.value for r, s in states.items()}
        for (mailbox, msgid), states in expected_states(items).items()
    }


def _as_message(truth: Truth) -> PecMessage:
    return PecMessage(
        truth.kind, truth.msgid, truth.identificativo, truth.provider, truth.sender,
        truth.recipients, truth.delivery_recipient, truth.timestamp, truth.variant,
        truth.error, truth.error_detail, None, truth.message_id, truth.virus, (),
    )  # fmt: skip


def _observation(item: TrafficItem) -> Submission | Evidence | SuspectReceipt | None:
    truth = item.truth
    if truth.msgid is None:
        return None
    key = correlation_key(item.mailbox, truth.msgid)
    if truth.kind is Kind.NOT_PEC:
        if item.folder != SENT:
            return None
        recipients = tuple(r.address for r in truth.recipients)
        return Submission(key, item.mailbox, truth.msgid, truth.sender, recipients, truth.timestamp)
    event = event_for(_as_message(truth))
    if event is None:
        return None
    receipt_id = hashlib.sha256(item.raw).hexdigest()  # duplicates are byte-identical
    if truth.counts_as_evidence:
        receipt = Receipt(
            receipt_id, event, truth.recipients, truth.delivery_recipient, truth.timestamp
        )
        return Evidence(key, item.mailbox, truth.msgid, receipt, truth.kind.value, truth.provider)
    reason = suspect_event(truth.integrity, truth.trust)
    verdict = _VERDICTS.get(truth.integrity, SignatureVerdict.VALID_TRUSTED)
    if verdict is SignatureVerdict.VALID_TRUSTED and truth.trust is not Trust.TRUSTED:
        verdict = SignatureVerdict.UNTRUSTED
    suspect = Suspect(
        receipt_id, reason, truth.kind.value, truth.delivery_recipient, "", None, verdict
    )
    return SuspectReceipt(key, item.mailbox, truth.msgid, suspect)


def expected_events(items: Iterable[TrafficItem]) -> Counter[EventShape]:
    """The multiset of events (without ids) the pipeline must publish, deduplicated."""
    tracked: dict[str, Tracked] = {}
    shapes: Counter[EventShape] = Counter()
    no_deadlines = Deadlines()
    for item in items:
        observation = _observation(item)
        if observation is None:
            continue
        state, events = apply_observation(tracked.get(observation.key), observation, no_deadlines)
        tracked[observation.key] = state
        for event in events:
            shapes[
                (
                    event.key,
                    event.recipient,
                    event.type.value,
                    event.before.value if event.before else None,
                    event.after.value if event.after else None,
                )
            ] += 1
    return shapes
