"""The user access review files (AC-03) a role owner fills in: a CSV through the report's one
CSV writer, or an XLSX workbook with a `Review` sheet to fill in and an `About` sheet.

The columns, their order and the decisions come from the caller (the access review
connector owns the file format); this module only lays the rows out."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import xlsxwriter

from render.workbook.layout import Column
from render.workbook.writer import ControlCsv

REVIEW_SHEET = "Review"
ABOUT_SHEET = "About"
MIN_WIDTH = 10
MAX_WIDTH = 48
SAMPLE_ROWS = 200  # rows looked at to size columns
PREFILLED_FILL = "#F2F2F2"  # grey: what the run says, not to be changed
PREFILLED_FONT = "#595959"
TO_FILL_FILL = "#FFF2CC"  # yellow: what the reviewer fills in
TO_FILL_HEADER = "#FFD966"


def _replace(path: Path, tmp: Path) -> None:
    """Move the finished file into place (a half-written file never carries the name)."""
    os.replace(tmp, path)


def write_review_csv(path: Path, columns: Sequence[str],
                     rows: Sequence[Mapping[str, Any]]) -> int:
    """The review as CSV (UTF-8, a header of the column names), each cell through the
    report's CSV writer (a formula-looking cell neutralised); returns the data rows written."""
    layout = [Column(name=name, header=name, udt="text") for name in columns]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = ControlCsv(handle)
        writer.header(layout)
        for row in rows:
            writer.row(layout, [row.get(name) for name in columns])
    _replace(path, tmp)
    return len(rows)


def _widths(columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
            to_fill: Sequence[str]) -> list[float]:
    widths = []
    for name in columns:
        longest = max([len(name)] + [len(str(row.get(name) or ""))
                                     for row in rows[:SAMPLE_ROWS]])
        if name in to_fill:
            longest = max(longest, 16)
        widths.append(float(min(MAX_WIDTH, max(MIN_WIDTH, longest + 2))))
    return widths


def write_review_xlsx(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *,
                      to_fill: Sequence[str], choices: Mapping[str, Sequence[str]],
                      text_only: Sequence[str], about: Sequence[tuple[str, str]],
                      created: datetime) -> int:
    """The review as a workbook: sheet `Review` (header in row 1, frozen; the pre-filled
    columns grey, the `to_fill` columns yellow; a drop-down list on each `choices` column;
    `text_only` columns formatted as text, so a typed date stays the text typed) and sheet
    `About` (`about`: label, text). `created` is the workbook's creation time (same rows and
    time: the same bytes). Returns the data rows written."""
    tmp = path.with_name(path.name + ".tmp")
    book = xlsxwriter.Workbook(str(tmp), {
        "constant_memory": True,
        "strings_to_numbers": False,
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "tmpdir": str(path.parent),
    })
    book.set_properties({"title": f"Access review {path.stem}", "created": created})
    header = {"bold": True, "bottom": 1, "text_wrap": True, "valign": "top", "locked": True}
    head_given = book.add_format({**header, "bg_color": "#D9D9D9"})
    head_to_fill = book.add_format({**header, "bg_color": TO_FILL_HEADER})
    given = book.add_format({"bg_color": PREFILLED_FILL, "font_color": PREFILLED_FONT,
                             "bottom": 4, "bottom_color": "#BFBFBF"})
    fill = book.add_format({"bg_color": TO_FILL_FILL, "border": 1, "border_color": "#BF9000",
                            "locked": False})
    fill_text = book.add_format({"bg_color": TO_FILL_FILL, "border": 1,
                                 "border_color": "#BF9000", "locked": False,
                                 "num_format": "@"})
    sheet = book.add_worksheet(REVIEW_SHEET)
    for index, width in enumerate(_widths(columns, rows, to_fill)):
        sheet.set_column(index, index, width)
    sheet.freeze_panes(1, 1)
    sheet.set_row(0, 30)
    for c, name in enumerate(columns):
        sheet.write_string(0, c, name, head_to_fill if name in to_fill else head_given)
    for r, row in enumerate(rows, start=1):
        for c, name in enumerate(columns):
            value = row.get(name)
            if name in to_fill:
                style = fill_text if name in text_only else fill
                if value is None or value == "":
                    sheet.write_blank(r, c, None, style)
                else:
                    sheet.write_string(r, c, str(value), style)
            elif value is None or value == "":
                sheet.write_blank(r, c, None, given)
            else:
                sheet.write_string(r, c, str(value), given)
    last = max(len(rows), 1)
    sheet.autofilter(0, 0, last, len(columns) - 1)
    for name, values in choices.items():
        c = list(columns).index(name)
        sheet.data_validation(1, c, last, c, {
            "validate": "list", "source": list(values), "ignore_blank": True,
            "input_title": name, "input_message": " or ".join(values) + " (empty: undecided)",
            "error_title": name, "error_message": "Choose " + " or ".join(values) + ".",
        })
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(0)
    sheet.set_footer("&L&A&RPage &P of &N")

    info = book.add_worksheet(ABOUT_SHEET)
    label = book.add_format({"bold": True, "valign": "top"})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    info.set_column(0, 0, 18)
    info.set_column(1, 1, 100)
    for r, (key, text) in enumerate(about):
        info.write_string(r, 0, key, label)
        info.write_string(r, 1, text, wrap)
    book.close()
    _replace(path, tmp)
    return len(rows)
