"""Connector `aws_backup` through boto3 against ListBackupJobs served by the fake server.

moto (5.x) implements backup plans and vaults but not ListBackupJobs, so the fake
server answers `GET /backup-jobs/` in the real REST-JSON wire format instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extract.connectors import aws_backup
from extract.connectors.registry import SPECS
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import COMPLETENESS_QUERY, RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore
from tests.support.fake_services import FakeServices, utc
from tests.support.rows import doc as raw_doc

CANARY = "canaryAwsSecret0123456789abcdef"
JOBS = "/backup-jobs"
ARN = "arn:aws:rds:eu-central-1:123456789012:cluster:pg-fin-01"
RETRY = {"attempts": 4, "budget_seconds": 5, "backoff_seconds": 0.01,
         "backoff_max_seconds": 0.02, "connect_timeout_seconds": 1, "read_timeout_seconds": 1}


def job(n: int, created: str | None = None, vault: str = "pg-vault",
        state: str = "COMPLETED") -> dict[str, Any]:
    created = created or f"2024-07-{n:02d}T02:00:00Z"
    return {"BackupJobId": f"job-{n:04d}", "BackupVaultName": vault,
            "BackupVaultArn": f"arn:aws:backup:eu-central-1:123456789012:backup-vault:{vault}",
            "ResourceArn": ARN, "ResourceType": "Aurora", "CreationDate": created,
            "CompletionDate": created.replace("T02:", "T03:"), "State": state,
            "StatusMessage": "" if state == "COMPLETED" else "snapshot failed",
            "BackupSizeInBytes": 1024 * n}


@pytest.fixture()
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("SOXTRAIL_AWS_ENDPOINT_URL", raising=False)
    with FakeServices() as fake:
        fake.add_backup_jobs([job(n) for n in range(1, 6)])
        fake.add_backup_jobs([job(90, "2024-06-30T23:00:00Z"), job(91, "2024-10-01T00:00:00Z"),
                              job(92, "2024-08-01T02:00:00Z", vault="other-vault")])
        yield fake


@pytest.fixture()
def run(tmp_path: Path, local_store: LocalStore) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=local_store, spool_dir=tmp_path / "spool")


def source(tmp_path: Path, services: FakeServices | None, **extra: Any) -> Source:
    entry = {"name": "aws-backup", "system": "backups", "connector": "aws_backup",
             "region": "eu-central-1", "vault": "pg-vault", "page_size": 2, "retry": RETRY,
             "resource_cluster": {ARN: "pg-fin-01"}, **extra}
    if services is not None:
        entry.setdefault("endpoint_url", services.url)
    return parse_config({"sources": [entry]}, path=None, base_dir=tmp_path, specs=SPECS).sources[0]


def pages_of(run: SnapshotRun) -> list[Any]:
    """The page captures (every record but the completeness statement, which comes last)."""
    assert run.records[-1].query_name == COMPLETENESS_QUERY
    return [r for r in run.records if r.query_name != COMPLETENESS_QUERY]


def statement(run: SnapshotRun, local_store: LocalStore) -> dict[str, Any]:
    """The source's completeness statement as stored."""
    [record] = [r for r in run.records if r.query_name == COMPLETENESS_QUERY]
    assert record.query_params["raw_table"] == "raw.source_completeness"
    stored = json.loads(local_store.fetch(record.raw_output_s3_key, Path("unused")).read_bytes())
    assert record.query_params["completeness"]["findings"] == sorted(
        {f["code"] for f in stored["findings"]})
    return stored


def codes(doc: dict[str, Any]) -> list[str]:
    return sorted(f["code"] for f in doc["findings"])


def loaded(run: SnapshotRun, local_store: LocalStore) -> list[Any]:
    items: list[Any] = []
    for record in pages_of(run):
        path = local_store.fetch(record.raw_output_s3_key, Path("unused"))
        rows = list(aws_backup.load(record.query_params, path))
        assert aws_backup.count_rows(record.query_params, path) == record.result_row_count
        assert record.result_row_count == len(rows)
        items.extend(rows)
    return items


