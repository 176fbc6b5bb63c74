"""A real S3-compatible server for the archive tests: moto's server, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from pipeline.embedded import LocalS3

BUCKET = "pectrack-evidence"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "evidence",
    "AWS_SECRET_ACCESS_KEY": "evidence",
    "AWS_DEFAULT_REGION": "eu-south-1",
}


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def versions(client: Any, bucket: str = BUCKET) -> dict[str, int]:
    """Every key of the (versioned) bucket with how many versions it has."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


@pytest.fixture
def s3_server(tmp_path: Any) -> Iterator[LocalS3]:
    """moto_server with a versioned bucket ``pectrack-evidence`` (a second write of a key
    would show as a second version)."""
    with LocalS3(log_path=tmp_path / "moto.log") as server:
        client = s3_client(server.endpoint)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-south-1"}
        )
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield server
