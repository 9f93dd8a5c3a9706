"""The S3 store against a real S3 endpoint over HTTP (moto server), Object Lock included."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from soxtrail.kernel.errors import StoreError
from soxtrail.kernel.store import S3Store

pytestmark = pytest.mark.integration


def _bucket(endpoint: str, lock: bool = False) -> str:
    name = f"evidence-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


def test_objects_round_trip_under_the_prefix(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(s3_endpoint)
    store = S3Store(f"s3://{bucket}/sox/prod", endpoint_url=s3_endpoint)
    source = tmp_path / "log.csv"
    source.write_bytes(b"a,b\n" * 1000)
    store.put_file("2024Q3/run/raw/db_audit/s/log.csv", source)
    store.put_bytes("2024Q3/run/report/x.txt", b"hello")
    assert store.exists("2024Q3/run/raw/db_audit/s/log.csv")
    assert store.open("2024Q3/run/report/x.txt").read() == b"hello"
    fetched = store.fetch("2024Q3/run/raw/db_audit/s/log.csv", tmp_path / "copy.csv")
    assert fetched.read_bytes() == source.read_bytes()
    assert sorted(store.list("2024Q3/run")) == ["2024Q3/run/raw/db_audit/s/log.csv",
                                                "2024Q3/run/report/x.txt"]
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    assert {o["Key"] for o in listed["Contents"]} == {
        "sox/prod/2024Q3/run/raw/db_audit/s/log.csv", "sox/prod/2024Q3/run/report/x.txt"}
    assert store.location("a/b") == f"s3://{bucket}/sox/prod/a/b"


def test_a_missing_object_is_a_store_error_naming_it(s3_endpoint: str) -> None:
    store = S3Store(f"s3://{_bucket(s3_endpoint)}/p", endpoint_url=s3_endpoint)
    with pytest.raises(StoreError, match="p/2024Q3/nothing"):
        store.open("2024Q3/nothing")


def test_locked_objects_cannot_be_deleted(s3_endpoint: str) -> None:
    bucket = _bucket(s3_endpoint, lock=True)
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint, object_lock="COMPLIANCE",
                    retention_days=1)
    store.put_bytes("2024Q3/run/bundle/MANIFEST.sha256", b"abc  file\n")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    head = client.head_object(Bucket=bucket, Key="p/2024Q3/run/bundle/MANIFEST.sha256")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    version = head["VersionId"]
    with pytest.raises(ClientError, match=r"AccessDenied|locked|WORM|retention"):
        client.delete_object(Bucket=bucket, Key="p/2024Q3/run/bundle/MANIFEST.sha256",
                             VersionId=version)
    assert store.open("2024Q3/run/bundle/MANIFEST.sha256").read() == b"abc  file\n"
