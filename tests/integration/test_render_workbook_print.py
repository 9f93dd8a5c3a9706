"""The workbook as people print and read it (issue 19): page setup on every sheet, the test
attributes grouped, the searched populations, the Summary's statuses and chart, a How to
verify that says only what is true, and the Summary printed by LibreOffice on one page."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from psycopg.types.json import Jsonb

from render.preview import only_sheet, pdf_pages, sheet_pdf, summary_png
from render.workbook import load_layout, render_workbook
from render.workbook.data import _clusters_tested, load_run_data
from render.workbook.layout import template_context
from soxtrail.kernel.database import Database
from tests.support.render_run import CONTROLS, COUNTS, MARTS_DDL, SeededRun, seed_run

pytestmark = pytest.mark.integration

SEARCHED_DDL = """
create table marts.fct_searched_populations (
    run_id uuid, control_id text, item_key text, population_key text, description text,
    evidence_id uuid, source_name text, query_name text);
""" + "".join(
    f"alter table marts.{model} add column searched_population text,"
    " add column searched_count integer, add column candidates jsonb,"
    " add column candidate_count integer;\n"
    for model, _, _ in CONTROLS.values())
FINGERPRINT = "9f" * 32
SHEETS = {"COMPLETENESS": "Completeness"}


@pytest.fixture(scope="module")
def conn(pg_database: Database) -> Iterator[psycopg.Connection[Any]]:
    with pg_database.connect() as connection:
        connection.execute(MARTS_DDL)
        connection.execute(SEARCHED_DDL)
        connection.commit()
        yield connection


@pytest.fixture(scope="module")
def seeded(conn: psycopg.Connection[Any]) -> SeededRun:
    """The render run, its AC-01 exceptions claiming absence over `tickets:access` (two
    ticket pages), BK-01's over `backups:<cluster>`, CM-01 rows with two candidate windows."""
    run = seed_run(conn, COUNTS)
    tickets, backups = run.snapshot_ids[2:4], run.snapshot_ids[4:5]
    populations = [("AC-01", "tickets:access", "Every access ticket page searched", tickets,
                    "jira_access", "jira_issues"),
                   ("BK-01", "backups:pg-fin-01", "The pgBackRest inventory of pg-fin-01",
                    backups, "pgbackrest_fin", "pgbackrest_info")]
    with conn.cursor() as cur:
        for control, key, description, ids, source, query in populations:
            for evidence_id in ids:
                cur.execute("insert into marts.fct_searched_populations values "
                            "(%s, %s, %s, %s, %s, %s, %s, %s)",
                            (run.run_id, control, key, key, description, evidence_id, source,
                             query))
            cur.execute(f"update marts.{CONTROLS[control][0]} set searched_population = %s,"
                        " searched_count = %s where run_id = %s and result = 'EXCEPTION'",
                        (key, len(ids), run.run_id))
        candidates = [{"key": "CHG-2001", "from": "2024-08-31T22:00:00Z",
                       "to": "2024-09-01T02:00:00Z", "chosen": True, "why": "covers it"},
                      {"key": "CHG-2002", "from": "2024-09-02T22:00:00Z",
                       "to": "2024-09-03T02:00:00Z", "chosen": False, "why": "later"}]
        cur.execute(f"update marts.{CONTROLS['CM-01'][0]} set candidates = %s,"
                    " candidate_count = 2 where run_id = %s", (Jsonb(candidates), run.run_id))
    conn.commit()
    return run


@pytest.fixture(scope="module")
def rendered(conn: psycopg.Connection[Any], seeded: SeededRun,
             tmp_path_factory: pytest.TempPathFactory) -> Any:
    return render_workbook(conn, run_id=seeded.run_id, out=tmp_path_factory.mktemp("report"))


def _header_row(sheet: Any) -> int:
    return int(re.sub(r"[A-Z]+", "", sheet.freeze_panes)) - 1


def _headers(sheet: Any) -> list[str]:
    return [str(c.value) for c in sheet[_header_row(sheet)] if c.value is not None]


def _hidden(sheet: Any) -> dict[str, bool]:
    """Column letter -> hidden, expanding openpyxl's grouped column ranges."""
    found: dict[str, bool] = {}
    for dim in sheet.column_dimensions.values():
        for index in range(dim.min or 0, (dim.max or 0) + 1):
            if index:
                found[openpyxl.utils.get_column_letter(index)] = bool(dim.hidden)
    return found


# ---------------------------------------------------------------- page setup


