"""aws_cloudtrail: AWSLogs layout, quarter days only, IAM events loaded, bad files rejected."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from extract.connectors import aws_cloudtrail
from extract.snapshot import SnapshotRun
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Skipped, Source
from soxtrail.kernel.store import LocalStore
from tests.support.rows import doc as raw_doc

ACCOUNT = "123456789012"


def event(source: str, name: str, user: str = "alice", when: str = "2024-07-05T10:00:00Z"
          ) -> dict[str, object]:
    return {"eventVersion": "1.08", "eventTime": when, "eventSource": source,
            "eventName": name, "awsRegion": "us-east-1", "requestParameters": {"userName": user},
            "userIdentity": {"type": "IAMUser", "userName": "admin"},
            "eventID": str(uuid.uuid4()), "readOnly": False, "eventType": "AwsApiCall",
            "recipientAccountId": ACCOUNT}


def trail_file(records: list[object]) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)


def file_name(day: str, stamp: str, region: str = "us-east-1") -> str:
    return f"{ACCOUNT}_CloudTrail_{region}_{day.replace('/', '')}T{stamp}Z_abc{stamp}.json.gz"


def lay_out(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def log_records(run: SnapshotRun) -> list[Any]:
    """The evidence rows of the log files (not the digest bundle or the completeness
    statement that follow them)."""
    return [r for r in run.records if r.query_params["raw_table"] == "raw.iam_events"]


def trail_source(base: Path, **values: object) -> Source:
    return Source(name="aws-iam", system="iam", connector="aws_cloudtrail",
                  values={"path": "trail", **values}, base_dir=base)


MIXED = trail_file([event("iam.amazonaws.com", "DeleteLoginProfile"),
                    event("s3.amazonaws.com", "GetObject"),
                    event("ec2.amazonaws.com", "RunInstances"),
                    event("iam.amazonaws.com", "RemoveUserFromGroup", user="bob")])


def ct(region: str, day: str, stamp: str) -> str:
    return f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{day}/{file_name(day, stamp, region)}"


def test_snapshot_takes_the_quarter_days_plus_the_late_delivery_day(tmp_path: Path) -> None:
    lay_out(tmp_path / "trail", {
        ct("us-east-1", "2024/06/30", "2355"): MIXED,  # before the quarter
        ct("us-east-1", "2024/07/01", "0005"): MIXED,
        ct("us-east-1", "2024/09/30", "2355"): MIXED,
        ct("us-east-1", "2024/10/01", "0005"): MIXED,  # late delivery of Sep 30 events
        ct("us-east-1", "2024/10/02", "0005"): MIXED,  # next quarter
        ct("eu-west-1", "2024/08/15", "1200"): MIXED,
        f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2024/07/01/digest.json.gz": b"x",
    })
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(trail_source(tmp_path), run)
    days = [(r.query_params["region"], r.query_params["day"]) for r in log_records(run)]
    assert days == [("eu-west-1", "2024-08-15"), ("us-east-1", "2024-07-01"),
                    ("us-east-1", "2024-09-30"), ("us-east-1", "2024-10-01")]
    # then the one digest bundle (its one unreadable digest) and the completeness statement
    assert [r.query_params["raw_table"] for r in run.records[4:]] == [
        "raw.cloudtrail_digests", "raw.source_completeness"]
    assert run.records[4].result_row_count == 1
    assert run.records[5].query_params["completeness"]["findings"] == [
        "DIGEST_MISMATCH", "MISSING_DIGEST", "UNVERIFIED"]
    first = run.records[0]
    assert first.query_params["account"] == ACCOUNT
    assert first.query_params["raw_table"] == "raw.iam_events"
    assert first.raw_output_s3_key.endswith(".json.gz")
    assert first.result_row_count == 4
    assert "eu-west-1/2024/08/15/*.json.gz" in first.query_text
    # the listing that found it, and where the file was
    folder = tmp_path / "trail" / "AWSLogs" / ACCOUNT / "CloudTrail" / "eu-west-1/2024/08/15"
    assert first.query_params["listed"] == f"{folder}/*.json.gz"
    assert first.query_params["location"] == str(
        folder / file_name("2024/08/15", "1200", "eu-west-1"))
    assert "bucket" not in first.query_params
    assert run.store.fetch(first.raw_output_s3_key, tmp_path).read_bytes() == MIXED


def test_region_and_account_filters(tmp_path: Path) -> None:
    lay_out(tmp_path / "trail", {
        ct("us-east-1", "2024/07/01", "0005"): MIXED,
        ct("eu-west-1", "2024/07/01", "0005"): MIXED,
        "AWSLogs/999999999999/CloudTrail/us-east-1/2024/07/01/other.json.gz": MIXED,
    })
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(trail_source(tmp_path, region="us-east-1", account=ACCOUNT), run)
    assert [(r.query_params["account"], r.query_params["region"])
            for r in log_records(run)] == [(ACCOUNT, "us-east-1")]


def test_load_keeps_every_iam_event_and_skips_other_services(tmp_path: Path) -> None:
    path = tmp_path / "f.json.gz"
    path.write_bytes(MIXED)
    items = list(aws_cloudtrail.load({"file": "f.json.gz"}, path))
    assert [type(i) for i in items] == [RawRow, Skipped, RawRow]
    assert isinstance(items[0], RawRow) and items[0].locator == "f.json.gz#0"
    assert raw_doc(items[0])["eventName"] == "DeleteLoginProfile"
    assert isinstance(items[2], RawRow) and items[2].locator == "f.json.gz#3"
    assert items[1] == Skipped(2)
    assert aws_cloudtrail.count_rows({}, path) == 4


@pytest.mark.parametrize(("data", "reason"), [
    (MIXED[: len(MIXED) // 2], "unreadable gzip"),
    (gzip.compress(b'{"Records": [{"eventSource": '), "invalid JSON"),
    (gzip.compress(b'{"records": []}'), "not a CloudTrail log file"),
], ids=["truncated-gzip", "invalid-json", "not-a-trail-file"])
def test_a_broken_file_is_one_reject_naming_the_file(tmp_path: Path, data: bytes,
                                                     reason: str) -> None:
    path = tmp_path / "bad.json.gz"
    path.write_bytes(data)
    (reject,) = aws_cloudtrail.load({"file": "bad.json.gz"}, path)
    assert isinstance(reject, Reject) and reject.locator == "bad.json.gz#0"
    assert "bad.json.gz" in reject.reason and reason in reject.reason
    assert aws_cloudtrail.count_rows({}, path) == 1


def test_iam_event_with_a_nul_escape_is_rejected_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "f.json.gz"
    path.write_bytes(trail_file([event("iam.amazonaws.com", "CreateUser", user="x\u0000y")]))
    (reject,) = aws_cloudtrail.load({"file": "f.json.gz"}, path)
    assert isinstance(reject, Reject) and "NUL" in reject.reason


def test_snapshot_walks_an_s3_prefix(tmp_path: Path, s3_endpoint: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    for key in (ct("us-east-1", "2024/07/02", "0100"), ct("us-east-1", "2024/07/02", "0000"),
                ct("us-east-1", "2024/04/02", "0000"),
                f"org/AWSLogs/o-abc/{ACCOUNT}/CloudTrail/us-east-1/2024/08/01/x.json.gz"):
        s3.put_object(Bucket=bucket, Key=f"org/{key}" if not key.startswith("org/") else key,
                      Body=MIXED)
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(Source(name="aws-iam", system="iam", connector="aws_cloudtrail",
                                   values={"path": f"s3://{bucket}/org"}), run)
    assert [r.query_params["day"] for r in log_records(run)] == ["2024-07-02", "2024-07-02",
                                                                 "2024-08-01"]
    assert run.records[-1].query_params["completeness"]["findings"] == ["UNVERIFIED"]
    assert [r.query_params["file"] for r in log_records(run)][:2] == [
        file_name("2024/07/02", "0000"), file_name("2024/07/02", "0100")]
    # the bucket and the prefix listed
    assert [(r.query_params["bucket"], r.query_params["prefix"], r.query_params["listed"])
            for r in log_records(run)] == [
        (bucket, f"org/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/07/02/",
         f"s3://{bucket}/org/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/07/02/*.json.gz")] * 2 + [
        (bucket, f"org/AWSLogs/o-abc/{ACCOUNT}/CloudTrail/us-east-1/2024/08/01/",
         f"s3://{bucket}/org/AWSLogs/o-abc/{ACCOUNT}/CloudTrail/us-east-1/2024/08/01/*.json.gz")]
    assert log_records(run)[0].query_params["location"] == (
        f"s3://{bucket}/org/{ct('us-east-1', '2024/07/02', '0000')}")
    stored = run.store.fetch(run.records[2].raw_output_s3_key, tmp_path)
    assert stored.read_bytes() == MIXED
    assert len([i for i in aws_cloudtrail.load(run.records[2].query_params, stored)
                if isinstance(i, RawRow)]) == 2


def test_locators_name_the_object_as_stored_when_two_files_share_a_name(
        tmp_path: Path) -> None:
    same = "same-name.json.gz"
    lay_out(tmp_path / "trail", {
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/07/01/{same}": MIXED,
        f"AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2024/07/01/{same}": MIXED,
    })
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(trail_source(tmp_path), run)
    names = []
    for record in log_records(run):
        stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
        assert record.query_params["file"] == same
        names.append(stored.name)
        locators = [i.locator for i in aws_cloudtrail.load(record.query_params, stored)
                    if isinstance(i, RawRow)]
        assert locators and all(loc.startswith(stored.name + "#") for loc in locators)
    # the second file is stored under another name: its locators say that name
    assert names == [same, f"{ACCOUNT}_us-east-1_{same}"]
