"""Connector `jira`: issues from Jira's REST search (v2 startAt paging, v3 nextPageToken paging).

Config (`sources:` entry, system `tickets`)::

    connector: jira
    url: https://jira.example.com          # or `path:` a glob of saved search responses
    jql: project = DBA AND updated >= "{quarter_start}" AND created < "{quarter_end}"
    auth: {type: basic, user: svc-sox@example.com, token: "${JIRA_TOKEN}"}   # or type: bearer
    api: v2                                  # v2: /rest/api/2/search, v3: /rest/api/3/search/jql
    page_size: 100
    fields: {approver: fields.customfield_10401.name, approved_at: changelog, ...}
    types: {access: [Access Request], change: [Change]}
    approved_statuses: [Approved, Done]
    timezone: Europe/Berlin                  # optional
    retry: {attempts: 6, budget_seconds: 300}   # optional, see extract.connectors.http.RetryPolicy

`{quarter_start}` / `{quarter_end}` become the run quarter's first day and the first
day of the next quarter (ISO dates; the end is exclusive).

Snapshot: one capture per page (the response body exactly as received, `.json`),
raw table `raw.tickets`; `query_text` is the GET with its query string, params are
`api`, `jql`, `page`, `attempt`, `request` (`{method, url, query}`: the query string as
sent, `jql`, `fields`, `expand`, `startAt`/`nextPageToken`, `maxResults`) (+ `start_at`
for v2; v3's first page: `approximate_count` and the `count_request` POSTed). The
request's `fields` are the Jira
fields named by the field map (plus the standard ones); `approved_at: changelog`
adds `expand=changelog`. Note that Jira may cut an issue's embedded changelog at
100 histories: such issues are logged as a warning.

The `path` form reads saved search-response pages (v2 or v3 shape) and captures
each file as-is: the demo estate and air-gapped exports use it. Params `file` and
`saved_page`: what the page itself records of its search (`startAt`, `maxResults`,
`total`, `isLast`, `nextPageToken`, `expand`, the field ids of `names`, its issue count;
a search response records no JQL).

Completeness (one `completeness` object per snapshot, docs/configuration.md): a live
search is fetched whole into a local folder first (one attempt); its total (v2: the
pages' `total`; v3: `POST /rest/api/3/search/approximate-count`, approximate) is
compared with the issues fetched and their keys (none twice, the total unchanged while
paging). When that fails the whole search runs once more; the last attempt's pages are
captured (params `attempt`), the first one's are only summarised in the statement, and
a retry that still disagrees is `COUNT_MISMATCH`. Saved pages: their `startAt`/`total`
sequence must be whole (`MISSING_PAGE` names each stretch of positions no file holds).

Load: one row per issue, `doc` = the issue object as received, locator
`<object>#<index>`.
"""

from __future__ import annotations

import glob as globbing
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from extract.connectors import completeness, http, pages
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    DOC_TABLE,
    Completeness,
    ConnectorSpec,
    Finding,
    LoadItem,
    SnapshotContext,
    Source,
    iter_file,
)

log = logging.getLogger("soxtrail.extract.jira")

RAW_TABLE = "raw.tickets"
TICKET_FIELDS = (
    "ticket_key", "ticket_type", "status", "requester", "approver", "approved_at",
    "subject_user", "cluster", "role", "window_start", "window_end",
)
TICKET_TYPES = ("access", "change")
# always requested: what an auditor expects to see on every captured issue
STANDARD_JIRA_FIELDS = ("summary", "status", "issuetype", "reporter", "assignee", "created",
                        "updated", "resolutiondate")
APIS = {"v2": "/rest/api/2/search", "v3": "/rest/api/3/search/jql"}
APPROXIMATE_COUNT = "/rest/api/3/search/approximate-count"
MAX_PAGES = 100_000

SPEC = ConnectorSpec(
    name="jira",
    systems=frozenset({"tickets"}),
    optional=frozenset({"url", "jql", "path", "auth", "api", "page_size", "fields", "types",
                        "approved_statuses", "timezone", "retry"}),
    secret=frozenset({"auth"}),
    one_of=(frozenset({"url", "jql"}), frozenset({"path"})),
    raw_tables={"raw.tickets": DOC_TABLE},
    # where an issue holds each field unless `fields:` says otherwise (paths from the issue)
    ticket_fields={
        "ticket_key": "key",
        "ticket_type": "fields.issuetype.name",
        "status": "fields.status.name",
        "requester": "fields.reporter.name",
    },
)


