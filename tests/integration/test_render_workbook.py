"""Phase 4 on hand-made marts: the workbook, its layout templates and the CSVs."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest

from render.workbook import LayoutError, render_workbook
from soxtrail.kernel.csvcells import FORMULA_START
from soxtrail.kernel.database import Database
from tests.support.render_run import (
    CONTROLS,
    COUNTS,
    MARTS_DDL,
    QUARTER,
    STARTED_AT,
    SeededRun,
    seed_run,
)

# the sheet of a registry entry whose sheet name is not its id
SHEETS = {"COMPLETENESS": "Completeness"}
pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def conn(pg_database: Database) -> Iterator[psycopg.Connection[Any]]:
    with pg_database.connect() as connection:
        connection.execute(MARTS_DDL)
        connection.commit()
        yield connection


@pytest.fixture(scope="module")
def seeded(conn: psycopg.Connection[Any]) -> SeededRun:
    return seed_run(conn, COUNTS)


@pytest.fixture(scope="module")
def rendered(conn: psycopg.Connection[Any], seeded: SeededRun,
             tmp_path_factory: pytest.TempPathFactory) -> Any:
    return render_workbook(conn, run_id=seeded.run_id, out=tmp_path_factory.mktemp("report"))


def _header_row(sheet: Any) -> int:
    """1-based row of the column headers: the frozen pane's top."""
    return int(sheet.freeze_panes[1:]) - 1


def _table(sheet: Any) -> tuple[list[str], list[list[Any]]]:
    head = _header_row(sheet)
    rows = list(sheet.iter_rows(min_row=head, values_only=True))
    return [str(v) for v in rows[0]], [list(r) for r in rows[1:]]


def _link_target(cell: Any) -> str | None:
    """`'Evidence'!A7` of a hyperlink cell, native or HYPERLINK() formula."""
    if cell.hyperlink is not None:
        return str(cell.hyperlink.location)
    if isinstance(cell.value, str) and cell.value.startswith("=HYPERLINK("):
        return cell.value.split('"')[1].lstrip("#")
    return None


# ---------------------------------------------------------------- the workbook


def test_workbook_has_the_default_sheets_in_order(rendered: Any) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    assert book.sheetnames == ["Summary", "AC-01", "AC-02", "AC-03", "BK-01", "CM-01", "LG-01",
                               "Completeness", "Evidence", "Queries", "How to verify"]


def test_control_sheets_hold_exactly_the_runs_rows_in_item_key_order(
        rendered: Any, seeded: SeededRun) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for control, rows in seeded.rows.items():
        headers, values = _table(book[SHEETS.get(control, control)])
        assert headers[0] == "Item"
        assert [r[0] for r in values] == [r["item_key"] for r in rows], control
        assert rendered.row_counts[SHEETS.get(control, control)] == len(rows) \
            == rendered.control_rows[control]
        assert "Run ID" not in headers and "Control ID" not in headers


def test_control_sheet_headers_follow_the_template(rendered: Any) -> None:
    headers, _ = _table(openpyxl.load_workbook(rendered.xlsx)["AC-01"])
    assert headers == [
        "Item", "Cluster", "Grantee", "Granted role", "Granted at (UTC)", "Granted by",
        "Ticket key", "Approved at (UTC)", "Approver", "Has ticket", "Is approved",
        "Is approved before grant", "Is within validity", "Is segregated", "Result",
        "Exception reasons", "Evidence id", "Evidence locator", "Supporting evidence ids"]


def test_values_are_typed_yes_no_and_utc_datetimes(rendered: Any, seeded: SeededRun) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["AC-01"]
    headers, values = _table(sheet)
    first = seeded.rows["AC-01"][0]
    row = dict(zip(headers, values[0], strict=True))
    assert row["Granted at (UTC)"] == first["granted_at"].replace(tzinfo=None)
    assert row["Has ticket"] in ("Yes", "No")
    assert row["Exception reasons"] in (None, "APPROVED_AFTER_GRANT, NO_TICKET")
    cell = sheet.cell(row=_header_row(sheet) + 1, column=headers.index("Granted at (UTC)") + 1)
    assert cell.number_format == "yyyy-mm-dd hh:mm:ss"
    bk = openpyxl.load_workbook(rendered.xlsx)["BK-01"]
    bk_headers, bk_values = _table(bk)
    assert isinstance(bk_values[0][bk_headers.index("Backup date")], datetime)


