"""Connector `access_review` (internal): the user access review behind AC-03, the returned
review files of a quarter (`access_review: reviews/{quarter}` in soxtrail.yml), CSV or XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from extract.connectors.catalog_file import git_commit
from extract.connectors.formats import csv_rows, header_names
from soxtrail.kernel.csvcells import unneutralise
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import (
    ConnectorSpec,
    LoadItem,
    RawRow,
    RawTable,
    Reject,
    Source,
    iter_file,
)

RAW_TABLE = "raw.access_reviews"
SYSTEM = "access_review"
# a review file's columns, in the order `soxtrail review export` writes them; the raw table
# keeps them all (as text) in this order
COLUMNS = (
    "item_key", "cluster", "login_role", "holder_identity", "identity_status",
    "granted_role", "role_owner", "last_granted_at", "grant_evidence", "decision",
    "reviewer", "reviewed_at", "comment",
)
DECISIONS = ("keep", "remove")
SHEET = "Review"  # the XLSX sheet holding the review (others, e.g. `About`, are ignored)
FORMATS = ("csv", "xlsx")
REJECT_TEXT = 10_000
# `reviewed_at`: a date (00:00 UTC of that day) or a timestamp with its UTC offset, in the
# forms PostgreSQL reads as the staging model casts them
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
LOCAL_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
TIMESTAMP = re.compile(LOCAL_TIMESTAMP.pattern + r"(Z|[+-]\d{2}(:?\d{2})?)")

SPEC = ConnectorSpec(
    name="access_review",
    systems=frozenset({SYSTEM}),
    required=frozenset({"path"}),
    raw_tables={RAW_TABLE: RawTable((), COLUMNS)},
)

Row = dict[str, str | None]


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: a review file is CSV or XLSX (*.csv, *.xlsx), "
                          f"not {path.suffix or 'a file without suffix'}")
    return suffix


def _cell(value: Any) -> str | None:
    """A cell's text: un-neutralised, stripped, empty → None; an XLSX date or number as the
    text a person typed (a date at midnight as `YYYY-MM-DD`)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        text = (value.date().isoformat() if value.time() == dt.time(0) and value.tzinfo is None
                else value.isoformat())
    elif isinstance(value, dt.date):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    text = unneutralise(text.strip()).strip()
    return text or None


def _header(where: Path, names: list[Any]) -> list[str]:
    header = [str(name).strip() if name is not None else "" for name in names]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{where}: the review's header lacks column(s) {', '.join(missing)} "
                          f"(expected {', '.join(COLUMNS)})")
    duplicate = sorted({c for c in COLUMNS if header.count(c) > 1})
    if duplicate:
        raise ConfigError(f"{where}: the review's header repeats column(s) {', '.join(duplicate)}")
    return header


def _csv_records(path: Path, where: Path) -> Iterator[tuple[int, list[Any] | None, str | None,
                                                             str]]:
    """(line, cells or None, problem, raw text) of each data record of a review CSV."""
    with path.open("rb") as handle:
        records = csv_rows(handle)
        first = next(records, None)
        if first is None or first[1] is None:
            raise ConfigError(f"{where}: no readable header row "
                              f"(expected {', '.join(COLUMNS)})")
        header = _header(where, header_names(first[1]))
        for line, fields, problem, raw in records:
            text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")[:REJECT_TEXT]
            if fields is None:
                yield line, None, f"row: {problem}", text
            elif len(fields) != len(header):
                yield line, None, f"row: expected {len(header)} fields (header), found " \
                    f"{len(fields)}", text
            else:
                yield line, [header, fields], None, text


def _xlsx_records(path: Path, where: Path) -> Iterator[tuple[int, list[Any] | None, str | None,
                                                              str]]:
    """(row number, cells, None, raw text) of each data row of a review workbook's sheet."""
    import openpyxl  # only a workbook needs it

    handle = path.open("rb")  # a file object: a spooled object has no .xlsx suffix
    try:
        book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike
        handle.close()
        raise ConfigError(f"{where}: not a readable XLSX workbook: {exc}") from None
    try:
        if SHEET not in book.sheetnames:
            raise ConfigError(f"{where}: no sheet named {SHEET!r} "
                              f"(sheets: {', '.join(book.sheetnames)})")
        rows = book[SHEET].iter_rows(values_only=True)
        first = next(rows, None)
        if first is None:
            raise ConfigError(f"{where}: sheet {SHEET!r} has no header row "
                              f"(expected {', '.join(COLUMNS)})")
        header = _header(where, list(first))
        for number, cells in enumerate(rows, start=2):
            values = list(cells)[:len(header)]
            values += [None] * (len(header) - len(values))
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(
                ["" if v is None else str(v) for v in values])
            yield number, [header, values], None, buffer.getvalue()[:REJECT_TEXT]
    finally:
        book.close()
        handle.close()


def _timestamp_problem(value: str) -> str | None:
    """Why `reviewed_at` is not an ISO date or an ISO timestamp with an offset, or None."""
    if not (DATE.fullmatch(value) or TIMESTAMP.fullmatch(value)):
        if LOCAL_TIMESTAMP.fullmatch(value):
            return f"{value!r} has no UTC offset (e.g. {value}+00:00)"
        return f"{value!r} is not a date (YYYY-MM-DD) or an ISO timestamp with an offset"
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"{value!r} is not a valid date or time"
    return None


