"""The workbook's layout: a Jinja2 template renders YAML, validated against the marts' columns."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from render.workbook.values import display
from soxtrail.kernel.config import quarter_of
from soxtrail.kernel.controls import registry
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import MONTH_NAMES

if TYPE_CHECKING:
    from render.workbook.data import RunData

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_LINK_COLUMNS = ("evidence_id", "control_evidence_id")
# a control row's searched population links to its first row on the Searched sheet
SEARCHED_LINK_COLUMN = "searched_population"


# keys of `available` that are sheets but not controls
_NOT_CONTROLS = ("summary", "evidence", "queries", "searched", "register")


class LayoutError(ConfigError):
    """A template renders a layout the workbook cannot honour (names template and key)."""



@dataclass(frozen=True)
class Column:
    """One column of a sheet: the data column it shows, its header and width."""

    name: str
    header: str
    udt: str
    width: float | None = None
    group: bool = False  # in the collapsed outline group: shown when the reader expands it

    @property
    def is_link(self) -> bool:
        return self.link_to is not None

    @property
    def link_to(self) -> str | None:
        """What a cell of the column links to: `evidence` (the Evidence sheet), `searched`
        (the Searched sheet) or None."""
        if self.name in _LINK_COLUMNS:
            return "evidence"
        if self.name == SEARCHED_LINK_COLUMN:
            return "searched"
        return None


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
    searched: SheetLayout | None = None  # the populations searched (when the run has them)
    register: SheetLayout | None = None  # the exceptions register (when the run has one)
    chart_title: str = ""  # the Summary's bar chart of exceptions per control ("" = none)

    def sheet_names(self) -> list[str]:
        """Every base sheet name, in workbook order."""
        return ([self.summary.sheet] + [s.sheet for s in self.controls.values()]
                + ([self.searched.sheet] if self.searched is not None else [])
                + ([self.register.sheet] if self.register is not None else [])
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


def period(run: Mapping[str, Any]) -> dict[str, str]:
    """The run's reporting period as the run block states it: the quarter's days and months,
    the fiscal year's first month and the reporting time zone (from the recorded config)."""
    config = run.get("config")
    quarter = quarter_of(config if isinstance(config, Mapping) else {}, str(run["quarter"]))
    month = quarter.fiscal_year_start_month
    first = replace(quarter, number=1).first_day
    last = replace(quarter, number=4).end_day - timedelta(days=1)
    fiscal_year = (f"{MONTH_NAMES[first.month]} {first.year} to "
                   f"{MONTH_NAMES[last.month]} {last.year}")
    return {
        "quarter": quarter.label,
        "days": f"{quarter.first_day.isoformat()} to "
                f"{(quarter.end_day - timedelta(days=1)).isoformat()} "
                f"({quarter.months})",
        "fiscal_year_start": f"{MONTH_NAMES[month]} (fiscal_year_start_month {month}: "
                             f"fiscal year {quarter.year} is {fiscal_year}"
                             f"{'' if month == 1 else ', named by the year it starts in'})",
        "timezone": quarter.timezone,
    }


def render_layout_text(template: str, context: Mapping[str, Any]) -> str:
    """The template rendered with the run's context: YAML text."""
    path = template_path(template)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _yaml_quote
    env.globals["period"] = period
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
                                                 "exclude", "group"})
        group = entry.get("group", False)
        if not isinstance(group, bool):
            raise _fail(template, here, f"group {group!r}: expected true or false")
        if entry.get("others"):
            if "column" in entry or "header" in entry:
                raise _fail(template, here, "`others: true` takes only `exclude`, `width` "
                                            "and `group`")
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
                                          entry.get("width"), group))
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
                              width, group))
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
                   {"properties", "summary", "controls", "searched", "register", "evidence",
                    "queries", "verify"},
                   {"summary", "controls", "evidence", "queries", "verify"})
    props = _mapping(template, "properties", doc.get("properties") or {},
                     {"title", "subject", "author", "manager", "company", "category",
                      "keywords", "comments"})
    properties = {k: _text(template, f"properties.{k}", v) for k, v in sorted(props.items())}

    summary, summary_entry = _sheet(template, "summary", "summary", doc["summary"],
                                    available["summary"], {"run_fields", "chart"})
    chart_title = _text(template, "summary.chart", summary_entry.get("chart"))
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

    control_ids = [k for k in available if k not in _NOT_CONTROLS]
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

    searched = None
    if doc.get("searched") is not None:
        if "searched" not in available:
            raise _fail(template, "searched", "the run has no searched populations "
                                              "(render the sheet only when `searched_columns`)")
        searched, _ = _sheet(template, "searched", "searched", doc["searched"],
                             available["searched"])
        if searched.columns[0].name != "population_key":
            raise _fail(template, "searched.columns", "the first column must be "
                                                      "`population_key` (links point at "
                                                      "column A)")
    register = None
    if doc.get("register") is not None:
        if "register" not in available:
            raise _fail(template, "register", "the run has no exceptions register "
                                              "(render the sheet only when `register_columns`)")
        register, _ = _sheet(template, "register", "register", doc["register"],
                             available["register"])
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
        searched=searched,
        register=register,
        chart_title=chart_title,
    )
    sheet_names = [n.lower() for n in result.sheet_names()]
    duplicates = sorted({n for n in sheet_names if sheet_names.count(n) > 1})
    if duplicates:
        raise _fail(template, "sheets", f"sheet name(s) used twice: {', '.join(duplicates)}")
    return result


def template_context(data: RunData) -> dict[str, Any]:
    """What a layout template sees: the run, its controls and the available columns."""
    run = {k: (display(v) if isinstance(v, datetime | uuid.UUID) else v)
           for k, v in data.run.items()}
    run["id"] = str(data.run["id"])
    controls = []
    for control, table in data.marts.items():
        row = data.summary[control]
        declared = next((c for c in registry() if c.id == control), None)
        controls.append({
            "control_id": control,
            "kind": declared.kind if declared else "control",
            "sheet": declared.sheet if declared else control,
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
        "searched_columns": list(data.available.get("searched", {})),
        "register_columns": list(data.available.get("register", {})),
        "register": dict(data.register),
        "clusters": list(data.clusters),
        "signing": dict(data.signing),
    }
