"""Input handling against real services (issue 17): literal secrets and DSNs in a run,
put-once keys on S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from extract.connectors.registry import SPECS
from soxtrail import pipeline
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import PipelineError, SourceError, SoxtrailError, StoreError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import S3Store
from soxtrail.pipeline import Observer, Pipeline

pytestmark = pytest.mark.integration

PASSWORD = "Literal-pw-1234"


class StopBeforeLoad(Observer):
    """Ends the run once the snapshot is committed: these tests are about the snapshot."""

    def checkpoint(self, p: Pipeline, phase: str, point: str) -> None:
        if (phase, point) == ("load", "start"):
            raise PipelineError("stopped before load")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SOXTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CI", raising=False)  # signs with the home's own key, even in CI
    monkeypatch.delenv("SOXTRAIL_STORE", raising=False)
    monkeypatch.setattr(pipeline.runs, "OBSERVERS", [StopBeforeLoad()])
    yield tmp_path / "home"


def _run_with_dsn(db: Database, tmp_path: Path, dsn: str) -> tuple[str, SoxtrailError]:
    config = parse_config({"sources": [{
        "name": "fin-catalog", "system": "db_catalog", "connector": "postgres_catalog",
        "cluster": "pg-fin-01", "dsn": dsn}]}, path=None, base_dir=tmp_path, specs=SPECS)
    with db.connect() as conn:
        with pytest.raises(SoxtrailError) as info:
            pipeline.start_run(db, conn, config, Quarter.parse("2024Q3"))
        run_id = conn.execute("select id::text from soxtrail.sox_runs order by started_at desc"
                              " limit 1").fetchone()[0]  # type: ignore[index]
    return run_id, info.value


def _recorded(db: Database, run_id: str) -> str:
    with db.connect() as conn:
        row = conn.execute(
            "select config::text || coalesce(error, '') || coalesce((select string_agg("
            "query_text || query_params::text, '') from soxtrail.sox_evidence"
            " where run_id = %s), '') from soxtrail.sox_runs where id = %s",
            (run_id, run_id)).fetchone()
    return str(row[0])  # type: ignore[index]


def test_a_literal_dsn_is_sent_as_itself_and_recorded_redacted(
        pg_database: Database, tmp_path: Path, home: Path) -> None:
    dsn = f"{pg_database.dsn} password={PASSWORD}"  # trust auth: any password connects
    run_id, error = _run_with_dsn(pg_database, tmp_path, dsn)
    assert "stopped before load" in str(error)  # the snapshot itself succeeded
    with pg_database.connect() as conn:
        captured = conn.execute(
            "select count(*) from soxtrail.sox_evidence where run_id = %s"
            " and query_params->>'source' = 'fin-catalog'", (run_id,)).fetchone()
    assert captured and captured[0] > 0
    assert PASSWORD not in _recorded(pg_database, run_id)


def test_a_literal_dsn_password_gives_the_real_connection_error(
        pg_database: Database, tmp_path: Path, home: Path) -> None:
    run_id, error = _run_with_dsn(pg_database, tmp_path,
                                  f"postgresql://sox:{PASSWORD}@127.0.0.1:1/postgres")
    assert isinstance(error, SourceError)
    message = str(error)
    assert "cannot connect to sox@127.0.0.1:1/postgres" in message
    assert "not a valid" not in message and PASSWORD not in message
    assert PASSWORD not in _recorded(pg_database, run_id)


# ---------------------------------------------------------------- S3: put once


def _bucket(endpoint: str, lock: bool = False) -> str:
    name = f"once-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(
        Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


@pytest.mark.parametrize("lock", [False, True])
def test_an_s3_key_is_written_once(s3_endpoint: str, tmp_path: Path, lock: bool) -> None:
    options: dict[str, Any] = {"object_lock": "COMPLIANCE", "retention_days": 1} if lock else {}
    bucket = _bucket(s3_endpoint, lock)
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint, **options)
    source = tmp_path / "object.csv"
    source.write_bytes(b"a,b\n" * 100)
    store.put_file("q/run/raw/a.csv", source)
    store.put_file("q/run/raw/a.csv", source, move=True)  # the same bytes again: a no-op
    assert not source.exists()
    store.put_bytes("q/run/report/x.txt", b"hello")
    store.put_bytes("q/run/report/x.txt", b"hello")
    with pytest.raises(StoreError, match=r"s3://.*/p/q/run/report/x\.txt.*different bytes"):
        store.put_bytes("q/run/report/x.txt", b"forged")
    source.write_bytes(b"forged\n")
    with pytest.raises(StoreError, match=r"q/run/raw/a\.csv.*different bytes"):
        store.put_file("q/run/raw/a.csv", source)
    assert store.open("q/run/report/x.txt").read() == b"hello"
    versions = boto3.client("s3", endpoint_url=s3_endpoint).list_object_versions(
        Bucket=bucket).get("Versions", [])
    assert len(versions) == 2  # nothing was ever overwritten