def test_every_sheet_prints_landscape_one_page_wide_with_its_header_repeated(
        rendered: Any) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    assert book.sheetnames == ["Summary", "AC-01", "AC-02", "AC-03", "BK-01", "CM-01", "LG-01",
                               "Completeness", "Searched", "Evidence", "Queries",
                               "How to verify"]
    for name in book.sheetnames:
        sheet = book[name]
        setup = sheet.page_setup
        assert setup.orientation == "landscape", name
        assert sheet.sheet_properties.pageSetUpPr.fitToPage, name
        assert int(setup.fitToWidth or 1) == 1, name  # absent means 1
        assert int(setup.fitToHeight if setup.fitToHeight is not None else 1) == \
            (1 if name == "Summary" else 0), name  # tables run on as many pages as needed
        head = _header_row(sheet)
        assert sheet.print_title_rows == f"${head}:${head}", name
        assert "&A" in (sheet.oddFooter.left.text or ""), name
        assert "&P" in (sheet.oddFooter.right.text or ""), name
        widths = [d.width for d in sheet.column_dimensions.values() if d.width]
        assert widths and all(6 <= w <= 130 for w in widths), (name, widths)
    summary = book["Summary"]
    assert summary.print_area is not None


def test_attributes_are_grouped_behind_item_result_reasons_and_evidence(rendered: Any) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["AC-01"]
    headers = _headers(sheet)
    hidden = _hidden(sheet)
    letter = {h: openpyxl.utils.get_column_letter(i + 1) for i, h in enumerate(headers)}
    shown = [h for h in headers if not hidden.get(letter[h], False)]
    assert shown == ["Item", "Result", "Exception reasons", "Searched (absence claims)",
                     "Objects searched", "Candidates considered", "Candidates", "Evidence id",
                     "Evidence locator", "Supporting evidence ids"]
    attributes = headers[1:headers.index("Result")]
    assert attributes[:3] == ["Cluster", "Grantee", "Granted role"]
    for header in attributes:
        dim = next(d for d in sheet.column_dimensions.values()
                   if d.min <= headers.index(header) + 1 <= d.max)
        assert dim.outlineLevel == 1 and dim.hidden, header
    result = sheet.column_dimensions[letter["Result"]]
    assert result.collapsed and not result.hidden
    assert sheet.freeze_panes == f"B{_header_row(sheet) + 1}"  # the item stays in view
    notes = [sheet.cell(row=r, column=1).value for r in range(2, _header_row(sheet) - 1)]
    assert any(f"soxtrail explain {rendered.xlsx.stem.split('-')[-1]}" in str(n)
               for n in notes)


def test_the_explain_command_names_the_run_and_control(rendered: Any, seeded: SeededRun) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for control in seeded.rows:
        sheet = book[SHEETS.get(control, control)]
        notes = " ".join(str(sheet.cell(row=r, column=1).value or "")
                         for r in range(2, _header_row(sheet)))
        assert f"soxtrail explain {seeded.run_id} <item> --control {control}" in notes


# ---------------------------------------------------------------- searched populations


def test_searched_sheet_lists_each_population_and_links_both_ways(
        rendered: Any, seeded: SeededRun) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    searched = book["Searched"]
    head = _header_row(searched)
    assert _headers(searched) == ["Population", "Description", "Control", "Evidence id",
                                  "Source", "Query"]
    rows = [list(r) for r in searched.iter_rows(min_row=head + 1, values_only=True)]
    assert [(r[0], r[3]) for r in rows] == sorted(
        [("backups:pg-fin-01", seeded.snapshot_ids[4]),
         *(("tickets:access", e) for e in seeded.snapshot_ids[2:4])])
    for offset in range(len(rows)):  # the evidence id links to its Evidence row
        cell = searched.cell(row=head + 1 + offset, column=4)
        sheet_name, ref = cell.hyperlink.location.rsplit("!", 1)
        assert book[sheet_name.strip("'")][ref].value == cell.value
    ac01 = book["AC-01"]
    headers = _headers(ac01)
    column = headers.index("Searched (absence claims)") + 1
    linked = 0
    for r in range(_header_row(ac01) + 1, ac01.max_row + 1):
        cell = ac01.cell(row=r, column=column)
        result = ac01.cell(row=r, column=headers.index("Result") + 1).value
        if result == "EXCEPTION":
            assert cell.value == "tickets:access"
            sheet_name, ref = cell.hyperlink.location.rsplit("!", 1)
            assert sheet_name == "'Searched'"
            assert searched[ref].value == "tickets:access"
            assert searched.cell(row=searched[ref].row - 1, column=1).value != "tickets:access"
            assert ac01.cell(row=r, column=column + 1).value == 2
            linked += 1
        else:
            assert cell.value is None
    assert linked == sum(r["result"] == "EXCEPTION" for r in seeded.rows["AC-01"]) > 0


