"""The demo's LG-01 plants (extract/demo/plan_logging.py) and their ground truth
(extract/demo/oracle_logging.py): the lines are in the logs as PostgreSQL writes them, the
missing files are missing, every cluster's catalog has its settings capture, and
expected.json's LG-01 exceptions are exactly the planted cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from extract import demo
from extract.demo.oracle_logging import logs_role_and_ddl
from soxtrail.kernel.quarter import Quarter

Q3 = Quarter.parse("2024Q3")


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "estate"
    demo.generate(out, Q3)
    return out


@pytest.fixture(scope="module")
def expected(estate: Path) -> dict[str, Any]:
    return json.loads((estate / "expected.json").read_text())


def _text(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()))


def test_lg01_exceptions_are_exactly_the_planted_cases(expected: dict[str, Any]) -> None:
    got = {"|".join(i["key"]): i["reasons"] for i in expected["controls"]["LG-01"]
           if i["result"] == "EXCEPTION"}
    assert got == {
        "pg-fin-01|2024-08-06": ["AUDIT_DISABLED"],  # off from 21:40 ...
        "pg-fin-01|2024-08-07": ["AUDIT_DISABLED"],  # ... across midnight until 08:15
        "pg-hr-01|2024-09-18": ["NO_LOG_EVIDENCE"],  # a backup completed while "down"
        "pg-pay-01|2024-07-01": ["SETTINGS_UNKNOWN"],  # before the first change line
        "pg-pay-01|2024-07-02": ["SETTINGS_UNKNOWN"],
        "pg-pay-02|2024-08-21": ["LOG_GAP", "NO_LOG_EVIDENCE"],  # the day's file is missing
        "pg-pay-02|2024-09-04": ["LOG_GAP", "NO_LOG_EVIDENCE"],
    }
    # the clean down period of 11 September is not an exception
    days = {"|".join(i["key"]): i["result"] for i in expected["controls"]["LG-01"]}
    assert days["pg-hr-01|2024-09-11"] == "PASS"
    assert len(days) == 8 * 92
    assert expected["completeness"]["audit-pg-pay-02"] == ["LOG_GAP"]


def test_the_server_lines_are_written_as_postgresql_writes_them(estate: Path) -> None:
    fin = _text(estate / "logs" / "pg-fin-01")
    assert '"parameter ""pgaudit.log"" changed to ""none"""' in fin  # csvlog quoting
    assert fin.count('"parameter ""pgaudit.log"" changed to ""ddl, role"""') == 2
    assert fin.count("received SIGHUP, reloading configuration files") == 3
    hr = _text(estate / "logs" / "pg-hr-01")
    assert hr.count('"database system is shut down"') == 2
    assert '"database system was shut down at 2024-09-11 02:30:00 UTC"' in hr
    assert hr.count('"database system is ready to accept connections"') == 2


def test_no_session_runs_while_the_server_is_down(estate: Path) -> None:
    with (estate / "logs" / "pg-hr-01" / "postgresql-2024-09-09_000000.csv").open(
            encoding="utf-8", newline="") as handle:
        times = [row[0] for row in csv.reader(handle)
                 if len(row) > 23 and row[23] == "client backend"]
    assert times and not [t for t in times if "2024-09-11 02:30" <= t < "2024-09-11 05:10"]


def test_the_daily_rotated_cluster_misses_exactly_the_planted_days(estate: Path) -> None:
    names = sorted(p.name for p in (estate / "logs" / "pg-pay-02").iterdir())
    assert len(names) == 92 - 2
    assert "postgresql-2024-08-21_000000.csv" not in names
    assert "postgresql-2024-09-04_000000.csv" not in names
    assert "log_rotation_age: 1d" in (estate / "soxtrail.yml").read_text()


def test_every_catalog_has_a_settings_capture(estate: Path) -> None:
    for folder in sorted((estate / "catalog").iterdir()):
        with (folder / "settings.csv").open(encoding="utf-8", newline="") as handle:
            rows = {row["name"]: row for row in csv.DictReader(handle)}
        assert rows["pgaudit.log"]["setting"] == "ddl, role"
        assert rows["shared_preload_libraries"]["setting"] == "pgaudit"
        assert len({row["captured_at"] for row in rows.values()}) == 1


@pytest.mark.parametrize(("value", "logs"), [
    ("ddl, role", True), ("ROLE,DDL", True), ("all", True), ("all, -misc", True),
    ("all, -ddl", False), ("ddl", False), ("role, write", False), ("none", False),
    ("", False), (None, False),
])
def test_the_oracle_reads_pgaudit_log_classes(value: str | None, logs: bool) -> None:
    assert logs_role_and_ddl(value) is logs
