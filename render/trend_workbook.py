"""The `soxtrail trend --xlsx` workbook: the figures per control and quarter, the recurring
exceptions, and a line chart per control (exceptions, with the population on a second axis).

It lays out the trend's JSON form (soxtrail.audit.trend `Trend.as_json`) and computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xlsxwriter

FIGURES = ("control_id", "quarter", "run_id", "signoff", "population", "exceptions",
           "exception_identities", "new", "recurring", "resolved")
CHART_ROWS = 16


def write_trend_workbook(path: Path, doc: Mapping[str, Any]) -> None:
    """Write the workbook of one trend (`Trend.as_json()`) to `path`."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False})
    try:
        bold = book.add_format({"bold": True})
        figures = book.add_worksheet("Trend")
        for col, name in enumerate(FIGURES):
            figures.write_string(0, col, name, bold)
            figures.set_column(col, col, 38 if name == "run_id" else 14)
        row = 1
        spans: list[tuple[str, str, int, int]] = []  # control, title, first row, last row
        for control in doc["controls"]:
            first = row
            for quarter in doc["quarters"]:
                run = doc["runs"].get(quarter) or {}
                values = control["quarters"].get(quarter) or {}
                cells = {"control_id": control["control_id"], "quarter": quarter,
                         "run_id": run.get("run_id"), "signoff": run.get("signoff"), **values}
                for col, name in enumerate(FIGURES):
                    value = cells.get(name)
                    if value is None:
                        figures.write_blank(row, col, None)
                    elif isinstance(value, int):
                        figures.write_number(row, col, value)
                    else:
                        figures.write_string(row, col, str(value))
                row += 1
            spans.append((control["control_id"], control["title"], first, row - 1))
        figures.freeze_panes(1, 0)
        figures.autofilter(0, 0, max(row - 1, 1), len(FIGURES) - 1)

        recurring = book.add_worksheet("Recurring")
        for col, name in enumerate(("control_id", "recur_key", "quarters_in_a_row")):
            recurring.write_string(0, col, name, bold)
            recurring.set_column(col, col, 60 if name == "recur_key" else 18)
        line = 1
        for control in doc["controls"]:
            for item in control["recurring_exceptions"]:
                recurring.write_string(line, 0, control["control_id"])
                recurring.write_string(line, 1, item["recur_key"])
                recurring.write_number(line, 2, item["quarters_in_a_row"])
                line += 1
        recurring.freeze_panes(1, 0)

        charts = book.add_worksheet("Charts")
        quarter_col, population_col = FIGURES.index("quarter"), FIGURES.index("population")
        exceptions_col = FIGURES.index("exceptions")
        for index, (control_id, title, first, last) in enumerate(spans):
            chart = book.add_chart({"type": "line"})
            chart.add_series({"name": "Exceptions", "marker": {"type": "circle"},
                              "categories": ["Trend", first, quarter_col, last, quarter_col],
                              "values": ["Trend", first, exceptions_col, last, exceptions_col],
                              "line": {"color": "#C00000"}})
            chart.add_series({"name": "Population", "y2_axis": True, "marker": {"type": "square"},
                              "categories": ["Trend", first, quarter_col, last, quarter_col],
                              "values": ["Trend", first, population_col, last, population_col],
                              "line": {"color": "#7F7F7F", "dash_type": "dash"}})
            chart.set_title({"name": f"{control_id} {title}",
                             "name_font": {"size": 11, "bold": True}})
            chart.set_y_axis({"name": "Exceptions", "min": 0})
            chart.set_y2_axis({"name": "Population", "min": 0})
            chart.set_legend({"position": "bottom"})
            chart.set_size({"width": 620, "height": 20 * CHART_ROWS})
            charts.insert_chart(index * (CHART_ROWS + 1), 0, chart)
    finally:
        book.close()
