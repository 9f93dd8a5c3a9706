"""Connector `servicenow`: a ServiceNow table via the Table API (offset paging), with approvals.

Config (`sources:` entry, system `tickets`)::

    connector: servicenow
    url: https://example.service-now.com
    table: change_request                    # or sc_req_item, ...
    query: sys_updated_on>={quarter_start}^sys_created_on<{quarter_end}
    auth: {type: basic, user: svc_sox, token: "${SNOW_PASSWORD}"}     # or type: bearer
    page_size: 1000
    fields: {approver: approvals, subject_user: requested_for.value, ...}
    types: {change: [change_request]}        # default: the table name → access/change
    approved_statuses: [approved]
    timezone: Europe/London                  # zone of `2024-08-01 10:00:00` times; default UTC
    display_value: false                     # true → sysparm_display_value=true
    approvals: true                          # also fetch sysapproval_approver records
    retry: {attempts: 6, budget_seconds: 300}

Paging: `GET /api/now/table/<table>?sysparm_query=…&sysparm_limit=N&sysparm_offset=K`.
Offset paging is only stable over a fixed order, so `^ORDERBYsys_id` is appended to a
query that has no ORDERBY (the captured query_text shows the query as sent). With an
`X-Total-Count` header, paging runs until the offset reaches it (an instance may cap
`sysparm_limit` below the page size asked for); without one, until a short or empty page.

Snapshot: one capture per page (the body exactly as received), raw table
`raw.tickets`; params `table`, `query`, `page`, `offset`, `attempt`, `request`
(`{method, url, query}`: the Table API URL and its query string as sent, `sysparm_query`,
`sysparm_limit`, `sysparm_offset`, `sysparm_display_value`; no `sysparm_fields` is sent:
every field of the record comes back), and the page's `X-Total-Count` header as
`x_total_count` (the body does not carry it) (+ `approvals: true`, `batch` for approval
pages).

Completeness (one `completeness` object per snapshot, docs/configuration.md): the whole
fetch (tickets, then their approvals) is held in a local folder first; the tickets'
`X-Total-Count` is compared with the records fetched and their `sys_id`s (none twice,
the count unchanged while paging), and each approval batch's count with its records.
When that fails, everything is fetched once more and the second attempt is captured;
if it still disagrees: `COUNT_MISMATCH`. Without the header: `NO_TOTAL_AVAILABLE`.

Approvals (`approvals: true`): after the tickets, the `sysapproval_approver` records
whose `sysapproval` is one of the captured tickets' `sys_id`s are fetched in batches
of 100 ids (`sysapprovalIN<id>,<id>,…^ORDERBYsys_id`), each batch paged as above.

Loaded docs (`raw.tickets.doc`):

* a ticket page's record: the record exactly as received, e.g.
  `{"number": "CHG0030001", "sys_id": "…", "approval": "approved", "requested_by":
  {"link": "…", "value": "…"}, …}`;
* an approval page's record: wrapped with a marker, the record itself untouched:
  `{"_table": "sysapproval_approver", "record": {"sys_id": "…", "sysapproval":
  {"link": "…", "value": "<ticket sys_id>"}, "approver": {…}, "state": "approved",
  "sys_updated_on": "2024-08-01 10:00:00", …}}`.
  ServiceNow column names start with a letter, so a ticket record never has a
  `_table` key: staging splits on `doc ? '_table'` and joins
  `doc->'record'->'sysapproval'->>'value'` to the ticket's `doc->>'sys_id'`
  (with `display_value: true`, reference fields are display strings instead).

Locators are `<object>#<index>`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from extract.connectors import completeness, http, pages
from extract.connectors.jira import ticket_settings
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import DOC_TABLE, ConnectorSpec, LoadItem, SnapshotContext, Source

log = logging.getLogger("soxtrail.extract.servicenow")

RAW_TABLE = "raw.tickets"
APPROVAL_TABLE = "sysapproval_approver"
APPROVAL_MARKER = "_table"
APPROVAL_BATCH = 100
MAX_PAGES = 100_000
DEFAULT_TYPES = {"change_request": "change", "sc_req_item": "access"}

SPEC = ConnectorSpec(
    name="servicenow",
    systems=frozenset({"tickets"}),
    required=frozenset({"url", "table"}),
    optional=frozenset({"query", "auth", "page_size", "fields", "types", "approved_statuses",
                        "timezone", "display_value", "approvals", "retry"}),
    secret=frozenset({"auth"}),
    raw_tables={"raw.tickets": DOC_TABLE},
    # where a record holds each field unless `fields:` says otherwise (paths from the record)
    ticket_fields={
        "ticket_key": "number",
        "ticket_type": "sys_class_name",
        "status": "state",
        "requester": "requested_by",
        "window_start": "start_date",
        "window_end": "end_date",
    },
)


def settings(source: Source) -> list[tuple[str, str, str]]:
    """Field map, ticket types (default: by table), approved statuses, zone (default UTC)."""
    return ticket_settings(source, default_fields=SPEC.ticket_fields, default_types=DEFAULT_TYPES,
                           default_timezone="UTC")


def _records(document: Any) -> list[Any] | None:
    if isinstance(document, dict) and isinstance(document.get("result"), list):
        return document["result"]
    return None


def _ordered(query: str) -> str:
    if "ORDERBY" in query.upper():
        return query
    return f"{query}^ORDERBYsys_id" if query else "ORDERBYsys_id"


def _flag(source: Source, key: str) -> bool:
    value = source.get(key, False)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0", ""):
        return False
    raise ConfigError(f"source {source.name!r}: {key}: expected true or false, got {value!r}")


def _table_name(source: Source) -> str:
    table = str(source.get("table") or "")
    if not table or not all(c.isalnum() or c == "_" for c in table):
        raise ConfigError(f"source {source.name!r}: table: expected a table name like "
                          f"change_request, got {table!r}")
    return table


def _pages(source: Source, attempt: pages.Attempt, client: http.HttpClient, *, url: str,
           table: str, query: str, limit: int, display: bool, name: str,
           extra: Mapping[str, Any]) -> Iterator[tuple[list[Any], int | None]]:
    """Fetch, hold (in `attempt`) and yield each page of one Table API query, with the
    page's X-Total-Count."""
    endpoint = f"{url}/api/now/table/{table}"
    offset = 0
    for page in range(MAX_PAGES):
        request: dict[str, Any] = {"sysparm_query": query, "sysparm_limit": limit,
                                   "sysparm_offset": offset}
        if display:
            request["sysparm_display_value"] = "true"
        response = client.get(endpoint, request)
        records = _records(response.data)
        if records is None:
            raise SourceError(f"source {source.name!r}: {client.describe(endpoint, request)}: "
                              "response is not a Table API result (no 'result' list)")
        total_header = response.headers.get("X-Total-Count", "")
        total = int(total_header) if total_header.strip().isdigit() else None
        params = {"table": table, "query": query, "page": page, "offset": offset,
                  "request": client.sent(endpoint, request), **extra}
        if total is not None:
            params["x_total_count"] = total
        attempt.hold(f"{name}-{page:05d}", client.describe(endpoint, request), params,
                     response.body)
        yield records, total
        offset += len(records)
        if not records:
            return
        if total is not None:
            if offset >= total:
                return
        elif len(records) < limit:
            return
    raise SourceError(f"source {source.name!r}: more than {MAX_PAGES} pages; stopping")


