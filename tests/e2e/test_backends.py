"""The same run on the embedded PostgreSQL and with an S3 evidence store."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

from extract.demo import generate
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import soxtrail, stop_embedded
from tests.support.debian import postgres_scratch

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def small_estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, Quarter.parse("2024Q3"))
    return out


def test_without_a_dsn_the_embedded_server_is_started_and_reused(small_estate: Path) -> None:
    # not under tmp_path: pytest keeps it 0700, out of reach of the server's own OS user
    with postgres_scratch("embedded") as scratch:
        _embedded_run(small_estate, scratch / "h")


def _embedded_run(small_estate: Path, home: Path) -> None:
    config = str(small_estate / "soxtrail.yml")
    try:
        first = soxtrail("run", "--quarter", "2024Q3", "--config", config, "--json", "--quiet",
                         "--clusters", "pg-fin-01,pg-hr-01", home=home, database_url=None)
        assert first.code == 0, first.stderr
        assert (home / "pg" / "PG_VERSION").exists()
        listed = soxtrail("runs", "--json", home=home, database_url=None)
        assert listed.code == 0, listed.stderr
        assert [r["run_id"] for r in listed.json()] == [first.json()["run_id"]]
        assert Path(first.json()["report"]).is_file()
    finally:
        stop_embedded(home)


def test_with_an_s3_store_every_object_goes_to_s3_and_nothing_local(
        small_estate: Path, tmp_path: Path, s3_endpoint: str, pg_database: Database) -> None:
    bucket = f"sox-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    home = tmp_path / "h"
    result = soxtrail("run", "--quarter", "2024Q3", "--config", str(small_estate / "soxtrail.yml"),
                      "--json", "--quiet", home=home, database_url=pg_database.dsn,
                      env={"SOXTRAIL_STORE": f"s3://{bucket}/evidence",
                           "SOXTRAIL_S3_ENDPOINT_URL": s3_endpoint})
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    # one report, in the bundle
    assert result.json()["report"].startswith(
        f"s3://{bucket}/evidence/2024Q3/{run_id}/bundle/report/")
    assert not (home / "store").exists()
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}
    with psycopg.connect(pg_database.dsn) as conn:
        rows = conn.execute("select raw_output_s3_key, result_hash from soxtrail.sox_evidence"
                            " where run_id = %s", (run_id,)).fetchall()
    assert rows
    for key, digest in rows:
        assert f"evidence/{key}" in keys
        body = s3.get_object(Bucket=bucket, Key=f"evidence/{key}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest
    assert any(k.endswith("/bundle/MANIFEST.sha256") for k in keys)
