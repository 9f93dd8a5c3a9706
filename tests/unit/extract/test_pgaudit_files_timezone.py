"""pgaudit_log's `log_timezone`: the server names its log files in its log_timezone, and the
completeness statement reads the names' times in that zone (extract/connectors/pgaudit_files.py,
extract/connectors/pgaudit_log.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from extract.connectors import pgaudit_log
from extract.connectors.pgaudit_files import FileEdges, LogFileFacts, file_edges, statement, to_utc
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Completeness, Source
from soxtrail.kernel.store import LocalStore

NEW_YORK = ZoneInfo("America/New_York")
NAME = "postgresql-%Y-%m-%d_%H%M%S.log"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
Q3_START, Q3_END = datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 10, 1, tzinfo=UTC)


def rotated(opened: datetime, until: datetime) -> LogFileFacts:
    """A csvlog file opened at `opened` (UTC), named in New York time as the server names
    it, with records from just after it was opened until just before `until`."""
    name = f"postgresql-{opened.astimezone(NEW_YORK):%Y-%m-%d_%H%M%S}.csv"
    edges = FileEdges(first_at=opened + timedelta(seconds=5),
                      last_at=until - timedelta(seconds=5))
    return LogFileFacts(f"logs/{name}", name, 10, edges)


def sequence(first: datetime, last: datetime, step: timedelta) -> list[LogFileFacts]:
    """Files opened every `step` (UTC) from `first` to `last`; a rotation whose name is
    taken (the repeated hour of a DST fold) reopens the file of that name."""
    files: dict[str, LogFileFacts] = {}
    moment = first
    while moment <= last:
        item = rotated(moment, moment + step)
        if item.file in files:
            files[item.file].edges.last_at = item.edges.last_at
        else:
            files[item.file] = item
        moment += step
    return list(files.values())


def ny_statement(files: list[LogFileFacts], *, age: timedelta, start: datetime,
                 end: datetime, zone: str = "America/New_York") -> Completeness:
    return statement(files, fmt="csvlog", log_filename=NAME, age=age, quarter_start=start,
                     quarter_end=end, log_timezone=zone)


def local_midnights(first: str, last: str) -> list[datetime]:
    """Each New York midnight from `first` to `last` (dates), in UTC."""
    day, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    out = []
    while day <= end:
        out.append(day.replace(tzinfo=NEW_YORK).astimezone(UTC))
        day += DAY
    return out


def daily_ny(first: str, last: str) -> list[LogFileFacts]:
    midnights = local_midnights(first, last)
    return [rotated(at, at + DAY) for at in midnights]


# ---------------------------------------------------------------------------
# Daily files named at New York midnight, the quarter in UTC
# ---------------------------------------------------------------------------


def test_daily_files_named_in_new_york_cover_the_quarter_and_name_their_utc_time() -> None:
    # the quarter starts at 2024-06-30 20:00 in New York: the file of June 30 covers it
    result = ny_statement(daily_ny("2024-06-30", "2024-09-30"), age=DAY, start=Q3_START,
                          end=Q3_END)
    assert result.findings == []
    facts = result.facts
    assert facts["log_timezone"] == "America/New_York"
    first = facts["files"][0]
    assert first["file"] == "postgresql-2024-06-30_000000.csv"
    assert first["named_at"] == "2024-06-30T04:00:00.000Z"  # aware UTC, not the local time


def test_the_file_open_at_the_quarters_start_missing_is_a_gap() -> None:
    # without June 30's file nothing covers 2024-07-01 00:00-04:00 UTC; read as UTC (or with
    # a day of slack) the names hid it
    result = ny_statement(daily_ny("2024-07-01", "2024-09-30"), age=DAY, start=Q3_START,
                          end=Q3_END)
    assert [f.code for f in result.findings] == ["LOG_GAP"]
    assert "quarter's start" in result.findings[0].detail


def test_the_last_day_missing_before_the_quarters_end_is_a_gap() -> None:
    # September 29's file covers until 2024-09-30 04:00 UTC: September 30's was due before
    # the quarter's end (2024-10-01 00:00 UTC)
    result = ny_statement(daily_ny("2024-06-30", "2024-09-29"), age=DAY, start=Q3_START,
                          end=Q3_END)
    assert [f.code for f in result.findings] == ["LOG_GAP"]
    detail = result.findings[0].detail
    assert "quarter's end" in detail and "2024-09-30T04:00:00.000Z" in detail


def test_the_same_names_read_in_utc_start_four_hours_late() -> None:
    # the source that does not say log_timezone reads these names as UTC: June 30's file
    # then starts at 00:00 UTC, four hours earlier than it did
    result = ny_statement(daily_ny("2024-06-30", "2024-09-30"), age=DAY, start=Q3_START,
                          end=Q3_END, zone="UTC")
    assert result.facts["files"][0]["named_at"] == "2024-06-30T00:00:00.000Z"
    assert result.facts["log_timezone"] == "UTC"


def test_a_daily_rotation_across_the_fall_back_night_names_the_hour_before_midnight() -> None:
    # the syslogger computes the rotation after 2024-11-03 00:00 EDT with the offset of that
    # moment: 24 hours later, 2024-11-03 23:00 EST; the next with EST's: 2024-11-04 00:00
    q4_start, q4_end = datetime(2024, 10, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    before = daily_ny("2024-09-30", "2024-11-03")
    after = daily_ny("2024-11-04", "2024-12-31")
    extra_at = datetime(2024, 11, 4, 4, tzinfo=UTC)
    extra = rotated(extra_at, extra_at + HOUR)
    assert extra.file == "postgresql-2024-11-03_230000.csv"
    whole = ny_statement([*before, extra, *after], age=DAY, start=q4_start, end=q4_end)
    assert whole.findings == []
    gap = ny_statement([*before, *after], age=DAY, start=q4_start, end=q4_end)
    assert [f.code for f in gap.findings] == ["LOG_GAP"]
    (missing,) = gap.facts["missing_files"]
    assert missing["file"] == "postgresql-2024-11-03_230000.csv"
    assert missing["rotation_at"] == "2024-11-04T04:00:00.000Z"


# ---------------------------------------------------------------------------
# Hourly files across DST changes
# ---------------------------------------------------------------------------


def test_hourly_files_across_the_spring_forward_skip_no_name_and_give_no_gap() -> None:
    # 2024-03-10: 01:00 EST is followed by 03:00 EDT, one hour later in UTC
    start, end = datetime(2024, 3, 9, 5, tzinfo=UTC), datetime(2024, 3, 12, 4, tzinfo=UTC)
    files = sequence(start, end, HOUR)
    names = [f.file for f in files]
    assert "postgresql-2024-03-10_020000.csv" not in names
    assert "postgresql-2024-03-10_030000.csv" in names
    result = ny_statement(files, age=HOUR, start=start, end=end)
    assert result.findings == []
    assert len(result.covered) == 1


def test_hourly_files_across_the_fall_back_share_the_repeated_hour_and_give_no_gap() -> None:
    # 2024-11-03: 01:00 EDT and 01:00 EST both name postgresql-2024-11-03_010000
    start, end = datetime(2024, 11, 2, 4, tzinfo=UTC), datetime(2024, 11, 5, 5, tzinfo=UTC)
    files = sequence(start, end, HOUR)
    result = ny_statement(files, age=HOUR, start=start, end=end)
    assert result.findings == []
    by_name = {f["file"]: f for f in result.facts["files"]}
    assert by_name["postgresql-2024-11-03_010000.csv"]["named_at"] == "2024-11-03T05:00:00.000Z"
    assert by_name["postgresql-2024-11-03_020000.csv"]["named_at"] == "2024-11-03T07:00:00.000Z"


@pytest.mark.parametrize(("first", "removed", "rotation_at"), [
    # the first file after the spring-forward
    (datetime(2024, 3, 9, 5, tzinfo=UTC), "postgresql-2024-03-10_030000.csv",
     "2024-03-10T07:00:00.000Z"),
    # the file after the repeated hour
    (datetime(2024, 11, 2, 4, tzinfo=UTC), "postgresql-2024-11-03_020000.csv",
     "2024-11-03T07:00:00.000Z"),
])
def test_a_file_removed_across_a_dst_change_is_a_gap_naming_it(
        first: datetime, removed: str, rotation_at: str) -> None:
    end = first + 3 * DAY
    files = [f for f in sequence(first, end, HOUR) if f.file != removed]
    result = ny_statement(files, age=HOUR, start=first, end=end)
    assert [f.code for f in result.findings] == ["LOG_GAP"]
    (missing,) = result.facts["missing_files"]
    assert (missing["file"], missing["rotation_at"]) == (removed, rotation_at)
    assert removed in result.findings[0].detail


def test_a_startup_file_named_in_the_repeated_hour_reads_the_occurrence_of_its_records() -> None:
    # a server started at 01:30 EST (06:30 UTC), the second 01:30 of the night
    opened = datetime(2024, 11, 3, 6, 30, tzinfo=UTC)
    item = rotated(opened, opened + HOUR)
    assert item.file == "postgresql-2024-11-03_013000.csv"
    result = ny_statement([item], age=HOUR, start=opened, end=opened + HOUR)
    assert result.facts["files"][0]["named_at"] == "2024-11-03T06:30:00.000Z"


# ---------------------------------------------------------------------------
# The source's key
# ---------------------------------------------------------------------------


def snapshot_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=LocalStore(tmp_path / "store"), spool_dir=tmp_path / "spool")


def csv_line(at: datetime, message: str) -> str:
    stamp = f"{at:%Y-%m-%d %H:%M:%S}.000 UTC"
    return (f'{stamp},,,100,,66e00355.64,1,,{stamp},,0,LOG,00000,"{message}"'
            ',,,,,,,,,,"checkpointer",,0\n')


def test_the_source_key_reaches_the_statement(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for at in local_midnights("2024-06-30", "2024-09-30"):
        name = f"postgresql-{at.astimezone(NEW_YORK):%Y-%m-%d_%H%M%S}.csv"
        (logs / name).write_text(csv_line(at + timedelta(seconds=5), "checkpoint starting")
                                 + csv_line(at + DAY - timedelta(seconds=5), "checkpoint"))
    results = {}
    for zone in ("America/New_York", None):
        run = snapshot_run(tmp_path / str(zone))
        values = {"cluster": "pg1", "format": "csvlog", "paths": [str(logs / "*.csv")]}
        if zone is not None:
            values["log_timezone"] = zone
        pgaudit_log.snapshot(Source(name="pg1", system="db_audit", connector="pgaudit_log",
                                    values=values), run)
        record = run.records[-1]
        assert record.query_name == "completeness"
        results[zone] = json.loads(run.store.fetch(record.raw_output_s3_key,
                                                   tmp_path / "fetched").read_text())
    exact = results["America/New_York"]
    assert exact["facts"]["log_timezone"] == "America/New_York"
    assert exact["facts"]["files"][0]["named_at"] == "2024-06-30T04:00:00.000Z"
    assert [f["code"] for f in exact["findings"]] == []
    # read as UTC the last file ends at 2024-10-01 00:00 and the first starts at June 30
    # 00:00: the same names, other times
    assert results[None]["facts"]["log_timezone"] == "UTC"
    assert results[None]["facts"]["files"][0]["named_at"] == "2024-06-30T00:00:00.000Z"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "EST5EDT/../x", "", 5])
def test_a_log_timezone_that_is_no_iana_zone_is_a_config_error(tmp_path: Path,
                                                                zone: object) -> None:
    (tmp_path / "postgresql-2024-07-01_000000.csv").write_text(
        csv_line(datetime(2024, 7, 1, 0, 0, 5, tzinfo=UTC), "checkpoint starting"))
    source = Source(name="audit-pg1", system="db_audit", connector="pgaudit_log",
                    values={"cluster": "pg1", "format": "csvlog",
                            "paths": [str(tmp_path / "*.csv")], "log_timezone": zone})
    run = snapshot_run(tmp_path)
    with pytest.raises(ConfigError, match=r"source audit-pg1: log_timezone .* not an IANA"):
        pgaudit_log.snapshot(source, run)
    assert run.records == []  # refused before anything was captured


# ---------------------------------------------------------------------------
# Log times written in log_timezone (`... EDT`)
# ---------------------------------------------------------------------------


def test_log_times_with_the_zones_abbreviation_become_utc_and_pick_the_fold() -> None:
    assert to_utc("2024-08-16 10:00:00.5 EDT", NEW_YORK) == datetime(
        2024, 8, 16, 14, 0, 0, 500000, tzinfo=UTC)
    # the repeated hour of 2024-11-03: EDT is the first 01:30, EST the second
    assert to_utc("2024-11-03 01:30:00 EDT", NEW_YORK) == datetime(2024, 11, 3, 5, 30,
                                                                   tzinfo=UTC)
    assert to_utc("2024-11-03 01:30:00 EST", NEW_YORK) == datetime(2024, 11, 3, 6, 30,
                                                                   tzinfo=UTC)
    assert to_utc("2024-08-16 10:00:00 CEST", NEW_YORK) is None  # not New York's
    assert to_utc("2024-08-16 10:00:00 EDT") is None  # no zone to read it in


def test_file_edges_read_log_times_written_in_the_servers_zone(tmp_path: Path) -> None:
    def line(at: str, message: str) -> str:
        return (f'{at},,,100,,66e00355.64,1,,{at},,0,LOG,00000,"{message}"'
                ',,,,,,,,,,"postmaster",,0\n')
    path = tmp_path / "postgresql-2024-11-03_013000.csv"
    path.write_text(
        line("2024-11-03 01:30:00.100 EST", "database system was shut down at "
             "2024-11-03 01:50:00 EDT")
        + line("2024-11-03 01:30:00.200 EST", "database system is ready to accept connections")
        + line("2024-11-03 02:10:00.000 EST", "database system is shut down"))
    edges = file_edges(path, "csvlog", None, NEW_YORK)
    assert edges.first_at == datetime(2024, 11, 3, 6, 30, 0, 100000, tzinfo=UTC)
    assert edges.shut_down_at == datetime(2024, 11, 3, 5, 50, tzinfo=UTC)
    assert edges.last_at == datetime(2024, 11, 3, 7, 10, tzinfo=UTC)
    assert edges.ends_with_shutdown and edges.starts_with_startup
    assert file_edges(path, "csvlog", None).first_at is None  # read without the zone
