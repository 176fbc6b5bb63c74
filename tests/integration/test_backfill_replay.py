"""A backfill replayed by a worker with ``--deadline-clock event``, through the real
pipeline: Dovecot -> agent -> broker -> worker (issue #20, item 4).

The agent reads a mailbox's history the way a first start may: its Sent folder to the
end (INBOX still empty), then, run again, its INBOX. Between the two the worker's
deadline timer fires many times with twenty days of Sent copies in the table and none
of their receipts. No overdue flag may be raised for the history delivered long ago;
the one message whose delivery receipt never came is flagged once (no-delivery).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.model import Kind
from pipeline.dev.embedded import EmbeddedBroker
from tests.factories import make_receipt, make_sent_copy, write_anchor
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.workers import WorkerProcess, settle

from .conftest import in_process_agent, write_config

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 9, tzinfo=UTC)
DAYS = 20


async def test_a_replayed_backfill_raises_no_overdue_for_delivered_history(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    msgids = [f"<history.{n}@erp.example.it>" for n in range(DAYS)]
    lost = msgids[DAYS // 2]
    sent = [make_sent_copy(msgid=m, date=START + timedelta(days=n)) for n, m in enumerate(msgids)]
    receipts = [
        make_receipt(kind, msgid=m, at=START + timedelta(days=n, minutes=minutes))
        for n, m in enumerate(msgids)
        for kind, minutes in ((Kind.ACCETTAZIONE, 1), (Kind.AVVENUTA_CONSEGNA, 3))
        if not (m == lost and kind is Kind.AVVENUTA_CONSEGNA)
    ]
    submitted = sum(len(s.truth.recipients) for s in sent)
    args = (
        "--trust", str(write_anchor(tmp_path)),
        "--deadline-clock", "event",
        "--deadline-interval-seconds", "0.5",
        "--session-timeout-seconds", "6",
    )  # fmt: skip
    with WorkerProcess(broker, tmp_path / "w", *args) as worker:
        try:
            for n, copy in enumerate(sent):  # stored when sent: INTERNALDATE dates them
                dovecot.append_at(user, "Sent", copy.raw, START + timedelta(days=n))
            config = write_config(tmp_path, broker, dovecot, [index])
            async with in_process_agent(config):
                await wait_for_count(broker.bootstrap, "pec.raw", len(sent), timeout=30)
            await settle(
                broker.bootstrap, "pec.state-changes", expected=submitted, timeout=60, quiet=3
            )
            await asyncio.sleep(2)  # the timer fires a few more times
            dovecot.append_many(user, "INBOX", receipts)
            async with in_process_agent(config):
                await wait_for_count(
                    broker.bootstrap, "pec.raw", len(sent) + len(receipts), timeout=30
                )
            values = await settle(
                broker.bootstrap,
                "pec.state-changes",
                expected=2 * submitted,  # at least submitted and accepted, then quiet
                timeout=90,
                quiet=4,
            )
        except AssertionError:
            print(worker.log_text())
            raise
    events = [orjson.loads(value) for value in values]
    overdue = [
        (e["data"]["msgid"], e["data"]["reason"]) for e in events if e["type"] == "it.pec.overdue"
    ]
    assert overdue == [(lost, "no-delivery")]
    assert not [e for e in events if e["type"] == "it.pec.overdue-cleared"]
    delivered = {
        e["data"]["msgid"]
        for e in events
        if e["type"] == "it.pec.state-change" and e["data"]["to_state"] == "delivered"
    }
    assert delivered == set(msgids) - {lost}
