"""The `soxtrail diff --format xlsx` workbook: one sheet per layer, written with xlsxwriter.

The caller (soxtrail.audit.diff) says what each sheet holds; this module only lays it out:
title lines, a bold header row, the rows as values (text cells written as text, never as
formulas), an autofilter and frozen header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xlsxwriter

from render.workbook.writer import EXCEL_MAX_CHARS


@dataclass(frozen=True)
class DiffSheet:
    """One sheet: its name, title lines above the table, the columns and the rows."""

    name: str
    columns: Sequence[str]
    rows: Sequence[Mapping[str, Any]]
    title: Sequence[str] = field(default_factory=tuple)


def _write(sheet: Any, row: int, col: int, value: Any, wrap: Any) -> None:
    if value is None:
        sheet.write_blank(row, col, None)
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, int | float):
        sheet.write_number(row, col, value)
    else:
        text = str(value)
        sheet.write_string(row, col, text[:EXCEL_MAX_CHARS], wrap if "\n" in text else None)


def write_diff_workbook(path: Path, sheets: Sequence[DiffSheet]) -> None:
    """Write the sheets, in order, to `path`."""
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False})
    try:
        bold = workbook.add_format({"bold": True})
        wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
        for spec in sheets:
            sheet = workbook.add_worksheet(spec.name)
            for row, line in enumerate(spec.title):
                sheet.write_string(row, 0, line, bold)
            top = len(spec.title) + (1 if spec.title else 0)
            for col, name in enumerate(spec.columns):
                sheet.write_string(top, col, name, bold)
                sheet.set_column(col, col, max(12, min(48, len(name) + 4)))
            for row, values in enumerate(spec.rows, start=top + 1):
                for col, name in enumerate(spec.columns):
                    _write(sheet, row, col, values.get(name), wrap)
            sheet.freeze_panes(top + 1, 0)
            sheet.autofilter(top, 0, top + max(len(spec.rows), 1), max(len(spec.columns) - 1, 0))
    finally:
        workbook.close()
