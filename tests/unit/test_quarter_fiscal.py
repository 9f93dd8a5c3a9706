"""Fiscal quarters: the fiscal year's first month and the reporting time zone bound them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from extract.connectors.registry import SPECS
from render.workbook import load_layout
from render.workbook.layout import period
from soxtrail.kernel.config import load_config, parse_config, quarter_of
from soxtrail.kernel.errors import EXIT_USAGE, ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.pipeline.phases import quarter_vars
from tests.unit.render.test_layout import RUN, _available, _context

NEW_YORK = ZoneInfo("America/New_York")


def test_january_and_utc_are_todays_calendar_quarters() -> None:
    for year in (2023, 2024):
        for number in range(1, 5):
            q = Quarter.parse(f"{year}Q{number}")
            assert q == Quarter(year, number, 1, "UTC")
            assert q.first_day == date(year, 3 * number - 2, 1)
            assert q.start == datetime(year, 3 * number - 2, 1, tzinfo=UTC)
            assert q.start.tzinfo is UTC and q.end.tzinfo is UTC  # same objects as before
            assert q.start_utc == q.start and q.end_utc == q.end
    assert Quarter.parse("2024Q4").end == datetime(2025, 1, 1, tzinfo=UTC)


def test_a_fiscal_year_starting_in_february_makes_2024q3_august_to_october() -> None:
    q = Quarter.parse("2024Q3", fiscal_year_start_month=2)
    assert (q.first_day, q.end_day) == (date(2024, 8, 1), date(2024, 11, 1))
    assert (q.start, q.end) == (datetime(2024, 8, 1, tzinfo=UTC), datetime(2024, 11, 1, tzinfo=UTC))
    assert q.months == "August to October 2024"
    assert q.label == "2024Q3"
    # fiscal year N starts in calendar year N: FY2024 is February 2024 to January 2025
    assert Quarter.parse("2024Q1", fiscal_year_start_month=2).first_day == date(2024, 2, 1)
    assert Quarter.parse("2024Q4", fiscal_year_start_month=2).end_day == date(2025, 2, 1)


def test_a_fiscal_year_starting_in_november_wraps_into_the_next_calendar_year() -> None:
    bounds = [(q.first_day, q.end_day) for q in
              (Quarter.parse(f"2024Q{n}", fiscal_year_start_month=11) for n in range(1, 5))]
    assert bounds == [
        (date(2024, 11, 1), date(2025, 2, 1)),
        (date(2025, 2, 1), date(2025, 5, 1)),
        (date(2025, 5, 1), date(2025, 8, 1)),
        (date(2025, 8, 1), date(2025, 11, 1)),
    ]
    assert Quarter.parse("2024Q1", fiscal_year_start_month=11).months == \
        "November 2024 to January 2025"
    # consecutive quarters tile the time line: no gap, no overlap
    assert bounds[0][1] == Quarter.parse("2024Q2", fiscal_year_start_month=11).first_day
    assert Quarter.parse("2023Q4", fiscal_year_start_month=11).end_day == bounds[0][0]


def test_bounds_are_local_midnights_of_the_reporting_zone_across_daylight_saving() -> None:
    # 2024Q4 in New York: October (EDT, UTC-4) to the end of December (EST, UTC-5)
    q = Quarter.parse("2024Q4", timezone="America/New_York")
    assert q.start == datetime(2024, 10, 1, tzinfo=NEW_YORK)
    assert q.end == datetime(2025, 1, 1, tzinfo=NEW_YORK)
    assert q.start_utc == datetime(2024, 10, 1, 4, tzinfo=UTC)
    assert q.end_utc == datetime(2025, 1, 1, 5, tzinfo=UTC)
    # the quarter is 92 local days but 92 days and one hour long: the November fall-back
    assert q.end_utc - q.start_utc == timedelta(days=92, hours=1)
    spring = Quarter.parse("2024Q2", timezone="America/New_York")  # March DST is in Q1
    assert spring.start_utc == datetime(2024, 4, 1, 4, tzinfo=UTC)
    assert Quarter.parse("2024Q1", timezone="America/New_York").end_utc == spring.start_utc


def test_tokyo_quarters_start_the_evening_before_in_utc() -> None:
    q = Quarter.parse("2024Q3", fiscal_year_start_month=2, timezone="Asia/Tokyo")
    assert q.start_utc == datetime(2024, 7, 31, 15, tzinfo=UTC)
    assert q.end_utc == datetime(2024, 10, 31, 15, tzinfo=UTC)
    assert quarter_vars(q) == {
        "quarter": "2024Q3",
        "quarter_start": "2024-07-31T15:00:00+00:00",
        "quarter_end": "2024-10-31T15:00:00+00:00",
        "reporting_timezone": "Asia/Tokyo",
    }


def test_default_dbt_vars_are_unchanged() -> None:
    assert quarter_vars(Quarter.parse("2024Q3")) == {
        "quarter": "2024Q3", "quarter_start": "2024-07-01T00:00:00+00:00",
        "quarter_end": "2024-10-01T00:00:00+00:00", "reporting_timezone": "UTC"}


@pytest.mark.parametrize("month", [0, 13, -1, "2", 2.0, True, None])
def test_a_month_outside_1_to_12_is_a_config_error(month: object) -> None:
    with pytest.raises(ConfigError, match=r"fiscal_year_start_month: expected a month number "
                                          r"1-12") as info:
        Quarter.parse("2024Q3", fiscal_year_start_month=month)  # type: ignore[arg-type]
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("name", ["Mars/Olympus", "utc+1", "Europe/../etc/passwd", "",
                                  "UTC'; drop table x; --", 5])
def test_an_unknown_time_zone_is_a_config_error(name: object) -> None:
    with pytest.raises(ConfigError, match=r"^timezone: "):
        Quarter.parse("2024Q3", timezone=name)  # type: ignore[arg-type]


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soxtrail.yml"
    path.write_text("version: 1\n" + text, encoding="utf-8")
    return path


def test_the_config_defines_the_runs_quarter(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "fiscal_year_start_month: 2\n"
                                           "timezone: Asia/Tokyo\n"), specs=SPECS)
    q = config.quarter("2024q3")
    assert q == Quarter(2024, 3, 2, "Asia/Tokyo")
    # recorded as written, so a resumed or verified run derives the same quarter
    recorded = config.redacted()
    assert (recorded["fiscal_year_start_month"], recorded["timezone"]) == (2, "Asia/Tokyo")
    assert quarter_of(recorded, "2024Q3") == q
    again = parse_config(recorded, path=None, base_dir=tmp_path, specs=SPECS)
    assert again.quarter("2024Q3") == q
    # a config without the keys: calendar quarters in UTC, and nothing recorded for them
    plain = load_config(_config(tmp_path, ""), specs=SPECS)
    assert plain.quarter("2024Q3") == Quarter.parse("2024Q3")
    assert "timezone" not in plain.redacted()


@pytest.mark.parametrize(("text", "key"), [
    ("fiscal_year_start_month: 13\n", "fiscal_year_start_month"),
    ("fiscal_year_start_month: february\n", "fiscal_year_start_month"),
    ("timezone: Europe/Atlantis\n", "timezone"),
    ("timezone: [UTC]\n", "timezone"),
])
def test_a_bad_period_key_names_the_key_and_the_file(tmp_path: Path, text: str,
                                                     key: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, specs=SPECS)
    assert str(info.value).startswith(f"{path.resolve()}: {key}: ")


def test_the_workbooks_run_block_states_the_fiscal_year_and_the_time_zone() -> None:
    available = _available()
    run = {**RUN, "config": {"fiscal_year_start_month": 2, "timezone": "Asia/Tokyo"}}
    assert period(run) == {
        "quarter": "2024Q3",
        "days": "2024-08-01 to 2024-10-31 (August to October 2024)",
        "fiscal_year_start": "February (fiscal_year_start_month 2: fiscal year 2024 is "
                             "February 2024 to January 2025, named by the year it starts in)",
        "timezone": "Asia/Tokyo",
    }
    for template in ("default", "compact"):
        layout = load_layout(template, {**_context(available), "run": run}, available)
        values = {field.label: field.value for field in layout.run_fields}
        assert (values["Fiscal year starts in"] or "").startswith("February (")
        assert "Asia/Tokyo" in values.values()
    default = load_layout("default", _context(available), available)
    values = {field.label: field.value for field in default.run_fields}
    assert values["Quarter days"] == "2024-07-01 to 2024-09-30 (July to September 2024)"
    assert values["Reporting time zone"] == "UTC"


def test_cloudtrail_reads_the_utc_day_folders_covering_the_quarter_and_the_next_day() -> None:
    from types import SimpleNamespace

    from extract.connectors.aws_cloudtrail import _days

    calendar = _days(SimpleNamespace(quarter=Quarter.parse("2024Q3")))
    assert (calendar[0], calendar[-1], len(calendar)) == (date(2024, 7, 1), date(2024, 10, 1), 93)
    tokyo = _days(SimpleNamespace(quarter=Quarter.parse(
        "2024Q3", fiscal_year_start_month=2, timezone="Asia/Tokyo")))
    # 2024-08-01 00:00 JST is 2024-07-31 15:00 UTC; the last moment is 2024-10-31 14:59 UTC
    assert (tokyo[0], tokyo[-1]) == (date(2024, 7, 31), date(2024, 11, 1))
    new_york = _days(SimpleNamespace(quarter=Quarter.parse("2024Q3", timezone="America/New_York")))
    # the last moment is 2024-10-01 03:59 UTC
    assert (new_york[0], new_york[-1]) == (date(2024, 7, 1), date(2024, 10, 2))
