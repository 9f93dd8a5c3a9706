"""How a value reads in the workbook's text cells and the CSVs: UTC, Yes/No, plain decimals."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any


def to_utc_naive(value: datetime) -> datetime:
    """An aware datetime in UTC without tzinfo (Excel has no time zones); naive ones unchanged."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def display(value: Any, udt: str = "") -> str:
    """The text of a value as the CSV (and, for text cells, the sheet) shows it."""
    if value is None:
        return ""
    if udt in ("json", "jsonb") or (isinstance(value, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        value = to_utc_naive(value)
        return value.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if value.microsecond else ""))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return ", ".join(display(v) for v in value)
    if isinstance(value, timedelta):
        return str(value)
    return str(value)
