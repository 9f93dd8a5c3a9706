"""Connector `postgres_catalog`: role memberships and role attributes, live or from CSV exports.

Completeness (one `completeness` object per snapshot, basis `capture_time`, docs/configuration.md):
a catalog is the state of one moment, so what it can assert is *when* it was taken. The
capture time is the server's `now()` (live: the settings query's `captured_at`; offline:
the settings export's, else the source's `captured_at` key); further than the policy's
`catalog_capture_tolerance_hours` from the quarter's end is SNAPSHOT_NOT_AT_QUARTER_END,
and an export that says not when it was taken is UNVERIFIED (not an exception).

Provenance (each capture's query_params): `query`, `query_file`, `query_sha256` (of the
query's text), `server_now` and `server_version` (live: `select now(), version()` in the
capture's own transaction; exports: the settings export's captured_at, else `unknown`,
and `unknown`).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import conninfo

from extract.connectors import completeness
from extract.connectors.formats import csv_rows, header_names, open_bytes, preview
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import (
    Captured,
    Completeness,
    ConnectorSpec,
    Finding,
    LoadItem,
    RawRow,
    RawTable,
    Reject,
    Source,
    iter_file,
)

SPEC = ConnectorSpec(
    name="postgres_catalog",
    systems=frozenset({"db_catalog"}),
    required=frozenset({"cluster"}),
    optional=frozenset({"settings_path", "captured_at"}),
    secret=frozenset({"dsn"}),
    one_of=(frozenset({"dsn"}), frozenset({"path", "roles_path"})),
    raw_tables={
        "raw.catalog_memberships": RawTable(("source_name", "cluster"), (
            "member", "granted_role", "admin_option", "rolsuper", "rolcanlogin",
            "rolcreaterole", "rolvaliduntil")),
        "raw.catalog_roles": RawTable(("source_name", "cluster"), (
            "rolname", "rolsuper", "rolcreaterole", "rolcanlogin", "rolvaliduntil")),
        "raw.catalog_settings": RawTable(("source_name", "cluster"), (
            "captured_at", "name", "setting", "unit", "source", "pending_restart")),
    },
)

# query name -> (raw table, the offline export's config key)
QUERIES = {
    "catalog_memberships": ("raw.catalog_memberships", "path"),
    "catalog_roles": ("raw.catalog_roles", "roles_path"),
    "catalog_settings": ("raw.catalog_settings", "settings_path"),
}
# the settings capture's table: LG-01's known points, which later runs include
# (kernel/evidence.py included_rows)
SETTINGS_TABLE = QUERIES["catalog_settings"][0]
# exports a path-mode source may leave out (its settings then come from no capture)
OPTIONAL_EXPORTS = frozenset({"settings_path"})
BOOLEAN_COLUMNS = frozenset({"admin_option", "rolsuper", "rolcanlogin", "rolcreaterole",
                             "pending_restart"})
BOOLEANS = frozenset({"t", "f", "true", "false"})
NAME_COLUMNS = frozenset({"member", "granted_role", "rolname"})
CONNECT_TIMEOUT = 15
# how far from the quarter's end a catalog may be taken and still describe it (hours;
# policy `catalog_capture_tolerance_hours`, soxtrail/kernel/config.py)
CAPTURE_TOLERANCE_POLICY = "catalog_capture_tolerance_hours"
DEFAULT_CAPTURE_TOLERANCE_HOURS = 72


def query_files() -> list[Path]:
    """Every named query file of this connector, for the bundle."""
    folder = resources.files("extract.connectors").joinpath("queries")
    return sorted(Path(str(folder)).glob("*.sql"))


def query_sql(query: str) -> str:
    """The text of a named query (`extract/connectors/queries/<query>.sql`)."""
    return resources.files("extract.connectors").joinpath(f"queries/{query}.sql").read_text(
        encoding="utf-8")


def query_sha256(query: str) -> str:
    """SHA-256 of a named query's text (UTF-8), as its evidence rows record it."""
    return hashlib.sha256(query_sql(query).encode("utf-8")).hexdigest()


def _query_params(query: str) -> dict[str, Any]:
    """The query an object is (or, an export, claims to be) the output of."""
    return {"query": query, "query_file": f"extract/connectors/queries/{query}.sql",
            "query_sha256": query_sha256(query)}


