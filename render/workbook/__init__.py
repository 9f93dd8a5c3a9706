"""Phase 4: the auditor's workbook (XLSX) and per-control CSVs, laid out by a Jinja2 template.

`layout` parses and validates the template, `values` formats cells, `data` reads
the run from the database and `writer` writes the files.
"""

from __future__ import annotations

from render.workbook.data import (
    CHAIN_COLUMNS,
    MARTS_SCHEMA,
    QUERY_COLUMNS,
    SUMMARY_TABLE,
    RenderError,
    RunData,
    control_id_of,
    control_marts,
    fetch_run,
    load_run_data,
)
from render.workbook.layout import (
    TEMPLATES_DIR,
    Column,
    Layout,
    LayoutError,
    RunField,
    SheetLayout,
    VerifyStep,
    humanize,
    load_layout,
    render_layout_text,
    template_context,
    template_path,
    validate_layout,
)
from render.workbook.values import display, to_utc_naive
from render.workbook.writer import (
    EXCEL_MAX_CHARS,
    EXCEL_MAX_LINKS,
    EXCEL_MAX_ROWS,
    WorkbookResult,
    continuation_name,
    evidence_location,
    header_rows,
    render_workbook,
)

__all__ = [
    "CHAIN_COLUMNS",
    "EXCEL_MAX_CHARS",
    "EXCEL_MAX_LINKS",
    "EXCEL_MAX_ROWS",
    "MARTS_SCHEMA",
    "QUERY_COLUMNS",
    "SUMMARY_TABLE",
    "TEMPLATES_DIR",
    "Column",
    "Layout",
    "LayoutError",
    "RenderError",
    "RunData",
    "RunField",
    "SheetLayout",
    "VerifyStep",
    "WorkbookResult",
    "continuation_name",
    "control_id_of",
    "control_marts",
    "display",
    "evidence_location",
    "fetch_run",
    "header_rows",
    "humanize",
    "load_layout",
    "load_run_data",
    "render_layout_text",
    "render_workbook",
    "template_context",
    "template_path",
    "to_utc_naive",
    "validate_layout",
]