# ---------------------------------------------------------------------------
# settings shared with the servicenow connector


def field_map(source: Source, defaults: Mapping[str, str]) -> dict[str, str]:
    """The normalised field → dotted path map: `defaults` overlaid by the source's `fields`."""
    given = source.get("fields") or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"source {source.name!r}: fields: expected a mapping of "
                          f"normalised field → dotted path ({', '.join(TICKET_FIELDS)})")
    result = dict(defaults)
    for key, value in given.items():
        if key not in TICKET_FIELDS:
            raise ConfigError(f"source {source.name!r}: fields.{key}: unknown field "
                              f"(known: {', '.join(TICKET_FIELDS)})")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"source {source.name!r}: fields.{key}: expected a dotted path")
        result[key] = value.strip()
    return result


def type_map(source: Source, defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """Ticket type as spelled by the source → `access` | `change`."""
    given = source.get("types")
    if given is None:
        return dict(defaults or {})
    if not isinstance(given, Mapping):
        raise ConfigError(f"source {source.name!r}: types: expected a mapping "
                          "access: [names], change: [names]")
    result: dict[str, str] = {}
    for kind, names in given.items():
        if kind not in TICKET_TYPES:
            raise ConfigError(f"source {source.name!r}: types.{kind}: expected access or change")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"source {source.name!r}: types.{kind}: expected a list of names")
        for name in names:
            if result.get(name, kind) != kind:
                raise ConfigError(f"source {source.name!r}: types: {name!r} is listed as "
                                  "both access and change")
            result[name] = kind
    return result


def timezone_name(source: Source, default: str | None) -> str | None:
    """The source's IANA `timezone` (validated), else `default`."""
    zone = source.get("timezone") or default
    if zone is None:
        return None
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"source {source.name!r}: timezone: unknown IANA zone {zone!r}") from exc
    return str(zone)


def ticket_settings(source: Source, *, default_fields: Mapping[str, str],
                    default_types: Mapping[str, str] | None = None,
                    default_timezone: str | None = None) -> list[tuple[str, str, str]]:
    """`raw.source_settings` rows of a ticket source: fields, types, approved statuses, zone."""
    rows = [("field", name, path) for name, path in field_map(source, default_fields).items()]
    rows += [("type", name, kind) for name, kind in type_map(source, default_types).items()]
    statuses = source.get("approved_statuses") or []
    if isinstance(statuses, str):
        statuses = [statuses]
    if not isinstance(statuses, list):
        raise ConfigError(f"source {source.name!r}: approved_statuses: expected a list")
    rows += [("approved_status", str(status), "true") for status in statuses]
    zone = timezone_name(source, default_timezone)
    if zone is not None:
        rows.append(("timezone", "", zone))
    return rows


def settings(source: Source) -> list[tuple[str, str, str]]:
    """Field map, ticket types, approved statuses and time zone for staging."""
    return ticket_settings(source, default_fields=SPEC.ticket_fields)


# ---------------------------------------------------------------------------
# snapshot


def requested_fields(fields: Mapping[str, str]) -> list[str]:
    """Jira fields to ask for: the standard ones plus every `fields.<name>` of the map."""
    wanted = list(STANDARD_JIRA_FIELDS)
    for path in fields.values():
        parts = path.split(".")
        if len(parts) >= 2 and parts[0] == "fields" and parts[1] not in wanted:
            wanted.append(parts[1])
    return wanted


def _issues(document: Any) -> list[Any] | None:
    if isinstance(document, dict) and isinstance(document.get("issues"), list):
        return document["issues"]
    return None


