"""pgaudit_log's completeness statement: the rotation sequence of the file names and what the
files' first and last records say (extract/connectors/pgaudit_files.py)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from extract.connectors import pgaudit_files
from extract.connectors.pgaudit_files import FileEdges, LogFileFacts, file_edges, statement

Q_START = datetime(2024, 7, 1, tzinfo=UTC)
Q_END = datetime(2024, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def daily(day: datetime, name: str | None = None, **edges: object) -> LogFileFacts:
    first = edges.pop("first_at", day.replace(hour=0, minute=0, second=5))
    last = edges.pop("last_at", day.replace(hour=23, minute=59, second=50))
    return LogFileFacts(f"logs/{day:%Y-%m-%d}", name or f"postgresql-{day:%Y-%m-%d}_000000.csv",
                        10, FileEdges(first_at=first, last_at=last, **edges))  # type: ignore[arg-type]


def quarter_of_files(skip: set[int] | None = None) -> list[LogFileFacts]:
    days = [Q_START + DAY * i for i in range(92) if i not in (skip or set())]
    return [daily(day) for day in days]


def test_a_whole_daily_sequence_has_no_finding_and_one_covered_period() -> None:
    result = statement(quarter_of_files(), fmt="csvlog",
                       log_filename="postgresql-%Y-%m-%d_%H%M%S.log", age=DAY,
                       quarter_start=Q_START, quarter_end=Q_END)
    assert result.basis == "file_sequence" and result.captured == 92
    assert result.findings == []
    assert result.covered == [("2024-07-01T00:00:05.000Z", "2024-09-30T23:59:50.000Z")]


def test_a_missing_day_of_a_daily_sequence_is_a_log_gap_naming_the_file() -> None:
    result = statement(quarter_of_files(skip={45}), fmt="csvlog",
                       log_filename="postgresql-%Y-%m-%d_%H%M%S.log", age=DAY,
                       quarter_start=Q_START, quarter_end=Q_END)
    (finding,) = result.findings
    assert finding.code == "LOG_GAP" and finding.exception
    assert "postgresql-2024-08-15_000000.csv" in finding.detail
    assert [m["file"] for m in result.facts["missing_files"]] == [
        "postgresql-2024-08-15_000000.csv"]
    assert len(result.covered) == 2  # the stretch breaks at the hole


def test_a_hole_between_a_clean_shutdown_and_the_startup_from_it_is_a_down_period() -> None:
    files = quarter_of_files(skip={45, 46})
    before = next(f for f in files if f.file.startswith("postgresql-2024-08-14"))
    after = next(f for f in files if f.file.startswith("postgresql-2024-08-17"))
    stop = datetime(2024, 8, 14, 22, 0, tzinfo=UTC)
    before.edges.last_at, before.edges.ends_with_shutdown = stop, True
    after.edges.shut_down_at, after.edges.starts_with_startup = stop, True
    result = statement(files, fmt="csvlog", log_filename="postgresql-%Y-%m-%d_%H%M%S.log",
                       age=DAY, quarter_start=Q_START, quarter_end=Q_END)
    assert result.findings == []
    assert result.facts["down_periods"][0]["from"] == "2024-08-14T22:00:00.000Z"


def test_a_startup_that_names_a_later_shutdown_than_the_file_before_is_still_a_gap() -> None:
    files = quarter_of_files(skip={45})
    before = next(f for f in files if f.file.startswith("postgresql-2024-08-14"))
    after = next(f for f in files if f.file.startswith("postgresql-2024-08-16"))
    before.edges.ends_with_shutdown = True
    after.edges.shut_down_at = datetime(2024, 8, 15, 18, 0, tzinfo=UTC)  # ran on the 15th
    result = statement(files, fmt="csvlog", log_filename="postgresql-%Y-%m-%d_%H%M%S.log",
                       age=DAY, quarter_start=Q_START, quarter_end=Q_END)
    assert [f.code for f in result.findings] == ["LOG_GAP"]


def test_weekly_rotation_expects_a_file_a_week() -> None:
    weeks = [daily(Q_START + DAY * (7 * i)) for i in range(14)]
    ok = statement(weeks, fmt="csvlog", log_filename="postgresql-%Y-%m-%d_%H%M%S.log",
                   age=7 * DAY, quarter_start=Q_START, quarter_end=Q_END)
    assert ok.findings == []
    daily_age = statement(weeks, fmt="csvlog", log_filename="postgresql-%Y-%m-%d_%H%M%S.log",
                          age=DAY, quarter_start=Q_START, quarter_end=Q_END)
    assert {f.code for f in daily_age.findings} == {"LOG_GAP"}


def test_a_name_without_a_date_makes_no_sequence_knowable() -> None:
    files = [daily(Q_START + DAY * i, name=f"postgresql-{(Q_START + DAY * i):%a}.csv")
             for i in range(7)]
    result = statement(files, fmt="csvlog", log_filename="postgresql-%a.log", age=DAY,
                       quarter_start=Q_START, quarter_end=Q_END)
    assert [(f.code, f.exception) for f in result.findings] == [("UNVERIFIED", False)]


def test_the_quarter_before_the_first_file_is_a_gap() -> None:
    result = statement(quarter_of_files(skip=set(range(10))), fmt="csvlog",
                       log_filename="postgresql-%Y-%m-%d_%H%M%S.log", age=DAY,
                       quarter_start=Q_START, quarter_end=Q_END)
    assert [f.code for f in result.findings] == ["LOG_GAP"]
    assert "quarter's start" in result.findings[0].detail


@pytest.mark.parametrize("gz", [False, True])
def test_file_edges_read_the_first_and_last_records_and_the_startup_lines(
        tmp_path: Path, gz: bool) -> None:
    def line(at: str, message: str) -> str:
        return (f'{at} UTC,,,100,,66e00355.64,1,,{at} UTC,,0,LOG,00000,"{message}"'
                ',,,,,,,,,,"postmaster",,0\n')
    text = (line("2024-08-16 08:00:00.100", "starting PostgreSQL 15.8")
            + line("2024-08-16 08:00:00.200",
                   "database system was shut down at 2024-08-14 22:00:00 UTC")
            + line("2024-08-16 08:00:00.300", "database system is ready to accept connections")
            + "".join(line(f"2024-08-16 09:{m:02d}:00.000", "checkpoint starting: time")
                      for m in range(60)) * 30
            + line("2024-08-16 23:00:00.000", "database system is shut down"))
    path = tmp_path / "postgresql-2024-08-16_080000.csv"
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    assert len(data) > 2 * pgaudit_files.EDGE_BYTES
    edges = file_edges(path, "csvlog", None)
    assert edges.first_at == datetime(2024, 8, 16, 8, 0, 0, 100000, tzinfo=UTC)
    assert edges.last_at == datetime(2024, 8, 16, 23, tzinfo=UTC)
    assert edges.starts_with_startup and edges.ends_with_shutdown
    assert edges.shut_down_at == datetime(2024, 8, 14, 22, tzinfo=UTC)


def test_log_times_with_an_offset_become_utc_and_zone_names_other_than_utc_do_not() -> None:
    assert pgaudit_files.to_utc("2024-08-16 10:00:00.5 +02") == datetime(
        2024, 8, 16, 8, 0, 0, 500000, tzinfo=UTC)
    assert pgaudit_files.to_utc("2024-08-16 10:00:00 CEST") is None
    assert pgaudit_files.rotation_age("60min") == timedelta(hours=1)
    assert pgaudit_files.rotation_age("1440") == DAY