def test_candidates_show_beside_the_reasons(rendered: Any) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["CM-01"]
    headers = _headers(sheet)
    first = {h: sheet.cell(row=_header_row(sheet) + 1, column=i + 1).value
             for i, h in enumerate(headers)}
    assert '"key": "CHG-2002"' in first["Candidates considered"]
    assert first["Candidates"] == 2
    assert headers.index("Candidates considered") < headers.index("Evidence id")


def test_without_the_contract_columns_the_workbook_still_renders(
        conn: psycopg.Connection[Any], seeded: SeededRun, tmp_path: Path) -> None:
    conn.execute("alter table marts.fct_searched_populations rename to searched_elsewhere")
    try:
        result = render_workbook(conn, run_id=seeded.run_id, out=tmp_path)
    finally:
        conn.rollback()
    book = openpyxl.load_workbook(result.xlsx)
    assert "Searched" not in book.sheetnames
    cell_headers = _headers(book["AC-01"])
    assert "Searched (absence claims)" in cell_headers  # shown, not linked
    assert not any(c.hyperlink for row in book["AC-01"].iter_rows() for c in row
                   if c.value == "tickets:access")


# ---------------------------------------------------------------- summary


def test_summary_states_scope_pass_rate_signature_completeness_and_config(
        rendered: Any, seeded: SeededRun) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["Summary"]
    cells = {row[0]: row[1] for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert cells["Clusters in scope"] == "pg-fin-01, pg-hr-02"
    assert cells["Config hash (SHA-256)"] == "c0ffee" * 10 + "abcd"
    completeness = seeded.rows["COMPLETENESS"]
    bad = sum(r["result"] == "EXCEPTION" for r in completeness)
    assert cells["Completeness"] == (f"INCOMPLETE: {bad} of {len(completeness)} populations "
                                     "with an exception (Completeness sheet)")
    assert cells["Signature"].startswith("Not recorded with the run")
    head = _header_row(sheet)
    headers = _headers(sheet)
    column = headers.index("Pass rate") + 1
    for offset, control in enumerate(CONTROLS):
        cell = sheet.cell(row=head + 1 + offset, column=column)
        rows = seeded.rows[control]
        expected = 1 - sum(r["result"] == "EXCEPTION" for r in rows) / len(rows)
        assert cell.value == pytest.approx(expected, abs=1e-4)
        assert cell.number_format == "0.0%"


def test_a_run_of_every_cluster_lists_the_clusters_its_controls_tested(
        conn: psycopg.Connection[Any], seeded: SeededRun) -> None:
    data = load_run_data(conn, seeded.run_id)
    found = _clusters_tested(conn, {**data.run, "clusters": None}, "marts", data.marts,
                             data.available)
    conn.rollback()
    named = {r["cluster"] for control, rows in seeded.rows.items() if control != "COMPLETENESS"
             for r in rows}
    assert found == sorted(named, key=str.encode) == ["Pg-Legacy", "pg-fin-01", "pg-hr-02"]


def test_summary_has_a_bar_chart_of_exceptions_per_control(rendered: Any) -> None:
    with zipfile.ZipFile(rendered.xlsx) as book:
        charts = [n for n in book.namelist() if n.startswith("xl/charts/chart")]
        assert charts == ["xl/charts/chart1.xml"]
        xml = book.read(charts[0]).decode()
    assert "<c:barChart>" in xml and '<c:barDir val="bar"/>' in xml
    sheet = openpyxl.load_workbook(rendered.xlsx)["Summary"]
    head = _header_row(sheet)
    controls = [c for c in CONTROLS if c != "COMPLETENESS"]
    assert f"<c:f>Summary!$A${head + 1}:$A${head + len(controls)}</c:f>" in xml
    exceptions = _headers(sheet).index("Exceptions")
    letter = openpyxl.utils.get_column_letter(exceptions + 1)
    assert f"<c:f>Summary!${letter}${head + 1}:${letter}${head + len(controls)}</c:f>" in xml
    assert [sheet.cell(row=head + 1 + i, column=1).value for i in range(len(controls))] \
        == controls


# ---------------------------------------------------------------- how to verify


def _verify_steps(conn: psycopg.Connection[Any], run_id: str,
                  signing: dict[str, Any] | None) -> tuple[list[Any], list[str]]:
    data = load_run_data(conn, run_id)
    conn.rollback()
    if signing is not None:
        data.run = {**data.run, "config": {**data.run["config"], "_signing": signing}}
    layout = load_layout("default", template_context(data), data.available)
    fields = {f.label: f.value for f in layout.run_fields}
    return list(layout.verify_steps), [str(fields["Signature"]), *layout.verify_notes]


def test_how_to_verify_a_signed_bundle_names_its_key(
        conn: psycopg.Connection[Any], seeded: SeededRun) -> None:
    steps, texts = _verify_steps(conn, seeded.run_id,
                                 {"signed": True, "fingerprint": FINGERPRINT})
    commands = {s.command: s for s in steps}
    assert "sha256sum -c MANIFEST.sha256" in commands
    verify = ("openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin "
              "-in MANIFEST.sha256 -sigfile MANIFEST.sha256.sig")
    assert commands[verify].expect == "Signature Verified Successfully"
    assert commands["openssl pkey -pubin -in signing-key.pub -outform DER | tail -c 32 | "
                    "sha256sum"].expect == f"{FINGERPRINT}  -"
    assert FINGERPRINT in texts[0] and texts[0].startswith("Signed")
    assert any("--require-signature" in c for c in commands)
    assert not any("UNSIGNED" in c for c in commands)


def test_how_to_verify_an_unsigned_bundle_gives_no_signature_check(
        conn: psycopg.Connection[Any], seeded: SeededRun) -> None:
    steps, texts = _verify_steps(conn, seeded.run_id, {"signed": False, "fingerprint": None})
    commands = [s.command for s in steps]
    assert not any(c.startswith("openssl") for c in commands)
    assert "head -1 UNSIGNED" in commands
    assert texts[0].startswith("NOT signed") and "SOXTRAIL_SIGNING_KEY" in texts[0]
    assert not any("--require-signature" in c for c in commands)


def test_how_to_verify_says_which_commands_work_offline(rendered: Any,
                                                        seeded: SeededRun) -> None:
    sheet = openpyxl.load_workbook(rendered.xlsx)["How to verify"]
    rows = [r for r in sheet.iter_rows(min_row=_header_row(sheet) + 1, values_only=True)]
    for step, command, _ in rows:
        offline = command.startswith(("sha256sum", "openssl", "ls ", "head "))
        assert str(step).startswith("Offline") == offline, command
        if command.startswith("openssl"):  # not known to be signed: said conditionally
            assert "only with MANIFEST.sha256.sig" in step
    assert f"soxtrail verify {seeded.run_id}" in [r[1] for r in rows]


def test_rendering_twice_gives_identical_bytes(conn: psycopg.Connection[Any], seeded: SeededRun,
                                               rendered: Any, tmp_path: Path) -> None:
    again = render_workbook(conn, run_id=seeded.run_id, out=tmp_path)
    assert again.xlsx.read_bytes() == rendered.xlsx.read_bytes()


# ---------------------------------------------------------------- printed by LibreOffice


@pytest.fixture(scope="module")
def printed(rendered: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    assert shutil.which("soffice"), "LibreOffice missing: make system-deps installs it"
    return summary_png(rendered.xlsx, tmp_path_factory.mktemp("printed"))


def test_the_summary_prints_on_one_page(printed: tuple[Path, Path]) -> None:
    pdf, png = printed
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf_pages(pdf) == 1
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 5000


def test_page_counting_sees_more_than_one_page(rendered: Any, tmp_path: Path) -> None:
    # the check can fail: the Evidence sheet (one page wide, as tall as it needs) with a
    # font blown up to need several pages
    wide = tmp_path / "wide.xlsx"
    with zipfile.ZipFile(rendered.xlsx) as source, zipfile.ZipFile(wide, "w") as copy:
        for name in source.namelist():
            data = source.read(name)
            if name == "xl/styles.xml":
                data = re.sub(rb'<sz val="\d+"/>', b'<sz val="60"/>', data)
            copy.writestr(name, data)
    pdf = sheet_pdf(wide, "Evidence", tmp_path / "out", profile=tmp_path / "profile")
    assert pdf_pages(pdf) > 1


def test_only_sheet_hides_and_unselects_every_other_sheet(rendered: Any, tmp_path: Path) -> None:
    single = only_sheet(rendered.xlsx, "AC-01", tmp_path / "one.xlsx")
    book = openpyxl.load_workbook(single)
    assert [s.title for s in book.worksheets if s.sheet_state == "visible"] == ["AC-01"]
    assert [s.title for s in book.worksheets if s.views.sheetView[0].tabSelected] == ["AC-01"]
    assert len(book.sheetnames) == len(openpyxl.load_workbook(rendered.xlsx).sheetnames)
    # printed, it is AC-01 alone: one page of a few rows, its own name in the footer
    pdf = sheet_pdf(rendered.xlsx, "AC-01", tmp_path / "out", profile=tmp_path / "profile")
    assert pdf_pages(pdf) == 1
