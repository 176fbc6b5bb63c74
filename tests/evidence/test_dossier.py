"""The delivery dossier from a message state and an archive, without a worker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.contracts.schemas import Publication
from pipeline.core.model import Kind
from pipeline.core.trust import TrustStore
from pipeline.evidence.archive import FileArchive
from pipeline.evidence.dossier import write_dossier
from tests.factories import anchor_pem, make_pec, make_sent_copy

from .test_provenance import observed, run

TRUST = TrustStore.from_bytes(anchor_pem())


def state_and_archive(tmp_path: Path, delivery: bytes) -> tuple[dict[str, Any], FileArchive]:
    raws = [make_sent_copy().raw, make_pec(Kind.ACCETTAZIONE).raw, delivery]
    tracked, _ = run([observed(raws[0], "Sent", 1), observed(raws[1], "INBOX", 2),
                      observed(raws[2], "INBOX", 3)])  # fmt: skip
    archive = FileArchive(tmp_path / "evidence")
    for raw in raws[1:]:
        archive.put(raw, {})
    return Publication().message_state_dict(tracked), archive


def test_dossier_files_and_json(tmp_path: Path) -> None:
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    state, archive = state_and_archive(tmp_path, delivery)
    out = tmp_path / "dossier"
    result = write_dossier(state, archive.get, TRUST, out)
    assert (result.missing, result.unverified) == ((), ())
    assert len(result.files) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*result.files, "dossier.json", "README.txt"]
    )
    dossier = json.loads((out / "dossier.json").read_text())
    [consegna] = [r for r in dossier["receipts"] if r["evidence"]["kind"] == "avvenuta-consegna"]
    assert (out / consegna["file"]).read_bytes() == delivery
    assert consegna["verification"]["verdict"] == "valid-trusted"
    assert consegna["verification"]["signature"]["trust"] == "trusted"
    [anchor] = dossier["verified_with"]["trust_anchors"]
    assert anchor["subject"]
    assert len(anchor["spki_sha256"]) == 64
    assert dossier["sent_copy"][0]["kind"] == "sent"
    assert dossier["msgid"] == state["msgid"]
    readme = (out / "README.txt").read_text()
    for name in result.files:
        assert name in readme


def test_an_altered_or_missing_copy_is_reported_not_written(tmp_path: Path) -> None:
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    state, archive = state_and_archive(tmp_path, delivery)
    digest = hashlib.sha256(delivery).hexdigest()
    path = next((tmp_path / "evidence").rglob(f"{digest}.eml"))
    path.write_bytes(delivery.replace(b"Subject:", b"Subject: altered", 1))
    result = write_dossier(state, archive.get, TRUST, tmp_path / "dossier")
    assert result.missing == (digest,)
    assert len(result.files) == 1  # the acceptance only
    dossier = json.loads((tmp_path / "dossier" / "dossier.json").read_text())
    assert dossier["missing"] == [digest]


def test_a_receipt_that_no_longer_verifies_is_flagged(tmp_path: Path) -> None:
    """Re-verification is real: with another trust store the receipts do not chain."""
    delivery = make_pec(Kind.AVVENUTA_CONSEGNA, provider="poste").raw
    state, archive = state_and_archive(tmp_path, delivery)
    other = TrustStore(anchors=(), intermediates=())  # no anchor: nothing chains
    result = write_dossier(state, archive.get, other, tmp_path / "dossier")
    assert len(result.unverified) == 2
    dossier = json.loads((tmp_path / "dossier" / "dossier.json").read_text())
    assert {r["verification"]["verdict"] for r in dossier["receipts"]} == {"untrusted"}
