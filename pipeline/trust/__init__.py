"""Loading trust stores from files (outside the pure core, which takes bytes)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.core import TrustStore

_SUFFIXES = {".pem", ".crt", ".cer", ".der"}


class TrustStoreError(Exception):
    """A trust file or directory that cannot be used; the message says which and why."""


def default_trust_store() -> TrustStore:
    """The anchors shipped with pectrack: AgID CA1 (current issue)."""
    folder = resources.files("pipeline") / "trust"
    blobs = [entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".pem")]
    return TrustStore.from_bytes(*blobs)


def load_trust_store(location: str | Path) -> TrustStore:
    """Anchors from a PEM/DER file or from every certificate file in a directory."""
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise TrustStoreError(f"{path}: no .pem/.crt/.cer/.der files")
    else:
        files = [path]
    blobs = []
    for file in files:
        try:
            blobs.append(file.read_bytes())
        except OSError as exc:
            raise TrustStoreError(f"{file}: {exc.strerror or exc}") from exc
    try:
        return TrustStore.from_bytes(*blobs)
    except ValueError as exc:
        raise TrustStoreError(f"{path}: not a certificate ({exc})") from exc
