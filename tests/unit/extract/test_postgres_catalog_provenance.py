"""postgres_catalog live on the real server: each capture's evidence row names its query
(file and SHA-256 of the text as run) and the server's now() and version() as the capture's
own session saw them."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from extract.connectors import postgres_catalog
from extract.snapshot import SnapshotRun
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Source
from soxtrail.kernel.store import LocalStore

pytestmark = pytest.mark.integration


def test_a_live_capture_records_its_query_and_the_servers_clock_and_version(
        tmp_path: Path, pg_database: Database) -> None:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    before = datetime.now().astimezone()
    postgres_catalog.snapshot(Source(name="fin-catalog", system="db_catalog",
                                     connector="postgres_catalog",
                                     values={"cluster": "pg-fin-01", "dsn": pg_database.dsn}),
                              run)
    after = datetime.now().astimezone()
    with psycopg.connect(pg_database.dsn) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None
    version = str(row[0])
    captures = [r for r in run.records if r.query_name != "completeness"]
    assert [r.query_params["query"] for r in captures] == list(postgres_catalog.QUERIES)
    nows = set()
    for record in captures:
        params = record.query_params
        # the SQL run is the query file's text, and its hash is the file's
        assert record.query_text == postgres_catalog.query_sql(params["query"])
        file = Path(postgres_catalog.__file__).parent / "queries" / f"{params['query']}.sql"
        assert params["query_file"] == f"extract/connectors/queries/{file.name}"
        assert params["query_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert params["server_version"] == version and version.startswith("PostgreSQL ")
        nows.add(params["server_now"])
    # one session, one transaction: one now(), the settings rows' captured_at
    [now] = nows
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert before <= moment <= after
    settings = next(r for r in captures if r.query_params["query"] == "catalog_settings")
    rows = list(postgres_catalog.load(settings.query_params,
                                      run.store.fetch(settings.raw_output_s3_key, tmp_path)))
    captured_at = {r.values[0] for r in rows if isinstance(r, RawRow)}
    assert len(captured_at) == 1
    assert datetime.fromisoformat(str(captured_at.pop())) == moment
