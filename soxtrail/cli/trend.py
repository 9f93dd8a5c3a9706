"""`soxtrail trend`: the quarter-over-quarter table (docs/auditor-guide.md, "Quarter over
quarter")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from soxtrail.audit import trend as trend_model
from soxtrail.audit.verify import connect_read_only
from soxtrail.cli.common import JsonOpt, handled, out
from soxtrail.kernel.database import resolve_database

trend_app = typer.Typer()


@trend_app.command(name="trend")
def trend_command(
    quarters: Annotated[str, typer.Option(
        "--quarters", help="The quarters, FIRST..LAST, e.g. 2024Q1..2024Q4.")],
    xlsx: Annotated[Path | None, typer.Option(
        "--xlsx", help="Also write the table as a workbook: one sheet of figures, one of "
                       "recurring exceptions, a line chart per control.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per control and quarter: population, exceptions, and the exceptions that are new,
    recurring (the same recurrence key as in the previous quarter; the register's
    `recur_key`) or resolved, from each quarter's official run (else its newest completed
    run, marked draft); and the exceptions that recur, with how many quarters in a row."""
    with handled():
        labels = trend_model.quarter_range(quarters)
        with connect_read_only(resolve_database()) as conn:
            result = trend_model.trend(conn, labels)
        doc = result.as_json()
        if xlsx is not None:
            from render.trend_workbook import write_trend_workbook

            write_trend_workbook(xlsx, doc)
        if as_json:
            print(json.dumps(doc, sort_keys=True))
            return
        table = Table(title="per control and quarter (new, recurring and resolved count "
                            "exception identities: recurrence keys)")
        for column in ("control", "quarter", "run", "population", "exceptions", "new",
                       "recurring", "resolved"):
            table.add_column(column, justify="right" if column in trend_model.COUNTS else "left")
        for control in result.controls:
            for quarter in result.quarters:
                run, row = result.runs[quarter], control.quarters[quarter]
                where = "-" if run is None else (
                    f"{run.run_id[:8]} ({'official' if run.official else 'draft'})")
                counts = (["-"] * len(trend_model.COUNTS) if row is None else
                          [str(getattr(row, c)) for c in trend_model.COUNTS])
                table.add_row(control.control_id, quarter, where, *counts,
                              end_section=quarter == result.quarters[-1])
        out.print(table)
        repeats = Table(title="exceptions that recur (quarters in a row, up to the last quarter)")
        for column in ("control", "recurrence key", "quarters"):
            repeats.add_column(column)
        for control in result.controls:
            for key, count in control.recurring_exceptions():
                repeats.add_row(control.control_id, key, str(count))
        out.print(repeats if repeats.row_count else "no exception recurs in these quarters")
        if xlsx is not None:
            out.print(f"workbook: {xlsx}", markup=False)
