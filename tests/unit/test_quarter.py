from __future__ import annotations

from datetime import datetime, timezone

import pytest

from soxtrail.kernel.errors import EXIT_USAGE, ConfigError
from soxtrail.kernel.quarter import Quarter


def test_quarter_bounds_are_utc_and_half_open() -> None:
    q = Quarter.parse("2024Q3")
    assert q.start == datetime(2024, 7, 1, tzinfo=timezone.utc)
    assert q.end == datetime(2024, 10, 1, tzinfo=timezone.utc)
    assert Quarter.parse("2024q4").end == datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("label", ["2024Q5", "2024Q0", "24Q3", "2024-Q3", "", "Q3"])
def test_a_bad_quarter_is_a_usage_error_naming_the_form(label: str) -> None:
    with pytest.raises(ConfigError) as info:
        Quarter.parse(label)
    assert "YYYYQn" in str(info.value)
    assert info.value.exit_code == EXIT_USAGE
