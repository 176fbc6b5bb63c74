"""Forged receipts through the real pipeline: Dovecot -> agent -> broker -> worker.

Each forged delivery receipt (another provider's valid certificate, self-signed, untrusted
CA, signer expired at signing time, headers disagreeing with daticert, a receipt replayed
for another message, tampered body, stripped signature, malformed daticert) is about a
message that was sent and genuinely accepted. A control message gets a genuine delivery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.keys import correlation_key
from pipeline.core.model import Kind
from pipeline.dev.embedded import EmbeddedBroker
from pipeline.simulate.provider import Fault
from tests.factories import make_pec, make_sent_copy
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.workers import WorkerProcess, settle

from .conftest import in_process_agent, write_config
from .test_streams import latest_states, worker_args

pytestmark = pytest.mark.integration

SUSPECT = {"it.pec.signature-invalid", "it.pec.untrusted-signer", "it.pec.receipt-rejected"}


def msgid(name: str) -> str:
    return f"<20240301100000.{name}@mario.rossi.client>"


async def test_forged_receipts_never_produce_a_delivered_transition(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Every forgery through the real agent and worker yields a suspect event and leaves
    its message accepted; only the genuine control receipt yields `delivered`."""
    (index,) = fresh_users(1)
    user, box = dovecot.user(index), f"box-{index:04d}"
    sent: list[bytes] = []
    inbox: list[bytes] = []
    forged_ids: dict[str, Fault] = {}
    for fault in Fault:
        target = msgid(f"forged-{fault.value}")
        sent.append(make_sent_copy(msgid=target).raw)
        inbox.append(make_pec(Kind.ACCETTAZIONE, msgid=target).raw)
        if fault is Fault.REPLAYED:  # a genuine receipt of another message, re-pointed
            source = msgid("replay-source")
            sent.append(make_sent_copy(msgid=source).raw)
            inbox.append(make_pec(Kind.ACCETTAZIONE, msgid=source).raw)
            forged_ids[source] = fault
            forged = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste", msgid=source,
                              fault=fault, replay_msgid=target)  # fmt: skip
        else:
            forged = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste", msgid=target,
                              fault=fault)  # fmt: skip
        forged_ids[target] = fault
        inbox.append(forged.raw)
    control = msgid("genuine")
    sent.append(make_sent_copy(msgid=control).raw)
    inbox.append(make_pec(Kind.ACCETTAZIONE, msgid=control).raw)
    inbox.append(make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste", msgid=control).raw)
    dovecot.append_many(user, "Sent", sent)
    dovecot.append_many(user, "INBOX", inbox)

    config = write_config(tmp_path, broker, dovecot, [index])
    with WorkerProcess(broker, tmp_path / "w", *worker_args(tmp_path)) as worker:
        async with in_process_agent(config):
            await wait_for_count(broker.bootstrap, "pec.raw", len(sent) + len(inbox), timeout=30)
        # one event per forgery, plus accepted for every message and the control's delivery
        messages = len(forged_ids) + 1
        try:
            values = await settle(
                broker.bootstrap, "pec.state-changes", expected=len(Fault) + messages + 1,
                timeout=90, quiet=3,
            )  # fmt: skip
        except AssertionError:
            print(worker.log_text())
            raise
        states = await latest_states(broker.bootstrap)
    events = [orjson.loads(value) for value in values]
    print(f"{len(events)} events: {sorted({e['type'] for e in events})}")
    forged_keys = {correlation_key(box, m) for m in forged_ids}
    delivered = {e["data"]["key"] for e in events if e["data"].get("to_state") == "delivered"}
    suspects = [e for e in events if e["type"] in SUSPECT]
    assert delivered == {correlation_key(box, control)}  # the control proves delivery works
    assert not delivered & forged_keys
    assert len(suspects) == len(Fault), [(e["type"], e["data"]["msgid"]) for e in suspects]
    for key in forged_keys:
        assert set(states[key].values()) <= {"accepted"}, (key, states[key])
    assert set(states[correlation_key(box, control)].values()) >= {"delivered"}
