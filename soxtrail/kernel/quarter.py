"""Quarter labels (`2024Q3`) and their UTC bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from soxtrail.kernel.errors import ConfigError

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    """A calendar quarter; `start` inclusive, `end` exclusive, both UTC."""

    year: int
    number: int

    @classmethod
    def parse(cls, label: str) -> Quarter:
        """Parse `2024Q3`; raise ConfigError with the expected form otherwise."""
        match = _QUARTER.match(label.strip().upper()) if label else None
        if not match:
            raise ConfigError(
                f"invalid quarter {label!r}: expected YYYYQn with n in 1-4, e.g. 2024Q3"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def first_day(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end_day(self) -> date:
        """First day of the next quarter."""
        if self.number == 4:
            return date(self.year + 1, 1, 1)
        return date(self.year, 3 * self.number + 1, 1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), tzinfo=timezone.utc)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, datetime.min.time(), tzinfo=timezone.utc)

    def __str__(self) -> str:
        return self.label
