"""Compare two runs per control: population items added, removed, and changed, by item key."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.kernel import controls, runs

CHANGE_KINDS = ("added", "removed", "changed")
COLUMNS = ("control_id", "change", "item_key", "result_a", "result_b", "reasons_a", "reasons_b",
           "evidence_id_a", "evidence_id_b")


@dataclass(frozen=True)
class Item:
    """One population item of a run: its result, reasons and evidence id."""

    result: str
    reasons: tuple[str, ...]
    evidence_id: str | None


@dataclass(frozen=True)
class Change:
    """An item present in only one run, or whose result or reasons differ."""

    control_id: str
    change: str  # added | removed | changed
    item_key: str
    a: Item | None
    b: Item | None

    def row(self) -> dict[str, str]:
        """The change as a flat row (COLUMNS)."""
        return {
            "control_id": self.control_id, "change": self.change, "item_key": self.item_key,
            "result_a": self.a.result if self.a else "",
            "result_b": self.b.result if self.b else "",
            "reasons_a": ",".join(self.a.reasons) if self.a else "",
            "reasons_b": ",".join(self.b.reasons) if self.b else "",
            "evidence_id_a": (self.a.evidence_id or "") if self.a else "",
            "evidence_id_b": (self.b.evidence_id or "") if self.b else "",
        }


@dataclass
class ControlDiff:
    """Counts and changes of one control."""

    control_id: str
    population_a: int
    population_b: int
    changes: list[Change] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """How many changes of one kind."""
        return sum(1 for c in self.changes if c.change == kind)

    @property
    def unchanged(self) -> int:
        """Items in both runs with the same result and reasons."""
        return self.population_a - self.count("removed") - self.count("changed")


@dataclass
class RunDiff:
    """The diff of two runs."""

    run_a: runs.Run
    run_b: runs.Run
    controls: list[ControlDiff]

    @property
    def cross_quarter(self) -> bool:
        """True when the runs report different quarters."""
        return self.run_a.quarter != self.run_b.quarter

    def header(self) -> str:
        """One line naming both runs, and saying when the comparison crosses quarters."""
        text = (f"diff run A {self.run_a.id} ({self.run_a.quarter}) -> "
                f"run B {self.run_b.id} ({self.run_b.quarter})")
        if self.cross_quarter:
            text += (": CROSS-QUARTER comparison, items compared by key (keys that carry a date"
                     " or time, as in AC-01, AC-02 and BK-01, differ from quarter to quarter)")
        else:
            text += ": two runs of the same quarter, items compared by key"
        return text

    def changes(self) -> list[Change]:
        """Every change, control by control."""
        return [c for control in self.controls for c in control.changes]


def _items(conn: psycopg.Connection[Any], model: str, run_id: str) -> dict[str, Item]:
    query = sql.SQL("select item_key, result, exception_reasons, evidence_id::text"
                    " from {} where run_id = %s").format(
        sql.Identifier(controls.MARTS_SCHEMA, model))
    rows = conn.execute(query, (run_id,)).fetchall()
    return {str(key): Item(str(result), tuple(sorted(reasons or ())), evidence)
            for key, result, reasons, evidence in rows}


def diff_control(control_id: str, items_a: dict[str, Item],
                 items_b: dict[str, Item]) -> ControlDiff:
    """Added, removed and changed items of one control (sorted by key, "C" order)."""
    result = ControlDiff(control_id, len(items_a), len(items_b))
    for key in sorted(set(items_a) | set(items_b), key=lambda k: k.encode("utf-8")):
        a, b = items_a.get(key), items_b.get(key)
        if a is None:
            result.changes.append(Change(control_id, "added", key, None, b))
        elif b is None:
            result.changes.append(Change(control_id, "removed", key, a, None))
        elif (a.result, a.reasons) != (b.result, b.reasons):
            result.changes.append(Change(control_id, "changed", key, a, b))
    return result


def diff_runs(conn: psycopg.Connection[Any], run_a: str, run_b: str) -> RunDiff:
    """Compare the control marts of two runs."""
    first = runs.get_quarter_run(conn, run_a, "compare")
    second = runs.get_quarter_run(conn, run_b, "compare")
    result = []
    for control_id, model in controls.CONTROLS.items():
        result.append(diff_control(control_id, _items(conn, model, first.id),
                                   _items(conn, model, second.id)))
    conn.commit()
    return RunDiff(first, second, result)


def to_csv(diff: RunDiff) -> str:
    """The changes as CSV (header row first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for change in diff.changes():
        writer.writerow(change.row())
    return buffer.getvalue()


def write_xlsx(diff: RunDiff, path: Path) -> None:
    """A workbook: a summary sheet (header, per-control counts) and a changes sheet."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path))
    try:
        bold = workbook.add_format({"bold": True})
        summary = workbook.add_worksheet("summary")
        summary.write(0, 0, diff.header(), bold)
        headers = ("control_id", "population_a", "population_b", *CHANGE_KINDS, "unchanged")
        for col, name in enumerate(headers):
            summary.write(2, col, name, bold)
        for row, control in enumerate(diff.controls, start=3):
            values = (control.control_id, control.population_a, control.population_b,
                      *(control.count(k) for k in CHANGE_KINDS), control.unchanged)
            for col, value in enumerate(values):
                summary.write(row, col, value)
        sheet = workbook.add_worksheet("changes")
        for col, name in enumerate(COLUMNS):
            sheet.write(0, col, name, bold)
        for row, change in enumerate(diff.changes(), start=1):
            for col, name in enumerate(COLUMNS):
                sheet.write_string(row, col, change.row()[name])
        sheet.autofilter(0, 0, max(len(diff.changes()), 1), len(COLUMNS) - 1)
    finally:
        workbook.close()
