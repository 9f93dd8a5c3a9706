"""A real PostgreSQL 15 with `log_timezone = 'America/New_York'` names its log files, and writes
its log times, in that zone; pgaudit_log's `log_timezone` key makes the completeness statement
read them right: each file's `named_at` (UTC) is when it was opened, and a rotation after
the startup file follows it with no gap."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from extract.connectors import pgaudit_log
from extract.snapshot import SnapshotRun
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Source
from soxtrail.kernel.store import LocalStore
from tests.support.debian import Cluster, ensure_packages, postgres_scratch

pytestmark = pytest.mark.integration

ZONE = "America/New_York"


@dataclass
class Logs:
    folder: Path
    started: datetime


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logs]:
    ensure_packages("postgresql-15")
    with postgres_scratch("pgaudit-tz") as root:
        cluster = Cluster(root, settings={
            "logging_collector": "on",
            "log_destination": "'csvlog'",
            "log_directory": "'log'",
            "log_timezone": f"'{ZONE}'",
            "log_rotation_age": "'1min'",  # the default log_filename names the second
            "log_checkpoints": "on",
        })
        started = datetime.now(UTC).replace(microsecond=0)
        cluster.start()
        try:
            # the startup file, then a second one: a rotation asked for now (waiting for the
            # next whole minute would cost the suite up to a minute; the rotation schedule
            # itself is tested in tests/unit/extract/test_pgaudit_files_timezone.py)
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("checkpoint")
                time.sleep(1.1)  # the default log_filename names the second
                conn.execute("select pg_rotate_logfile()")
            cluster.wait_for(lambda: len(list(cluster.log_dir.glob("*.csv"))) >= 2,
                             timeout=30)
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("checkpoint")
        finally:
            cluster.stop()
        folder = tmp_path_factory.mktemp("tz-logs")
        for path in cluster.log_dir.glob("*.csv"):
            (folder / path.name).write_bytes(path.read_bytes())
        yield Logs(folder, started)


def _statement(tmp_path: Path, folder: Path, **extra: Any) -> dict[str, Any]:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    pgaudit_log.snapshot(Source(name="audit-tz", system="db_audit", connector="pgaudit_log",
                                values={"cluster": "pg-tz", "format": "csvlog",
                                        "paths": [str(folder / "*.csv")],
                                        "log_rotation_age": "1min", **extra}), run)
    record = run.records[-1]
    assert record.query_name == "completeness"
    doc: dict[str, Any] = json.loads(run.store.fetch(record.raw_output_s3_key,
                                                     tmp_path).read_text())
    return doc


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_server_names_its_files_and_log_times_in_its_log_timezone(logs: Logs) -> None:
    names = sorted(p.name for p in logs.folder.glob("*.csv"))
    named = datetime.strptime(names[0], "postgresql-%Y-%m-%d_%H%M%S.csv")
    opened = named.replace(tzinfo=ZoneInfo(ZONE)).astimezone(UTC)  # New York's clock
    assert timedelta(0) <= opened - logs.started < timedelta(minutes=2)
    first_line = (logs.folder / names[0]).read_text().splitlines()[0]
    assert first_line[24:27] in {"EDT", "EST"}  # `2024-11-03 01:30:00.100 EDT,...`


def test_the_statement_reads_the_names_and_records_in_log_timezone(
        tmp_path: Path, logs: Logs) -> None:
    doc = _statement(tmp_path, logs.folder, log_timezone=ZONE)
    assert doc["facts"]["log_timezone"] == ZONE
    files = doc["facts"]["files"]
    assert len(files) >= 2
    for item in files:
        named, first = _utc(item["named_at"]), _utc(item["first_record_at"])
        # a file is named when it is opened: its first record follows within the minute
        assert timedelta(0) <= first - named < timedelta(minutes=1), item
    startup, rotated = files[0], files[1]
    assert startup["starts_with_startup"]
    assert not rotated["starts_with_startup"]
    # the startup file and the rotation after it: one sequence, no file missing
    assert doc["facts"]["missing_files"] == []
    assert not [f for f in doc["findings"] if "between" in f["detail"]]


def test_without_the_key_the_same_files_read_as_utc_are_hours_off(
        tmp_path: Path, logs: Logs) -> None:
    doc = _statement(tmp_path, logs.folder)
    assert doc["facts"]["log_timezone"] == "UTC"
    (startup, *_) = doc["facts"]["files"]
    offset = logs.started - _utc(startup["named_at"])
    assert timedelta(hours=3, minutes=59) < offset < timedelta(hours=5, minutes=1)
    assert startup["first_record_at"] is None  # `... EDT` cannot be read as UTC