def test_jobs_of_the_quarter_are_paged_by_next_token(tmp_path: Path, services: FakeServices,
                                                     run: SnapshotRun,
                                                     local_store: LocalStore) -> None:
    aws_backup.snapshot(source(tmp_path, services), run)
    requests = services.requests_to(JOBS)
    assert len(requests) == 3
    assert requests[0].param("createdAfter") == "2024-07-01T00:00:00Z"
    assert requests[0].param("createdBefore") == "2024-10-01T00:00:00Z"
    assert requests[0].param("backupVaultName") == "pg-vault"
    assert requests[0].param("nextToken") is None and requests[1].param("nextToken")
    assert requests[0].headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID")
    items = loaded(run, local_store)
    assert [raw_doc(i)["BackupJobId"] for i in items] == [f"job-{n:04d}" for n in range(1, 6)]
    assert items[0].locator == "aws-backup-jobs-00000.json#0"
    record = pages_of(run)[0]
    assert record.source_system == "backups" and record.query_params["raw_table"] == "raw.backups"
    assert record.query_params["created_after"] == "2024-07-01T00:00:00+00:00"
    assert record.query_text.startswith("backup.ListBackupJobs region=eu-central-1 at http://")
    assert '"NextToken"' not in record.query_text and '"NextToken"' in pages_of(run)[1].query_text


