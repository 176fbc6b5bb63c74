"""A real S3-compatible server for the archive tests: moto's server, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dev.embedded import LocalS3
from tests.support.s3 import create_bucket, s3_client


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[LocalS3]:
    """moto_server with the versioned bucket ``pectrack-evidence``."""
    with LocalS3(log_path=tmp_path / "moto.log") as server:
        create_bucket(s3_client(server.endpoint))
        yield server
