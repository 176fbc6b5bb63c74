"""Kafka unavailable for 30 s (``FAULT_BROKER_OUTAGE`` seconds) under a running agent and
worker: mail keeps arriving meanwhile; both recover with no operator action, nothing is
lost, and the agent's metrics show the incident."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.model import Kind
from tests.factories import make_pec, make_sent_copy
from tests.support.dovecot import Dovecot
from tests.support.kafka import header, read_all, wait_for_count
from tests.support.proxy import ProxiedBroker
from tests.support.workers import WorkerProcess, settle

from .conftest import in_process_agent, wait_until, write_config
from .test_streams import worker_args

pytestmark = pytest.mark.integration

OUTAGE = float(os.environ.get("FAULT_BROKER_OUTAGE", "30"))


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[ProxiedBroker]:
    with ProxiedBroker(log_path=tmp_path / "broker.log") as broker:
        yield broker


def msgid(name: str) -> str:
    return f"<20240301100000.{name}@mario.rossi.client>"


async def test_broker_outage_agent_and_worker_recover_without_help(
    dovecot: Dovecot, proxied_broker: ProxiedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Every broker connection refused for 30 s while receipts arrive: afterwards every
    message is in pec.raw once, the delivery is tracked, the worker never died, and the
    agent counted publish errors and marked the mailbox down meanwhile."""
    broker = proxied_broker
    (index,) = fresh_users(1)
    user, box = dovecot.user(index), f"box-{index:04d}"
    before, after = msgid("before-outage"), msgid("during-outage")
    config = write_config(tmp_path, broker, dovecot, [index], poll_seconds=1)
    with WorkerProcess(broker, tmp_path / "w", *worker_args(tmp_path)) as worker:
        async with in_process_agent(config) as agent:
            dovecot.append(user, "Sent", make_sent_copy(msgid=before).raw)
            dovecot.append(user, "INBOX", make_pec(Kind.ACCETTAZIONE, msgid=before).raw)
            await settle(broker.bootstrap, "pec.state-changes", expected=1, timeout=60)

            broker.proxy.down()
            down_at = time.monotonic()
            dovecot.append(user, "INBOX", make_pec(Kind.AVVENUTA_CONSEGNA, msgid=before).raw)
            dovecot.append(user, "Sent", make_sent_copy(msgid=after).raw)
            dovecot.append(user, "INBOX", make_pec(Kind.ACCETTAZIONE, msgid=after).raw)
            # a batch fails once aiokafka's 30 s request timeout expires; the mailbox then
            # backs off (down), reconnects to IMAP and blocks on Kafka again
            seen_down = False
            while (elapsed := time.monotonic() - down_at) < OUTAGE + 25:
                await asyncio.sleep(0.01)
                up = agent.metric("pec_imap_mailbox_up", {"mailbox": box})
                seen_down = seen_down or up == 0
                errors = agent.metric("pec_ingest_publish_errors_total")
                if elapsed >= OUTAGE and errors >= 1 and seen_down:
                    break
            during = {
                "publish_errors": agent.metric("pec_ingest_publish_errors_total"),
                "mailbox_seen_down": seen_down,
            }
            assert worker.proc is not None
            assert worker.proc.poll() is None, worker.log_text()

            broker.proxy.up()
            up_at = time.monotonic()
            await wait_for_count(broker.bootstrap, "pec.raw", 5, timeout=120)
            ingest_recovery = time.monotonic() - up_at
            values = await settle(broker.bootstrap, "pec.state-changes", expected=3, timeout=120)
            pipeline_recovery = time.monotonic() - up_at
            await wait_until(
                lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": box}) == 1,
                30,
                "the mailbox up again",
            )
        assert worker.proc.poll() is None, worker.log_text()
    print(
        f"\nbroker outage {OUTAGE:.0f} s: during {during}; pec.raw complete "
        f"{ingest_recovery:.1f} s after, state changes {pipeline_recovery:.1f} s after"
    )
    raw = await read_all(broker.bootstrap, "pec.raw")
    uids = [(header(r, "folder"), header(r, "uid")) for r in raw]
    assert len(set(uids)) == 5  # nothing lost (republished UIDs are allowed, and deduped)
    events = [orjson.loads(v) for v in values]
    transitions = {(e["data"]["msgid"], e["data"]["to_state"]) for e in events}
    assert (before, "delivered") in transitions
    assert (after, "accepted") in transitions
    assert during["publish_errors"] >= 1
    assert during["mailbox_seen_down"]
