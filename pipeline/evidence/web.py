"""The worker's side of retrieval: its archive writer, and ``GET /evidence/<sha256>``.

Every worker reads the archive itself (it is shared: one bucket, or one directory on a
single machine), so whichever worker answers returns the object: the exact signed bytes
as ``message/rfc822``. ``404`` for an object the archive does not hold, ``400`` for a
path that is not a SHA-256, ``503`` while the archive cannot be read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import EvidenceMetrics
from pipeline.evidence.archive import ArchiveError, is_sha256, open_archive
from pipeline.evidence.provenance import parse_kinds
from pipeline.evidence.writer import EvidenceWriter


def evidence_writer(
    uri: str, kinds: str, *, lock_mode: str, lock_days: int, registry: CollectorRegistry
) -> tuple[EvidenceWriter | None, frozenset[str]]:
    """The archive writer of the worker settings ``archive``, ``archive_kinds``,
    ``archive_lock_mode`` and ``archive_retention_days`` (``None`` without an archive),
    and the kinds it keeps: the verify processor's last two arguments."""
    if not uri:
        return None, frozenset()
    archive = open_archive(uri, lock_mode=lock_mode, lock_days=lock_days)
    return EvidenceWriter(archive, EvidenceMetrics(registry)), parse_kinds(kinds)


def register_evidence_pages(app: Any, writer: EvidenceWriter | None) -> None:
    from faust.web import Request, Response, View  # noqa: PLC0415

    @app.page("/evidence/{sha256}")
    class EvidenceView(View):
        """``GET /evidence/<sha256>``: the archived message, byte-exact."""

        async def get(self, request: Request, sha256: str) -> Response:
            if writer is None:
                return self.json({"error": "this worker has no evidence archive"}, status=404)
            if not is_sha256(sha256):
                return self.json({"error": "expected a SHA-256 in lower-case hex"}, status=400)
            try:
                data = await asyncio.to_thread(writer.archive.get, sha256)
            except ArchiveError as exc:
                return self.json({"error": f"archive unavailable: {exc}"}, status=503)
            if data is None:
                return self.json({"error": "not in the archive", "sha256": sha256}, status=404)
            headers = {"Content-Disposition": f'attachment; filename="{sha256}.eml"'}
            return self.bytes(data, content_type="message/rfc822", headers=headers)

    _ = EvidenceView