def snapshot(source: Source, ctx: SnapshotContext) -> None:
    """Capture every page of the table query, then (with `approvals`) the tickets' approvals."""
    settings(source)  # validate before touching the source
    url = pages.base_url(source)
    table = _table_name(source)
    limit = pages.page_size(source, 1000, 10_000)
    display = _flag(source, "display_value")
    with_approvals = _flag(source, "approvals")
    query = _ordered(pages.substitute_quarter(str(source.get("query") or ""), ctx.quarter))

    def fetch(attempt: pages.Attempt) -> None:
        for records, total in _pages(source, attempt, client, url=url, table=table,
                                     query=query, limit=limit, display=display, name=table,
                                     extra={}):
            attempt.claim(total)
            attempt.keys.extend(_sys_id(r) for r in records)
        if not with_approvals:
            return
        unique = list(dict.fromkeys(k for k in attempt.keys if k))
        claimed = captured = 0
        for batch, start in enumerate(range(0, len(unique), APPROVAL_BATCH)):
            ids = ",".join(unique[start:start + APPROVAL_BATCH])
            totals: list[int] = []
            records_seen = 0
            for records, total in _pages(source, attempt, client, url=url,
                                         table=APPROVAL_TABLE,
                                         query=f"sysapprovalIN{ids}^ORDERBYsys_id",
                                         limit=limit, display=display,
                                         name=f"{APPROVAL_TABLE}-{batch:05d}",
                                         extra={"approvals": True, "batch": batch}):
                totals += [total] if total is not None else []
                records_seen += len(records)
            if totals and (len(set(totals)) > 1 or totals[0] != records_seen):
                attempt.other_problems.append(
                    f"approval batch {batch}: X-Total-Count {totals[0]}, {records_seen} "
                    "records captured")
            claimed += totals[0] if totals else 0
            captured += records_seen
        attempt.facts["approvals"] = {"claimed": claimed, "captured": captured}

    def retrying(first: pages.Attempt) -> None:
        log.warning("source %r: the table query is not whole (%s); running it once more",
                    source.name, "; ".join(first.problems()))

    with http.HttpClient(source.name, auth=http.auth_from(source),
                         policy=http.RetryPolicy.from_source(source)) as client, \
            tempfile.TemporaryDirectory(prefix="soxtrail-servicenow-") as held:
        attempts = pages.run_search(Path(held), fetch, retrying)
        pages.capture_held(source, ctx, attempts[-1], raw_table=RAW_TABLE,
                           count_rows=count_rows)
    completeness.record(source, ctx, pages.search_statement(
        attempts, what=f"the ServiceNow query of {table}"))


def _sys_id(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    value = record.get("sys_id")
    if isinstance(value, dict):  # sysparm_display_value=all
        value = value.get("value")
    return value if isinstance(value, str) else ""


def _approval(record: dict[str, Any]) -> dict[str, Any]:
    return {APPROVAL_MARKER: APPROVAL_TABLE, "record": record}


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow per record; approval records wrapped as `{"_table": …, "record": …}`."""
    wrap = _approval if query_params.get("approvals") else None
    yield from pages.json_records(path, _records, "a Table API response (no 'result' list)",
                                 wrap=wrap)


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """Records in the page (a page that cannot be read counts as one rejected row)."""
    return pages.count_json_records(pages.json_records(path, _records, "a Table API response"))
