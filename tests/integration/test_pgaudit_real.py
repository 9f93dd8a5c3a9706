"""pgaudit_log against a real PostgreSQL 15 with pgaudit writing csvlog, jsonlog and stderr."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from extract.connectors import pgaudit_log
from extract.connectors.registry import RAW_TABLES
from extract.loader import copy_object
from extract.snapshot import SnapshotRun
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore
from tests.support.debian import Cluster, ensure_packages, postgres_scratch
from tests.support.runs import running

pytestmark = pytest.mark.integration

PREFIX = "%m [%p] %q%u@%d app=%a sid=%c "
USER = "ops_admin"
DATABASE = "appdb"


@dataclass(frozen=True)
class Statement:
    """A statement run against the cluster and what pgaudit must say about it."""

    sql: str
    audit_class: str
    command: str
    application_name: str | None = None


STATEMENTS = [
    Statement('CREATE ROLE "app, read" NOLOGIN', "ROLE", "CREATE ROLE"),
    Statement("CREATE ROLE alice LOGIN", "ROLE", "CREATE ROLE"),
    Statement('GRANT "app, read" TO alice', "ROLE", "GRANT ROLE"),
    Statement("CREATE TABLE ledger (\n    id int,\n    note text default 'a, \"b\"'\n)",
              "DDL", "CREATE TABLE"),
    Statement("/* CHG-2001 */ ALTER ROLE alice CREATEROLE", "ROLE", "ALTER ROLE"),
    Statement('REVOKE "app, read" FROM alice', "ROLE", "REVOKE ROLE",
              application_name="CHG-3003 deploy"),
]


@dataclass
class Logs:
    """The log folder of the finished cluster and the time window the statements ran in."""

    folder: Path
    started: datetime
    finished: datetime


@pytest.fixture(scope="module")
def logs() -> Iterator[Logs]:
    ensure_packages("postgresql-15", "postgresql-15-pgaudit")
    with postgres_scratch("pgaudit") as root:
        yield from _run_statements(root)


def _run_statements(root: Path) -> Iterator[Logs]:
    cluster = Cluster(root, settings={
        "shared_preload_libraries": "'pgaudit'",
        "pgaudit.log": "'role,ddl'",
        "logging_collector": "on",
        "log_destination": "'stderr,csvlog,jsonlog'",
        "log_directory": "'log'",
        "log_line_prefix": f"'{PREFIX}'",
        "log_timezone": "'UTC'",
    })
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"create role {USER} login superuser")
            conn.execute(f"create database {DATABASE}")
        started = datetime.now(UTC)
        with psycopg.connect(cluster.dsn(DATABASE, USER), autocommit=True) as conn:
            for statement in STATEMENTS:
                if statement.application_name:
                    conn.execute(f"set application_name = '{statement.application_name}'")
                conn.execute(statement.sql)  # type: ignore[arg-type]
        finished = datetime.now(UTC)
    finally:
        cluster.stop()  # flushes the logging collector
    yield Logs(cluster.log_dir, started, finished)


def snapshot_and_load(tmp_path: Path, logs: Logs, fmt: str, pattern: str,
                      **extra: str) -> list[RawRow]:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    source = Source(name="pg-fin-01-audit", system="db_audit", connector="pgaudit_log",
                    values={"cluster": "pg-fin-01", "format": fmt,
                            "paths": [str(logs.folder / pattern)], **extra})
    pgaudit_log.snapshot(source, run)
    assert run.records, f"no {pattern} log file"
    rows: list[RawRow] = []
    # the log files, then the source's completeness statement (pgaudit_files)
    *log_records, statement = run.records
    assert statement.query_name == "completeness"
    for record in log_records:
        assert record.query_params["cluster"] == "pg-fin-01"
        stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
        items = list(pgaudit_log.load(record.query_params, stored))
        assert not [i for i in items if isinstance(i, Reject)]
        assert sum(getattr(i, "count", 1) for i in items) == record.result_row_count
        rows += [i for i in items if isinstance(i, RawRow)]
    return rows


def audit_fields(message: str) -> list[str]:
    assert message.startswith("AUDIT: ")
    return next(csv.reader([message[len("AUDIT: "):]]))


def check(logs: Logs, entries: list[dict[str, object]]) -> None:
    """Every statement comes out once, in order, with its user, time, class, command, text."""
    ours = [e for e in entries if e["user"] == USER]
    assert len(ours) == len(STATEMENTS)
    for entry, statement in zip(ours, STATEMENTS, strict=True):
        fields = audit_fields(str(entry["message"]))
        assert fields[0] == "SESSION"
        assert (fields[3], fields[4]) == (statement.audit_class, statement.command)
        assert fields[7] == statement.sql
        assert fields[8] == "<not logged>"
        assert entry["database"] == DATABASE
        logged = datetime.strptime(str(entry["time"]), "%Y-%m-%d %H:%M:%S.%f %Z").replace(
            tzinfo=UTC)
        slack = timedelta(seconds=1)
        assert logs.started - slack <= logged <= logs.finished + slack
        if statement.application_name:
            assert entry["application_name"] == statement.application_name
        else:  # unset: empty in csvlog, absent in jsonlog, `[unknown]` (→ null) in stderr
            assert entry["application_name"] is None


def test_csvlog(tmp_path: Path, logs: Logs) -> None:
    columns = RAW_TABLES["raw.pgaudit_csvlog"].payload
    rows = [dict(zip(columns, r.values, strict=True))
            for r in snapshot_and_load(tmp_path, logs, "csvlog", "*.csv")]
    check(logs, [{"user": r["user_name"], "database": r["database_name"],
                  "time": r["log_time"], "message": r["message"],
                  "application_name": r["application_name"]} for r in rows])
    audit = [r for r in rows if str(r["message"]).startswith("AUDIT: ")]
    assert audit and all(r["backend_type"] == "client backend" for r in audit)
    # the server lines LG-01 reads are loaded too (the postmaster's)
    assert {r["backend_type"] for r in rows if r not in audit} == {"postmaster", "startup"}


def test_jsonlog(tmp_path: Path, logs: Logs) -> None:
    docs = [r.values[0] for r in snapshot_and_load(tmp_path, logs, "jsonlog", "*.json")]
    check(logs, [{"user": d.get("user"), "database": d.get("dbname"), "time": d["timestamp"],
                  "message": d["message"], "application_name": d.get("application_name")}
                 for d in docs])


def test_stderr(tmp_path: Path, logs: Logs) -> None:
    columns = RAW_TABLES["raw.pgaudit_stderr"].payload
    rows = [dict(zip(columns, r.values, strict=True))
            for r in snapshot_and_load(tmp_path, logs, "stderr", "*.log", log_line_prefix=PREFIX)]
    check(logs, [{"user": r["user_name"], "database": r["database_name"],
                  "time": r["log_time"], "message": r["message"],
                  "application_name": r["application_name"]} for r in rows])
    assert all(r["session_id"] and r["process_id"] for r in rows
               if str(r["message"]).startswith("AUDIT: "))
    multi = next(r for r in rows if "CREATE TABLE" in str(r["message"]))
    assert "\n\t    id int," in str(multi["raw_entry"])  # raw entry keeps the tab


@pytest.mark.parametrize(("fmt", "pattern", "table", "time_expr", "user_expr"), [
    ("csvlog", "*.csv", "raw.pgaudit_csvlog", "log_time", "user_name"),
    ("jsonlog", "*.json", "raw.pgaudit_jsonlog", "doc ->> 'timestamp'", "doc ->> 'user'"),
    ("stderr", "*.log", "raw.pgaudit_stderr", "log_time", "user_name"),
])
def test_real_logs_copy_into_the_raw_tables(tmp_path: Path, logs: Logs, pg_database: Database,
                                            fmt: str, pattern: str, table: str,
                                            time_expr: str, user_expr: str) -> None:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    extra = {"log_line_prefix": PREFIX} if fmt == "stderr" else {}
    pgaudit_log.snapshot(Source(name="pg-fin-01-audit", system="db_audit",
                                connector="pgaudit_log",
                                values={"cluster": "pg-fin-01", "format": fmt,
                                        "paths": [str(logs.folder / pattern)], **extra}), run)
    with pg_database.connect() as conn:
        running(conn, run.run_id)
        for record in run.records[:-1]:  # the last: the completeness statement
            counts = copy_object(conn, run_id=run.run_id, evidence_id=record.id,
                                 params=record.query_params,
                                 path=run.store.fetch(record.raw_output_s3_key, tmp_path))
            assert counts.read == record.result_row_count
            assert counts.rejected == 0 and counts.loaded >= len(STATEMENTS)
        conn.commit()
        found = conn.execute(
            f"select count(*), min(({time_expr})::timestamptz), max(({time_expr})::timestamptz),"
            f" min(cluster), min(locator) from {table}"
            f" where run_id = %s and {user_expr} = %s", (run.run_id, USER)).fetchone()
    assert found is not None
    count, first, last, cluster, locator = found
    assert count == len(STATEMENTS) and cluster == "pg-fin-01"
    assert logs.started - timedelta(seconds=1) <= first <= last <= logs.finished + timedelta(
        seconds=1)
    assert re.fullmatch(r"postgresql-[\d_-]+\.(csv|json|log):\d+", locator)
