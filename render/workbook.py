"""Phase 4: the auditor's workbook (XLSX) and per-control CSVs, laid out by a Jinja2 template."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import jinja2
import psycopg
import xlsxwriter
import yaml
from psycopg import sql

from soxtrail.kernel.errors import ConfigError, PipelineError

TEMPLATES_DIR = Path(__file__).parent / "templates"
MARTS_SCHEMA = "marts"
SUMMARY_TABLE = "fct_control_summary"
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_LINKS = 65_530  # hyperlinks per worksheet; beyond it links are HYPERLINK() formulas
EXCEL_MAX_CHARS = 32_767
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
SAMPLE_ROWS = 200  # rows looked at to size columns
_CONTROL_TABLE = re.compile(r"^fct_control_([a-z]+)(\d+)__[a-z0-9_]+$")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_LINK_COLUMNS = ("evidence_id", "control_evidence_id")

# Columns of the Queries sheet: one row per line of each control's compiled SQL.
QUERY_COLUMNS: dict[str, str] = {
    "control_id": "text", "control_name": "text", "model": "text", "query_name": "text",
    "evidence_id": "uuid", "line": "int4", "sql": "text",
}
# Extra evidence columns joined from the hash chain.
CHAIN_COLUMNS: dict[str, str] = {"chain_seq": "int8", "chain_hash": "text"}


class LayoutError(ConfigError):
    """A template renders a layout the workbook cannot honour (names template and key)."""


class RenderError(PipelineError):
    """The run's data cannot be rendered (missing run, mart or summary row)."""


# ---------------------------------------------------------------- the layout


@dataclass(frozen=True)
class Column:
    """One column of a sheet: the data column it shows, its header and width."""

    name: str
    header: str
    udt: str
    width: float | None = None

    @property
    def is_link(self) -> bool:
        return self.name in _LINK_COLUMNS


@dataclass(frozen=True)
class SheetLayout:
    """A tabular sheet: name, title, notes and columns in order."""

    key: str
    sheet: str
    title: str
    notes: tuple[str, ...]
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class RunField:
    """One line of the run block on the Summary sheet: a sox_runs column or a literal value."""

    label: str
    field: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class VerifyStep:
    """One step of the How-to-verify sheet."""

    step: str
    command: str
    expect: str = ""


@dataclass(frozen=True)
class Layout:
    """The rendered, validated layout of a workbook."""

    template: str
    properties: dict[str, str]
    summary: SheetLayout
    run_fields: tuple[RunField, ...]
    controls: dict[str, SheetLayout]
    evidence: SheetLayout
    queries: SheetLayout
    verify_sheet: str
    verify_title: str
    verify_notes: tuple[str, ...]
    verify_steps: tuple[VerifyStep, ...]

    def sheet_names(self) -> list[str]:
        """Every base sheet name, in workbook order."""
        return ([self.summary.sheet] + [s.sheet for s in self.controls.values()]
                + [self.evidence.sheet, self.queries.sheet, self.verify_sheet])


def template_path(template: str) -> Path:
    """A template name (`default`, `compact`) or a path to a `.yml.j2` file."""
    if "/" in template or template.endswith(".j2"):
        path = Path(template)
    else:
        path = TEMPLATES_DIR / f"{template}.yml.j2"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".yml.j2") for p in TEMPLATES_DIR.glob("*.yml.j2"))
        raise LayoutError(f"workbook template {template!r} not found ({path}); "
                          f"built-in templates: {', '.join(known)}")
    return path


def _yaml_quote(value: Any) -> str:
    """A scalar as a YAML double-quoted string (JSON strings are valid YAML)."""
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def render_layout_text(template: str, context: Mapping[str, Any]) -> str:
    """The template rendered with the run's context: YAML text."""
    path = template_path(template)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _yaml_quote
    try:
        return env.get_template(path.name).render(**context)
    except jinja2.TemplateError as exc:
        where = getattr(exc, "lineno", None)
        raise LayoutError(f"template {template!r} ({path}"
                          f"{f' line {where}' if where else ''}): {exc}") from exc


def load_layout(template: str, context: Mapping[str, Any],
                available: Mapping[str, Mapping[str, str]]) -> Layout:
    """Render `template` and validate it against the available columns.

    `available` maps `summary`, `evidence`, `queries` and each control id to its
    columns (name -> PostgreSQL type name, in table order).  `context` must hold
    `run` (a mapping with the sox_runs columns).
    """
    text = render_layout_text(template, context)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LayoutError(f"template {template!r} renders invalid YAML: {exc}") from exc
    return validate_layout(template, doc, available, run_columns=list(context["run"]))


def _fail(template: str, where: str, message: str) -> LayoutError:
    return LayoutError(f"template {template!r}: {where}: {message}")


