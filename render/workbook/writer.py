"""The workbook written with xlsxwriter in constant memory, and one CSV per control beside it."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import psycopg
import xlsxwriter

from render.workbook.data import (
    MARTS_SCHEMA,
    RenderError,
    RunData,
    load_run_data,
    read_evidence_ids,
    read_evidence_rows,
    read_mart_rows,
    read_register_rows,
    read_searched_rows,
)
from render.workbook.layout import Column, Layout, SheetLayout, load_layout, template_context
from render.workbook.values import display, to_utc_naive
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.csvcells import neutralise

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_LINKS = 65_530  # hyperlinks per worksheet; beyond it links are HYPERLINK() formulas
EXCEL_MAX_CHARS = 32_767
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
PERCENT_FORMAT = "0.0%"
PERCENT_COLUMNS = ("pass_rate",)  # fractions 0..1, shown as percentages
SAMPLE_ROWS = 200  # rows looked at to size columns


def csv_cell(value: Any, udt: str = "") -> str:
    """The CSV text of a value: its display text, and a text cell that a spreadsheet would
    read as a formula prefixed with `'` (OWASP). Numbers are left alone (a negative number
    is not a formula)."""
    text = display(value, udt)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return text
    return neutralise(text)


class ControlCsv:
    """The one CSV writer of the report: a control's rows, formula-looking cells neutralised."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle, lineterminator="\r\n")

    def header(self, columns: Sequence[Column]) -> None:
        """The header line: the columns' headers."""
        self._writer.writerow([csv_cell(c.header) for c in columns])

    def row(self, columns: Sequence[Column], values: Sequence[Any]) -> None:
        """One data row, each value shown as its column's type."""
        self._writer.writerow([csv_cell(v, c.udt) for c, v in zip(columns, values, strict=True)])


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
        self.wrap = self.book.add_format({"text_wrap": True, "valign": "top"})
        self.run_datetime = self.book.add_format({"num_format": DATETIME_FORMAT,
                                                  "align": "left"})
        self.wrap_mono = self.book.add_format({"text_wrap": True, "valign": "top",
                                               "font_name": "Consolas"})

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
            elif kind == "percent":
                props["num_format"] = PERCENT_FORMAT
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

    @staticmethod
    def print_setup(sheet: Any, *, header_row: int, one_page: bool = False) -> None:
        """Landscape, one page wide (`one_page`: and tall), the header row repeated on every
        printed page, the sheet name and page number in the footer."""
        sheet.set_landscape()
        sheet.set_paper(9)  # A4; Letter printers scale it
        sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.6)
        sheet.fit_to_pages(1, 1 if one_page else 0)
        sheet.repeat_rows(header_row)
        sheet.set_footer("&L&A&RPage &P of &N")

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
                 csv_writer: ControlCsv | None = None, mono: Sequence[str] = (),
                 searched: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.book = book
        self.layout = layout
        self.links = links
        # where each searched population starts on the Searched sheet (None: no such sheet)
        self.searched = searched
        # per column: where its cells link to (None: a plain cell), looked up once
        self.targets: list[Mapping[str, tuple[str, int]] | None] = [
            links if column.link_to == "evidence" else searched
            if column.link_to == "searched" else None for column in layout.columns]
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
            self.csv.header(layout.columns)

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
        _set_columns(sheet, self.layout.columns, self.widths)
        head = self.header_rows - 1
        for i, column in enumerate(self.layout.columns):
            sheet.write_string(head, i, column.header, self.book.header)
        sheet.freeze_panes(head + 1, 1)
        self.book.print_setup(sheet, header_row=head)
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
                f"sheet {self.layout.sheet!r}: {self.unlinked} evidence id(s) or searched "
                "population(s) have no row in this run and are not linked")
        return self.total

    def _write_row(self, values: Sequence[Any], exception: bool) -> None:
        sheet, r = self.sheet, self.row
        for c, (column, value) in enumerate(zip(self.layout.columns, values, strict=True)):
            self._write_cell(sheet, r, c, column, value, exception)
        if self.csv is not None:
            self.csv.row(self.layout.columns, values)
        self.row += 1
        self.total += 1

    def _write_cell(self, sheet: Any, r: int, c: int, column: Column, value: Any,
                    exception: bool) -> None:
        book = self.book
        if value is None or (isinstance(value, list | tuple | str) and not value):
            if exception:
                sheet.write_blank(r, c, None, book.fmt("text", True))
            return
        targets = self.targets[c]
        if targets is not None and not isinstance(value, list | tuple):
            text = str(value)
            target = targets.get(text)
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
            kind = "percent" if column.name in PERCENT_COLUMNS else "text"
            sheet.write_number(r, c, float(value) if isinstance(value, Decimal) else value,
                               book.fmt(kind, exception))
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