def _key(issue: Any) -> str:
    """An issue's key (its id when it has none): what a whole search holds once."""
    if isinstance(issue, dict):
        return str(issue.get("key") or issue.get("id") or "")
    return ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _warn_truncated_changelogs(source: Source, issues: list[Any]) -> None:
    for issue in issues:
        changelog = issue.get("changelog") if isinstance(issue, dict) else None
        if isinstance(changelog, dict):
            histories = changelog.get("histories") or []
            total = changelog.get("total")
            if isinstance(total, int) and total > len(histories):
                log.warning("source %r: issue %s: changelog holds %d of %d histories; "
                            "approved_at from the changelog may be missing",
                            source.name, issue.get("key"), len(histories), total)


def _snapshot_files(source: Source, ctx: SnapshotContext) -> None:
    pattern = str(source.path("path"))
    files = sorted(Path(p) for p in globbing.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise SourceError(f"source {source.name!r}: no file matches {pattern}")
    for index, file in enumerate(files):
        recorded = saved_page_record(file)
        params = {"api": "file", "path": str(file), "file": file.name, "page": index,
                  "saved_page": recorded}
        ctx.capture(source, query_name=f"{source.name}/jira-file-{index:05d}-{file.stem}",
                    query_text=saved_page_text(file, recorded), params=params, ext="json",
                    raw_table=RAW_TABLE, chunks=iter_file(file),
                    count_rows=partial(count_rows, params),
                    counter=pages.PageCounter(key="issues"))
    completeness.record(source, ctx, saved_pages_statement(files))


# what a saved search page records of the search that produced it (Jira's response keys)
SAVED_PAGE_KEYS = ("startAt", "maxResults", "total", "isLast", "nextPageToken", "expand")


def saved_page_record(file: Path) -> dict[str, Any]:
    """What a saved search page itself records of its query: its `startAt`, `maxResults`,
    `total`, `isLast`, `nextPageToken`, `expand` (those present), the field ids its `names`
    lists (with `expand=names`), its issue count; a response records no JQL."""
    try:
        document = json.loads(file.read_bytes())
    except (OSError, ValueError):
        document = None
    issues = _issues(document)
    if not isinstance(document, dict) or issues is None:
        return {"readable": False}
    record: dict[str, Any] = {key: document[key] for key in SAVED_PAGE_KEYS if key in document}
    names = document.get("names")
    if isinstance(names, dict):
        record["names"] = sorted(str(name) for name in names)
    record["issues"] = len(issues)
    return record


def saved_page_text(file: Path, recorded: Mapping[str, Any]) -> str:
    """The query_text of a saved page: the file read and what the page says of its search."""
    if not recorded.get("readable", True):
        return f"read saved Jira search page {file} (not a readable search page)"
    said = ", ".join(f"{key} {json.dumps(value)}" for key, value in recorded.items()
                     if key not in ("names", "issues"))
    return (f"read saved Jira search page {file} ({said or 'no paging keys'}; "
            f"{recorded['issues']} issues; the page records no JQL)")


def _positions(first: int, end: int) -> str:
    count = end - first
    where = f"position {first}" if count == 1 else f"positions {first}-{end - 1}"
    return f"search {where} ({count} issue{'s' if count > 1 else ''})"


def saved_pages_statement(files: list[Path]) -> Completeness:
    """The completeness of saved search pages, from the pages alone.

    v2 pages (each with `startAt` and `total`): sorted by `startAt`, each must start where
    the previous one ended and the last end at `total`; each stretch of positions no file
    holds is a MISSING_PAGE, a key in two pages or pages that disagree on the total a
    COUNT_MISMATCH. Pages without them (v3) state no total (NO_TOTAL_AVAILABLE): then one
    of them must say `isLast`. A file that is not a search page is a MISSING_PAGE.
    """
    findings: list[Finding] = []
    readable: list[tuple[str, int | None, int | None, int, Any]] = []
    keys: list[str] = []
    for file in files:
        try:
            document = json.loads(file.read_bytes())
        except ValueError:
            document = None
        issues = _issues(document)
        if issues is None:
            findings.append(Finding("MISSING_PAGE", f"{file.name} is not a readable Jira search "
                                    "page: the issues it held are not in the population"))
            continue
        keys.extend(_key(issue) for issue in issues)
        readable.append((file.name, _int(document.get("startAt")), _int(document.get("total")),
                         len(issues), document.get("isLast")))
    twice = sorted(key for key, seen in Counter(keys).items() if key and seen > 1)
    facts: dict[str, Any] = {"files": len(files), "readable_pages": len(readable)}
    if readable and all(start is not None and total is not None
                        for _, start, total, _, _ in readable):
        ordered = sorted(readable, key=lambda page: (page[1] or 0, page[0]))
        totals = list(dict.fromkeys(page[2] for page in ordered))
        claimed = totals[0] or 0
        if len(totals) > 1:
            findings.append(Finding("COUNT_MISMATCH", "the saved pages disagree on the search's "
                                    "total: " + ", ".join(f"{page[2]} in {page[0]}"
                                                          for page in ordered)))
        end, previous = 0, None
        for name, start, _, count, _ in ordered:
            assert start is not None
            if start > end:
                after = (f"{previous[0]} (startAt {previous[1]}) holds {previous[3]}"
                         if previous else "no page starts at 0")
                findings.append(Finding("MISSING_PAGE", f"{_positions(end, start)} in no saved "
                                        f"page: {after}, {name} starts at {start}"))
            end = max(end, start + count)
            previous = (name, start, None, count)
        if end < claimed and previous is not None:
            findings.append(Finding("MISSING_PAGE", f"{_positions(end, claimed)} in no saved "
                                    f"page: the pages hold positions up to {end - 1} of a total "
                                    f"of {claimed} (the last, {previous[0]}, starts at "
                                    f"{previous[1]} and holds {previous[3]})"))
        if twice:
            findings.append(Finding("COUNT_MISMATCH", f"{len(twice)} key(s) in more than one "
                                    f"saved page: {', '.join(twice[:5])}"))
        if not findings and claimed != len(keys):
            findings.append(Finding("COUNT_MISMATCH", f"the pages' total is {claimed}, "
                                    f"{len(keys)} issues were captured"))
        facts["duplicates"] = twice[:pages.MAX_LISTED_KEYS]
        return Completeness(basis="page_sequence", captured=len(keys), claimed=claimed,
                            findings=findings, facts=facts)
    findings.append(Finding("NO_TOTAL_AVAILABLE", "the saved pages state no total (v3 "
                            "pages): the issues captured cannot be compared with the "
                            "search's size", exception=False))
    if readable and not any(page[4] is True for page in readable):
        findings.append(Finding("MISSING_PAGE", "no saved page is the search's last "
                                "(`isLast: true`): the pages after the last one saved are "
                                "missing"))
    if twice:
        findings.append(Finding("COUNT_MISMATCH", f"{len(twice)} key(s) in more than one "
                                f"saved page: {', '.join(twice[:5])}"))
    facts["duplicates"] = twice[:pages.MAX_LISTED_KEYS]
    return Completeness(basis="no_total", captured=len(keys), findings=findings, facts=facts)


def snapshot(source: Source, ctx: SnapshotContext) -> None:
    """Capture every page of the JQL search (or every saved page of `path`)."""
    fields = field_map(source, SPEC.ticket_fields)
    settings(source)  # validate types / statuses / zone before touching the source
    if source.get("path") and not source.get("url"):
        _snapshot_files(source, ctx)
        return
    api = str(source.get("api", "v2"))
    if api not in APIS:
        raise ConfigError(f"source {source.name!r}: api: expected v2 or v3, got {api!r}")
    endpoint = pages.base_url(source) + APIS[api]
    jql = pages.substitute_quarter(str(source.get("jql") or ""), ctx.quarter)
    request: dict[str, Any] = {
        "jql": jql,
        "maxResults": pages.page_size(source, 100, 5000),
        "fields": ",".join(requested_fields(fields)),
    }
    if fields.get("approved_at") == "changelog":
        request["expand"] = "changelog"
    with http.HttpClient(source.name, auth=http.auth_from(source),
                         policy=http.RetryPolicy.from_source(source)) as client, \
            tempfile.TemporaryDirectory(prefix="soxtrail-jira-") as held:

        def fetch(attempt: pages.Attempt) -> None:
            if api == "v2":
                _search_v2(source, client, endpoint, request, jql, attempt)
            else:
                _search_v3(source, client, endpoint, request, jql, attempt)

        def retrying(first: pages.Attempt) -> None:
            log.warning("source %r: the search is not whole (%s); running it once more",
                        source.name, "; ".join(first.problems()))

        attempts = pages.run_search(Path(held), fetch, retrying)
        pages.capture_held(source, ctx, attempts[-1], raw_table=RAW_TABLE,
                           count_rows=count_rows,
                           counter=lambda: pages.PageCounter(key="issues"))
    completeness.record(source, ctx, pages.search_statement(
        attempts, approximate=api == "v3", what=f"the Jira {api} search"))


def _search_v2(source: Source, client: http.HttpClient, endpoint: str,
               request: dict[str, Any], jql: str, attempt: pages.Attempt) -> None:
    start_at = 0
    for page in range(MAX_PAGES):
        query = {"jql": request["jql"], "startAt": start_at, **{
            k: v for k, v in request.items() if k != "jql"}}
        response = client.get(endpoint, query)
        issues = _issues(response.data)
        if issues is None:
            raise SourceError(f"source {source.name!r}: {client.describe(endpoint, query)}: "
                              "response is not a Jira search result (no 'issues' list)")
        params = {"api": "v2", "jql": jql, "page": page, "start_at": start_at,
                  "request": client.sent(endpoint, query)}
        attempt.hold(f"jira-search-{page:05d}", client.describe(endpoint, query), params,
                     response.body)
        total = _int(response.data.get("total"))
        attempt.claim(total)
        attempt.keys.extend(_key(issue) for issue in issues)
        _warn_truncated_changelogs(source, issues)
        start_at += len(issues)
        if not issues or (total is not None and start_at >= total):
            return
    raise SourceError(f"source {source.name!r}: more than {MAX_PAGES} pages; stopping")


def _search_v3(source: Source, client: http.HttpClient, endpoint: str,
               request: dict[str, Any], jql: str, attempt: pages.Attempt) -> None:
    count_url = endpoint.removesuffix(APIS["v3"]) + APPROXIMATE_COUNT
    counted = client.post_json(count_url, {"jql": request["jql"]})
    count = _int(counted.data.get("count")) if isinstance(counted.data, dict) else None
    if count is None:
        raise SourceError(f"source {source.name!r}: POST {count_url}: response is not an "
                          "approximate count (no integer 'count')")
    attempt.claim(count)
    attempt.facts["count_request"] = f"POST {APPROXIMATE_COUNT}"
    attempt.facts["approximate_count"] = count
    token: str | None = None
    seen: set[str] = set()
    for page in range(MAX_PAGES):
        query = dict(request)
        if token:
            query["nextPageToken"] = token
        response = client.get(endpoint, query)
        issues = _issues(response.data)
        if issues is None:
            raise SourceError(f"source {source.name!r}: {client.describe(endpoint, query)}: "
                              "response is not a Jira search result (no 'issues' list)")
        params: dict[str, Any] = {"api": "v3", "jql": jql, "page": page,
                                  "request": client.sent(endpoint, query)}
        if page == 0:
            params["approximate_count"] = count
            params["count_request"] = {**client.sent(count_url, method="POST"),
                                       "body": {"jql": request["jql"]}}
        attempt.hold(f"jira-search-{page:05d}", client.describe(endpoint, query), params,
                     response.body)
        attempt.keys.extend(_key(issue) for issue in issues)
        _warn_truncated_changelogs(source, issues)
        token = response.data.get("nextPageToken")
        if response.data.get("isLast", not token) or not token:
            return
        if token in seen:
            raise SourceError(f"source {source.name!r}: Jira repeated a nextPageToken; "
                              "stopping to avoid a paging loop")
        seen.add(token)
    raise SourceError(f"source {source.name!r}: more than {MAX_PAGES} pages; stopping")


# ---------------------------------------------------------------------------
# load


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(doc=issue) per issue of a captured search page."""
    yield from pages.json_records(path, _issues, "a Jira search response (no 'issues' list)",
                                 key="issues")


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """Issues in the page (a page that cannot be read counts as one rejected row)."""
    return pages.count_page(path, _issues, "a Jira search response", key="issues")

