"""Connector `postgres_catalog`: role memberships and role attributes, live or from CSV exports."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from extract.connectors.formats import csv_rows, header_names, open_bytes, preview
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    ConnectorSpec,
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
    secret=frozenset({"dsn"}),
    one_of=(frozenset({"dsn"}), frozenset({"path", "roles_path"})),
    raw_tables={
        "raw.catalog_memberships": RawTable(("source_name", "cluster"), (
            "member", "granted_role", "admin_option", "rolsuper", "rolcanlogin",
            "rolcreaterole", "rolvaliduntil")),
        "raw.catalog_roles": RawTable(("source_name", "cluster"), (
            "rolname", "rolsuper", "rolcreaterole", "rolcanlogin", "rolvaliduntil")),
    },
)

# query name -> (raw table, the offline export's config key)
QUERIES = {
    "catalog_memberships": ("raw.catalog_memberships", "path"),
    "catalog_roles": ("raw.catalog_roles", "roles_path"),
}
BOOLEAN_COLUMNS = frozenset({"admin_option", "rolsuper", "rolcanlogin", "rolcreaterole"})
BOOLEANS = frozenset({"t", "f", "true", "false"})
NAME_COLUMNS = frozenset({"member", "granted_role", "rolname"})
CONNECT_TIMEOUT = 15


def query_files() -> list[Path]:
    """Every named query file of this connector, for the bundle."""
    folder = resources.files("extract.connectors").joinpath("queries")
    return sorted(Path(str(folder)).glob("*.sql"))


def query_sql(query: str) -> str:
    """The text of a named query (`extract/connectors/queries/<query>.sql`)."""
    return resources.files("extract.connectors").joinpath(f"queries/{query}.sql").read_text(
        encoding="utf-8")


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


def _snapshot_live(source: Source, ctx: Any, cluster: str) -> None:
    dsn = str(source.get("dsn"))
    try:
        secrets.remember(str(conninfo.conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"source {source.name}: dsn is not a valid PostgreSQL connection "
                          f"string or URL") from exc
    where = describe_dsn(dsn)
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
        for query, (raw_table, _key) in QUERIES.items():
            sql = query_sql(query)
            params = {"cluster": cluster, "database": where, "query": query,
                      "query_file": f"extract/connectors/queries/{query}.sql"}
            try:
                ctx.capture(
                    source,
                    query_name=f"{source.name}/{query}",
                    query_text=sql,
                    params=params,
                    ext="csv",
                    raw_table=raw_table,
                    chunks=_copy_chunks(conn, sql),
                    count_rows=partial(count_rows, params),
                )
            except psycopg.Error as exc:
                raise SourceError(f"source {source.name}: query {query} on {where} failed: "
                                  f"{_first_line(exc)}") from exc


def _snapshot_files(source: Source, ctx: Any, cluster: str) -> None:
    for query, (raw_table, key) in QUERIES.items():
        path = source.path(key)
        if not path.is_file():
            raise SourceError(f"source {source.name}: {key}: file not found: {path}")
        params = {"cluster": cluster, "path": str(path), "file": path.name, "query": query,
                  "query_file": f"extract/connectors/queries/{query}.sql"}
        ctx.capture(
            source,
            query_name=f"{source.name}/{query}",
            query_text=f"file {path} (CSV export of extract/connectors/queries/{query}.sql)",
            params=params,
            ext="csv",
            raw_table=raw_table,
            chunks=iter_file(path),
            count_rows=partial(count_rows, params),
        )


def snapshot(source: Source, ctx: Any) -> None:
    """Two captures: the memberships and the roles listing (live over the DSN, or the exports)."""
    cluster = str(source.get("cluster") or "")
    if not cluster:
        raise ConfigError(f"source {source.name}: missing cluster")
    if source.get("dsn"):
        _snapshot_live(source, ctx, cluster)
    else:
        _snapshot_files(source, ctx, cluster)


def _raw_table(params: Mapping[str, Any]) -> str:
    table = params.get("raw_table")
    if table is None and params.get("query") in QUERIES:
        table = QUERIES[str(params["query"])][0]
    if table not in ("raw.catalog_memberships", "raw.catalog_roles"):
        raise ConfigError(f"postgres_catalog: unknown raw table {table!r}")
    return str(table)


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of data rows (CSV records after the header)."""
    with open_bytes(path) as handle:
        return max(sum(1 for _ in csv_rows(handle)) - 1, 0)


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow per CSV row in the raw table's column order; bad rows → Reject."""
    columns = SPEC.raw_tables[_raw_table(params)].payload
    name = str(params.get("file") or f"{params.get('query', path.stem)}.csv")
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
                bad = _bad_value(columns, values)
                if bad:
                    yield Reject(locator, bad, preview(raw))
                else:
                    yield RawRow(locator, values)


def _bad_value(columns: tuple[str, ...], values: tuple[str | None, ...]) -> str | None:
    for column, value in zip(columns, values, strict=True):
        if column in NAME_COLUMNS and not value:
            return f"empty {column}"
        if column in BOOLEAN_COLUMNS and value is not None and value not in BOOLEANS:
            return f"{column} is {value!r}, expected t or f"
    return None
