"""The evidence archive through real workers: S3 (moto's server) with a worker SIGKILLed
mid-stream, and a delivery dossier of mail read from Dovecot by the agent."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.model import Kind
from pipeline.dev.embedded import EmbeddedBroker, LocalS3
from pipeline.simulate.traffic import generate_traffic
from tests.factories import make_pec, make_sent_copy, write_anchor
from tests.support.dovecot import Dovecot
from tests.support.kafka import read_all, wait_for_count
from tests.support.s3 import BUCKET, create_bucket, s3_client, versions, worker_environment
from tests.support.workers import WorkerProcess, kill_midway, produce_traffic, settle

from .conftest import in_process_agent, write_config
from .test_streams import worker_args

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 9, tzinfo=UTC)


def key_of(digest: str, prefix: str = "pec/") -> str:
    return f"{prefix}sha256/{digest[:2]}/{digest}.eml"


async def test_s3_archive_survives_a_worker_kill_without_duplicates_or_gaps(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every receipt and inbound envelope of the traffic is in the bucket exactly once
    (one version per key) after a SIGKILL mid-stream and a restart; every event caused by
    a receipt names its object, which exists."""
    items = generate_traffic(41, 160, 8, START)
    wanted = {
        hashlib.sha256(item.raw).hexdigest()
        for item in items
        if item.folder == "INBOX" and item.truth.kind is not Kind.NOT_PEC
    }
    with LocalS3(log_path=tmp_path / "moto.log") as s3:
        client = s3_client(s3.endpoint)
        create_bucket(client)
        for name, value in worker_environment(s3.endpoint).items():
            monkeypatch.setenv(name, value)
        args = worker_args(tmp_path, "--archive", f"s3://{BUCKET}/pec", "--batch-size", "20")
        worker = WorkerProcess(broker, tmp_path / "w", *args).start()
        try:
            await produce_traffic(broker.bootstrap, items)
            seen = await kill_midway(worker, broker.bootstrap, after=40)
            stored_at_kill = versions(client)
            worker.start()
            values = await settle(broker.bootstrap, "pec.state-changes", expected=400, timeout=240,
                                  fail=False)  # fmt: skip
            await settle(broker.bootstrap, "pec.message-state", expected=1, timeout=60)
        finally:
            worker.stop()
        objects = versions(client)
    print(f"killed after {seen} events, {len(stored_at_kill)} objects; now {len(objects)}")
    assert 0 < len(stored_at_kill) < len(wanted)  # killed mid-stream
    assert objects == {key_of(d): 1 for d in wanted}  # none missing, none twice
    events = [orjson.loads(v)["data"] for v in values]
    caused = [e for e in events if e.get("receipt_id") and e["receipt_kind"] != "submission"]
    assert caused
    for event in caused:
        evidence = event["evidence"]
        assert evidence["archive"] == f"s3://{BUCKET}/{key_of(evidence['sha256'])}"
        assert evidence["sha256"] in wanted
        assert evidence["receipt_id"] == event["receipt_id"]
        assert evidence["mailbox"] == event["mailbox"]


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


