"""Quarter labels (`2024Q3`) of a fiscal year, and their bounds in the reporting time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from soxtrail.kernel.errors import ConfigError

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
# an IANA zone name as zoneinfo looks it up (no path tricks, no quotes: it reaches SQL)
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")

# English month names whatever the locale (calendar.month_name follows LC_TIME)
MONTH_NAMES = ("", "January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
DEFAULT_FISCAL_YEAR_START_MONTH = 1
DEFAULT_TIMEZONE = "UTC"


def check_fiscal_year_start_month(value: Any) -> int:
    """A month number 1-12 (a whole number, not a bool); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise ConfigError(f"fiscal_year_start_month: expected a month number 1-12 "
                          f"(1 = January), got {value!r}")
    return value


def zone(name: Any) -> tzinfo:
    """The IANA time zone `name` (`UTC`, `Europe/Berlin`); ConfigError if unknown."""
    if not isinstance(name, str) or not _ZONE_NAME.match(name):
        raise ConfigError(f"timezone: expected an IANA time zone name such as UTC or "
                          f"Europe/Berlin, got {name!r}")
    if name == DEFAULT_TIMEZONE:
        return UTC  # the same tzinfo as before time zones were configurable
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"timezone: unknown IANA time zone {name!r}") from exc


@dataclass(frozen=True)
class Quarter:
    """Quarter `number` of fiscal year `year`; `start` inclusive, `end` exclusive.

    Fiscal year N starts on the first day of month `fiscal_year_start_month` of calendar
    year N (with 2, FY2024 runs February 2024 to January 2025 and 2024Q3 is August to
    October 2024). The bounds are local midnights in `timezone`; with the defaults (1, UTC)
    quarters are calendar quarters in UTC.
    """

    year: int
    number: int
    fiscal_year_start_month: int = DEFAULT_FISCAL_YEAR_START_MONTH
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        check_fiscal_year_start_month(self.fiscal_year_start_month)
        zone(self.timezone)

    @classmethod
    def parse(cls, label: str, *, fiscal_year_start_month: int = DEFAULT_FISCAL_YEAR_START_MONTH,
              timezone: str = DEFAULT_TIMEZONE) -> Quarter:
        """Parse `2024Q3`; raise ConfigError with the expected form otherwise."""
        match = _QUARTER.match(label.strip().upper()) if label else None
        if not match:
            raise ConfigError(
                f"invalid quarter {label!r}: expected YYYYQn with n in 1-4, e.g. 2024Q3"
            )
        return cls(int(match.group(1)), int(match.group(2)),
                   fiscal_year_start_month=fiscal_year_start_month, timezone=timezone)

    @classmethod
    def containing(cls, moment: datetime, *,
                   fiscal_year_start_month: int = DEFAULT_FISCAL_YEAR_START_MONTH,
                   timezone: str = DEFAULT_TIMEZONE) -> Quarter:
        """The fiscal quarter whose local days hold `moment` (aware)."""
        local = moment.astimezone(zone(timezone))
        months = local.year * 12 + local.month - 1 - (fiscal_year_start_month - 1)
        year, month_of_year = divmod(months, 12)
        return cls(year, month_of_year // 3 + 1, fiscal_year_start_month=fiscal_year_start_month,
                   timezone=timezone)

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def zone(self) -> tzinfo:
        """The reporting time zone: the quarter's days are its local days."""
        return zone(self.timezone)

    def _month(self, offset: int) -> date:
        """The first day of the month `offset` months after the fiscal year's first month."""
        months = self.year * 12 + self.fiscal_year_start_month - 1 + offset
        return date(months // 12, months % 12 + 1, 1)

    @property
    def first_day(self) -> date:
        return self._month(3 * (self.number - 1))

    @property
    def end_day(self) -> date:
        """First day of the next quarter."""
        return self._month(3 * self.number)

    @property
    def months(self) -> str:
        """The months, e.g. `August to October 2024`, `November 2024 to January 2025`."""
        first, last = self.first_day, self._month(3 * self.number - 1)
        head = MONTH_NAMES[first.month] + ("" if first.year == last.year
                                                   else f" {first.year}")
        return f"{head} to {MONTH_NAMES[last.month]} {last.year}"

    @property
    def start(self) -> datetime:
        """Local midnight of the first day (aware, in the reporting zone)."""
        return datetime.combine(self.first_day, time(), tzinfo=self.zone)

    @property
    def end(self) -> datetime:
        """Local midnight of the day after the last day (aware, in the reporting zone)."""
        return datetime.combine(self.end_day, time(), tzinfo=self.zone)

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)

    def __str__(self) -> str:
        return self.label
