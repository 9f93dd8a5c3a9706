"""Shared helpers of the JSON page connectors (jira, servicenow, okta_system_log, aws_backup):
their config (`url`, `page_size`, quarter placeholders), the records of a captured page
(split with msgspec where it can vouch for the page, else through the json module) and
their counts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from extract.connectors.formats import raw_json_items, raw_json_text
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source


def substitute_quarter(text: str, quarter: Quarter) -> str:
    """Replace `{quarter_start}` / `{quarter_end}` with ISO dates (the end is exclusive)."""
    return (text.replace("{quarter_start}", quarter.first_day.isoformat())
                .replace("{quarter_end}", quarter.end_day.isoformat()))


def page_size(source: Source, default: int, maximum: int) -> int:
    """The source's `page_size`, validated."""
    value = source.get("page_size", default)
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if not 1 <= size <= maximum:
        raise ConfigError(f"source {source.name!r}: page_size: expected 1..{maximum}, "
                          f"got {value!r}")
    return size


def base_url(source: Source) -> str:
    """The source's `url` without a trailing slash; only http(s)."""
    url = str(source.get("url") or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"source {source.name!r}: url: expected http(s)://host[/path], "
                          f"got {secrets.redact_url(url)!r}")
    return url


def json_records(
    path: Path,
    records: Callable[[Any], list[Any] | None],
    expected: str,
    wrap: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    *,
    key: str | None = None,
    top_array: bool = False,
) -> Iterator[RawRow | Reject]:
    """One RawRow(doc) per JSON object in a captured page; the page's problems as Rejects.

    `records(document)` returns the page's list of records, or None when the document is
    not the expected shape (`expected` names it in the reject reason). Locators are
    `<object>#<index>`; a document that cannot be read at all is one reject at `<object>`.

    When `records` is the list under `key` of the top object (or the top array, with
    `top_array`) and nothing is wrapped, the page is split with msgspec instead of being
    decoded: each object's own text is its doc where jsonb reads it as it would the
    decoded object (`raw_json_text`); any page msgspec cannot vouch for takes the json path.
    """
    name = path.name
    raw = path.read_bytes()
    items = (raw_json_items(raw, None if top_array else key)
             if wrap is None and (key is not None or top_array) else None)
    if items is not None:
        for index, item in enumerate(items):
            text = raw_json_text(item)
            if text is not None:
                yield RawRow(f"{name}#{index}", (text,))
                continue
            value = json.loads(bytes(item))  # valid JSON: msgspec has checked it
            if not isinstance(value, dict):
                yield Reject(f"{name}#{index}", "record is not a JSON object",
                             json.dumps(value, ensure_ascii=False))
            else:
                yield RawRow(f"{name}#{index}", (value,))
        return
    try:
        document = json.loads(raw)
    except ValueError as exc:
        yield Reject(name, f"not valid JSON: {exc}", raw.decode("utf-8", errors="replace"))
        return
    items = records(document)
    if items is None:
        yield Reject(name, f"not {expected}", raw.decode("utf-8", errors="replace"))
        return
    for index, item in enumerate(items):
        locator = f"{name}#{index}"
        if not isinstance(item, dict):
            yield Reject(locator, "record is not a JSON object",
                         json.dumps(item, ensure_ascii=False))
            continue
        yield RawRow(locator, (wrap(item) if wrap else item,))


def count_json_records(items: Iterator[RawRow | Reject]) -> int:
    """Rows read from one object (loaded + rejected): what `count_rows` reports."""
    return sum(1 for _ in items)


PAGE_COUNT_BYTES = 64 << 20  # a larger page is counted from its file by count_rows


class PageCounter:
    """A RowCounter for JSON pages: count_page's number from the bytes as they are
    captured (kept until the page ends, at most PAGE_COUNT_BYTES), or None when msgspec
    cannot vouch for the page or it is larger (the caller then runs count_rows)."""

    def __init__(self, *, key: str | None = None, top_array: bool = False) -> None:
        self.key = None if top_array else key
        self._chunks: list[bytes] | None = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._chunks is None:
            return
        self._size += len(chunk)
        if self._size > PAGE_COUNT_BYTES:
            self._chunks = None
        else:
            self._chunks.append(chunk)

    def total(self) -> int | None:
        if self._chunks is None:
            return None
        items = raw_json_items(b"".join(self._chunks), self.key)
        self._chunks = None
        return None if items is None else len(items)


def count_page(path: Path, records: Callable[[Any], list[Any] | None], expected: str, *,
               key: str | None = None, top_array: bool = False) -> int:
    """count_json_records(json_records(...)) of a page, from msgspec's split where it can:
    one row per item (a page msgspec cannot vouch for is counted by the json path)."""
    items = raw_json_items(path.read_bytes(), None if top_array else key)
    if items is not None:
        return len(items)
    return count_json_records(json_records(path, records, expected))


def iso_utc(moment: datetime) -> str:
    """`2024-07-01T00:00:00.000Z`: an instant in UTC with milliseconds (Okta's format)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"
