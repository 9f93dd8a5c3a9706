"""Shared S3 helpers of the connectors reading objects from S3 (`aws_cloudtrail`,
`pgaudit_log`): a client, `s3://bucket/prefix` URIs, sorted listings and streamed reads."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from typing import Any

from soxtrail.kernel.errors import ConfigError, SourceError


def s3_client() -> Any:
    """A boto3 S3 client honouring SOXTRAIL_S3_ENDPOINT_URL (any S3-compatible endpoint)."""
    import boto3
    from botocore.config import Config

    # a fresh session: credentials come from the environment as it is now
    return boto3.session.Session().client(
        "s3", endpoint_url=os.environ.get("SOXTRAIL_S3_ENDPOINT_URL") or None,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"},
                      connect_timeout=10, read_timeout=60))


def split_s3_uri(uri: str, source_name: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix); ConfigError naming the source otherwise."""
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ConfigError(f"source {source_name}: {uri!r}: expected s3://bucket/prefix")
    return bucket, prefix


def s3_list(uri: str, source_name: str, client: Any = None) -> Iterator[tuple[str, str]]:
    """(bucket, key) of every object under `s3://bucket/prefix`, sorted by key.

    A glob in the last path segment (`s3://b/logs/*.csv`) filters the keys.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_uri(uri, source_name)
    pattern = None
    head, _, tail = prefix.rpartition("/")
    if any(ch in tail for ch in "*?["):
        pattern, prefix = prefix, (head + "/" if head else "")
    client = client or s3_client()
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/") and (pattern is None or fnmatch.fnmatchcase(key,
                                                                                     pattern)):
                    keys.append(key)
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source_name}: cannot list {uri}: {exc}") from exc
    for key in sorted(keys):
        yield bucket, key


def s3_chunks(bucket: str, key: str, source_name: str, client: Any = None) -> Iterator[bytes]:
    """The bytes of one S3 object, streamed in 1 MiB chunks."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or s3_client()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        yield from body.iter_chunks(1 << 20)
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source_name}: cannot read s3://{bucket}/{key}: {exc}") from exc
