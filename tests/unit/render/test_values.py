"""How values appear in the CSVs and the text cells of the workbook."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from render.workbook import display, to_utc_naive


def test_booleans_are_yes_and_no() -> None:
    assert display(True) == "Yes"
    assert display(False) == "No"


def test_timestamps_are_shown_in_utc_without_zone() -> None:
    cet = timezone(timedelta(hours=2))
    value = datetime(2024, 7, 1, 12, 0, 0, tzinfo=cet)
    assert display(value) == "2024-07-01 10:00:00"
    assert to_utc_naive(value) == datetime(2024, 7, 1, 10, 0, 0)
    assert display(datetime(2024, 7, 1, 10, 0, 0, 5, tzinfo=UTC)) == "2024-07-01 10:00:00.000005"


def test_arrays_are_joined_and_json_is_canonical() -> None:
    assert display(["NOT_APPROVED", "NO_TICKET"]) == "NOT_APPROVED, NO_TICKET"
    assert display([]) == ""
    assert display({"b": 1, "a": [1, 2]}, "jsonb") == '{"a": [1, 2], "b": 1}'
    assert display(["x"], "jsonb") == '["x"]'


def test_other_values() -> None:
    assert display(None) == ""
    assert display(Decimal("0.9500")) == "0.95"
    assert display(Decimal("100")) == "100"
    assert display(date(2024, 9, 30)) == "2024-09-30"
    assert display(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert display(7) == "7"
