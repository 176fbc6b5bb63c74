"""S3 helpers for the evidence tests: a boto3 client of a local moto server, versions."""

from __future__ import annotations

from typing import Any

import boto3

BUCKET = "pectrack-evidence"
REGION = "eu-south-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "evidence",
    "AWS_SECRET_ACCESS_KEY": "evidence",
    "AWS_DEFAULT_REGION": REGION,
}


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )


def create_bucket(client: Any, *, versioned: bool = True) -> None:
    """``pectrack-evidence``, versioned: a second write of a key shows as a version."""
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


def versions(client: Any, bucket: str = BUCKET) -> dict[str, int]:
    """Every key of the bucket with how many versions it has."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def worker_environment(endpoint: str) -> dict[str, str]:
    """What a worker process needs to reach the server: the standard AWS variables."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