def test_exception_rows_are_filled_and_pass_rows_are_not(rendered: Any) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for control in ("AC-01", "CM-01"):
        sheet = book[SHEETS.get(control, control)]
        head = _header_row(sheet)
        headers, values = _table(sheet)
        result_col = headers.index("Result") + 1
        for offset, row in enumerate(values):
            cell = sheet.cell(row=head + 1 + offset, column=result_col)
            item = sheet.cell(row=head + 1 + offset, column=1)
            filled = item.fill.fgColor.rgb not in (None, "00000000") and \
                item.fill.fill_type == "solid"
            assert filled == (cell.value == "EXCEPTION"), (control, offset)
            assert row[result_col - 1] in ("PASS", "EXCEPTION")


def test_every_evidence_link_resolves_to_its_evidence_row(rendered: Any, seeded: SeededRun) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    evidence = book["Evidence"]
    ev_headers, ev_rows = _table(evidence)
    assert ev_headers[0] == "Evidence id"
    assert sorted(str(r[0]) for r in ev_rows) == sorted(seeded.evidence_ids)
    links = 0
    for name in ["Summary", *seeded.rows, "Queries"]:
        sheet = book[SHEETS.get(name, name)]
        for row in sheet.iter_rows(min_row=_header_row(sheet) + 1):
            for cell in row:
                target = _link_target(cell)
                if target is None:
                    continue
                sheet_name, ref = target.rsplit("!", 1)
                assert sheet_name == "'Evidence'"
                assert book["Evidence"][ref].value == cell.value, (name, cell.coordinate)
                links += 1
    assert links >= sum(COUNTS.values()) + len(COUNTS) * 2


def test_summary_shows_the_run_and_each_control(rendered: Any, seeded: SeededRun) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["Summary"]
    cells = {row[0]: row[1] for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert cells["Run id"] == seeded.run_id
    assert cells["Quarter"] == QUARTER
    assert cells["Clusters in scope"] == "pg-fin-01, pg-hr-02"
    assert cells["Generated at (UTC, run start)"] == STARTED_AT.replace(tzinfo=None)
    assert cells["Git commit"] == "0123456789abcdef"
    headers, values = _table(sheet)
    assert headers[:2] == ["Control", "Name"]
    assert [r[0] for r in values] == list(CONTROLS)  # sheet order: controls, completeness
    population = {r[0]: r[headers.index("Population")] for r in values}
    assert population == COUNTS


def test_queries_sheet_holds_each_controls_compiled_sql(rendered: Any, seeded: SeededRun) -> None:
    headers, values = _table(openpyxl.load_workbook(rendered.xlsx)["Queries"])
    by_control: dict[str, list[str]] = {}
    for row in values:
        by_control.setdefault(row[0], []).append(row[headers.index("SQL")] or "")
    model = CONTROLS["AC-02"][0]
    assert by_control["AC-02"] == [f"-- compiled {model}", "select *", "from staging.x",
                                   f"where run_id = '{seeded.run_id}'"]
    assert sorted(by_control) == sorted(CONTROLS)


def test_how_to_verify_names_the_exact_commands(rendered: Any, seeded: SeededRun) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["How to verify"]
    commands = [row[1] for row in sheet.iter_rows(values_only=True) if row[1]]
    assert f"soxtrail verify {seeded.run_id}" in commands
    assert "sha256sum -c MANIFEST.sha256" in commands
    assert ("openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin "
            "-in MANIFEST.sha256 -sigfile MANIFEST.sha256.sig") in commands
    assert "soxtrail evidence <evidence id>" in commands


def test_sheets_have_frozen_headers_and_autofilters(rendered: Any) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for name in book.sheetnames:
        sheet = book[name]
        assert sheet.freeze_panes, name
        if name != "How to verify":
            assert sheet.auto_filter.ref, name
            assert sheet.auto_filter.ref.startswith(f"A{_header_row(sheet)}:")
    assert book["AC-01"].column_dimensions["A"].width > 10


def test_rendering_twice_gives_identical_bytes(conn: psycopg.Connection[Any], seeded: SeededRun,
                                               rendered: Any, tmp_path: Path) -> None:
    again = render_workbook(conn, run_id=seeded.run_id, out=tmp_path)
    assert again.xlsx.read_bytes() == rendered.xlsx.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [again.xlsx.name, *(f"{c}.csv" for c in CONTROLS)])  # no work files left behind
    for control, path in again.csvs.items():
        assert path.read_bytes() == rendered.csvs[control].read_bytes()
    props = openpyxl.load_workbook(again.xlsx).properties
    assert props.created == STARTED_AT.replace(tzinfo=None)
    assert props.modified == STARTED_AT.replace(tzinfo=None)


