"""The evidence archive: signed PEC messages kept byte-exact, addressed by their SHA-256.

Two stores behind one interface (:class:`Archive`), chosen by URI::

    file:///var/lib/pectrack/evidence   a local directory (single machine, demo)
    s3://bucket/prefix                  S3-compatible object storage (boto3; credentials
                                        and endpoint from the standard AWS environment
                                        and files, e.g. AWS_ENDPOINT_URL for MinIO/Ceph)

An object is ``<root>/sha256/<first two hex digits>/<sha256>.eml`` with its metadata
(mailbox, kind, identificativo, msgid, signature verdict, when read) beside it: a
``.json`` file, or the S3 object's user metadata. Writing is idempotent: an object that is
already there is neither written again nor an error (a replay after a crash), and its
first metadata stay. The bytes are checked against the address before anything is
written. Both stores are synchronous; the worker calls them from a thread
(:mod:`pipeline.evidence.writer`).

Retention: pectrack never deletes evidence. On S3, ``lock_mode`` (``GOVERNANCE`` or
``COMPLIANCE``) and ``lock_days`` write each object under S3 Object Lock (the bucket must
have Object Lock enabled); expiry after the legal period is the bucket's lifecycle rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "Archive",
    "ArchiveError",
    "FileArchive",
    "S3Archive",
    "Stored",
    "is_sha256",
    "open_archive",
]

LOCK_MODES = ("", "GOVERNANCE", "COMPLIANCE")


class ArchiveError(Exception):
    """The archive could not be reached or refused a write (the caller retries)."""


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of a write: where the object is and whether this call wrote it."""

    sha256: str
    uri: str
    written: bool
    size: int


class Archive(Protocol):
    uri: str

    def location(self, sha256: str) -> str:
        """The URI of the object for ``sha256`` (whether or not it exists)."""
        ...

    def put(self, data: bytes, meta: Mapping[str, str]) -> Stored:
        """Store ``data`` once under its SHA-256; an existing object is left as it is."""
        ...

    def get(self, sha256: str) -> bytes | None:
        """The exact bytes, or ``None`` if there is no such object."""
        ...

    def metadata(self, sha256: str) -> dict[str, str] | None: ...


def _relative(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}.eml"


def _checked(sha256: str) -> str:
    if not is_sha256(sha256):
        raise ValueError("not a SHA-256 in lower-case hex")
    return sha256


class FileArchive:
    """A directory; objects are written to a temporary file, fsynced, then linked into
    place (``os.link`` fails if the name exists: two writers never overwrite each other)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.absolute().as_uri()

    def location(self, sha256: str) -> str:
        return f"{self.uri}/{_relative(_checked(sha256))}"

    def _path(self, sha256: str) -> Path:
        return self.root / _relative(_checked(sha256))

    def put(self, data: bytes, meta: Mapping[str, str]) -> Stored:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        stored = Stored(sha256, self.location(sha256), False, len(data))
        try:
            if path.exists():
                return stored
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_new(path.with_suffix(".json"), json.dumps(dict(meta)).encode())
            written = self._write_new(path, data)
        except OSError as exc:
            raise ArchiveError(f"{self.uri}: {exc.strerror or exc}") from exc
        return Stored(sha256, stored.uri, written, len(data))

    @staticmethod
    def _write_new(path: Path, data: bytes) -> bool:
        """``data`` at ``path`` unless something is there already; True if written."""
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            _sync_directory(path.parent)  # the new name is durable before anyone names it
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def get(self, sha256: str) -> bytes | None:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArchiveError(f"{self.uri}: {exc.strerror or exc}") from exc

    def metadata(self, sha256: str) -> dict[str, str] | None:
        try:
            loaded = json.loads(self._path(sha256).with_suffix(".json").read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"{self.uri}: metadata of {sha256}: {exc}") from exc
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Archive:
    """A bucket (and key prefix) of S3-compatible storage, through boto3.

    ``put`` sends ``If-None-Match: *`` (conditional write): of two writers of one object,
    one wins and the other sees 412 and counts it as present; no second version is made on
    a versioned bucket. A HEAD first spares the upload when the object is there.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        lock_mode: str = "",
        lock_days: int = 0,
        client: Any = None,
    ) -> None:
        if lock_mode not in LOCK_MODES:
            raise ValueError(
                f"archive lock mode must be one of {LOCK_MODES[1:]}, not {lock_mode!r}"
            )
        if lock_mode and lock_days < 1:
            raise ValueError("an archive lock mode needs archive_retention_days >= 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.lock_mode = lock_mode
        self.lock_days = lock_days
        self._client = client
        self._lock = threading.Lock()  # boto3 creates clients thread-unsafely; uses them safely

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # noqa: PLC0415 - only S3 archives need it
                from botocore.config import Config  # noqa: PLC0415

                config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
                self._client = boto3.client("s3", config=config)
            return self._client

    def _key(self, sha256: str) -> str:
        relative = _relative(_checked(sha256))
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def location(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha256)}"

    def put(self, data: bytes, meta: Mapping[str, str]) -> Stored:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        sha256 = hashlib.sha256(data).hexdigest()
        key = self._key(sha256)
        stored = Stored(sha256, self.location(sha256), False, len(data))
        try:
            if self._exists(key):
                return stored
            extra: dict[str, Any] = {}
            if self.lock_mode:
                extra["ObjectLockMode"] = self.lock_mode
                extra["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(
                    days=self.lock_days
                )
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ContentType="message/rfc822",
                Metadata={name: quote(value, safe="") for name, value in meta.items()},
                **extra,
            )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                return stored  # another writer stored it first
            raise ArchiveError(f"{self.uri}: {_code(exc)}: {exc}") from exc
        except BotoCoreError as exc:
            raise ArchiveError(f"{self.uri}: {exc}") from exc
        return Stored(sha256, stored.uri, True, len(data))

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _ABSENT:
                return False
            raise
        return True

    def get(self, sha256: str) -> bytes | None:
        key = self._key(sha256)

        def read() -> bytes:  # the read too can fail: inside the same error mapping
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data

        body: bytes | None = self._unless_absent(read)
        return body

    def metadata(self, sha256: str) -> dict[str, str] | None:
        key = self._key(sha256)
        answer = self._unless_absent(lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        if answer is None:
            return None
        return {k: unquote(v) for k, v in answer.get("Metadata", {}).items()}

    def _unless_absent(self, call: Callable[[], Any]) -> Any:
        """``call()``; ``None`` if the object is not there; any other failure is an
        :class:`ArchiveError`."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            return call()
        except ClientError as exc:
            if _code(exc) in _ABSENT:
                return None
            raise ArchiveError(f"{self.uri}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise ArchiveError(f"{self.uri}: {exc}") from exc


_ABSENT = ("404", "NoSuchKey", "NotFound")


def _code(exc: Any) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code", "unknown"))


def open_archive(uri: str, *, lock_mode: str = "", lock_days: int = 0) -> Archive:
    """The archive a URI names: ``file:///dir`` or ``s3://bucket[/prefix]``."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"archive: a file URI needs an absolute path: {uri!r}")
        if lock_mode:
            raise ValueError("archive lock mode is for s3:// archives")
        return FileArchive(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"archive: an s3 URI names a bucket: {uri!r}")
        if importlib.util.find_spec("boto3") is None:
            raise ValueError("an s3:// archive needs boto3: pip install 'pectrack[s3]'")
        return S3Archive(parts.netloc, parts.path, lock_mode=lock_mode, lock_days=lock_days)
    raise ValueError(f"archive must be file:///path or s3://bucket/prefix, not {uri!r}")
