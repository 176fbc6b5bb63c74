"""Provenance through the core and the codec: kept once per SHA-256, carried by the
events a message causes, round-tripped by the table codec, valid against the schemas."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import jsonschema
import orjson

from pipeline.contracts.codec import (
    observation_from_dict,
    observation_to_dict,
    tracked_from_dict,
    tracked_to_dict,
)
from pipeline.contracts.schemas import (
    DEFAULT_SCHEMA_BASE,
    MESSAGE_STATE,
    STATE_CHANGE,
    Publication,
    schema_document,
)
from pipeline.core.correlate import Deadlines, Tracked, TrackEvent
from pipeline.core.examine import examine
from pipeline.core.model import Kind
from pipeline.core.observation import (
    Evidence,
    Observation,
    Submission,
    apply_observation,
    observe_message,
)
from pipeline.core.provenance import Provenance
from pipeline.core.trust import TrustStore
from tests.factories import CERTIFIED, anchor_pem, make_pec, make_sent_copy

BOX = "studio-rossi"
TRUST = TrustStore.from_bytes(anchor_pem())


def observed(raw: bytes, folder: str, uid: int) -> Observation:
    examined = examine(raw, TRUST)
    outcome = observe_message(examined, BOX, sent_copy=folder == "Sent")
    assert isinstance(outcome, Submission | Evidence), outcome
    digest = hashlib.sha256(raw).hexdigest()
    sent = folder == "Sent"
    provenance = Provenance(
        sha256=digest,
        size=len(raw),
        kind="sent" if sent else examined.message.kind.value,
        mailbox=BOX,
        folder=folder,
        uidvalidity=1700000000,
        uid=uid,
        identificativo=None if sent else examined.message.identificativo,
        message_id=examined.message.message_id,
        receipt_id=None if sent else examined.receipt_id,
        recipient=None if sent else examined.message.delivery_recipient,
        signature=None if sent else "valid-trusted",
        stored_at=datetime(2024, 3, 1, 9, 5, tzinfo=UTC),
        archive=f"s3://evidence/sha256/{digest[:2]}/{digest}.eml",
    )
    return replace(outcome, provenance=provenance)


def run(observations: list[Observation]) -> tuple[Tracked, list[TrackEvent]]:
    tracked, events = None, []
    for observation in observations:
        tracked, new = apply_observation(tracked, observation, Deadlines())
        events += new
    assert tracked is not None
    return tracked, events


def test_provenance_is_kept_once_and_carried_by_the_events_it_causes() -> None:
    sent = make_sent_copy().raw
    acceptance = make_pec(Kind.ACCETTAZIONE).raw
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    tracked, events = run([
        observed(sent, "Sent", 3),
        observed(acceptance, "INBOX", 10),
        observed(delivery, "INBOX", 11),
        observed(delivery, "INBOX", 12),  # the same bytes read again (after a resync)
    ])  # fmt: skip
    digests = [hashlib.sha256(raw).hexdigest() for raw in (sent, acceptance, delivery)]
    assert [p.sha256 for p in tracked.evidence] == digests
    assert tracked.evidence[2].uid == 11  # the first reading is the one kept
    by_state = {(e.recipient, e.after.value if e.after else None): e for e in events}
    delivered = by_state[(CERTIFIED, "delivered")]
    assert delivered.provenance is not None
    assert delivered.provenance.sha256 == digests[2]
    assert delivered.provenance.receipt_id == delivered.receipt_id
    accepted = by_state[(CERTIFIED, "accepted")]
    assert accepted.provenance is not None
    assert accepted.provenance.sha256 == digests[1]
    submitted = by_state[(CERTIFIED, "submitted")]
    assert submitted.provenance is not None
    assert submitted.provenance.kind == "sent"


def test_codec_round_trips_and_records_fit_the_schemas() -> None:
    sent = make_sent_copy().raw
    acceptance = make_pec(Kind.ACCETTAZIONE).raw
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    observations = [observed(sent, "Sent", 3), observed(acceptance, "INBOX", 10),
                    observed(delivery, "INBOX", 11)]  # fmt: skip
    for observation in observations:
        wire = orjson.loads(orjson.dumps(observation_to_dict(observation)))
        assert observation_from_dict(wire) == observation
    tracked, events = run(observations)
    assert tracked_from_dict(orjson.loads(orjson.dumps(tracked_to_dict(tracked)))) == tracked
    publication = Publication()
    state = publication.message_state_dict(tracked)
    recipient = next(r for r in state["recipients"] if r["address"] == CERTIFIED)
    digests = [hashlib.sha256(raw).hexdigest() for raw in (acceptance, delivery)]
    assert recipient["evidence"] == digests  # the acceptance (message-wide) and its delivery
    assert [e["sha256"] for e in state["evidence"]][1:] == digests
    for contract, records in (
        (MESSAGE_STATE, [state]),
        (STATE_CHANGE, [orjson.loads(publication.state_change(e)[0]) for e in events]),
    ):
        for document in (contract.current, contract.path):
            validator = jsonschema.Draft202012Validator(schema_document(document))
            for record in records:
                validator.validate(record)
    event = orjson.loads(publication.state_change(events[-1])[0])
    assert event["dataschema"] == DEFAULT_SCHEMA_BASE + "state-change/2.json"
    assert event["data"]["evidence"]["uid"] in (10, 11)
    bad = {**state, "evidence": [{**state["evidence"][0], "sha256": "not-hex"}]}
    refused = jsonschema.Draft202012Validator(schema_document(MESSAGE_STATE.current))
    assert not refused.is_valid(bad)  # the working schema describes the new field


def test_a_consumer_decodes_the_evidence_of_an_event() -> None:
    from pipeline.contracts.cloudevents import Mode, decode_record  # noqa: PLC0415

    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    observations = [observed(make_sent_copy().raw, "Sent", 3),
                    observed(make_pec(Kind.ACCETTAZIONE).raw, "INBOX", 10),
                    observed(delivery, "INBOX", 11)]  # fmt: skip
    _, events = run(observations)
    for mode in Mode:
        value, headers = Publication(mode).state_change(events[-1])
        decoded = decode_record(headers, value)
        assert decoded.evidence == events[-1].provenance
        assert decoded.evidence is not None
        assert decoded.evidence.sha256 == hashlib.sha256(delivery).hexdigest()