def test_csvs_equal_the_control_sheets(rendered: Any) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for control, path in rendered.csvs.items():
        assert path.name == f"{control}.csv"
        raw = path.read_bytes()
        assert raw.count(b"\r\n") >= 1 and not raw.startswith(b"\xef\xbb\xbf")
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        headers, values = _table(book[SHEETS.get(control, control)])
        assert rows[0] == headers
        assert len(rows) - 1 == len(values)
        for csv_row, sheet_row in zip(rows[1:], values, strict=True):
            for text, value in zip(csv_row, sheet_row, strict=True):
                if isinstance(value, datetime):  # a date column shows as a date in both
                    shown = "%Y-%m-%d" if len(text) == 10 else "%Y-%m-%d %H:%M:%S"
                    assert text.startswith(value.strftime(shown)), control
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    assert float(text) == float(value)
                else:  # a formula-looking text cell is neutralised in the CSV only
                    shown = "" if value is None else value
                    if isinstance(shown, str) and shown.startswith(FORMULA_START):
                        shown = "'" + shown
                    assert text == shown, control


def test_csv_quotes_commas_quotes_and_keeps_formulas_as_text(rendered: Any) -> None:
    with rendered.csvs["CM-01"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # the CSV neutralises the formula (OWASP: a leading `'`); the sheet keeps it as text
    assert rows[0]["Statement"].startswith("'=ALTER TABLE")
    assert '"quoted", with comma' in rows[0]["Statement"]
    sheet = openpyxl.load_workbook(rendered.xlsx)["CM-01"]
    headers, values = _table(sheet)
    assert values[0][headers.index("Statement")].startswith("=ALTER TABLE")
    assert sheet.cell(row=_header_row(sheet) + 1,
                      column=headers.index("Statement") + 1).data_type == "s"


def test_compact_template_changes_the_layout_not_the_data(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    result = render_workbook(conn, run_id=seeded.run_id, template="compact",
                             out=tmp_path / "compact.xlsx")
    book = openpyxl.load_workbook(result.xlsx)
    assert book.sheetnames == ["Overview", "T-AC-01", "T-AC-02", "T-AC-03", "T-BK-01", "T-CM-01",
                               "T-LG-01",
                               "T-COMPLETENESS", "Sources", "SQL", "Verify"]
    headers, values = _table(book["T-AC-01"])
    assert headers == ["Key", "Result", "Why", "Evidence"]
    assert [r[0] for r in values] == [r["item_key"] for r in seeded.rows["AC-01"]]
    assert _table(book["Sources"])[0] == ["Evidence", "System", "When (UTC)", "Rows", "SHA-256"]
    target = _link_target(book["T-AC-01"].cell(row=_header_row(book["T-AC-01"]) + 1, column=4))
    assert target is not None and target.startswith("'Sources'!A")
    assert result.csvs["AC-01"].parent == tmp_path


def test_a_sheet_past_the_row_limit_continues_on_numbered_sheets(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    # Limit 10 rows per sheet: 6 rows of title, notes, blank and header leave 4 for data
    # on control sheets (2 notes) and 4 on the Evidence sheet (3 notes).
    result = render_workbook(conn, run_id=seeded.run_id, out=tmp_path, max_rows=10)
    book = openpyxl.load_workbook(result.xlsx)
    bk = [n for n in book.sheetnames if n.startswith("BK-01")]
    assert bk == ["BK-01", "BK-01 (2)", "BK-01 (3)"]
    items = []
    for name in bk:
        sheet = book[name]
        assert sheet.max_row <= 10
        headers, values = _table(sheet)
        assert headers[0] == "Item"
        items += [r[0] for r in values]
    assert items == [r["item_key"] for r in seeded.rows["BK-01"]]
    assert sum(result.row_counts[n] for n in bk) == COUNTS["BK-01"]
    assert [n for n in book.sheetnames if n.startswith("Evidence")] == [
        "Evidence", "Evidence (2)", "Evidence (3)", "Evidence (4)"]
    for name in ("AC-01", "AC-01 (2)"):
        for row in book[name].iter_rows(min_row=_header_row(book[name]) + 1):
            for cell in row:
                if (target := _link_target(cell)) is not None:
                    sheet_name, ref = target.rsplit("!", 1)
                    assert book[sheet_name.strip("'")][ref].value == cell.value
    with result.csvs["BK-01"].open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.reader(handle))) == COUNTS["BK-01"] + 1


def test_links_past_excels_hyperlink_limit_become_hyperlink_formulas(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    result = render_workbook(conn, run_id=seeded.run_id, out=tmp_path, max_links=2)
    book = openpyxl.load_workbook(result.xlsx)
    sheet = book["BK-01"]
    head = _header_row(sheet)
    headers, _ = _table(sheet)
    column = headers.index("Evidence id") + 1
    cells = [sheet.cell(row=head + 1 + i, column=column) for i in range(COUNTS["BK-01"])]
    assert [c.hyperlink is not None for c in cells[:3]] == [True, True, False]
    assert str(cells[2].value).startswith("=HYPERLINK(\"#'Evidence'!A")
    for cell in cells:
        sheet_name, ref = _link_target(cell).rsplit("!", 1)  # type: ignore[union-attr]
        expected = cell.value if cell.hyperlink is not None else cell.value.split('"')[3]
        assert book[sheet_name.strip("'")][ref].value == expected
    cached = openpyxl.load_workbook(result.xlsx, data_only=True)["BK-01"]
    assert cached.cell(row=head + 3, column=column).value == \
        seeded.rows["BK-01"][2]["evidence_id"]


def test_an_unknown_column_in_a_template_is_a_clear_error(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    template = tmp_path / "mine.yml.j2"
    text = (Path(__file__).parents[2] / "render/templates/compact.yml.j2").read_text()
    template.write_text(text.replace('{column: "item_key", header: "Key"}',
                                     '{column: "item_kye", header: "Key"}'))
    with pytest.raises(LayoutError, match=r"mine\.yml\.j2.*AC-01.*unknown column 'item_kye'"):
        render_workbook(conn, run_id=seeded.run_id, template=str(template), out=tmp_path)
    assert not list(tmp_path.glob("*.xlsx"))


def test_an_unknown_run_is_refused(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not found in soxtrail\.sox_runs"):
        render_workbook(conn, run_id=str(uuid.uuid4()), out=tmp_path)
    conn.rollback()



def test_a_registered_control_without_its_mart_is_refused(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    conn.execute(f"alter table marts.{CONTROLS['BK-01'][0]} rename to bk01_elsewhere")
    try:
        with pytest.raises(Exception, match=rf"marts\.{CONTROLS['BK-01'][0]} \(control BK-01\) "
                                            "does not exist"):
            render_workbook(conn, run_id=seeded.run_id, out=tmp_path)
    finally:
        conn.rollback()
    assert not list(tmp_path.glob("*.xlsx"))