def _server(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The server's `now()` (the transaction's start: the same for every query of the
    capture, and the settings' captured_at) and `version()`, in the capture's session."""
    row = conn.execute("select now(), version()").fetchone()
    assert row is not None
    return {"server_now": _iso_micro(row[0]), "server_version": str(row[1])}


def _iso_micro(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _copy_statement(sql: str) -> str:
    body = sql.strip().rstrip(";").rstrip()
    return f"copy (\n{body}\n) to stdout with (format csv, header)"


def describe_dsn(dsn: str) -> str:
    """`user@host:port/dbname` of a DSN (URL or key=value), never its password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return secrets.redact_url(dsn) if "://" in dsn else secrets.redact(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"{user}{host}{port}/{params.get('dbname') or ''}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return secrets.redact(text.splitlines()[0] if text else exc.__class__.__name__)


def _copy_chunks(conn: psycopg.Connection[Any], sql: str) -> Iterator[bytes]:
    with conn.cursor() as cur, cur.copy(_copy_statement(sql)) as copy:  # type: ignore[arg-type]
        for data in copy:
            yield bytes(data)


def _kept(chunks: Iterable[bytes], kept: list[bytes]) -> Iterator[bytes]:
    """The chunks, each also appended to `kept` (the small settings capture, read again for
    its captured_at: the spooled object may be gone once it is stored)."""
    for chunk in chunks:
        kept.append(chunk)
        yield chunk


def _snapshot_live(source: Source, ctx: Any, cluster: str,
                   settings: list[bytes]) -> dict[str, Captured]:
    dsn = str(source.get("dsn"))
    try:
        secrets.remember(str(conninfo.conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"source {source.name}: dsn is not a valid PostgreSQL connection "
                          f"string or URL") from exc
    where = describe_dsn(dsn)
    captured: dict[str, Captured] = {}
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=False)
    except psycopg.Error as exc:
        raise SourceError(f"source {source.name}: cannot connect to {where}: "
                          f"{_first_line(exc)}") from exc
    with conn:
        conn.read_only = True
        # booleans t/f and nulls empty as `psql --csv`; times in UTC, ISO, whatever the server
        conn.execute("set local timezone = 'UTC'")
        conn.execute("set local datestyle = 'ISO, YMD'")
        try:
            server = _server(conn)
        except psycopg.Error as exc:
            raise SourceError(f"source {source.name}: select now(), version() on {where} "
                              f"failed: {_first_line(exc)}") from exc
        for query, (raw_table, _key) in QUERIES.items():
            sql = query_sql(query)
            params = {"cluster": cluster, "database": where, **_query_params(query),
                      **server}
            try:
                captured[query] = ctx.capture(
                    source,
                    query_name=f"{source.name}/{query}",
                    query_text=sql,
                    params=params,
                    ext="csv",
                    raw_table=raw_table,
                    chunks=(_kept(_copy_chunks(conn, sql), settings)
                            if query == "catalog_settings" else _copy_chunks(conn, sql)),
                    count_rows=partial(count_rows, params),
                )
            except psycopg.Error as exc:
                raise SourceError(f"source {source.name}: query {query} on {where} failed: "
                                  f"{_first_line(exc)}") from exc
    return captured


def _export_time(source: Source) -> datetime | None:
    """The server's now() as the settings export records it (its captured_at), if given."""
    if not source.get("settings_path") or not source.path("settings_path").is_file():
        return None
    with open_bytes(source.path("settings_path")) as handle:
        return settings_capture_time(handle)


def _snapshot_files(source: Source, ctx: Any, cluster: str,
                    server_time: datetime | None) -> dict[str, Captured]:
    captured: dict[str, Captured] = {}
    # what the exports say of the server: the settings export's captured_at is its now();
    # no export records the server's version
    server = {"server_now": _iso_micro(server_time) if server_time else "unknown",
              "server_version": "unknown"}
    for query, (raw_table, key) in QUERIES.items():
        if key in OPTIONAL_EXPORTS and not source.get(key):
            continue
        path = source.path(key)
        if not path.is_file():
            raise SourceError(f"source {source.name}: {key}: file not found: {path}")
        params = {"cluster": cluster, "path": str(path), "file": path.name,
                  **_query_params(query), **server}
        captured[query] = ctx.capture(
            source,
            query_name=f"{source.name}/{query}",
            query_text=f"file {path} (CSV export of extract/connectors/queries/{query}.sql)",
            params=params,
            ext="csv",
            raw_table=raw_table,
            chunks=iter_file(path),
            count_rows=partial(count_rows, params),
        )
    return captured


def snapshot(source: Source, ctx: Any) -> None:
    """The memberships, the roles listing and the settings (live over the DSN), or the
    exports (the settings export only when `settings_path` is given); then the
    completeness statement: when the catalog was taken against the quarter's end."""
    cluster = str(source.get("cluster") or "")
    if not cluster:
        raise ConfigError(f"source {source.name}: missing cluster")
    declared = declared_capture_time(source)
    tolerance = capture_tolerance_hours(getattr(ctx, "policy", None) or {})
    server_time: datetime | None = None
    if source.get("dsn"):
        settings: list[bytes] = []
        captured = _snapshot_live(source, ctx, cluster, settings)
        server_time = settings_capture_time(io.BytesIO(b"".join(settings)))
    else:
        server_time = _export_time(source)  # the export, as it is captured byte for byte
        captured = _snapshot_files(source, ctx, cluster, server_time)
    completeness.record(source, ctx, statement(
        ctx.quarter, server_time=server_time, declared=declared, tolerance_hours=tolerance,
        counts={query: item.row_count for query, item in sorted(captured.items())}))


# ---------------------------------------------------------------- completeness


def capture_tolerance_hours(policy: Mapping[str, Any]) -> int | float:
    """The policy's `catalog_capture_tolerance_hours` (validated at config load), else 72."""
    value = policy.get(CAPTURE_TOLERANCE_POLICY, DEFAULT_CAPTURE_TOLERANCE_HOURS)
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"policy.{CAPTURE_TOLERANCE_POLICY}: expected a number of hours "
                          f"> 0, got {value!r}")
    return value


def parse_capture_time(value: Any) -> datetime | None:
    """An ISO 8601 instant with its UTC offset (a YAML timestamp or text), in UTC; None for
    anything else (no offset, not a time)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None \
            or value.utcoffset() is None:
        return None
    return value.astimezone(UTC)


def declared_capture_time(source: Source) -> datetime | None:
    """The source's `captured_at` key (when its exports were taken), checked: an ISO 8601
    instant with a UTC offset, e.g. `2024-09-30T23:30:00Z`."""
    value = source.get("captured_at")
    if value is None:
        return None
    moment = parse_capture_time(value)
    if moment is None:
        raise ConfigError(f"source {source.name}: captured_at: expected an ISO 8601 time with "
                          f"its UTC offset (e.g. 2024-09-30T23:30:00Z), got {str(value)!r}")
    return moment


def settings_capture_time(handle: IO[bytes]) -> datetime | None:
    """The latest `captured_at` of a settings capture's CSV (the server's now(), the same on
    every row of one capture), or None when no row carries a readable one."""
    latest: datetime | None = None
    rows = csv_rows(handle)
    first = next(rows, None)
    if first is None or first[1] is None:
        return None
    names = header_names(first[1])
    if "captured_at" not in names:
        return None
    position = names.index("captured_at")
    for _line, fields, _problem, _raw in rows:
        if fields is None or len(fields) <= position:
            continue
        moment = parse_capture_time(fields[position])
        if moment is not None and (latest is None or moment > latest):
            latest = moment
    return latest


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _hours(value: float) -> str:
    return f"{value:g}"


def statement(quarter: Quarter, *, server_time: datetime | None, declared: datetime | None,
              tolerance_hours: int | float, counts: Mapping[str, int]) -> Completeness:
    """When the catalog was taken, against the quarter's end (its UTC bound).

    The server's own clock (the settings capture's `captured_at`) is the capture time;
    else the `captured_at` the source declares; else it is unknown: UNVERIFIED, not an
    exception. Further than `tolerance_hours` from the quarter's end, either way:
    SNAPSHOT_NOT_AT_QUARTER_END (the roles describe another moment; AC-03 reads them as
    they are).
    """
    end = quarter.end_utc
    moment, basis_of_time = ((server_time, "server") if server_time is not None
                             else (declared, "declared") if declared is not None
                             else (None, None))
    facts: dict[str, Any] = {
        "quarter_end": _iso(end), "tolerance_hours": tolerance_hours,
        "captured_at": _iso(moment) if moment else None, "captured_at_from": basis_of_time,
        "rows": dict(counts),
    }
    if declared is not None and server_time is not None:
        facts["declared_captured_at"] = _iso(declared)
    findings: list[Finding] = []
    if moment is None:
        findings.append(Finding(
            "UNVERIFIED", "the exports say not when they were taken (no settings export "
            "with captured_at, no captured_at key): the catalog cannot be shown to "
            f"describe the quarter's end ({_iso(end)})", exception=False))
    else:
        seconds = int((moment - end).total_seconds())
        facts["offset_seconds"] = seconds  # integers only: the statement's JSON is canonical
        offset = seconds / 3600
        if abs(moment - end).total_seconds() > tolerance_hours * 3600:
            when = "after" if offset > 0 else "before"
            findings.append(Finding(
                "SNAPSHOT_NOT_AT_QUARTER_END",
                f"the catalog was taken at {_iso(moment)}, {_hours(round(abs(offset), 1))} h "
                f"{when} the quarter's end ({_iso(end)}), past the tolerance of "
                f"{_hours(tolerance_hours)} h (policy {CAPTURE_TOLERANCE_POLICY}): it "
                "describes another moment"))
    return Completeness(basis="capture_time", captured=int(counts.get("catalog_memberships", 0)),
                        findings=findings, facts=facts)


def _raw_table(params: Mapping[str, Any]) -> str:
    table = params.get("raw_table")
    if table is None and params.get("query") in QUERIES:
        table = QUERIES[str(params["query"])][0]
    if table not in SPEC.raw_tables:
        raise ConfigError(f"postgres_catalog: unknown raw table {table!r}")
    return str(table)


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of data rows (CSV records after the header)."""
    with open_bytes(path) as handle:
        return max(sum(1 for _ in csv_rows(handle)) - 1, 0)


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow per CSV row in the raw table's column order; bad rows → Reject."""
    columns = SPEC.raw_tables[_raw_table(params)].payload
    name = path.name  # the object as stored (the loader keeps its store name)
    with open_bytes(path) as handle:
        rows = csv_rows(handle)
        first = next(rows, None)
        if first is None:
            return
        _line, header, problem, _raw = first
        positions: list[int] | None = None
        if header is None:
            problem = f"unreadable header: {problem}"
        else:
            names = header_names(header)
            missing = [c for c in columns if c not in names]
            if missing:
                problem = (f"header lacks column(s) {', '.join(missing)} "
                           f"(expected {','.join(columns)})")
            else:
                positions = [names.index(c) for c in columns]
        for line, fields, row_problem, raw in rows:
            locator = f"{name}:{line}"
            if positions is None or header is None:
                yield Reject(locator, problem or "no header", preview(raw))
            elif fields is None:
                yield Reject(locator, row_problem or "unreadable row", preview(raw))
            elif len(fields) != len(header):
                yield Reject(locator, f"expected {len(header)} fields (header), found "
                                      f"{len(fields)}", preview(raw))
            else:
                values = tuple(fields[i] if fields[i] != "" else None for i in positions)
                bad = _bad_value(columns, values, name_required="name" in columns)
                if bad:
                    yield Reject(locator, bad, preview(raw))
                else:
                    yield RawRow(locator, values)


def _bad_value(columns: tuple[str, ...], values: tuple[str | None, ...], *,
               name_required: bool = False) -> str | None:
    for column, value in zip(columns, values, strict=True):
        if (column in NAME_COLUMNS or (name_required and column == "name")) and not value:
            return f"empty {column}"
        if column == "captured_at" and not value:
            # a settings row says what held at this moment: without it, it says nothing
            return "empty captured_at"
        if column in BOOLEAN_COLUMNS and value is not None and value not in BOOLEANS:
            return f"{column} is {value!r}, expected t or f"
    return None