def row_problem(row: Mapping[str, str | None]) -> str | None:
    """Why one review row (cells as `review_rows` gives them) is refused (field: reason), or
    None."""
    key = row.get("item_key")
    if key is None:
        return "item_key: required"
    parts = key.split("|")
    if len(parts) != 3 or not all(parts):
        return f"item_key: {key!r} is not cluster|login_role|granted_role"
    for column, part in zip(("cluster", "login_role", "granted_role"), parts, strict=True):
        if row.get(column) is not None and row.get(column) != part:
            return f"{column}: {row.get(column)!r} differs from the item_key's {part!r}"
    decision = row.get("decision")
    if decision is not None and decision not in DECISIONS:
        return f"decision: {decision!r} is not one of {', '.join(DECISIONS)} (or empty)"
    if decision is not None:
        for column in ("reviewer", "reviewed_at"):
            if row.get(column) is None:
                return f"{column}: required with a decision"
    reviewed_at = row.get("reviewed_at")
    if reviewed_at is not None:
        problem = _timestamp_problem(reviewed_at)
        if problem:
            return f"reviewed_at: {problem}"
    return None


def _rows(path: Path, file_format: str, where: Path
          ) -> Iterator[tuple[Row, str | None, str]]:
    """(row, problem or None, raw text) per data row, in file order: a second decision on an
    item already decided in this file is refused, naming the first's line."""
    records = (_xlsx_records if file_format == "xlsx" else _csv_records)(path, where)
    decided: dict[str, str] = {}
    for line, cells, problem, raw in records:
        row: Row = {"line": str(line), **dict.fromkeys(COLUMNS)}
        if cells is not None:
            header, values = cells
            found = {name: _cell(value) for name, value in zip(header, values, strict=True)
                     if name in COLUMNS}
            if not any(found.values()):
                continue  # an empty row (a spreadsheet's trailing rows) is no data row
            row.update(found)
            if row["decision"] is not None:
                row["decision"] = row["decision"].lower()
            problem = row_problem(row)
            key = row["item_key"]
            if problem is None and row["decision"] is not None and key is not None:
                if key in decided:
                    problem = f"item_key: a second decision on {key} (first on line {decided[key]})"
                else:
                    decided[key] = row["line"] or ""
        yield row, problem, raw


def review_rows(path: Path) -> tuple[list[Row], list[tuple[int, str]]]:
    """A review file's data rows and the problems of the rows the load will refuse.

    Each row is a dict of `line` (the 1-based line of a CSV record, or row of the XLSX
    sheet, as text) and every column of COLUMNS (cells un-neutralised and stripped, empty →
    None, `decision` lower-case), refused rows included (a record that is not even CSV with
    every column None); each problem is `(line, "field: reason")`. Rows read = len(rows),
    loaded = rows without a problem. Raises ConfigError naming the file for a problem with
    the whole file (not .csv/.xlsx, no `Review` sheet, a missing column). The load applies
    this same function's rules.
    """
    rows: list[Row] = []
    problems: list[tuple[int, str]] = []
    for row, problem, _ in _rows(path, _file_format(path), path):
        rows.append(row)
        if problem is not None:
            problems.append((int(row["line"] or 0), problem))
    return rows, problems


def folder_path(source: Source, quarter: str) -> Path:
    """The quarter's review folder (the configured path with `{quarter}` filled in)."""
    path = Path(str(source.get("path")).replace("{quarter}", quarter))
    return path if path.is_absolute() else source.base_dir / path


def review_files(folder: Path) -> list[Path]:
    """The review files of a folder (`*.csv`, `*.xlsx`, any case), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower().lstrip(".") in FORMATS
                   and not p.name.startswith(("~$", "."))),  # Excel's lock files, hidden
                  key=lambda p: p.name)


def snapshot(source: Source, ctx: Any) -> None:
    """Capture every review file of the quarter's folder as-is (one object per file), or
    one empty object stating that the folder holds none (yet)."""
    quarter = ctx.quarter.label
    folder = folder_path(source, quarter)
    files = review_files(folder)
    for path in files:
        file_format = _file_format(path)
        list(_rows(path, file_format, path))  # a file-level problem stops the run here
        params = {"path": str(path), "file": path.name, "format": file_format,
                  "file_exists": True, **git_commit(path)}
        ctx.capture(
            source,
            query_name=f"{source.name}/{quarter}/{path.name}",
            query_text=str(path),
            params=params,
            ext=file_format,
            raw_table=RAW_TABLE,
            chunks=iter_file(path),
            count_rows=partial(count_rows, params),
        )
    if not files:
        params = {"path": str(folder), "folder_exists": folder.is_dir(), "file_exists": False}
        ctx.capture(
            source,
            query_name=f"{source.name}/{quarter}",
            query_text=f"{folder}/*.csv, {folder}/*.xlsx",
            params=params,
            ext="csv",
            raw_table=RAW_TABLE,
            chunks=iter(()),
            count_rows=partial(count_rows, params),
        )


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of data rows of a review file (0 for the statement that there is none)."""
    if not params.get("file_exists"):
        return 0
    return sum(1 for _ in _rows(path, str(params.get("format")), Path(str(params.get("file")))))


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One raw row per review row; a refused one names its line and field."""
    if not params.get("file_exists"):
        return
    name = path.name  # the object as stored (the loader keeps its store name)
    for row, problem, raw in _rows(path, str(params.get("format")), Path(name)):
        locator = f"{name}:{row['line']}"
        if problem is not None:
            yield Reject(locator, problem, raw)
        else:
            yield RawRow(locator, tuple(row[c] for c in COLUMNS))