def test_pages_are_stored_as_canonical_json_of_the_sdk_response(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    aws_backup.snapshot(source(tmp_path, services), run)
    raw = local_store.fetch(pages_of(run)[0].raw_output_s3_key, Path("unused")).read_bytes()
    document = json.loads(raw)
    assert raw == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert "ResponseMetadata" not in document and document["NextToken"]
    first = document["BackupJobs"][0]
    assert first["CreationDate"] == "2024-07-01T02:00:00+00:00"
    assert first["CompletionDate"] == "2024-07-01T03:00:00+00:00"
    assert first["State"] == "COMPLETED" and first["ResourceArn"] == ARN


def test_the_endpoint_can_come_from_the_environment(tmp_path: Path, services: FakeServices,
                                                    run: SnapshotRun,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_AWS_ENDPOINT_URL", services.url)
    aws_backup.snapshot(source(tmp_path, None, vault=None), run)
    assert sum(r.result_row_count for r in pages_of(run)) == 6  # other vault included
    assert services.requests_to(JOBS)[0].param("backupVaultName") is None


def test_settings_map_resources_to_clusters(tmp_path: Path) -> None:
    assert aws_backup.settings(source(tmp_path, None)) == [("resource_cluster", ARN, "pg-fin-01")]


@pytest.mark.parametrize("fault", ["429", "500", "truncate", "garble", "reset"])
def test_a_transient_fault_then_success_captures_every_job_once(
        tmp_path: Path, services: FakeServices, run: SnapshotRun, local_store: LocalStore,
        fault: str) -> None:
    services.inject(JOBS, fault, after=1)
    aws_backup.snapshot(source(tmp_path, services), run)
    assert [r.fault for r in services.requests_to(JOBS)] == [None, fault, None, None]
    assert [raw_doc(i)["BackupJobId"] for i in loaded(run, local_store)] == [
        f"job-{n:04d}" for n in range(1, 6)]


def test_a_source_that_stays_down_fails_naming_it(tmp_path: Path, services: FakeServices,
                                                  run: SnapshotRun,
                                                  local_store: LocalStore) -> None:
    services.inject(JOBS, "down", after=1)
    with pytest.raises(SourceError) as failure:
        aws_backup.snapshot(source(tmp_path, services), run)
    message = str(failure.value)
    assert message.startswith("source 'aws-backup': backup.ListBackupJobs ")
    assert "after 4 attempt(s)" in message and "NextToken" in message
    assert CANARY not in message
    assert [r.query_params["page"] for r in run.records] == [0]
    assert len(list(local_store.list(""))) == 1
    for record in run.records:
        assert CANARY not in record.query_text + json.dumps(record.query_params)


def test_a_non_retryable_error_fails_at_once(tmp_path: Path, services: FakeServices,
                                             run: SnapshotRun,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    services.inject(JOBS, "500", status=501)
    with pytest.raises(SourceError, match="HTTP 501") as failure:
        aws_backup.snapshot(source(tmp_path, services), run)
    assert CANARY not in str(failure.value)
    assert len(services.requests) == 1 and run.records == []


def test_load_rejects_a_page_without_backup_jobs(tmp_path: Path) -> None:
    page = tmp_path / "page.json"
    page.write_text('{"BackupJobs": [{"BackupJobId": "j1"}, 7]}')
    items = list(aws_backup.load({}, page))
    assert isinstance(items[0], RawRow) and isinstance(items[1], Reject)
    page.write_text('{"message": "nope"}')
    assert [type(i) for i in aws_backup.load({}, page)] == [Reject]


# ---------------------------------------------------------------------------
# completeness: no total, a job list that forgets after about 30 days, retention

OTHER_ARN = "arn:aws:rds:eu-central-1:123456789012:cluster:pg-hr-01"


def test_the_job_list_states_no_total_and_the_part_of_the_quarter_it_covers(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.server_time = utc("2024-10-02T00:00:00Z")
    aws_backup.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert (doc["basis"], doc["claimed"], doc["captured"]) == ("no_total", None, 5)
    assert doc["findings"][0] == {"code": "NO_TOTAL_AVAILABLE", "exception": False,
                                  "detail": "AWS Backup states no total: the 5 records "
                                            "captured cannot be compared with what it holds"}
    # the oldest job returned (2024-07-01 02:00) is older than 30 days before the capture
    assert doc["covered"] == [{"from": "2024-07-01T02:00:00Z", "to": "2024-10-01T00:00:00Z"}]
    assert [f["detail"] for f in doc["findings"] if f["code"] == "COVERAGE_GAP"] == [
        "2024-07-01T00:00:00Z to 2024-07-01T02:00:00Z: not covered by the capture of "
        "2024-10-02T00:00:00Z (AWS Backup keeps about 30 days)"]
    assert "RETENTION_SHORTER_THAN_QUARTER" not in codes(doc)
    assert doc["facts"]["oldest_job_by_resource"] == {ARN: "2024-07-01T02:00:00Z"}


def test_a_mid_quarter_capture_covers_up_to_its_time(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.server_time = utc("2024-07-20T06:00:00Z")
    aws_backup.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["covered"] == [{"from": "2024-07-01T00:00:00Z", "to": "2024-07-20T06:00:00Z"}]
    assert [f["detail"] for f in doc["findings"] if f["code"] == "COVERAGE_GAP"] == [
        "2024-07-20T06:00:00Z to 2024-10-01T00:00:00Z: after the capture of "
        "2024-07-20T06:00:00Z"]


def test_a_resource_whose_oldest_job_is_after_the_first_day_has_short_retention(
        tmp_path: Path, run: SnapshotRun, local_store: LocalStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    with FakeServices() as services:
        services.server_time = utc("2024-10-01T06:00:00Z")
        services.add_backup_jobs([job(n, f"2024-09-{n:02d}T02:00:00Z") for n in range(2, 5)])
        aws_backup.snapshot(source(tmp_path, services, resource_cluster={
            ARN: "pg-fin-01", OTHER_ARN: "pg-hr-01"}), run)
    doc = statement(run, local_store)
    retention = [f["detail"] for f in doc["findings"]
                 if f["code"] == "RETENTION_SHORTER_THAN_QUARTER"]
    assert retention == [
        f"{ARN} (cluster pg-fin-01): the oldest job listed was created 2024-09-02T02:00:00Z, "
        "after the quarter's first day: backups before it cannot be proven (the job list "
        "keeps about 30 days)",
        f"{OTHER_ARN} (cluster pg-hr-01): no backup job of the quarter is listed: none of its "
        "backups can be proven"]
    assert doc["covered"] == [{"from": "2024-09-01T06:00:00Z", "to": "2024-10-01T00:00:00Z"}]
