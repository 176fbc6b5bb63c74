"""The verify path with an archive: what it stores, the provenance it attaches, and that
nothing is published before (or without) the archived copy."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from pipeline.contracts.codec import observation_from_dict
from pipeline.contracts.metrics import EvidenceMetrics, StreamMetrics
from pipeline.core.model import Kind
from pipeline.core.observation import Evidence, Submission
from pipeline.core.trust import TrustStore
from pipeline.evidence.archive import FileArchive
from pipeline.evidence.writer import EvidenceWriter
from pipeline.streams.settings import StreamSettings
from pipeline.streams.sink import Record
from pipeline.streams.verify import Verifier
from tests.factories import (
    CERTIFIED,
    MSGID,
    anchor_pem,
    make_ordinary_mail,
    make_pec,
    make_sent_copy,
)

BOX = "studio-rossi"


def headers(folder: str, uid: int) -> Mapping[str, bytes]:
    return {
        "mailbox": BOX.encode(),
        "folder": folder.encode(),
        "uid": str(uid).encode(),
        "uidvalidity": b"1700000000",
        "internal-date": b"2024-03-01T10:05:00+01:00",
    }


@dataclass
class CheckingSink:
    """Records what is sent, and whether each message it refers to was archived by then."""

    archive: FileArchive
    sent: list[Record] = field(default_factory=list)
    archived_when_sent: list[bool] = field(default_factory=list)

    async def send_all(self, records: Sequence[Record]) -> list[int]:
        for record in records:
            data = orjson.loads(record.value or b"{}")
            provenance = data.get("provenance")
            if provenance and provenance["archive"]:  # a record naming an archived copy
                self.archived_when_sent.append(self.archive.get(provenance["sha256"]) is not None)
            self.sent.append(record)
        return list(range(len(records)))


def verifier(
    root: Path, registry: CollectorRegistry, kinds: str = "receipts,envelopes"
) -> tuple[Verifier, CheckingSink, FileArchive]:
    archive = FileArchive(root)
    sink = CheckingSink(archive)
    writer = EvidenceWriter(archive, EvidenceMetrics(registry), first_delay=0.05, max_delay=0.1)
    settings = StreamSettings(metrics_port=None)
    v = Verifier(
        settings,
        TrustStore.from_bytes(anchor_pem()),
        sink,  # type: ignore[arg-type]
        StreamMetrics(registry),
        writer,
        frozenset(kinds.split(",")),
    )
    return v, sink, archive


async def test_receipts_and_envelopes_are_archived_with_provenance(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    v, sink, archive = verifier(tmp_path / "evidence", registry)
    sent = make_sent_copy().raw
    acceptance = make_pec(Kind.ACCETTAZIONE).raw
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    envelope = make_pec(Kind.POSTA_CERTIFICATA).raw
    ordinary = make_ordinary_mail().raw
    batch: list[tuple[bytes | None, bytes | None, Mapping[str, bytes]]] = [
        (BOX.encode(), sent, headers("Sent", 7)),
        (BOX.encode(), acceptance, headers("INBOX", 41)),
        (BOX.encode(), delivery, headers("INBOX", 42)),
        (BOX.encode(), envelope, headers("INBOX", 43)),
        (BOX.encode(), ordinary, headers("INBOX", 44)),
    ]
    await v.handle_batch(batch)
    digest = {raw: hashlib.sha256(raw).hexdigest() for _, raw, _ in batch if raw}
    stored = {p.stem for p in (tmp_path / "evidence").rglob("*.eml")}
    assert stored == {digest[acceptance], digest[delivery], digest[envelope]}  # not sent/ordinary
    assert sink.archived_when_sent == [True, True]  # each receipt's record found its copy
    receipts = [r for r in sink.sent if r.topic == v.settings.receipts_topic]
    observations = [observation_from_dict(orjson.loads(r.value or b"")) for r in receipts]
    [submission] = [o for o in observations if isinstance(o, Submission)]
    assert submission.provenance is not None
    assert submission.provenance.archive is None  # "sent" is not among the kinds archived
    assert (submission.provenance.folder, submission.provenance.uid) == ("Sent", 7)
    by_kind = {o.kind: o for o in observations if isinstance(o, Evidence)}
    consegna = by_kind["avvenuta-consegna"].provenance
    assert consegna is not None
    assert consegna.sha256 == digest[delivery]
    assert consegna.size == len(delivery)
    assert (consegna.mailbox, consegna.folder, consegna.uidvalidity, consegna.uid) == (
        BOX, "INBOX", 1700000000, 42,
    )  # fmt: skip
    assert consegna.archive == archive.location(digest[delivery])
    assert consegna.recipient == CERTIFIED
    assert consegna.signature == "valid-trusted"
    assert consegna.identificativo
    assert consegna.message_id
    assert consegna.receipt_id == by_kind["avvenuta-consegna"].receipt.receipt_id
    assert consegna.stored_at is not None
    meta = archive.metadata(digest[delivery])
    assert meta is not None
    assert (meta["mailbox"], meta["uid"], meta["msgid"]) == (BOX, "42", MSGID)
    assert registry.get_sample_value("pec_archive_objects_total", {"result": "written"}) == 3


async def test_nothing_is_published_while_the_archive_refuses_writes(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    root = tmp_path / "evidence"
    root.write_text("a file where the archive directory should be")
    v, sink, _ = verifier(root, registry)
    receipt = make_pec(Kind.ACCETTAZIONE).raw
    task = asyncio.create_task(v.handle_batch([(BOX.encode(), receipt, headers("INBOX", 1))]))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if (registry.get_sample_value("pec_archive_errors_total") or 0) >= 2:
            break
    assert not task.done()
    assert sink.sent == []
    assert registry.get_sample_value("pec_archive_up") == 0
    root.unlink()  # the storage is repaired
    await asyncio.wait_for(task, 10)
    assert len(sink.sent) == 1
    assert sink.archived_when_sent == [True]
    assert registry.get_sample_value("pec_archive_up") == 1


async def test_without_an_archive_provenance_still_names_the_imap_location(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = CheckingSink(FileArchive(tmp_path / "unused"))
    v = Verifier(
        StreamSettings(metrics_port=None),
        TrustStore.from_bytes(anchor_pem()),
        sink,  # type: ignore[arg-type]
        StreamMetrics(registry),
    )
    receipt = make_pec(Kind.ACCETTAZIONE).raw
    await v.handle_batch([(BOX.encode(), receipt, headers("INBOX", 9))])
    [record] = sink.sent
    observation: Any = observation_from_dict(orjson.loads(record.value or b""))
    assert observation.provenance.sha256 == hashlib.sha256(receipt).hexdigest()
    assert observation.provenance.uid == 9
    assert observation.provenance.archive is None
    assert not (tmp_path / "unused").exists()
