"""Connector `file`: a CSV or JSONL export (IAM events, tickets, backups) with a column mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from extract.connectors.formats import csv_rows, header_names, jsonl_records, open_bytes, preview
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    DOC_TABLE,
    ConnectorSpec,
    LoadItem,
    RawRow,
    Reject,
    Skipped,
    Source,
    iter_file,
)
from soxtrail.kernel.store import safe_name

RAW_TABLE_BY_SYSTEM = {"iam": "raw.iam_events", "tickets": "raw.tickets", "backups": "raw.backups"}
FORMATS = ("csv", "jsonl")

# normalised fields per system: (required, optional)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "iam": (("identity", "deactivated_at"), ("event",)),
    "backups": (("cluster", "completed_at"), ("backup_id", "status")),
    "tickets": (("ticket_key",), (
        "ticket_type", "status", "requester", "approver", "approved_at", "subject_user",
        "cluster", "role", "window_start", "window_end")),
}

SPEC = ConnectorSpec(
    name="file",
    systems=frozenset({"iam", "tickets", "backups"}),
    required=frozenset({"path", "format", "columns"}),
    optional=frozenset({"timezone", "types", "approved_statuses"}),
    raw_tables={"raw.iam_events": DOC_TABLE, "raw.tickets": DOC_TABLE, "raw.backups": DOC_TABLE},
    # a tickets file: a field `columns:` does not map is read from the column of its own name
    ticket_fields={name: name for part in FIELDS["tickets"] for name in part},
)

TICKET_KINDS = ("access", "change")


def _columns(source: Source) -> dict[str, str]:
    columns = source.get("columns")
    where = f"source {source.name}: columns"
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError(f"{where}: expected a mapping of normalised field to file column")
    required, optional = FIELDS[source.system]
    for field_name, column in columns.items():
        if field_name not in required and field_name not in optional:
            raise ConfigError(f"{where}: unknown field {field_name!r} for system {source.system} "
                              f"(allowed: {', '.join(required + optional)})")
        if not isinstance(column, str) or not column:
            raise ConfigError(f"{where}.{field_name}: expected a column name")
    missing = [f for f in required if f not in columns]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)} "
                          f"for system {source.system}")
    return {str(k): str(v) for k, v in columns.items()}


def _format(source: Source) -> str:
    fmt = str(source.get("format"))
    if fmt not in FORMATS:
        raise ConfigError(f"source {source.name}: format {fmt!r} unknown "
                          f"(expected {' or '.join(FORMATS)})")
    return fmt


def _check_csv_header(source: Source, path: Path, columns: dict[str, str]) -> None:
    with open_bytes(path) as handle:
        first = next(csv_rows(handle), None)
    if first is None:
        raise SourceError(f"source {source.name}: {path}: empty file (expected a header line)")
    _line, fields, problem, _raw = first
    if fields is None:
        raise SourceError(f"source {source.name}: {path}: unreadable header: {problem}")
    names = header_names(fields)
    absent = [f"{column} (for {field_name})" for field_name, column in columns.items()
              if column not in names]
    if absent:
        raise ConfigError(f"source {source.name}: {path}: column(s) {', '.join(absent)} "
                          f"not in the header ({', '.join(names)})")


def snapshot(source: Source, ctx: Any) -> None:
    """Capture the export file byte for byte (one evidence row)."""
    fmt = _format(source)
    columns = _columns(source)
    path = source.path("path")
    if not path.is_file():
        raise SourceError(f"source {source.name}: file not found: {path}")
    if fmt == "csv":
        _check_csv_header(source, path, columns)
    list(settings(source))  # validate types / approved_statuses / timezone now
    params: dict[str, Any] = {"format": fmt, "path": str(path), "file": path.name,
                              "columns": columns}
    if source.get("timezone"):
        params["timezone"] = str(source.get("timezone"))
    ctx.capture(
        source,
        query_name=f"{source.name}/{safe_name(path.name)}",
        query_text=f"file {path}",
        params=params,
        ext=fmt,
        raw_table=RAW_TABLE_BY_SYSTEM[source.system],
        chunks=iter_file(path),
        count_rows=partial(count_rows, params),
    )


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of records (CSV data rows after the header, or JSONL lines)."""
    return sum(item.count if isinstance(item, Skipped) else 1 for item in load(params, path))


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(doc keyed by the file's column names) per record; broken records → Reject."""
    name = path.name  # the object as stored (the loader keeps its store name)
    with open_bytes(path) as handle:
        if params.get("format") == "jsonl":
            for line, doc, problem, raw in jsonl_records(handle):
                if problem is not None:
                    yield Reject(f"{name}:{line}", problem, preview(raw))
                else:
                    yield RawRow(f"{name}:{line}", (doc,))
            return
        yield from _load_csv(name, handle)


def _load_csv(name: str, handle: IO[bytes]) -> Iterator[LoadItem]:
    header: list[str] | None = None
    header_problem: str | None = None
    first = True
    for line, fields, problem, raw in csv_rows(handle):
        if first:
            first = False
            if fields is None:
                header_problem = f"unreadable header (line {line}): {problem}"
            else:
                header = header_names(fields)
                if len(set(header)) != len(header) or "" in header:
                    header_problem = "header has empty or duplicate column names"
            if header_problem is None:
                continue
            yield Reject(f"{name}:{line}", header_problem, preview(raw))
            continue
        locator = f"{name}:{line}"
        if header_problem is not None or header is None:
            yield Reject(locator, header_problem or "no header", preview(raw))
        elif fields is None:
            yield Reject(locator, problem or "unreadable record", preview(raw))
        elif len(fields) != len(header):
            yield Reject(locator, f"expected {len(header)} fields (header), found {len(fields)}",
                         preview(raw))
        elif any("\x00" in value for value in fields):
            yield Reject(locator, "NUL character in a value", preview(raw))
        else:
            yield RawRow(locator, ({k: (v if v != "" else None) for k, v in zip(header, fields,
                                                                                 strict=True)},))


def check_timezone(source: Source, name: str) -> str:
    """An IANA zone name, or ConfigError naming the source."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"source {source.name}: timezone {name!r} is not an IANA zone "
                          f"(e.g. Europe/Paris)") from exc
    return name


def _ticket_types(source: Source) -> Iterator[tuple[str, str, str]]:
    types = source.get("types")
    if types is None:
        return
    where = f"source {source.name}: types"
    if not isinstance(types, Mapping):
        raise ConfigError(f"{where}: expected a mapping (ticket type: access|change, "
                          f"or access/change: [ticket types])")
    for key, value in types.items():
        if key in TICKET_KINDS and isinstance(value, list):
            for ticket_type in value:
                yield ("type", str(ticket_type), str(key))
        elif value in TICKET_KINDS:
            yield ("type", str(key), str(value))
        else:
            raise ConfigError(f"{where}.{key}: expected access or change")


def settings(source: Source) -> Iterator[tuple[str, str, str]]:
    """Column mapping, time zone, and for tickets the type and approved-status maps."""
    columns = _columns(source)
    for field_name, column in columns.items():
        yield ("column", field_name, column)
        if source.system == "tickets":
            yield ("field", field_name, column)  # the ticket staging reads `field` for every source
    if source.system == "tickets":
        for field_name, column in SPEC.ticket_fields.items():
            if field_name not in columns:
                yield ("field", field_name, column)
    timezone = source.get("timezone")
    if timezone:
        yield ("timezone", "", check_timezone(source, str(timezone)))
    if source.system != "tickets":
        for key in ("types", "approved_statuses"):
            if source.get(key) is not None:
                raise ConfigError(f"source {source.name}: {key} only applies to tickets")
        return
    yield from _ticket_types(source)
    statuses = source.get("approved_statuses")
    if statuses is not None:
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise ConfigError(f"source {source.name}: approved_statuses: expected a list of "
                              f"status names")
        for status in statuses:
            yield ("approved_status", status, "true")