def _set_columns(sheet: Any, columns: Sequence[Column], widths: Sequence[float]) -> None:
    """Column widths, the `group` columns in a collapsed outline group: a reader sees the
    item, result, reasons and evidence, and expands (+) the test attributes."""
    grouped = [i for i, column in enumerate(columns) if column.group]
    for i, width in enumerate(widths):
        if i in grouped:
            sheet.set_column(i, i, width, None, {"level": 1, "hidden": True})
        elif i - 1 in grouped:
            sheet.set_column(i, i, width, None, {"collapsed": True})
        else:
            sheet.set_column(i, i, width)

def _write_summary(book: _Book, layout: Layout, data: RunData,
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
                value = "all SOX-in-scope clusters" + (
                    f": {', '.join(data.clusters)}" if data.clusters else "")
            if isinstance(value, datetime):
                sheet.write_datetime(row, 1, to_utc_naive(value), book.run_datetime)
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
    # the controls in sheet order (registry: controls, then completeness), so the chart's
    # controls are one range
    order = [control for control in data.marts if control in data.summary]
    rows = [[data.summary[control].get(c.name) for c in columns] for control in order]
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
    last_row = row
    controls = sum(1 for control in order if control in CONTROLS)
    category, count = _index(columns, "control_id"), _index(columns, "exceptions")
    if layout.chart_title and controls and category >= 0 and count >= 0:
        most = max((int(r[count] or 0) for r in rows[:controls]), default=0)
        last_row = _exceptions_chart(book, sheet, layout.chart_title, sheet_layout.sheet,
                                     first=head + 1, last=head + controls,
                                     category=category, count=count, at=row + 2, most=most)
    sheet.print_area(0, 0, last_row, len(columns) - 1)
    book.print_setup(sheet, header_row=head, one_page=True)


CHART_ROWS = 15  # rows the Summary's chart covers (default row height)


def _exceptions_chart(book: _Book, sheet: Any, title: str, sheet_name: str, *, first: int,
                      last: int, category: int, count: int, at: int, most: int) -> int:
    """A bar chart of the exceptions per control (the Summary's rows `first`..`last`) at row
    `at`; the last row it covers."""
    chart = book.book.add_chart({"type": "bar"})
    chart.add_series({
        "name": "Exceptions",
        "categories": [sheet_name, first, category, last, category],
        "values": [sheet_name, first, count, last, count],
        "fill": {"color": "#C00000"},
        "data_labels": {"value": True},
        "gap": 60,
    })
    chart.set_title({"name": title, "name_font": {"size": 11, "bold": True}})
    chart.set_legend({"none": True})
    chart.set_x_axis({"name": "Exceptions", "min": 0, "major_gridlines": {"visible": True},
                      "num_format": "0", "major_unit": max(1, -(-most // 8))})
    chart.set_y_axis({"reverse": True})  # the first control at the top, as in the table
    chart.set_size({"width": 560, "height": 20 * CHART_ROWS})
    sheet.insert_chart(at, 0, chart, {"x_offset": 4, "y_offset": 4, "object_position": 1})
    return at + CHART_ROWS


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
    sheet.set_column(1, 1, 90)
    sheet.set_column(2, 2, 50)
    for i, header in enumerate(("Step", "Command", "Expected result")):
        sheet.write_string(row, i, header, book.header)
    sheet.freeze_panes(row + 1, 0)
    book.print_setup(sheet, header_row=row)
    for step in layout.verify_steps:
        row += 1
        sheet.write_string(row, 0, step.step, book.wrap)
        sheet.write_string(row, 1, step.command, book.wrap_mono)
        if step.expect:
            sheet.write_string(row, 2, step.expect, book.wrap)
    book.row_counts[layout.verify_sheet] = len(layout.verify_steps)


def _query_rows(layout: SheetLayout, data: RunData) -> Iterator[list[Any]]:
    for control, (model, evidence_id, query_name, text) in data.control_sql.items():
        summary = data.summary[control]
        lines = (text.split("\n") if text is not None
                 else [f"-- no compiled SQL recorded: evidence row {evidence_id} not found"])
        for number, line in enumerate(lines, start=1):
            record = {"control_id": control, "control_name": summary.get("control_name"),
                      "model": model, "query_name": query_name, "evidence_id": evidence_id,
                      "line": number, "sql": line.rstrip("\r")}
            yield [record[c.name] for c in layout.columns]


def _searched_locations(layout: Layout, data: RunData,
                        max_rows: int) -> dict[str, tuple[str, int]] | None:
    """Where each searched population's first row lands on the Searched sheet (None: the
    workbook has no Searched sheet)."""
    if layout.searched is None:
        return None
    rows = header_rows(layout.searched)
    per_sheet = max_rows - rows
    if per_sheet < 1:
        raise RenderError(f"row limit {max_rows} leaves no room for searched populations")
    found: dict[str, tuple[str, int]] = {}
    index = 0
    for key, count in data.searched_counts:
        found[key] = evidence_location(index, sheet=layout.searched.sheet, header_rows=rows,
                                       per_sheet=per_sheet)
        index += count
    return found


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
        data = load_run_data(conn, run_id, schema)
        layout = load_layout(template, template_context(data), data.available)
        xlsx, csv_dir = _output_paths(out, data.run)
        xlsx.parent.mkdir(parents=True, exist_ok=True)
        csv_dir.mkdir(parents=True, exist_ok=True)

        # Where each evidence row will land, so links can point at it before it is written.
        evidence_ids = read_evidence_ids(conn, run_id)
        per_sheet = max_rows - header_rows(layout.evidence)
        if per_sheet < 1:
            raise RenderError(f"row limit {max_rows} leaves no room for evidence rows")
        links = {eid: evidence_location(i, sheet=layout.evidence.sheet,
                                        header_rows=header_rows(layout.evidence),
                                        per_sheet=per_sheet)
                 for i, eid in enumerate(evidence_ids)}
        searched = _searched_locations(layout, data, max_rows)

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
                rows = read_mart_rows(conn, run_id, schema=schema, table=table,
                                      columns=[*names, "result"],
                                      cursor=f"soxtrail_render_{n}")
                csv_path = csv_dir / f"{control}.csv"
                csv_partial = work / csv_path.name
                with _csv_file(csv_partial) as handle:
                    writer = _TableWriter(book, sheet_layout, links=links,
                                          csv_writer=ControlCsv(handle), searched=searched)
                    control_rows[control] = writer.write_all(
                        (row[:-1], str(row[-1] or "").upper() == "EXCEPTION") for row in rows)
                csvs[control] = csv_path
                expected = data.summary[control].get("population")
                if isinstance(expected, int) and expected != control_rows[control]:
                    book.warnings.append(
                        f"{control}: {control_rows[control]} rows in {table} but the summary "
                        f"says population {expected}")
            if layout.searched is not None:
                written = _TableWriter(book, layout.searched, links=links).write_all(
                    (row, False) for row in read_searched_rows(
                        conn, run_id, schema=schema,
                        columns=[c.name for c in layout.searched.columns]))
                if written != sum(n for _, n in data.searched_counts):
                    raise RenderError(f"searched populations changed while rendering run "
                                      f"{run_id}")
            if layout.register is not None:
                # a waived exception is still an exception: marked like one
                written = _TableWriter(book, layout.register, links=links).write_all(
                    (row[:-1], str(row[-1] or "").startswith("EXCEPTION"))
                    for row in read_register_rows(
                        conn, run_id, schema=schema,
                        columns=[c.name for c in layout.register.columns]))
                if written != data.register.get("rows"):
                    raise RenderError(f"exceptions register changed while rendering run "
                                      f"{run_id}")
            evidence_rows = read_evidence_rows(conn, run_id,
                                               [c.name for c in layout.evidence.columns])
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
