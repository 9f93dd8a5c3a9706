"""The server lines LG-01 reads, written by a real PostgreSQL 15 with pgaudit in csvlog,
jsonlog and stderr: startup, clean shutdown, a configuration reload that turns pgaudit.log
to none (ALTER SYSTEM + pg_reload_conf), each loaded with its fields; the settings query
returns the live values with the server's now(); the completeness statement sees the
restart in the files' edges."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from extract.connectors import pgaudit_files, pgaudit_log, postgres_catalog
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

PREFIX = "%m [%p] %q%u@%d "
# the server lines of the cluster's life: the first start (after initdb's own shutdown), the
# reload to none, a clean stop, the next start, the final stop
EXPECTED = [
    "database system was shut down at ",
    "database system is ready to accept connections",
    "received SIGHUP, reloading configuration files",
    'parameter "pgaudit.log" changed to "none"',
    "received fast shutdown request",
    "database system is shut down",
    "database system was shut down at ",
    "database system is ready to accept connections",
    "received fast shutdown request",
    "database system is shut down",
]


@dataclass
class Estate:
    """The finished cluster's logs and what the live settings query returned."""

    folder: Path
    started: datetime
    finished: datetime
    settings: dict[str, tuple[str | None, ...]]
    settings_captured_at: str


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    ensure_packages("postgresql-15", "postgresql-15-pgaudit")
    with postgres_scratch("pgaudit-server") as root:
        cluster = Cluster(root, settings={
            "shared_preload_libraries": "'pgaudit'",
            "pgaudit.log": "'role,ddl'",
            "logging_collector": "on",
            "log_destination": "'stderr,csvlog,jsonlog'",
            "log_directory": "'log'",
            "log_line_prefix": f"'{PREFIX}'",
            "log_timezone": "'UTC'",
        })
        started = datetime.now(UTC) - timedelta(seconds=1)
        cluster.start()
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("alter system set pgaudit.log = 'none'")
                conn.execute("select pg_reload_conf()")
            cluster.wait_for(lambda: _logged(cluster.log_dir, 'changed to \\"none\\"'))
            settings, captured_at = _settings(tmp_path_factory.mktemp("settings"),
                                              cluster.dsn())
            cluster.stop()
            time.sleep(1.1)  # the next log file is named by the next start's second
            cluster.run([str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l",
                         str(root / "server.log"), "-w", "-t", "60", "start"])
            cluster.wait_for(lambda: _logged(cluster.log_dir, "was shut down at"))
        finally:
            cluster.stop()
        yield Estate(cluster.log_dir, started, datetime.now(UTC) + timedelta(seconds=1),
                     settings, captured_at)


def _logged(folder: Path, text: str) -> bool:
    return any(text in path.read_text(errors="replace") for path in folder.glob("*.json"))


def _settings(tmp_path: Path, dsn: str) -> tuple[dict[str, tuple[str | None, ...]], str]:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    postgres_catalog.snapshot(Source(name="fin-catalog", system="db_catalog",
                                     connector="postgres_catalog",
                                     values={"cluster": "pg-fin-01", "dsn": dsn}), run)
    (record,) = [r for r in run.records
                 if r.query_params["raw_table"] == "raw.catalog_settings"]
    assert record.query_params["query_file"] == "extract/connectors/queries/catalog_settings.sql"
    items = list(postgres_catalog.load(record.query_params,
                                       run.store.fetch(record.raw_output_s3_key, tmp_path)))
    assert all(isinstance(i, RawRow) for i in items) and len(items) == record.result_row_count
    columns = RAW_TABLES["raw.catalog_settings"].payload
    rows = {str(i.values[1]): i.values for i in items}  # type: ignore[union-attr]
    assert {str(v[0]) for v in rows.values()} == {items[0].values[0]}  # type: ignore[union-attr]
    assert columns[0] == "captured_at"
    return rows, str(items[0].values[0])  # type: ignore[union-attr]


def test_the_settings_query_returns_the_live_values_with_the_servers_now(
        estate: Estate) -> None:
    rows = estate.settings
    assert set(rows) == {"shared_preload_libraries", "pgaudit.log", "pgaudit.log_relation",
                         "pgaudit.log_parameter", "pgaudit.log_level", "log_destination",
                         "logging_collector", "log_line_prefix", "log_filename",
                         "log_rotation_age", "log_timezone", "log_min_messages"}
    # name, setting, unit, source, pending_restart after captured_at
    assert rows["pgaudit.log"][2:] == ("none", None, "configuration file", "f")
    assert rows["shared_preload_libraries"][2] == "pgaudit"
    assert rows["log_destination"][2] == "stderr,csvlog,jsonlog"
    assert rows["log_rotation_age"][2:4] == ("1440", "min")
    assert rows["log_line_prefix"][2] == PREFIX
    captured = datetime.fromisoformat(estate.settings_captured_at)
    assert captured.utcoffset() == timedelta(0)  # the session runs in UTC
    assert estate.started <= captured <= estate.finished


def _snapshot(tmp_path: Path, estate: Estate, fmt: str, pattern: str,
              **extra: str) -> SnapshotRun:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    pgaudit_log.snapshot(Source(name="pg-fin-01-audit", system="db_audit",
                                connector="pgaudit_log",
                                values={"cluster": "pg-fin-01", "format": fmt,
                                        "paths": [str(estate.folder / pattern)], **extra}),
                         run)
    return run


