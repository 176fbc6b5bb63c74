"""Certified mail received, through the real pipeline: Dovecot -> agent -> broker -> worker.

INBOX holds an envelope (twice), an anomaly envelope, a tampered envelope and simulated
SdI traffic (every notification type, invoices received plain and .p7m). The worker
publishes one pec.inbound event per envelope read and one sdi.notifications event per
SdI file, with the verdicts and keys a correct reader gives; and, for each invoice sent,
its SdI state on sdi.invoice-states (a chain of transitions from sent to the simulator's
final state) and at GET /invoice/.
"""

from __future__ import annotations

import itertools
import json
import random
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.model import Kind
from pipeline.dev.embedded import EmbeddedBroker
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import Fault
from pipeline.simulate.sdi import generate_sdi_traffic
from tests.factories import make_pec
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.workers import WorkerProcess, settle

from .conftest import in_process_agent, write_config
from .test_streams import worker_args

pytestmark = pytest.mark.integration

CET = timezone(timedelta(hours=1))


async def test_inbound_and_sdi_end_to_end(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Every envelope in INBOX gives one it.pec.received (the same envelope twice: the
    same id), forged ones with their verdict; every SdI file one typed event, keyed by
    invoice, each notification's invoice state the simulator's."""
    (index,) = fresh_users(1)
    user, box = dovecot.user(index), f"box-{index:04d}"
    envelope = make_pec(Kind.POSTA_CERTIFICATA).raw
    sdi = generate_sdi_traffic(
        random.Random(11), default_pki(), ((box, "amm@pec.example.it"),), 16,
        datetime(2024, 3, 1, 9, tzinfo=CET), received_share=0.25, sent_copies=True,
    )  # fmt: skip
    copies = [item for item in sdi if item.folder == "Sent"]  # each invoice's sending
    inbox = [
        envelope,
        envelope,
        make_pec(Kind.ERRORE).raw,
        make_pec(Kind.POSTA_CERTIFICATA, fault=Fault.TAMPERED_BODY).raw,
        make_pec(Kind.ACCETTAZIONE).raw,  # a receipt: not inbound
        *(item.raw for item in sdi if item.folder == "INBOX"),
    ]
    dovecot.append_many(user, "INBOX", inbox)
    for copy in copies:  # stored when sent: INTERNALDATE dates them
        assert copy.original is not None
        dovecot.append_at(user, "Sent", copy.raw, copy.original.date)
    config = write_config(tmp_path, broker, dovecot, [index])
    envelopes = len(inbox) - 1
    with WorkerProcess(broker, tmp_path / "w", *worker_args(tmp_path)) as worker:
        async with in_process_agent(config):
            await wait_for_count(broker.bootstrap, "pec.raw", len(inbox) + len(copies), timeout=30)
        try:
            await wait_for_count(broker.bootstrap, "pec.inbound", envelopes, timeout=60)
            received = await settle(
                broker.bootstrap, "pec.inbound", expected=envelopes - 1, timeout=60, quiet=2
            )
            notices = await settle(
                broker.bootstrap, "sdi.notifications", expected=len(sdi), timeout=60, quiet=2
            )
            invoices_sent = {i.nome_file for i in sdi if i.final_state is not None}
            transitions = await settle(
                broker.bootstrap,
                "sdi.invoice-states",
                expected=len(invoices_sent),
                timeout=60,
                quiet=2,
            )
            looked_up = {name: invoice(worker, box, name) for name in sorted(invoices_sent)}
        except AssertionError:
            print(worker.log_text())
            raise
    events = [orjson.loads(value) for value in received]
    assert len({e["id"] for e in events}) == envelopes - 1  # the repeat has the same id
    verdicts = sorted((e["data"]["kind"], e["data"]["signature"]) for e in events)
    assert verdicts.count(("posta-certificata", "invalid")) == 1
    assert verdicts.count(("errore", "valid-trusted")) == 1
    assert all(e["type"] == "it.pec.received" and e["partitionkey"] == box for e in events)
    sdi_events = [orjson.loads(value) for value in notices]
    assert len(sdi_events) == len(sdi)
    by_file: dict[str, set[str]] = {}
    sendings: dict[str, str] = {}
    for event in sdi_events:
        data = event["data"]
        assert data["key"] == f"{box} {data['nome_file']}"
        if event["type"] == "it.pec.invoice-sent":  # the organisation's own Sent copy
            assert (data["evidence"], data["sdi_address"]) == (False, "sdi01@pec.fatturapa.it")
            sendings[data["nome_file"]] = data["msgid"]
            continue
        assert data["evidence"] is True
        # the SdI's signature on the notification, or on a received invoice's metadata
        xades = (data.get("notification") or data["metadata"])["xades"]
        assert (xades["intact"], xades["reason"]) == (True, None), xades
        assert "Sistema di Interscambio" in xades["signer"]
        if event["type"] == "it.pec.sdi-notification":
            by_file.setdefault(data["nome_file"], set()).add(data["invoice_state"])
        else:
            assert event["type"] == "it.pec.invoice-received"
            assert data["invoice"]["sender_vat"].startswith("IT")
    expected = {i.nome_file: i.final_state for i in sdi if i.final_state is not None}
    assert sendings == {c.nome_file: c.original.msgid for c in copies if c.original}
    order = ["rejected", "not-delivered", "delivered", "deadline-passed", "refused", "accepted"]
    assert {name: max(states, key=order.index) for name, states in by_file.items()} == expected
    # Each invoice sent: a chain of transitions from sent to its final state, and the lookup.
    chains: dict[str, list[tuple[str, str]]] = {}
    for event in {e["id"]: e for e in map(orjson.loads, transitions)}.values():
        assert event["type"] == "it.pec.sdi-invoice-state"
        data = event["data"]
        assert event["partitionkey"] == data["key"] == f"{box} {data['nome_file']}"
        assert data["outcome"] == "advanced"  # one mailbox, read in order
        chains.setdefault(data["nome_file"], []).append((data["before"], data["after"]))
    for chain in chains.values():  # (sent, sent) first when the Sent copy was read first
        assert chain[0][0] == "sent"
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
    assert {name: chain[-1][1] for name, chain in chains.items()} == expected
    assert max(len(chain) for chain in chains.values()) >= 2  # e.g. sent -> delivered -> accepted
    assert {name: (status, body.get("state")) for name, (status, body) in looked_up.items()} == {
        name: (200, state) for name, state in expected.items()
    }
    # whichever folder was read first, the table knows which PEC message sent each invoice
    assert {name: body.get("sent_msgid") for name, (_, body) in looked_up.items()} == sendings


def invoice(worker: WorkerProcess, box: str, nome_file: str) -> tuple[int, dict[str, Any]]:
    """GET /invoice/?mailbox=&nome_file= on the worker's web port."""
    query = urllib.parse.urlencode({"mailbox": box, "nome_file": nome_file})
    url = f"http://127.0.0.1:{worker.web_port}/invoice/?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
