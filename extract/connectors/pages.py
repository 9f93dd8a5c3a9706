"""Shared helpers of the JSON page connectors (jira, servicenow, okta_system_log, aws_backup):
their config (`url`, `page_size`, quarter placeholders), the records of a captured page
(split with msgspec where it can vouch for the page, else through the json module) and
their counts; the completeness of a paged search (attempts, retry, the statement) and the
coverage of a source that forgets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any

from extract.connectors.formats import raw_json_items, raw_json_text
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Completeness, Finding, RawRow, Reject, Source, iter_file


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


# ---------------------------------------------------------------------------
# completeness of a paged search (docs/configuration.md, "Completeness")

MAX_LISTED_KEYS = 50  # keys named in a statement's facts, per list (sorted, the first ones)


def iso_z(moment: datetime) -> str:
    """`2024-07-01T00:00:00Z`: an instant in UTC to the second (a covered period's bound)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class HeldPage:
    """A fetched page kept on local disk until its attempt is chosen as the population."""

    name: str
    query_text: str
    params: dict[str, Any]
    path: Path


class Attempt:
    """One run of a paged search: its pages held on disk (not yet evidence), the keys of
    its items in page order, and the totals the server stated along the way."""

    def __init__(self, folder: Path, number: int) -> None:
        self.number = number
        self.folder = folder / f"attempt-{number}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pages: list[HeldPage] = []
        self.keys: list[str] = []
        self.claims: list[int] = []  # each page's (or count request's) total, in order
        self.facts: dict[str, Any] = {}
        self.other_problems: list[str] = []  # e.g. a related query (approvals) not whole

    def hold(self, name: str, query_text: str, params: dict[str, Any], body: bytes) -> None:
        """Keep one page's body exactly as received."""
        path = self.folder / f"{len(self.pages):05d}.json"
        path.write_bytes(body)
        self.pages.append(HeldPage(name, query_text, {**params, "attempt": self.number}, path))

    def claim(self, total: int | None) -> None:
        """Note a total the server stated (None: it stated none)."""
        if total is not None:
            self.claims.append(total)

    @property
    def claimed(self) -> int | None:
        """What the server said first (the search's total as it started)."""
        return self.claims[0] if self.claims else None

    @property
    def captured(self) -> int:
        return len(self.keys)

    def duplicates(self) -> list[str]:
        """Keys seen more than once across the attempt's pages, sorted."""
        seen: set[str] = set()
        twice: set[str] = set()
        for key in self.keys:
            if not key:
                continue
            if key in seen:
                twice.add(key)
            seen.add(key)
        return sorted(twice)

    def problems(self) -> list[str]:
        """Why this attempt is not a whole population (empty: it is)."""
        found = []
        if len(set(self.claims)) > 1:
            found.append("the total changed while paging (" +
                         " → ".join(str(c) for c in dict.fromkeys(self.claims)) + ")")
        if self.claimed is not None and self.claimed != self.captured:
            found.append(f"the server said {self.claimed}, {self.captured} were captured")
        twice = self.duplicates()
        if twice:
            found.append(f"{len(twice)} key(s) seen twice ({', '.join(twice[:5])}"
                         f"{', …' if len(twice) > 5 else ''})")
        return found + self.other_problems

    def summary(self) -> dict[str, Any]:
        """The attempt as the statement's facts show it."""
        return {"attempt": self.number, "pages": len(self.pages), "claimed": self.claimed,
                "totals_seen": list(dict.fromkeys(self.claims)), "captured": self.captured,
                "distinct": len(set(self.keys)),
                "duplicates": self.duplicates()[:MAX_LISTED_KEYS], **self.facts}

    def discard(self) -> None:
        """Delete the held pages (an attempt that is not the population)."""
        for page in self.pages:
            page.path.unlink(missing_ok=True)


def run_search(folder: Path, fetch: Callable[[Attempt], None],
               on_retry: Callable[[Attempt], None]) -> list[Attempt]:
    """Fetch the search once; when it is not whole, once more. The attempts made, the last
    one being the population (captured by the caller with `capture_held`)."""
    first = Attempt(folder, 1)
    fetch(first)
    if not first.problems():
        return [first]
    on_retry(first)
    second = Attempt(folder, 2)
    fetch(second)
    first.discard()
    return [first, second]


def capture_held(source: Source, ctx: Any, attempt: Attempt, *, raw_table: str,
                 count_rows: Callable[..., int],
                 counter: Callable[[], Any] | None = None) -> None:
    """Capture the attempt's pages as evidence (query name `<source>/<page name>`,
    params with `attempt`), in page order."""
    for page in attempt.pages:
        ctx.capture(source, query_name=f"{source.name}/{page.name}",
                    query_text=page.query_text, params=page.params, ext="json",
                    raw_table=raw_table, chunks=iter_file(page.path),
                    count_rows=partial(count_rows, page.params),
                    counter=counter() if counter else None)
        page.path.unlink(missing_ok=True)


def search_statement(attempts: list[Attempt], *, approximate: bool = False,
                     what: str = "the search") -> Completeness:
    """The completeness statement of a paged search from its attempts (the last one is
    the population): `server_total` / `approximate_total` against the captured items,
    COUNT_MISMATCH when the retry did not settle it; `no_total` (NO_TOTAL_AVAILABLE, not
    an exception) when the server stated no total."""
    final = attempts[-1]
    facts: dict[str, Any] = {"attempts": [a.summary() for a in attempts],
                             "population_attempt": final.number,
                             "retried": len(attempts) > 1}
    if len(attempts) > 1:
        before, after = set(attempts[0].keys), set(final.keys)
        facts["keys_only_in_first_attempt"] = sorted(before - after)[:MAX_LISTED_KEYS]
        facts["keys_only_in_retry"] = sorted(after - before)[:MAX_LISTED_KEYS]
    findings: list[Finding] = []
    claimed = final.claimed
    if claimed is None:
        findings.append(Finding("NO_TOTAL_AVAILABLE", f"{what} states no total: the "
                                f"{final.captured} items captured cannot be compared with "
                                "what the source holds", exception=False))
    problems = final.problems()
    if problems:
        said = "its approximate count" if approximate else "its total"
        retry = ("after one retry of the whole search" if len(attempts) > 1
                 else "on the only attempt")
        numbers = (f"{said} is {claimed}, {final.captured} items were captured"
                   if claimed is not None else f"{final.captured} items were captured")
        findings.append(Finding("COUNT_MISMATCH", f"{what} is not whole {retry}: {numbers}"
                                f" ({'; '.join(problems)})"))
    return Completeness(basis=("no_total" if claimed is None else
                               "approximate_total" if approximate else "server_total"),
                        captured=final.captured, claimed=claimed,
                        approximate=approximate and claimed is not None, findings=findings,
                        facts=facts)


def coverage(quarter: Quarter, *, taken_at: datetime, oldest: datetime | None,
             window_days: int, what: str) -> tuple[list[tuple[str, str]], list[Finding],
                                                   dict[str, Any]]:
    """The [from, to) part of the quarter a capture of a source that forgets covers, and a
    COVERAGE_GAP finding per stretch it does not: from the older of the oldest record it
    returned and `taken_at` minus the source's documented `window_days`, to `taken_at`,
    both bounded by the quarter."""
    start, end = quarter.start.astimezone(UTC), quarter.end.astimezone(UTC)
    reach = taken_at - timedelta(days=window_days)
    if oldest is not None and oldest < reach:
        reach = oldest
    begin = max(start, reach)
    if begin.microsecond:  # a bound to the second, never claiming more than was read
        begin = begin.replace(microsecond=0) + timedelta(seconds=1)
    finish = min(end, taken_at.replace(microsecond=0))
    facts = {"taken_at": iso_z(taken_at), "window_days": window_days,
             "oldest_returned": iso_z(oldest) if oldest is not None else None}
    if begin >= finish:
        return [], [Finding("COVERAGE_GAP", f"{what} captured at {iso_z(taken_at)} covers "
                            f"none of the quarter {iso_z(start)} to {iso_z(end)} (it keeps "
                            f"about {window_days} days)")], facts
    findings = []
    if begin > start:
        findings.append(Finding("COVERAGE_GAP", f"{iso_z(start)} to {iso_z(begin)}: not "
                                f"covered by the capture of {iso_z(taken_at)} ({what} keeps "
                                f"about {window_days} days)"))
    if finish < end:
        findings.append(Finding("COVERAGE_GAP", f"{iso_z(finish)} to {iso_z(end)}: after the "
                                f"capture of {iso_z(taken_at)}"))
    return [(iso_z(begin), iso_z(finish))], findings, facts


def server_time(headers: Mapping[str, str], fallback: datetime) -> datetime:
    """The server's clock from its `Date` header (what the source says), else `fallback`."""
    try:
        when = parsedate_to_datetime(headers.get("Date") or headers.get("date") or "")
    except (TypeError, ValueError, IndexError):
        return fallback
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def forgetful_statement(quarter: Quarter, *, keys: list[str], taken_at: datetime,
                        oldest: datetime | None, window_days: int,
                        what: str) -> Completeness:
    """The statement of a source with no total that forgets (Okta, AWS Backup): the items
    captured (NO_TOTAL_AVAILABLE, not an exception; a key seen twice is a COUNT_MISMATCH),
    and the part of the quarter the capture covers (COVERAGE_GAP for each stretch it does
    not)."""
    counts: dict[str, int] = {}
    for key in keys:
        if key:
            counts[key] = counts.get(key, 0) + 1
    twice = sorted(key for key, seen in counts.items() if seen > 1)
    findings = [Finding("NO_TOTAL_AVAILABLE", f"{what} states no total: the {len(keys)} "
                        "records captured cannot be compared with what it holds",
                        exception=False)]
    if twice:
        findings.append(Finding("COUNT_MISMATCH", f"{len(keys)} records captured but "
                                f"{len(counts)} distinct: {len(twice)} seen twice "
                                f"({', '.join(twice[:5])})"))
    covered, gaps, facts = coverage(quarter, taken_at=taken_at, oldest=oldest,
                                    window_days=window_days, what=what)
    facts["duplicates"] = twice[:MAX_LISTED_KEYS]
    return Completeness(basis="no_total", captured=len(keys), findings=findings + gaps,
                        covered=covered, facts=facts)