def _server_rows(tmp_path: Path, run: SnapshotRun) -> list[RawRow]:
    rows: list[RawRow] = []
    for record in run.records[:-1]:
        items = list(pgaudit_log.load(record.query_params,
                                      run.store.fetch(record.raw_output_s3_key, tmp_path)))
        assert not [i for i in items if isinstance(i, Reject)]
        assert sum(getattr(i, "count", 1) for i in items) == record.result_row_count
        rows += [i for i in items if isinstance(i, RawRow)]
    return rows


def _check(estate: Estate, events: list[dict[str, str | None]]) -> None:
    """The server lines, in order, with a time of the cluster's life, LOG, a process id."""
    messages = [str(e["message"]) for e in events]
    picked = [m for m in messages if any(m.startswith(x) for x in EXPECTED)]
    assert len(picked) == len(EXPECTED), messages
    for message, expected in zip(picked, EXPECTED, strict=True):
        assert message.startswith(expected)
    for event in events:
        if not any(str(event["message"]).startswith(x) for x in EXPECTED):
            continue
        logged = pgaudit_files.to_utc(event["log_time"])
        assert logged is not None and estate.started <= logged <= estate.finished
        assert event["error_severity"] == "LOG"
        assert event["process_id"] and str(event["process_id"]).isdigit()
    # the second start names the first stop's time
    shut = [m for m in messages if m.startswith("database system was shut down at ")][1]
    stopped = next(e for e in events if e["message"] == "database system is shut down")
    named = pgaudit_files.to_utc(shut.removeprefix("database system was shut down at "))
    stopped_at = pgaudit_files.to_utc(stopped["log_time"])
    assert named is not None and stopped_at is not None
    assert abs(named - stopped_at) < timedelta(seconds=2)


def test_csvlog_server_events(tmp_path: Path, estate: Estate) -> None:
    columns = RAW_TABLES["raw.pgaudit_csvlog"].payload
    rows = [dict(zip(columns, r.values, strict=True))
            for r in _server_rows(tmp_path, _snapshot(tmp_path, estate, "csvlog", "*.csv"))]
    _check(estate, rows)  # type: ignore[arg-type]
    reload = next(r for r in rows if str(r["message"]).startswith('parameter "pgaudit.log"'))
    assert reload["backend_type"] == "postmaster"


def test_jsonlog_server_events(tmp_path: Path, estate: Estate) -> None:
    docs = [r.values[0] for r in _server_rows(tmp_path, _snapshot(tmp_path, estate, "jsonlog",
                                                                   "*.json"))]
    _check(estate, [{"message": d["message"], "log_time": d["timestamp"],
                     "error_severity": d["error_severity"], "process_id": str(d["pid"])}
                    for d in docs])


def test_stderr_server_events(tmp_path: Path, estate: Estate) -> None:
    columns = RAW_TABLES["raw.pgaudit_stderr"].payload
    rows = [dict(zip(columns, r.values, strict=True))
            for r in _server_rows(tmp_path, _snapshot(tmp_path, estate, "stderr", "*.log",
                                                      log_line_prefix=PREFIX))]
    _check(estate, rows)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "pattern", "table", "message"), [
    ("csvlog", "*.csv", "raw.pgaudit_csvlog", "message"),
    ("jsonlog", "*.json", "raw.pgaudit_jsonlog", "doc ->> 'message'"),
    ("stderr", "*.log", "raw.pgaudit_stderr", "message"),
])
def test_server_events_copy_into_the_raw_table_and_the_statement_sees_the_restart(
        tmp_path: Path, estate: Estate, pg_database: Database, fmt: str, pattern: str,
        table: str, message: str) -> None:
    extra = {"log_line_prefix": PREFIX} if fmt == "stderr" else {}
    run = _snapshot(tmp_path, estate, fmt, pattern, **extra)
    *logs, statement_record = run.records
    assert len(logs) == 2  # one file per start of the server (named by the start time)
    with pg_database.connect() as conn:
        running(conn, run.run_id)
        for record in logs:
            counts = copy_object(conn, run_id=run.run_id, evidence_id=record.id,
                                 params=record.query_params,
                                 path=run.store.fetch(record.raw_output_s3_key, tmp_path))
            assert counts.read == counts.loaded + counts.skipped + counts.rejected
            assert counts.rejected == 0
        conn.commit()
        found = [row[0] for row in conn.execute(
            f"select {message} from {table} where run_id = %s and {message} not like 'AUDIT: %%'"
            " order by evidence_id, locator", (run.run_id,))]
    assert 'parameter "pgaudit.log" changed to "none"' in found
    assert sum(m == "database system is ready to accept connections" for m in found) == 2
    doc = json.loads(run.store.fetch(statement_record.raw_output_s3_key, tmp_path).read_text())
    assert doc["basis"] == "file_sequence"
    # the restart leaves no hole in the sequence (the two files are minutes apart); the
    # quarter 2024Q3 itself has no file at all: its edges are gaps
    assert doc["facts"]["missing_files"] == [] and doc["facts"]["down_periods"] == []
    assert {f["code"] for f in doc["findings"]} == {"LOG_GAP"}
    assert all("quarter's" in f["detail"] for f in doc["findings"])
    first, second = doc["facts"]["files"]
    assert first["starts_with_startup"] and first["ends_with_shutdown"]
    assert second["starts_with_startup"] and second["ends_with_shutdown"]  # the final stop
    said = datetime.fromisoformat(second["startup_says_shut_down_at"].replace("Z", "+00:00"))
    last = datetime.fromisoformat(first["last_record_at"].replace("Z", "+00:00"))
    assert abs(said - last) < timedelta(seconds=2)