def _mapping(template: str, where: str, value: Any, allowed: set[str],
             required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(value, dict):
        raise _fail(template, where, f"expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(template, where, f"unknown key(s) {', '.join(unknown)} "
                                     f"(allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise _fail(template, where, f"missing key(s) {', '.join(missing)}")
    return value


def _text(template: str, where: str, value: Any, *, allow_empty: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str | int | float):
        raise _fail(template, where, f"expected text, got {type(value).__name__}")
    text = str(value)
    if not allow_empty and not text.strip():
        raise _fail(template, where, "must not be empty")
    return text


def _notes(template: str, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(template, where, "expected a list of lines")
    return tuple(_text(template, f"{where}[{i}]", v) for i, v in enumerate(value))


def _sheet_name(template: str, where: str, value: Any) -> str:
    name = _text(template, where, value, allow_empty=False)
    if len(name) > 31:
        raise _fail(template, where, f"sheet name {name!r} is longer than Excel's 31 characters")
    if _SHEET_FORBIDDEN.search(name) or name.startswith("'") or name.endswith("'"):
        raise _fail(template, where, f"sheet name {name!r} contains a character Excel refuses "
                                     "([ ] : * ? / \\ or a leading/trailing ')")
    if name.lower() == "history":
        raise _fail(template, where, "sheet name 'History' is reserved by Excel")
    return name


def humanize(name: str) -> str:
    """A default header for a column name: `has_ticket` -> `Has ticket`, `_id` -> `ID`."""
    words = name.split("_")
    words = ["ID" if w == "id" else "IDs" if w == "ids" else "SHA-256" if w == "sha256" else w
             for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _header_for(header: str, udt: str) -> str:
    if udt == "timestamptz" and "utc" not in header.lower():
        return f"{header} (UTC)"
    return header


def _columns(template: str, where: str, value: Any,
             available: Mapping[str, str]) -> tuple[Column, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(template, where, "expected a non-empty list of columns")
    explicit: list[str] = []
    for entry in value:
        if isinstance(entry, dict) and "column" in entry:
            explicit.append(str(entry["column"]))
        elif isinstance(entry, str):
            explicit.append(entry)
    columns: list[Column] = []
    seen: set[str] = set()
    others_used = False
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            entry = {"column": entry}
        entry = _mapping(template, here, entry, {"column", "header", "width", "others",
                                                 "exclude"})
        if entry.get("others"):
            if "column" in entry or "header" in entry:
                raise _fail(template, here, "`others: true` takes only `exclude` and `width`")
            if others_used:
                raise _fail(template, here, "`others` may appear once")
            others_used = True
            exclude = entry.get("exclude") or []
            if not isinstance(exclude, list):
                raise _fail(template, here, "`exclude` must be a list of column names")
            skip = set(explicit) | {str(x) for x in exclude}
            for name, udt in available.items():
                if name not in skip:
                    columns.append(Column(name, _header_for(humanize(name), udt), udt,
                                          entry.get("width")))
                    seen.add(name)
            continue
        if "exclude" in entry:
            raise _fail(template, here, "`exclude` belongs to an `others: true` entry")
        name = _text(template, here, entry.get("column"), allow_empty=False)
        if name not in available:
            raise _fail(template, here, f"unknown column {name!r} "
                                        f"(available: {', '.join(available)})")
        if name in seen:
            raise _fail(template, here, f"column {name!r} appears twice")
        seen.add(name)
        width = entry.get("width")
        if width is not None and (not isinstance(width, int | float) or not 1 <= width <= 255):
            raise _fail(template, here, f"width {width!r}: expected a number from 1 to 255")
        header = _text(template, f"{here}.header", entry.get("header") or humanize(name))
        columns.append(Column(name, _header_for(header, available[name]), available[name],
                              width))
    if not columns:
        raise _fail(template, where, "no columns left to show")
    return tuple(columns)


def _sheet(template: str, key: str, where: str, value: Any, available: Mapping[str, str],
           extra: set[str] = frozenset()) -> tuple[SheetLayout, dict[str, Any]]:  # type: ignore[assignment]
    entry = _mapping(template, where, value, {"sheet", "title", "notes", "columns"} | extra,
                     {"sheet", "columns"})
    layout = SheetLayout(
        key=key,
        sheet=_sheet_name(template, f"{where}.sheet", entry["sheet"]),
        title=_text(template, f"{where}.title", entry.get("title")),
        notes=_notes(template, f"{where}.notes", entry.get("notes")),
        columns=_columns(template, f"{where}.columns", entry["columns"], available),
    )
    return layout, entry


def validate_layout(template: str, doc: Any, available: Mapping[str, Mapping[str, str]],
                    *, run_columns: Sequence[str]) -> Layout:
    """Check a rendered layout document and resolve its columns; raise LayoutError naming both."""
    doc = _mapping(template, "layout", doc,
                   {"properties", "summary", "controls", "evidence", "queries", "verify"},
                   {"summary", "controls", "evidence", "queries", "verify"})
    props = _mapping(template, "properties", doc.get("properties") or {},
                     {"title", "subject", "author", "manager", "company", "category",
                      "keywords", "comments"})
    properties = {k: _text(template, f"properties.{k}", v) for k, v in sorted(props.items())}

    summary, summary_entry = _sheet(template, "summary", "summary", doc["summary"],
                                    available["summary"], {"run_fields"})
    run_fields = []
    for i, item in enumerate(summary_entry.get("run_fields") or []):
        here = f"summary.run_fields[{i}]"
        item = _mapping(template, here, item, {"label", "field", "value"}, {"label"})
        if ("field" in item) == ("value" in item):
            raise _fail(template, here, "give exactly one of `field` or `value`")
        if "field" in item and item["field"] not in run_columns:
            raise _fail(template, here, f"unknown run field {item['field']!r} "
                                        f"(available: {', '.join(run_columns)})")
        run_fields.append(RunField(
            label=_text(template, f"{here}.label", item["label"], allow_empty=False),
            field=item.get("field"),
            value=None if "field" in item else _text(template, f"{here}.value", item["value"])))

    control_ids = [k for k in available if k not in ("summary", "evidence", "queries")]
    entries = doc["controls"]
    if not isinstance(entries, list):
        raise _fail(template, "controls", "expected a list, one entry per control")
    controls: dict[str, SheetLayout] = {}
    for i, entry in enumerate(entries):
        here = f"controls[{i}]"
        entry = _mapping(template, here, entry, {"control", "sheet", "title", "notes", "columns"},
                         {"control"})
        control = str(entry["control"])
        if control not in control_ids:
            raise _fail(template, here, f"unknown control {control!r} "
                                        f"(controls of this run: {', '.join(control_ids)})")
        if control in controls:
            raise _fail(template, here, f"control {control!r} appears twice")
        body = {k: v for k, v in entry.items() if k != "control"}
        layout, _ = _sheet(template, control, f"controls[{i}] ({control})", body,
                           available[control])
        names = {c.name for c in layout.columns}
        for required in ("result", "evidence_id"):
            if required not in names:
                raise _fail(template, f"controls[{i}] ({control})",
                            f"the control sheet must show the {required!r} column")
        controls[control] = layout
    missing = [c for c in control_ids if c not in controls]
    if missing:
        raise _fail(template, "controls", f"no sheet for control(s) {', '.join(missing)}: "
                                          "every control of the run must be in the workbook")

    evidence, _ = _sheet(template, "evidence", "evidence", doc["evidence"], available["evidence"])
    if evidence.columns[0].name != "id":
        raise _fail(template, "evidence.columns", "the first column must be `id` "
                                                  "(evidence links point at column A)")
    queries, _ = _sheet(template, "queries", "queries", doc["queries"], available["queries"])
    if "sql" not in {c.name for c in queries.columns}:
        raise _fail(template, "queries.columns", "the Queries sheet must show the `sql` column")

    verify = _mapping(template, "verify", doc["verify"], {"sheet", "title", "notes", "steps"},
                      {"sheet", "steps"})
    steps = []
    if not isinstance(verify["steps"], list) or not verify["steps"]:
        raise _fail(template, "verify.steps", "expected a non-empty list of steps")
    for i, item in enumerate(verify["steps"]):
        here = f"verify.steps[{i}]"
        item = _mapping(template, here, item, {"step", "command", "expect"}, {"step", "command"})
        steps.append(VerifyStep(_text(template, f"{here}.step", item["step"]),
                                _text(template, f"{here}.command", item["command"]),
                                _text(template, f"{here}.expect", item.get("expect"))))

    result = Layout(
        template=template, properties=properties, summary=summary,
        run_fields=tuple(run_fields), controls=controls, evidence=evidence, queries=queries,
        verify_sheet=_sheet_name(template, "verify.sheet", verify["sheet"]),
        verify_title=_text(template, "verify.title", verify.get("title")),
        verify_notes=_notes(template, "verify.notes", verify.get("notes")),
        verify_steps=tuple(steps),
    )
    sheet_names = [n.lower() for n in result.sheet_names()]
    duplicates = sorted({n for n in sheet_names if sheet_names.count(n) > 1})
    if duplicates:
        raise _fail(template, "sheets", f"sheet name(s) used twice: {', '.join(duplicates)}")
    return result


# ---------------------------------------------------------------- values


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


# ---------------------------------------------------------------- the database side


def _columns_of(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, udt_name from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table)).fetchall()
    return {name: udt for name, udt in rows}


def control_id_of(table: str) -> str | None:
    """`fct_control_ac01__privileged_access_approved` -> `AC-01`; None for other tables."""
    match = _CONTROL_TABLE.match(table)
    if not match or table == SUMMARY_TABLE:
        return None
    return f"{match.group(1).upper()}-{match.group(2)}"


def discover_controls(conn: psycopg.Connection[Any], schema: str = MARTS_SCHEMA) -> dict[str, str]:
    """Control id -> mart table, for every `fct_control_<id>__<name>` relation in `schema`."""
    tables = conn.execute(
        "select table_name from information_schema.tables where table_schema = %s "
        "order by table_name collate \"C\"", (schema,)).fetchall()
    found: dict[str, str] = {}
    for (table,) in tables:
        control = control_id_of(table)
        if control is None:
            continue
        if control in found:
            raise RenderError(f"two marts for control {control} in schema {schema}: "
                              f"{found[control]} and {table}")
        found[control] = table
    return dict(sorted(found.items()))


def fetch_run(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """The sox_runs row of `run_id` as a dict; RenderError when there is none."""
    with conn.cursor() as cur:
        cur.execute("select * from soxtrail.sox_runs where id = %s", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise RenderError(f"run {run_id} not found in soxtrail.sox_runs")
        names = [d.name for d in cur.description or ()]
    return dict(zip(names, row, strict=True))


def _stream(conn: psycopg.Connection[Any], query: sql.Composed, params: Sequence[Any],
            name: str) -> Iterator[tuple[Any, ...]]:
    """Rows of a query through a server-side cursor (constant memory)."""
    with conn.cursor(name=name) as cur:
        cur.itersize = 2000
        cur.execute(query, params)
        yield from cur


@dataclass
class _RunData:
    run: dict[str, Any]
    marts: dict[str, str]  # control id -> table
    summary: dict[str, dict[str, Any]]  # control id -> summary row
    available: dict[str, dict[str, str]]
    control_sql: dict[str, tuple[str, str, str | None, str | None]]  # id -> (model, evid, qn, sql)


def _load_run_data(conn: psycopg.Connection[Any], run_id: str, schema: str) -> _RunData:
    run = fetch_run(conn, run_id)
    marts = discover_controls(conn, schema)
    summary_columns = _columns_of(conn, schema, SUMMARY_TABLE)
    if not summary_columns:
        raise RenderError(f"{schema}.{SUMMARY_TABLE} does not exist: run the reconcile phase first")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {}.{} where run_id = %s "
                            "order by control_id collate \"C\"").format(
            sql.Identifier(schema), sql.Identifier(SUMMARY_TABLE)), (run_id,))
        names = [d.name for d in cur.description or ()]
        summary = {row[names.index("control_id")]: dict(zip(names, row, strict=True))
                   for row in cur.fetchall()}
    for control in summary:
        if control not in marts:
            raise RenderError(f"{schema}.{SUMMARY_TABLE} names control {control} but no "
                              f"{schema}.fct_control_<id>__<name> mart exists for it")
    for control, table in marts.items():
        if control not in summary:
            raise RenderError(f"{schema}.{table} has no row in {schema}.{SUMMARY_TABLE} "
                              f"for run {run_id}")
    if not marts:
        raise RenderError(f"no control marts (fct_control_*) in schema {schema}")
    available: dict[str, dict[str, str]] = {"summary": summary_columns}
    for control, table in marts.items():
        columns = _columns_of(conn, schema, table)
        for needed in ("run_id", "item_key", "result"):
            if needed not in columns:
                raise RenderError(f"{schema}.{table} has no {needed!r} column")
        available[control] = columns
    evidence = _columns_of(conn, "soxtrail", "sox_evidence")
    available["evidence"] = {**evidence, **CHAIN_COLUMNS}
    available["queries"] = dict(QUERY_COLUMNS)

    control_sql: dict[str, tuple[str, str, str | None, str | None]] = {}
    for control, table in marts.items():
        evidence_id = summary[control].get("control_evidence_id")
        if evidence_id is None:
            evidence_id = str(uuid.UUID(
                conn.execute("select md5(%s)", (f"soxtrail:{run_id}:{table}",))
                .fetchone()[0]))  # type: ignore[index]
        row = conn.execute(
            "select query_name, query_text from soxtrail.sox_evidence "
            "where id = %s and run_id = %s", (evidence_id, run_id)).fetchone()
        control_sql[control] = (table, str(evidence_id), row[0] if row else None,
                                row[1] if row else None)
    return _RunData(run, marts, summary, available, control_sql)


def template_context(data: _RunData) -> dict[str, Any]:
    """What a layout template sees: the run, its controls and the available columns."""
    run = {k: (display(v) if isinstance(v, datetime | uuid.UUID) else v)
           for k, v in data.run.items()}
    run["id"] = str(data.run["id"])
    controls = []
    for control, table in data.marts.items():
        row = data.summary[control]
        controls.append({
            "control_id": control,
            "model": table,
            "name": row.get("control_name") or control,
            "description": row.get("description") or "",
            "columns": list(data.available[control]),
            "population": row.get("population"),
            "exceptions": row.get("exceptions"),
            "result": row.get("result"),
            "control_evidence_id": data.control_sql[control][1],
        })
    return {
        "run": run,
        "controls": controls,
        "summary_columns": list(data.available["summary"]),
        "evidence_columns": list(data.available["evidence"]),
        "query_columns": list(data.available["queries"]),
    }


# ---------------------------------------------------------------- the workbook side


@dataclass
class WorkbookResult:
    """What render_workbook wrote: the files and the data rows of each sheet."""

    xlsx: Path
    csvs: dict[str, Path]
    row_counts: dict[str, int]
    control_rows: dict[str, int]
    template: str
    warnings: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Every file written: the workbook, then the CSVs in control order."""
        return [self.xlsx, *self.csvs.values()]


def _sheet_ref(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


class _Book:
    """An xlsxwriter workbook in constant-memory mode, with shared formats and limits."""

    def __init__(self, path: Path, *, created: datetime, properties: Mapping[str, str],
                 max_rows: int, max_links: int) -> None:
        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "use_zip64": True,
            "tmpdir": str(path.parent),  # a private work folder: see render_workbook
        })
        self.book.set_properties({**properties, "created": created})
        self.book.set_calc_mode("auto")
        self.max_rows = max_rows
        self.max_links = max_links
        self.sheet_names: set[str] = set()
        self.row_counts: dict[str, int] = {}
        self.warnings: list[str] = []
        self.formats: dict[tuple[str, bool], Any] = {}
        self.title = self.book.add_format({"bold": True, "font_size": 13})
        self.note = self.book.add_format({"italic": True, "font_color": "#595959"})
        self.header = self.book.add_format({"bold": True, "bg_color": "#D9E1F2", "bottom": 1,
                                            "text_wrap": True, "valign": "top"})
        self.label = self.book.add_format({"bold": True})
        self.mono = self.book.add_format({"font_name": "Consolas"})

    def fmt(self, kind: str, exception: bool = False) -> Any:
        """A cell format for a kind of value, with the exception fill when asked."""
        key = (kind, exception)
        if key not in self.formats:
            props: dict[str, Any] = {}
            if kind == "datetime":
                props["num_format"] = DATETIME_FORMAT
            elif kind == "date":
                props["num_format"] = DATE_FORMAT
            elif kind == "link":
                props.update(font_color="#0563C1", underline=1)
            elif kind == "mono":
                props["font_name"] = "Consolas"
            if exception:
                props.update(bg_color="#FFC7CE", pattern=1)
                if kind != "link":
                    props["font_color"] = "#9C0006"
            self.formats[key] = self.book.add_format(props)
        return self.formats[key]

    def add_sheet(self, name: str) -> Any:
        if name.lower() in {n.lower() for n in self.sheet_names}:
            raise RenderError(f"sheet name {name!r} is used twice")
        self.sheet_names.add(name)
        return self.book.add_worksheet(name)

    def close(self) -> None:
        self.book.close()


def continuation_name(base: str, part: int) -> str:
    """`AC-01` part 2 -> `AC-01 (2)`; the base is shortened to keep Excel's 31 characters."""
    if part == 1:
        return base
    suffix = f" ({part})"
    return base[:31 - len(suffix)].rstrip() + suffix


def evidence_location(index: int, *, sheet: str, header_rows: int,
                      per_sheet: int) -> tuple[str, int]:
    """Sheet name and 1-based Excel row of the `index`-th (0-based) evidence row."""
    part, offset = divmod(index, per_sheet)
    return continuation_name(sheet, part + 1), header_rows + offset + 1


class _TableWriter:
    """Writes a tabular sheet row by row, opening continuation sheets at the row limit."""

    def __init__(self, book: _Book, layout: SheetLayout, *, links: Mapping[str, tuple[str, int]],
                 csv_writer: Any = None, mono: Sequence[str] = ()) -> None:
        self.book = book
        self.layout = layout
        self.links = links
        self.csv = csv_writer
        self.mono = set(mono)
        self.part = 0
        self.sheet: Any = None
        self.sheet_name = ""
        self.row = 0
        self.first_data_row = 0
        self.links_in_sheet = 0
        self.widths: list[float] = []
        self.total = 0
        self.unlinked = 0
        if self.csv is not None:
            self.csv.writerow([c.header for c in layout.columns])

    @property
    def header_rows(self) -> int:
        """Rows above the data: title, notes, a blank row and the header."""
        return header_rows(self.layout)

    def _size(self, sample: Sequence[Sequence[Any]]) -> None:
        widths = []
        for i, column in enumerate(self.layout.columns):
            if column.width is not None:
                widths.append(float(column.width))
                continue
            longest = max([len(column.header) * 0.9]
                          + [len(display(row[i], column.udt)) for row in sample], default=8)
            if column.udt == "timestamptz":
                longest = max(longest, 19)
            widths.append(float(min(max(longest + 2, 8), 60)))
        self.widths = widths

    def _open_part(self) -> None:
        self._close_part()
        self.part += 1
        self.sheet_name = continuation_name(self.layout.sheet, self.part)
        sheet = self.sheet = self.book.add_sheet(self.sheet_name)
        title = self.layout.title
        if self.part > 1:
            title = f"{title} (continued, part {self.part})"
        sheet.write_string(0, 0, title, self.book.title)
        for i, note in enumerate(self.layout.notes, start=1):
            sheet.write_string(i, 0, note, self.book.note)
        for i, width in enumerate(self.widths):
            sheet.set_column(i, i, width)
        head = self.header_rows - 1
        for i, column in enumerate(self.layout.columns):
            sheet.write_string(head, i, column.header, self.book.header)
        sheet.freeze_panes(head + 1, 0)
        self.row = self.first_data_row = head + 1
        self.links_in_sheet = 0

    def _close_part(self) -> None:
        if self.sheet is None:
            return
        head = self.header_rows - 1
        self.sheet.autofilter(head, 0, max(self.row - 1, head), len(self.layout.columns) - 1)
        self.book.row_counts[self.sheet_name] = self.row - self.first_data_row

    def write_all(self, rows: Iterable[tuple[Sequence[Any], bool]]) -> int:
        """Write every (values in layout column order, is exception) pair; return the count."""
        iterator = iter(rows)
        sample: list[tuple[Sequence[Any], bool]] = []
        for item in iterator:
            sample.append(item)
            if len(sample) >= SAMPLE_ROWS:
                break
        self._size([values for values, _ in sample])
        capacity = self.book.max_rows - self.header_rows
        if capacity < 1:
            raise RenderError(f"row limit {self.book.max_rows} leaves no room for data "
                              f"on sheet {self.layout.sheet!r}")
        self._open_part()
        for values, exception in _chain(sample, iterator):
            if self.row - self.first_data_row >= capacity:
                self._open_part()
            self._write_row(values, exception)
        self._close_part()
        if self.unlinked:
            self.book.warnings.append(
                f"sheet {self.layout.sheet!r}: {self.unlinked} evidence id(s) have no evidence "
                "row in this run and are not linked")
        return self.total

    def _write_row(self, values: Sequence[Any], exception: bool) -> None:
        sheet, r = self.sheet, self.row
        for c, (column, value) in enumerate(zip(self.layout.columns, values, strict=True)):
            self._write_cell(sheet, r, c, column, value, exception)
        if self.csv is not None:
            self.csv.writerow([display(v, col.udt) for col, v in
                               zip(self.layout.columns, values, strict=True)])
        self.row += 1
        self.total += 1

    def _write_cell(self, sheet: Any, r: int, c: int, column: Column, value: Any,
                    exception: bool) -> None:
        book = self.book
        if value is None or (isinstance(value, list | tuple | str) and not value):
            if exception:
                sheet.write_blank(r, c, None, book.fmt("text", True))
            return
        if column.is_link and not isinstance(value, list | tuple):
            text = str(value)
            target = self.links.get(text)
            if target is None:
                self.unlinked += 1
            else:
                ref = f"{_sheet_ref(target[0])}!A{target[1]}"
                fmt = book.fmt("link", exception)
                if self.links_in_sheet < book.max_links:
                    sheet.write_url(r, c, f"internal:{ref}", fmt, string=text)
                    self.links_in_sheet += 1
                else:
                    formula = f'=HYPERLINK("#{ref.replace(chr(34), chr(34) * 2)}","{text}")'
                    sheet.write_formula(r, c, formula, fmt, text)
                return
        if isinstance(value, bool):
            sheet.write_string(r, c, "Yes" if value else "No", book.fmt("text", exception))
        elif isinstance(value, datetime):
            sheet.write_datetime(r, c, to_utc_naive(value), book.fmt("datetime", exception))
        elif isinstance(value, date):
            sheet.write_datetime(r, c, datetime(value.year, value.month, value.day),
                                 book.fmt("date", exception))
        elif isinstance(value, int | float | Decimal) and column.udt not in ("json", "jsonb"):
            sheet.write_number(r, c, float(value) if isinstance(value, Decimal) else value,
                               book.fmt("text", exception))
        else:
            text = display(value, column.udt)
            if len(text) > EXCEL_MAX_CHARS:
                marker = (f" … [truncated in the workbook: {len(text):,} characters; "
                          "the full text is in the CSV / bundle]")
                self.book.warnings.append(
                    f"sheet {self.sheet_name!r} row {r + 1} column {column.header!r}: "
                    f"{len(text):,} characters exceed Excel's cell limit; shortened, marked")
                text = text[:EXCEL_MAX_CHARS - len(marker)] + marker
            kind = "mono" if column.name in self.mono else "text"
            sheet.write_string(r, c, text, book.fmt(kind, exception))


def header_rows(layout: SheetLayout) -> int:
    """Rows above the data of a tabular sheet: title, notes, a blank row, the header row."""
    return 1 + len(layout.notes) + 1 + 1


def _chain(first: Iterable[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


def _evidence_query(layout: SheetLayout) -> sql.Composed:
    parts: list[sql.Composable] = []
    for column in layout.columns:
        if column.name == "chain_seq":
            parts.append(sql.SQL("chain.seq"))
        elif column.name == "chain_hash":
            parts.append(sql.SQL("chain.chain_hash"))
        else:
            parts.append(sql.SQL("evidence.{}").format(sql.Identifier(column.name)))
    return sql.SQL(
        "select {} from soxtrail.sox_evidence as evidence "
        "left join soxtrail.sox_evidence_chain as chain on chain.evidence_id = evidence.id "
        "where evidence.run_id = %s "
        + EVIDENCE_ORDER).format(sql.SQL(", ").join(parts))


EVIDENCE_ORDER = ('order by evidence.source_system collate "C", evidence.query_name collate "C", '
                  'evidence.executed_at, evidence.id')


def _write_summary(book: _Book, layout: Layout, data: _RunData,
                   links: Mapping[str, tuple[str, int]]) -> None:
    sheet_layout = layout.summary
    sheet = book.add_sheet(sheet_layout.sheet)
    sheet.write_string(0, 0, sheet_layout.title, book.title)
    row = 1
    for note in sheet_layout.notes:
        sheet.write_string(row, 0, note, book.note)
        row += 1
    row += 1
    for item in layout.run_fields:
        sheet.write_string(row, 0, item.label, book.label)
        if item.field is not None:
            value = data.run.get(item.field)
            if item.field == "clusters" and value is None:
                value = "all SOX-in-scope clusters"
            if isinstance(value, datetime):
                sheet.write_datetime(row, 1, to_utc_naive(value), book.fmt("datetime"))
            elif isinstance(value, dict):
                sheet.write_string(row, 1, display(value, "jsonb")[:EXCEL_MAX_CHARS])
            elif value is not None:
                sheet.write_string(row, 1, display(value))
        else:
            sheet.write_string(row, 1, item.value or "")
        row += 1
    row += 1
    columns = sheet_layout.columns
    head = row
    widths = [float(c.width) if c.width else 0.0 for c in columns]
    rows = [[data.summary[control].get(c.name) for c in columns] for control in data.summary]
    for i, column in enumerate(columns):
        if not widths[i]:
            longest = max([len(column.header)] + [len(display(r[i], column.udt)) for r in rows])
            widths[i] = float(min(max(longest + 2, 8), 70))
    widths[0] = max(widths[0], max((len(f.label) + 2 for f in layout.run_fields), default=0))
    for i, width in enumerate(widths):
        sheet.set_column(i, i, width)
    for i, column in enumerate(columns):
        sheet.write_string(head, i, column.header, book.header)
    sheet.freeze_panes(head + 1, 0)
    writer = _TableWriter(book, sheet_layout, links=links)
    writer.sheet, writer.sheet_name = sheet, sheet_layout.sheet
    for values in rows:
        row += 1
        exception = str(values[_index(columns, "result")] if _index(columns, "result") >= 0
                        else "").upper() not in ("", "EFFECTIVE", "PASS")
        for c, (column, value) in enumerate(zip(columns, values, strict=True)):
            writer._write_cell(sheet, row, c, column, value, exception)
    sheet.autofilter(head, 0, max(row, head), len(columns) - 1)
    book.row_counts[sheet_layout.sheet] = len(rows)


def _index(columns: Sequence[Column], name: str) -> int:
    for i, column in enumerate(columns):
        if column.name == name:
            return i
    return -1


def _write_verify(book: _Book, layout: Layout) -> None:
    sheet = book.add_sheet(layout.verify_sheet)
    sheet.write_string(0, 0, layout.verify_title, book.title)
    row = 1
    for note in layout.verify_notes:
        sheet.write_string(row, 0, note, book.note)
        row += 1
    row += 1
    sheet.set_column(0, 0, 48)
    sheet.set_column(1, 1, 100)
    sheet.set_column(2, 2, 60)
    for i, header in enumerate(("Step", "Command", "Expected result")):
        sheet.write_string(row, i, header, book.header)
    sheet.freeze_panes(row + 1, 0)
    for step in layout.verify_steps:
        row += 1
        sheet.write_string(row, 0, step.step)
        sheet.write_string(row, 1, step.command, book.mono)
        if step.expect:
            sheet.write_string(row, 2, step.expect)
    book.row_counts[layout.verify_sheet] = len(layout.verify_steps)


def _query_rows(layout: SheetLayout, data: _RunData) -> Iterator[list[Any]]:
    for control, (model, evidence_id, query_name, text) in data.control_sql.items():
        summary = data.summary[control]
        lines = (text.split("\n") if text is not None
                 else [f"-- no compiled SQL recorded: evidence row {evidence_id} not found"])
        for number, line in enumerate(lines, start=1):
            record = {"control_id": control, "control_name": summary.get("control_name"),
                      "model": model, "query_name": query_name, "evidence_id": evidence_id,
                      "line": number, "sql": line.rstrip("\r")}
            yield [record[c.name] for c in layout.columns]


def _csv_file(path: Path) -> IO[str]:
    return path.open("w", encoding="utf-8", newline="")


def _output_paths(out: Path, run: Mapping[str, Any]) -> tuple[Path, Path]:
    if out.suffix.lower() == ".xlsx":
        return out, out.parent
    return out / f"soxtrail-{run['quarter']}-{str(run['id'])[:8]}.xlsx", out


def render_workbook(conn: psycopg.Connection[Any], *, run_id: str, template: str = "default",
                    out: Path, max_rows: int = EXCEL_MAX_ROWS,
                    max_links: int = EXCEL_MAX_LINKS, schema: str = MARTS_SCHEMA) -> WorkbookResult:
    """Render the run's marts into an XLSX workbook and one CSV per control.

    `out` is a folder (the workbook is named after quarter and run) or an `.xlsx`
    path; CSVs (`<control_id>.csv`) go beside the workbook.  `max_rows` is the
    sheet row limit (Excel's by default): longer sheets continue on `<name> (2)`,
    … .  The same data gives byte-identical files.
    """
    run_id = str(uuid.UUID(str(run_id)))
    with conn.transaction():
        data = _load_run_data(conn, run_id, schema)
        layout = load_layout(template, template_context(data), data.available)
        xlsx, csv_dir = _output_paths(out, data.run)
        xlsx.parent.mkdir(parents=True, exist_ok=True)
        csv_dir.mkdir(parents=True, exist_ok=True)

        # Where each evidence row will land, so links can point at it before it is written.
        evidence_ids = [str(r[0]) for r in conn.execute(
            "select evidence.id from soxtrail.sox_evidence as evidence "
            "where evidence.run_id = %s " + EVIDENCE_ORDER, (run_id,))]  # type: ignore[operator]
        per_sheet = max_rows - header_rows(layout.evidence)
        if per_sheet < 1:
            raise RenderError(f"row limit {max_rows} leaves no room for evidence rows")
        links = {eid: evidence_location(i, sheet=layout.evidence.sheet,
                                        header_rows=header_rows(layout.evidence),
                                        per_sheet=per_sheet)
                 for i, eid in enumerate(evidence_ids)}

        # Everything is written in a private folder beside the output and moved into
        # place at the end: a failed render leaves no half-written file behind.
        work = Path(tempfile.mkdtemp(prefix=".soxtrail-render-", dir=xlsx.parent))
        partial = work / xlsx.name
        started = to_utc_naive(data.run["started_at"])
        properties = {"title": f"SOX ITGC report {data.run['quarter']}",
                      "author": str(data.run.get("triggered_by") or "soxtrail"),
                      **layout.properties}
        book = _Book(partial, created=started, properties=properties, max_rows=max_rows,
                     max_links=max_links)
        csvs: dict[str, Path] = {}
        control_rows: dict[str, int] = {}
        try:
            _write_summary(book, layout, data, links)
            for n, (control, sheet_layout) in enumerate(layout.controls.items()):
                table = data.marts[control]
                names = [c.name for c in sheet_layout.columns]
                select = [*names, "result"]
                query = sql.SQL("select {} from {}.{} where run_id = %s "
                                "order by item_key collate \"C\"").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in select),
                    sql.Identifier(schema), sql.Identifier(table))
                rows = _stream(conn, query, (run_id,), f"soxtrail_render_{n}")
                csv_path = csv_dir / f"{control}.csv"
                csv_partial = work / csv_path.name
                with _csv_file(csv_partial) as handle:
                    writer = _TableWriter(book, sheet_layout, links=links,
                                          csv_writer=csv.writer(handle, lineterminator="\r\n"))
                    control_rows[control] = writer.write_all(
                        (row[:-1], str(row[-1] or "").upper() == "EXCEPTION") for row in rows)
                csvs[control] = csv_path
                expected = data.summary[control].get("population")
                if isinstance(expected, int) and expected != control_rows[control]:
                    book.warnings.append(
                        f"{control}: {control_rows[control]} rows in {table} but the summary "
                        f"says population {expected}")
            evidence_rows = _stream(conn, _evidence_query(layout.evidence), (run_id,),
                                    "soxtrail_render_evidence")
            written = _TableWriter(book, layout.evidence, links={}).write_all(
                (row, False) for row in evidence_rows)
            if written != len(evidence_ids):
                raise RenderError(f"evidence rows changed while rendering run {run_id} "
                                  f"({len(evidence_ids)} then {written})")
            _TableWriter(book, layout.queries, links=links, mono=("sql",)).write_all(
                (row, False) for row in _query_rows(layout.queries, data))
            _write_verify(book, layout)
            book.close()
            for path in csvs.values():
                os.replace(work / path.name, path)
            os.replace(partial, xlsx)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for control, (model, evidence_id, _, text) in data.control_sql.items():
        if text is None:
            book.warnings.append(f"{control}: no compiled SQL (evidence row {evidence_id} of "
                                 f"{model} not found)")
    return WorkbookResult(xlsx=xlsx, csvs=csvs, row_counts=dict(book.row_counts),
                          control_rows=control_rows, template=layout.template,
                          warnings=list(book.warnings))

