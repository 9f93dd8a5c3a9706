"""Connector `okta_system_log`: identity events from Okta's System Log API (Link-header paging).

Config (`sources:` entry, system `iam`)::

    connector: okta_system_log
    url: https://example.okta.com
    token: "${OKTA_API_TOKEN}"           # sent as `Authorization: SSWS <token>`
    event_types: [user.lifecycle.deactivate, user.lifecycle.suspend]   # optional; [] = all
    page_size: 1000
    retry: {attempts: 6, budget_seconds: 600}

Request: `GET /api/v1/logs?since=<quarter start>&until=<quarter end>&limit=N
&sortOrder=ASCENDING&filter=eventType eq "…" or eventType eq "…"`; each next page is the
`Link: <…>; rel="next"` URL (followed only on the configured host, so the token is
never sent elsewhere) until there is none or a page is empty. 429 answers wait for
`X-Rate-Limit-Reset`, and a response that leaves `X-Rate-Limit-Remaining: 0` holds
the next request until the reset. Okta keeps System Log events for 90 days: snapshot
a quarter soon after it ends (or export to a `file` source).

Snapshot: one capture per page (the JSON array exactly as received), raw table
`raw.iam_events`; params `since`, `until`, `filter`, `page`, `request` (`{method, url,
query}`: the URL and query string as sent; a following page's come from the `next` link).
Load: one row per event,
`doc` = the event object, locator `<object>#<index>`.

Completeness (one `completeness` object per snapshot): the System Log states no total
(`NO_TOTAL_AVAILABLE`, not an exception; an event `uuid` seen twice is a
`COUNT_MISMATCH`). It keeps about 90 days: the capture covers the quarter from the older
of its oldest event returned and 90 days before the server's clock (`Date` of the first
response) up to that clock, bounded by the quarter; each stretch outside is a
`COVERAGE_GAP` (`covered` holds the period, for combining captures).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from requests.utils import parse_header_links

from extract.connectors import completeness, http, pages
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import DOC_TABLE, ConnectorSpec, LoadItem, SnapshotContext, Source

RAW_TABLE = "raw.iam_events"
MAX_PAGES = 100_000
RETENTION_DAYS = 90  # Okta keeps System Log events about 90 days
DEFAULT_EVENT_TYPES = (
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.delete.initiated",
    "group.user_membership.remove",
    "application.user_membership.remove",
)

SPEC = ConnectorSpec(
    name="okta_system_log",
    systems=frozenset({"iam"}),
    required=frozenset({"url", "token"}),
    optional=frozenset({"event_types", "page_size", "retry"}),
    secret=frozenset({"token"}),
    raw_tables={"raw.iam_events": DOC_TABLE},
    forgets_after_days=RETENTION_DAYS,
)


def event_filter(event_types: list[str]) -> str:
    """`eventType eq "a" or eventType eq "b"` (Okta's SCIM-style filter); empty for no filter."""
    return " or ".join(f'eventType eq "{name}"' for name in event_types)


def _event_types(source: Source) -> list[str]:
    given = source.get("event_types")
    if given is None:
        return list(DEFAULT_EVENT_TYPES)
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not all(
            isinstance(n, str) and n and '"' not in n for n in given):
        raise ConfigError(f"source {source.name!r}: event_types: expected a list of Okta "
                          "event type names, e.g. user.lifecycle.deactivate")
    return list(given)


def next_link(headers: Mapping[str, str]) -> str | None:
    """The `rel="next"` URL of a Link header (Okta sends several Link headers, joined by `,`)."""
    value = headers.get("Link")
    if not value:
        return None
    for link in parse_header_links(value):
        if link.get("rel") == "next" and link.get("url"):
            return link["url"]
    return None


def _events(document: Any) -> list[Any] | None:
    return document if isinstance(document, list) else None


def _published(event: Any) -> datetime | None:
    value = event.get("published") if isinstance(event, dict) else None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def snapshot(source: Source, ctx: SnapshotContext) -> None:
    """Capture every page of the quarter's System Log events, then the statement."""
    uuids: list[str] = []
    oldest: list[datetime] = []
    taken: list[datetime] = []
    _capture(source, ctx, uuids, oldest, taken)
    completeness.record(source, ctx, pages.forgetful_statement(
        ctx.quarter, keys=uuids, taken_at=taken[0] if taken else datetime.now(UTC),
        oldest=min(oldest) if oldest else None, window_days=RETENTION_DAYS,
        what="the Okta System Log"))


def _capture(source: Source, ctx: SnapshotContext, uuids: list[str], oldest: list[datetime],
             taken: list[datetime]) -> None:
    url = pages.base_url(source)
    origin = urlsplit(url)[:2]
    token = str(source.get("token") or "")
    if not token:
        raise ConfigError(f"source {source.name!r}: token: empty")
    auth = http.Auth(scheme="ssws", token=token)
    limit = pages.page_size(source, 1000, 1000)
    event_types = _event_types(source)
    request: dict[str, Any] = {
        "since": pages.iso_utc(ctx.quarter.start),
        "until": pages.iso_utc(ctx.quarter.end),
        "limit": limit,
        "sortOrder": "ASCENDING",
    }
    if event_types:
        request["filter"] = event_filter(event_types)
    endpoint: str = f"{url}/api/v1/logs"
    query: dict[str, Any] | None = request
    with http.HttpClient(source.name, auth=auth,
                         policy=http.RetryPolicy.from_source(source)) as client:
        for page in range(MAX_PAGES):
            response = client.get(endpoint, query)
            events = _events(response.data)
            if events is None:
                raise SourceError(f"source {source.name!r}: {client.describe(endpoint, query)}: "
                                  "response is not a JSON array of events")
            if not taken:
                taken.append(pages.server_time(response.headers, datetime.now(UTC)))
            uuids.extend(str(e.get("uuid") or "") if isinstance(e, dict) else ""
                         for e in events)
            times = [t for t in map(_published, events) if t is not None]
            if times:
                oldest.append(min(times))
            params = {"since": request["since"], "until": request["until"],
                      "filter": request.get("filter", ""), "page": page,
                      "request": client.sent(endpoint, query)}
            ctx.capture(source, query_name=f"{source.name}/okta-logs-{page:05d}",
                        query_text=client.describe(endpoint, query), params=params,
                        ext="json", raw_table=RAW_TABLE, chunks=[response.body],
                        count_rows=partial(count_rows, params),
                        counter=pages.PageCounter(top_array=True))
            following = next_link(response.headers)
            if not events or not following:
                return
            if urlsplit(following)[:2] != origin:
                raise SourceError(f"source {source.name!r}: next page link points to another "
                                  f"host ({secrets.redact_url(following)}); refusing to send "
                                  "the token there")
            endpoint, query = following, None
    raise SourceError(f"source {source.name!r}: more than {MAX_PAGES} pages; stopping")


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(doc=event) per event of a captured page."""
    yield from pages.json_records(path, _events, "an Okta System Log page (a JSON array)",
                                 top_array=True)


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """Events in the page (a page that cannot be read counts as one rejected row)."""
    return pages.count_page(path, _events, "an Okta page", top_array=True)