async def test_lookup_lists_evidence_and_any_worker_serves_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Two workers on one file archive: the lookup lists each recipient's receipts with
    verdict and link, and GET /evidence/<sha256> returns the exact bytes from either."""
    items = generate_traffic(43, 20, 3, START)
    archive = (tmp_path / "evidence").as_uri()
    args = worker_args(tmp_path, "--archive", archive)
    by_digest = {hashlib.sha256(item.raw).hexdigest(): item.raw for item in items}
    with (
        WorkerProcess(broker, tmp_path / "a", *args) as a,
        WorkerProcess(broker, tmp_path / "b", *args) as b,
    ):
        await produce_traffic(broker.bootstrap, items)
        await settle(broker.bootstrap, "pec.state-changes", expected=40, timeout=180)
        states = [
            orjson.loads(r.value) for r in await read_all(broker.bootstrap, "pec.message-state")
        ]
        delivered = next(
            s for s in states if any(r["state"] == "delivered" for r in s["recipients"])
        )
        query = urllib.parse.urlencode({"key": delivered["key"]})
        status, body, _ = fetch(f"http://127.0.0.1:{a.web_port}/message/?{query}")
        assert status == 200
        state = json.loads(body)
        listed = {e["sha256"]: e for e in state["evidence"]}
        kinds = {e["kind"] for e in listed.values()}
        assert {"accettazione", "avvenuta-consegna"} <= kinds
        for recipient in state["recipients"]:
            if recipient["state"] == "delivered":
                own = [listed[d] for d in recipient["evidence"]]
                assert any(
                    e["kind"] == "avvenuta-consegna" and e["recipient"] == recipient["address"]
                    and e["signature"] == "valid-trusted" for e in own
                )  # fmt: skip
        for digest, entry in listed.items():
            if entry["kind"] == "sent":
                continue  # the Sent copy is not archived by default (archive_kinds)
            assert entry["link"] == f"/evidence/{digest}"
            for worker in (a, b):
                status, raw, kind = fetch(f"http://127.0.0.1:{worker.web_port}{entry['link']}")
                assert (status, kind) == (200, "message/rfc822")
                assert raw == by_digest[digest]
                assert hashlib.sha256(raw).hexdigest() == digest
        assert fetch(f"http://127.0.0.1:{b.web_port}/evidence/{'0' * 64}")[0] == 404
        assert fetch(f"http://127.0.0.1:{b.web_port}/evidence/not-a-digest")[0] == 400


async def test_dossier_holds_the_receipt_appended_to_the_mailbox_and_verifies_offline(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Dovecot -> agent -> worker (file archive) -> `pectrack evidence`: the dossier's
    delivery receipt is the very bytes appended to the mailbox (same SHA-256), at the IMAP
    UID and UIDVALIDITY it was appended with, and `pectrack inspect` re-verifies it."""
    (index,) = fresh_users(1)
    user, box = dovecot.user(index), f"box-{index:04d}"
    msgid = "<20240301100000.dossier@mario.rossi.client>"
    sent = make_sent_copy(msgid=msgid).raw
    acceptance = make_pec(Kind.ACCETTAZIONE, msgid=msgid).raw
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste", msgid=msgid).raw
    dovecot.append(user, "Sent", sent)
    uids = dovecot.append_many(user, "INBOX", [acceptance, delivery])
    uidvalidity = dovecot.uidvalidity(user, "INBOX")
    anchor = write_anchor(tmp_path)
    archive = tmp_path / "evidence"
    args = worker_args(tmp_path, "--archive", archive.as_uri(), "--archive-kinds", "receipts,sent")
    config = write_config(tmp_path, broker, dovecot, [index])
    with WorkerProcess(broker, tmp_path / "w", *args) as worker:
        async with in_process_agent(config):
            await wait_for_count(broker.bootstrap, "pec.raw", 3, timeout=30)
        await settle(broker.bootstrap, "pec.state-changes", expected=3, timeout=90)
        out = tmp_path / "dossier"
        done = subprocess.run(
            [sys.executable, "-m", "pectrack", "evidence", "--mailbox", box,
             "--msgid", msgid, "--out", str(out), "--trust", str(anchor),
             "--web", f"http://127.0.0.1:{worker.web_port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dossier = json.loads((out / "dossier.json").read_text())
    by_kind = {r["evidence"]["kind"]: r for r in dossier["receipts"]}
    assert set(by_kind) == {"accettazione", "avvenuta-consegna"}
    for kind, raw, uid in (("accettazione", acceptance, uids[0]),
                           ("avvenuta-consegna", delivery, uids[1])):  # fmt: skip
        entry = by_kind[kind]
        held = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(held).hexdigest() == hashlib.sha256(raw).hexdigest()
        assert held == raw
        assert entry["sha256_matches"] is True
        assert entry["verification"]["verdict"] == "valid-trusted"
        assert entry["verification"]["signature"]["integrity"] == "valid"
        assert (entry["evidence"]["uid"], entry["evidence"]["uidvalidity"]) == (uid, uidvalidity)
        assert entry["evidence"]["folder"] == "INBOX"
        assert entry["evidence"]["archive"].startswith(archive.as_uri())
    [sent_copy] = dossier["sent_copy"]
    assert sent_copy["sha256"] == hashlib.sha256(sent).hexdigest()
    assert sent_copy["folder"] == "Sent"
    lifecycle = dossier["lifecycle"]
    states = {r["address"]: r["state"] for r in lifecycle["recipients"]}
    assert states[by_kind["avvenuta-consegna"]["evidence"]["recipient"]] == "delivered"
    assert set(states.values()) == {"delivered", "accepted"}  # the other one is esterno
    assert dossier["verified_with"]["trust_anchors"]
    readme = (out / "README.txt").read_text()
    assert "avvenuta consegna" in readme
    assert "delivery receipt" in readme
    inspected = subprocess.run(
        [sys.executable, "-m", "pectrack", "inspect", "--json", "--trust", str(anchor),
         *sorted(str(p) for p in out.glob("*.eml"))],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    reports = [json.loads(line) for line in inspected.stdout.splitlines() if line.strip()]
    assert len(reports) == 2
    assert {r["signature"]["trust"] for r in reports} == {"trusted"}
    assert {r["msgid"] for r in reports} == {msgid}
