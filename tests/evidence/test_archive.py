"""The evidence archive: byte-exact, addressed by SHA-256, written once (file and S3)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import EvidenceMetrics
from pipeline.core.model import Kind
from pipeline.dev.embedded import LocalS3
from pipeline.evidence.archive import (
    ArchiveError,
    FileArchive,
    S3Archive,
    open_archive,
)
from pipeline.evidence.writer import ArchiveItem, EvidenceWriter
from tests.factories import make_pec
from tests.support.s3 import BUCKET, s3_client, versions

META = {"mailbox": "ufficio-legale", "kind": "avvenuta-consegna", "msgid": "<m@x>"}


def receipt() -> bytes:
    return make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw


def test_file_archive_writes_once_and_reads_back_exact_bytes(tmp_path: Path) -> None:
    archive = FileArchive(tmp_path / "evidence")
    raw = receipt()
    digest = hashlib.sha256(raw).hexdigest()
    first = archive.put(raw, META)
    again = archive.put(raw, {**META, "mailbox": "other"})
    assert (first.written, again.written) == (True, False)
    assert first.sha256 == again.sha256 == digest
    assert first.uri == archive.location(digest)
    assert first.uri.startswith("file:///")
    assert first.uri.endswith(f"/{digest[:2]}/{digest}.eml")
    assert archive.get(digest) == raw
    assert archive.metadata(digest) == META  # the first write's metadata stay
    files = sorted(p.name for p in (tmp_path / "evidence").rglob("*") if p.is_file())
    assert files == [f"{digest}.eml", f"{digest}.json"]  # no temporary file left over
    assert archive.get("0" * 64) is None
    with pytest.raises(ValueError, match="SHA-256"):
        archive.get("../../etc/passwd")


def test_a_broken_file_archive_is_an_archive_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(ArchiveError):
        FileArchive(blocker).put(b"raw", META)


def test_open_archive_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_archive((tmp_path / "e").as_uri()), FileArchive)
    s3 = open_archive("s3://bucket/some/prefix/", lock_mode="COMPLIANCE", lock_days=3650)
    assert isinstance(s3, S3Archive)
    assert s3.location("a" * 64) == f"s3://bucket/some/prefix/sha256/aa/{'a' * 64}.eml"
    for bad in ("relative/dir", "http://host/x", "s3:///nobucket", "file://host/dir"):
        with pytest.raises(ValueError):
            open_archive(bad)
    with pytest.raises(ValueError, match="retention_days"):
        open_archive("s3://bucket", lock_mode="GOVERNANCE", lock_days=0)
    with pytest.raises(ValueError, match="lock mode"):
        open_archive("s3://bucket", lock_mode="forever", lock_days=1)


@pytest.mark.integration
def test_s3_archive_against_a_real_server_is_idempotent(s3_server: LocalS3) -> None:
    client = s3_client(s3_server.endpoint)
    archive = S3Archive(BUCKET, "pec/", client=client)
    raws = [receipt(), make_pec(Kind.ACCETTAZIONE).raw]
    stored = [archive.put(raw, META) for raw in raws]
    replayed = [archive.put(raw, META) for raw in raws]
    assert [s.written for s in stored] == [True, True]
    assert [s.written for s in replayed] == [False, False]
    digests = [hashlib.sha256(raw).hexdigest() for raw in raws]
    keys = {f"pec/sha256/{d[:2]}/{d}.eml" for d in digests}
    assert versions(client) == dict.fromkeys(keys, 1)  # versioned bucket: no second version
    for raw, digest in zip(raws, digests, strict=True):
        assert archive.get(digest) == raw
        assert archive.metadata(digest) == META
    head = client.head_object(Bucket=BUCKET, Key=f"pec/sha256/{digests[0][:2]}/{digests[0]}.eml")
    assert head["ContentType"] == "message/rfc822"
    assert archive.get("f" * 64) is None


@pytest.mark.integration
def test_s3_conditional_write_loses_the_race_gracefully(s3_server: LocalS3) -> None:
    """Two writers that both saw no object: the second PUT gets 412 and counts it present."""
    client = s3_client(s3_server.endpoint)
    archive = S3Archive(BUCKET, client=client)
    raw = receipt()
    digest = hashlib.sha256(raw).hexdigest()
    client.put_object(Bucket=BUCKET, Key=f"sha256/{digest[:2]}/{digest}.eml", Body=raw)
    archive._exists = lambda key: False  # type: ignore[method-assign]  # lost the race
    assert archive.put(raw, META).written is False
    assert versions(client) == {f"sha256/{digest[:2]}/{digest}.eml": 1}


@pytest.mark.integration
async def test_writer_waits_while_the_archive_is_down_then_resumes(tmp_path: Path) -> None:
    """S3 unreachable: store_all does not return, errors are counted and pec_archive_up is
    0; once the server is back the batch is stored and the gauge is 1 again."""
    server = LocalS3(log_path=tmp_path / "moto.log")
    client = s3_client(server.endpoint)
    registry = CollectorRegistry()
    writer = EvidenceWriter(
        S3Archive(BUCKET, client=client), EvidenceMetrics(registry), first_delay=0.1, max_delay=0.5
    )
    raw = receipt()
    task = asyncio.create_task(writer.store_all([ArchiveItem(raw, META)]))
    try:
        for _ in range(300):
            await asyncio.sleep(0.05)
            if (registry.get_sample_value("pec_archive_errors_total") or 0) >= 2:
                break
        assert not task.done()
        assert registry.get_sample_value("pec_archive_up") == 0
        server.start()
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-south-1"}
        )
        [stored] = await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        server.stop()
    assert stored.written
    assert registry.get_sample_value("pec_archive_up") == 1
    assert registry.get_sample_value("pec_archive_objects_total", {"result": "written"}) == 1
    assert registry.get_sample_value("pec_archive_bytes_total") == len(raw)


async def test_writer_counts_replays_as_present(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    writer = EvidenceWriter(FileArchive(tmp_path / "e"), EvidenceMetrics(registry))
    raws = [receipt(), receipt()]
    items = [ArchiveItem(raw, META) for raw in raws]
    await writer.store_all(items)
    await writer.store_all(items)
    assert registry.get_sample_value("pec_archive_objects_total", {"result": "written"}) == 2
    assert registry.get_sample_value("pec_archive_objects_total", {"result": "present"}) == 2
    assert registry.get_sample_value("pec_archive_bytes_total") == sum(map(len, raws))
    meta = json.loads(next((tmp_path / "e").rglob("*.json")).read_text())
    assert meta == META


@pytest.mark.integration
def test_s3_object_lock_makes_evidence_write_once(s3_server: LocalS3) -> None:
    """With archive_lock_mode COMPLIANCE, each object carries its retain-until date and
    the server refuses to delete its version before then."""
    client = s3_client(s3_server.endpoint)
    bucket = "locked-evidence"
    client.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": "eu-south-1"},
        ObjectLockEnabledForBucket=True,
    )
    archive = S3Archive(bucket, lock_mode="COMPLIANCE", lock_days=3650, client=client)
    stored = archive.put(receipt(), META)
    key = f"sha256/{stored.sha256[:2]}/{stored.sha256}.eml"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    days = (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days
    assert 3648 <= days <= 3650
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert archive.get(stored.sha256) is not None
