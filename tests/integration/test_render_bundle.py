"""Phases 4 and 5 on hand-made marts: the workbook, the CSVs, the signed bundle and its checks."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from psycopg.types.json import Jsonb

from render.bundle import (
    BundleInputs,
    bundle_ok,
    check_bundle,
    generate_signing_key,
    write_bundle,
)
from render.workbook import LayoutError, render_workbook
from soxtrail.kernel import secrets
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import LocalStore

pytestmark = pytest.mark.integration

QUARTER = "2024Q3"
STARTED_AT = datetime(2024, 10, 1, 6, 0, 0, tzinfo=UTC)
SECRET = "s3cr3t-jira-token-XYZ"

MARTS_DDL = """
create schema if not exists marts;
create table marts.fct_control_ac01__privileged_access_approved (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, grantee text,
    granted_role text, granted_at timestamptz, granted_by text, ticket_key text,
    approved_at timestamptz, approver text, has_ticket boolean, is_approved boolean,
    is_approved_before_grant boolean, is_within_validity boolean, is_segregated boolean,
    result text, exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_ac02__timely_revocation (
    run_id uuid, control_id text, item_key text collate "und-x-icu", identity text,
    cluster text, role text,
    deactivated_at timestamptz, revoked_at timestamptz, hours_to_revoke numeric,
    is_revoked boolean, is_within_sla boolean, result text, exception_reasons text[],
    evidence_id uuid, evidence_locator text, supporting_evidence_ids uuid[],
    control_evidence_id uuid);
create table marts.fct_control_ac03__quarter_end_access (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, login_role text,
    granted_role text, identity text, is_privileged boolean, has_catalog_entry boolean,
    is_active_holder boolean, has_approval_on_record boolean, result text,
    exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_cm01__changes_authorized (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, session text,
    statement_id integer, executed_at timestamptz, executed_by text, statement text,
    ticket_key text, has_change_ticket boolean, is_approved boolean, is_within_window boolean,
    result text, exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_bk01__backups_performed (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, backup_date date,
    backup_policy text, last_backup_at timestamptz, has_backup boolean, result text,
    exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_summary (
    run_id uuid, control_id text, control_name text, description text, population integer,
    exceptions integer, pass_rate numeric(5, 4), result text, control_evidence_id uuid);
"""

CONTROLS = {
    "AC-01": ("fct_control_ac01__privileged_access_approved", "Privileged access approved",
              "Every privileged grant on an in-scope cluster has an approved access ticket."),
    "AC-02": ("fct_control_ac02__timely_revocation", "Timely revocation",
              "Access of deactivated people is revoked within the SLA."),
    "AC-03": ("fct_control_ac03__quarter_end_access", "Quarter-end access listing",
              "Every quarter-end role holder is known, active and approved."),
    "BK-01": ("fct_control_bk01__backups_performed", "Backups performed",
              "Every in-scope cluster is backed up per its policy."),
    "CM-01": ("fct_control_cm01__changes_authorized", "Changes authorized",
              "Every DDL statement is covered by an approved change ticket."),
}


def control_evidence_id(run_id: str, model: str) -> str:
    return str(uuid.UUID(hashlib.md5(f"soxtrail:{run_id}:{model}".encode()).hexdigest()))


@dataclass
class SeededRun:
    run_id: str
    rows: dict[str, list[dict[str, Any]]]  # control id -> mart rows of the run, in key order
    evidence_ids: list[str]
    snapshot_ids: list[str]


def _insert_evidence(cur: psycopg.Cursor[Any], run_id: str, system: str, name: str,
                     text: str, params: dict[str, Any], rows: int, key: str,
                     evidence_id: str | None = None) -> str:
    evidence_id = evidence_id or str(uuid.uuid4())
    cur.execute(
        "insert into soxtrail.sox_evidence (id, run_id, source_system, query_name, query_text,"
        " query_params, executed_at, executed_by, result_row_count, result_hash,"
        " raw_output_s3_key) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (evidence_id, run_id, system, name, text, Jsonb(params),
         STARTED_AT + timedelta(minutes=3, microseconds=123456), "ci-bot", rows,
         hashlib.sha256(name.encode()).hexdigest(), key))
    return evidence_id


def _mart_row(control: str, run_id: str, i: int, snapshot: list[str]) -> dict[str, Any]:
    """A realistic row of a control mart; every third one an exception."""
    exception = i % 3 == 1
    cluster = ["pg-fin-01", "pg-hr-02", "Pg-Legacy"][i % 3]
    at = STARTED_AT - timedelta(days=30, hours=i)
    reasons = (["APPROVED_AFTER_GRANT", "NO_TICKET"] if control == "AC-01" else ["NO_BACKUP"]
               if control == "BK-01" else ["NOT_REVOKED"]) if exception else []
    base: dict[str, Any] = {"run_id": run_id, "control_id": control}
    if control == "AC-01":
        base |= {"item_key": f"{cluster}|user{i:03d}|dba|{at:%Y-%m-%dT%H:%M:%SZ}",
                 "cluster": cluster, "grantee": f"user{i:03d}", "granted_role": "dba",
                 "granted_at": at, "granted_by": "Admin", "ticket_key": None if exception
                 else f"DBA-{100 + i}", "approved_at": None if exception else at - timedelta(1),
                 "approver": "carol", "has_ticket": not exception, "is_approved": not exception,
                 "is_approved_before_grant": not exception, "is_within_validity": True,
                 "is_segregated": True}
    elif control == "AC-02":
        base |= {"item_key": f"user{i:03d}|{cluster}|LOGIN", "identity": f"user{i:03d}",
                 "cluster": cluster, "role": "LOGIN", "deactivated_at": at,
                 "revoked_at": None if exception else at + timedelta(hours=3),
                 "hours_to_revoke": None if exception else "3.50",
                 "is_revoked": not exception, "is_within_sla": not exception}
    elif control == "AC-03":
        base |= {"item_key": f"{cluster}|{'User' if i % 2 else 'user'}{i:03d}|reader",
                 "cluster": cluster, "login_role": f"user{i:03d}", "granted_role": "reader",
                 "identity": f"user{i:03d}", "is_privileged": False, "has_catalog_entry": True,
                 "is_active_holder": not exception, "has_approval_on_record": True}
    elif control == "CM-01":
        base |= {"item_key": f"{cluster}|65f1a2b3.{i:x}|{i}", "cluster": cluster,
                 "session": f"65f1a2b3.{i:x}", "statement_id": i, "executed_at": at,
                 "executed_by": "deploy", "statement": f"=ALTER TABLE t{i} ADD COLUMN c int; "
                 "/* CHG-2001 */ -- \"quoted\", with comma", "ticket_key": "CHG-2001",
                 "has_change_ticket": True, "is_approved": not exception,
                 "is_within_window": True}
    else:
        day = date(2024, 7, 1) + timedelta(days=i // 3)
        base |= {"item_key": f"{cluster}|{day.isoformat()}", "cluster": cluster,
                 "backup_date": day, "backup_policy": "daily",
                 "last_backup_at": None if exception else at, "has_backup": not exception}
    base |= {"result": "EXCEPTION" if exception else "PASS", "exception_reasons": reasons,
             "evidence_id": snapshot[i % len(snapshot)],
             "evidence_locator": f"postgresql-{i:02d}.csv:{10 + i}",
             "supporting_evidence_ids": sorted(snapshot[:2]),
             "control_evidence_id": control_evidence_id(run_id, CONTROLS[control][0])}
    return base


def seed_run(conn: psycopg.Connection[Any], counts: dict[str, int], *,
             quarter: str = QUARTER) -> SeededRun:
    """One run: a sox_runs row, snapshot + reconcile evidence rows, mart and summary rows."""
    run_id = str(uuid.uuid4())
    secrets.remember(SECRET)
    config = {"sources": [{"name": "jira", "connector": "jira", "token": "${JIRA_TOKEN}",
                           "url": "https://jira.example.com"}],
              "note": f"leaked {SECRET}"}
    with conn.cursor() as cur:
        cur.execute(
            "insert into soxtrail.sox_runs (id, quarter, clusters, config, config_hash,"
            " tool_version, git_commit, triggered_by, started_at, phase_reached)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'reconcile')",
            (run_id, quarter, ["pg-fin-01", "pg-hr-02"], Jsonb(config), "c0ffee" * 10 + "abcd",
             "0.1.0", "0123456789abcdef", "ci-bot", STARTED_AT))
        snapshot = [
            _insert_evidence(cur, run_id, system, name, f"select * from {name}",
                             {"source": name, "token": "***"}, 10 + n,
                             f"{quarter}/{run_id}/raw/{system}/{name}/out.csv")
            for n, (system, name) in enumerate([
                ("db_audit", "pgaudit_pg-fin-01"), ("db_audit", "pgaudit_pg-hr-02"),
                ("tickets", "jira_issues"), ("iam", "okta_events"),
                ("backups", "pgbackrest_info"), ("db_catalog", "catalog_memberships")])]
        rows: dict[str, list[dict[str, Any]]] = {}
        for control, (model, name, description) in CONTROLS.items():
            items = [_mart_row(control, run_id, i, snapshot) for i in range(counts[control])]
            items.sort(key=lambda r: r["item_key"].encode())
            rows[control] = items
            columns = list(items[0]) if items else []
            for item in items:
                cur.execute(
                    f"insert into marts.{model} ({', '.join(columns)}) values "
                    f"({', '.join(['%s'] * len(columns))})", list(item.values()))
            # a row of another run, which must never show
            other = _mart_row(control, str(uuid.uuid4()), 0, snapshot)
            cur.execute(
                f"insert into marts.{model} ({', '.join(other)}) values "
                f"({', '.join(['%s'] * len(other))})", list(other.values()))
            exceptions = sum(r["result"] == "EXCEPTION" for r in items)
            evidence_id = _insert_evidence(
                cur, run_id, "reconcile", f"model.soxtrail.{model}",
                f"-- compiled {model}\nselect *\nfrom staging.x\nwhere run_id = '{run_id}'",
                {"vars": {"quarter": quarter, "revocation_sla_hours": 24},
                 "checksum": "abc", "git_commit": "0123456789abcdef"},
                len(items), f"{quarter}/{run_id}/reconcile/{model}.jsonl",
                evidence_id=control_evidence_id(run_id, model))
            cur.execute(
                "insert into marts.fct_control_summary values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, control, name, description, len(items), exceptions,
                 round(1 - exceptions / len(items), 4) if items else 1,
                 "EXCEPTIONS" if exceptions else "EFFECTIVE", evidence_id))
        cur.execute("select id from soxtrail.sox_evidence where run_id = %s", (run_id,))
        evidence_ids = [str(r[0]) for r in cur.fetchall()]
    conn.commit()
    return SeededRun(run_id, rows, evidence_ids, snapshot)


# ---------------------------------------------------------------- fixtures

COUNTS = {"AC-01": 7, "AC-02": 4, "AC-03": 9, "BK-01": 12, "CM-01": 5}


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
    assert book.sheetnames == ["Summary", "AC-01", "AC-02", "AC-03", "BK-01", "CM-01",
                               "Evidence", "Queries", "How to verify"]


def test_control_sheets_hold_exactly_the_runs_rows_in_item_key_order(
        rendered: Any, seeded: SeededRun) -> None:
    book = openpyxl.load_workbook(rendered.xlsx)
    for control, rows in seeded.rows.items():
        headers, values = _table(book[control])
        assert headers[0] == "Item"
        assert [r[0] for r in values] == [r["item_key"] for r in rows], control
        assert rendered.row_counts[control] == len(rows) == rendered.control_rows[control]
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
        sheet = book[control]
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
        sheet = book[name]
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
    assert [r[0] for r in values] == sorted(CONTROLS)
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
        headers, values = _table(book[control])
        assert rows[0] == headers
        assert len(rows) - 1 == len(values)
        for csv_row, sheet_row in zip(rows[1:], values, strict=True):
            for text, value in zip(csv_row, sheet_row, strict=True):
                if isinstance(value, datetime):  # a date column shows as a date in both
                    shown = "%Y-%m-%d" if len(text) == 10 else "%Y-%m-%d %H:%M:%S"
                    assert text.startswith(value.strftime(shown)), control
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    assert float(text) == float(value)
                else:
                    assert text == ("" if value is None else value), control


def test_csv_quotes_commas_quotes_and_keeps_formulas_as_text(rendered: Any) -> None:
    with rendered.csvs["CM-01"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["Statement"].startswith("=ALTER TABLE")
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
                               "Sources", "SQL", "Verify"]
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
    # on control sheets (2 notes) and 5 on the Evidence sheet (2 notes).
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
        "Evidence", "Evidence (2)", "Evidence (3)"]
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


# ---------------------------------------------------------------- the bundle


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "signing.pem"
    generate_signing_key(path)
    return path


def _inputs(rendered: Any, base: Path) -> BundleInputs:
    base.mkdir(parents=True, exist_ok=True)
    (base / "catalog_memberships.sql").write_text(
        "select member, granted_role\nfrom pg_auth_members\n")
    (base / "jira_issues.jql").write_text(
        f"project = ACC and updated >= -90d  -- token={SECRET}\n")
    (base / "manifest.json").write_text(json.dumps({"metadata": {"dbt_version": "1.10.0"}}))
    (base / "run_results.json").write_text(json.dumps({"results": []}))
    (base / "log.jsonl").write_text(
        json.dumps({"event": "query", "dsn": f"postgresql://sox:{SECRET}@db/x"}) + "\n"
        + json.dumps({"event": "done"}) + "\n")
    return BundleInputs(
        query_files=[base / "catalog_memberships.sql", base / "jira_issues.jql"],
        manifest_json=base / "manifest.json", run_results_json=base / "run_results.json",
        log_jsonl=base / "log.jsonl", report_dir=rendered.xlsx.parent)


@pytest.fixture(scope="module")
def bundle(conn: psycopg.Connection[Any], seeded: SeededRun, rendered: Any, signing_key: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Any]:
    store = LocalStore(tmp_path_factory.mktemp("store"))
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path_factory.mktemp("inputs")),
                          signing_key=signing_key)
    return store, result


def _download(store: LocalStore, prefix: str, dest: Path) -> Path:
    for key in store.list(prefix):
        target = dest / key[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.open(key) as handle:
            target.write_bytes(handle.read())
    return dest


def test_bundle_holds_every_part(bundle: tuple[LocalStore, Any], seeded: SeededRun,
                                 rendered: Any) -> None:
    store, result = bundle
    assert result.prefix == f"{QUARTER}/{seeded.run_id}/bundle"
    names = {k[len(result.prefix) + 1:] for k in store.list(result.prefix)}
    expected = {"run.json", "evidence.jsonl", "log.jsonl", "README.txt", "dbt/manifest.json",
                "dbt/run_results.json", "queries/catalog_memberships.sql",
                "queries/jira_issues.jql", f"report/{rendered.xlsx.name}",
                "MANIFEST.sha256", "MANIFEST.sha256.sig", "signing-key.pub",
                "signing-key.fingerprint"}
    expected |= {f"queries/controls/{model}.sql" for model, _, _ in CONTROLS.values()}
    expected |= {f"report/{c}.csv" for c in CONTROLS}
    assert names == expected
    assert result.signed and result.missing == [] and result.stale == []


def test_manifest_covers_every_other_file_sorted(bundle: tuple[LocalStore, Any]) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/MANIFEST.sha256") as handle:
        lines = handle.read().decode().splitlines()
    listed = [line.split("  ", 1)[1] for line in lines]
    assert listed == sorted(listed)
    names = {k[len(result.prefix) + 1:] for k in store.list(result.prefix)}
    assert set(listed) == names - {"MANIFEST.sha256", "MANIFEST.sha256.sig"}


def test_sha256sum_checks_a_downloaded_copy(bundle: tuple[LocalStore, Any],
                                            tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    done = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=copy,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(
        (copy / "MANIFEST.sha256").read_text().splitlines())


def test_openssl_verifies_the_signature_and_fingerprint(bundle: tuple[LocalStore, Any],
                                                        tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pub", "-rawin",
         "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
        cwd=copy, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", "signing-key.pub", "-outform",
                          "DER"], cwd=copy, capture_output=True, check=True).stdout
    assert hashlib.sha256(der[-32:]).hexdigest() == \
        (copy / "signing-key.fingerprint").read_text().strip() == result.fingerprint
    (copy / "MANIFEST.sha256").write_text((copy / "MANIFEST.sha256").read_text() + "\n")
    bad = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pub", "-rawin",
         "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
        cwd=copy, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_check_bundle_passes_an_untouched_bundle(bundle: tuple[LocalStore, Any],
                                                 signing_key: Path, tmp_path: Path) -> None:
    store, result = bundle
    checks = check_bundle(store, result.prefix)
    assert bundle_ok(checks, require_signature=True), [str(c) for c in checks if not c.ok]
    assert checks[-1].status == "OK" and checks[-1].path == "MANIFEST.sha256.sig"
    public = tmp_path / "given.pub"
    with store.open(f"{result.prefix}/signing-key.pub") as handle:
        public.write_bytes(handle.read())
    assert bundle_ok(check_bundle(store, result.prefix, public_key=public))


def test_check_bundle_fails_with_another_key(bundle: tuple[LocalStore, Any],
                                            tmp_path: Path) -> None:
    store, result = bundle
    other = tmp_path / "other.pem"
    generate_signing_key(other)
    from render.signing import load_private_key, public_key_pem

    (tmp_path / "other.pub").write_bytes(public_key_pem(load_private_key(other).public_key()))
    checks = check_bundle(store, result.prefix, public_key=tmp_path / "other.pub")
    assert not bundle_ok(checks)
    failed = {c.path for c in checks if c.status == "FAIL"}
    assert failed == {"signing-key.pub", "MANIFEST.sha256.sig"}


@pytest.mark.parametrize("victim", ["run.json", "evidence.jsonl", "log.jsonl", "report/AC-01.csv",
                                    "queries/controls/fct_control_ac02__timely_revocation.sql",
                                    "signing-key.pub", "xlsx"])
def test_tampering_with_any_file_is_detected(bundle: tuple[LocalStore, Any], tmp_path: Path,
                                             victim: str) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    if victim == "xlsx":
        victim = next(p.relative_to(copy).as_posix() for p in copy.glob("report/*.xlsx"))
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / victim).write_bytes(bytes(data))
    checks = check_bundle(copy)
    assert not bundle_ok(checks)
    assert ("MISMATCH", victim) in {(c.status, c.path) for c in checks}


def test_tampering_with_the_manifest_breaks_the_signature(bundle: tuple[LocalStore, Any],
                                                          tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    manifest = copy / "MANIFEST.sha256"
    lines = manifest.read_text().splitlines(keepends=True)
    (copy / "run.json").write_text('{"forged": true}\n')
    forged = hashlib.sha256((copy / "run.json").read_bytes()).hexdigest()
    manifest.write_text("".join(f"{forged}  run.json\n" if line.endswith("  run.json\n")
                                else line for line in lines))
    checks = check_bundle(copy)
    assert ("OK", "run.json") in {(c.status, c.path) for c in checks}  # hashes agree now...
    assert ("FAIL", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}  # ...not signed
    assert not bundle_ok(checks)


def test_missing_and_extra_files_are_reported(bundle: tuple[LocalStore, Any],
                                              tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    (copy / "log.jsonl").unlink()
    (copy / "report" / "smuggled.csv").write_text("x\r\n")
    statuses = {(c.status, c.path) for c in check_bundle(copy)}
    assert ("MISSING", "log.jsonl") in statuses
    assert ("EXTRA", "report/smuggled.csv") in statuses


def test_nothing_in_the_bundle_contains_a_secret(bundle: tuple[LocalStore, Any]) -> None:
    store, result = bundle
    for key in store.list(result.prefix):
        with store.open(key) as handle:
            assert SECRET.encode() not in handle.read(), key


def test_run_json_records_versions_and_the_redacted_config(bundle: tuple[LocalStore, Any],
                                                           seeded: SeededRun) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/run.json") as handle:
        doc = json.load(handle)
    assert doc["run"]["id"] == seeded.run_id
    assert doc["run"]["config"]["sources"][0]["token"] == "${JIRA_TOKEN}"
    assert doc["git_commit"] == "0123456789abcdef"
    assert doc["versions"]["python"] and doc["versions"]["soxtrail"]
    assert "dbt-core" in doc["versions"] and "dbt-postgres" in doc["versions"]
    assert [c["control_id"] for c in doc["controls"]] == sorted(CONTROLS)
    assert doc["signed"] is True


def test_evidence_jsonl_has_every_row_with_its_chain_link(
        bundle: tuple[LocalStore, Any], seeded: SeededRun,
        conn: psycopg.Connection[Any]) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/evidence.jsonl") as handle:
        records = [json.loads(line) for line in handle.read().decode().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(seeded.evidence_ids)
    assert [r["chain_seq"] for r in records] == sorted(r["chain_seq"] for r in records)
    record = records[0]
    text = conn.execute(
        "select soxtrail.evidence_row_text(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (record["id"], record["run_id"], record["source_system"], record["query_name"],
         record["query_text"], Jsonb(record["query_params"]), record["executed_at"],
         record["executed_by"], record["result_row_count"], record["result_hash"],
         record["raw_output_s3_key"])).fetchone()[0]  # type: ignore[index]
    conn.rollback()
    link = hashlib.sha256(f"{record['prev_hash']}|{text}".encode()).hexdigest()
    assert link == record["chain_hash"]


def test_control_sql_files_carry_a_header(bundle: tuple[LocalStore, Any],
                                          seeded: SeededRun) -> None:
    store, result = bundle
    model = CONTROLS["AC-01"][0]
    with store.open(f"{result.prefix}/queries/controls/{model}.sql") as handle:
        text = handle.read().decode()
    assert text.startswith("-- soxtrail control AC-01: Privileged access approved\n")
    assert f"-- run:         {seeded.run_id} ({QUARTER})" in text
    assert f"-- evidence id: {control_evidence_id(seeded.run_id, model)}" in text
    assert '"revocation_sla_hours":24' in text
    assert text.rstrip().endswith(f"where run_id = '{seeded.run_id}'")


def test_an_unsigned_bundle_says_so_loudly(conn: psycopg.Connection[Any], seeded: SeededRun,
                                           rendered: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOXTRAIL_SIGNING_KEY", raising=False)
    store = LocalStore(tmp_path / "store")
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=None)
    assert result.signed is False and result.fingerprint is None
    with store.open(f"{result.prefix}/UNSIGNED") as handle:
        assert handle.read().startswith(b"THIS BUNDLE IS NOT SIGNED.")
    checks = check_bundle(store, result.prefix)
    assert ("UNSIGNED", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}
    assert bundle_ok(checks) and not bundle_ok(checks, require_signature=True)
    assert not store.exists(f"{result.prefix}/MANIFEST.sha256.sig")


def test_the_signing_key_comes_from_the_environment(conn: psycopg.Connection[Any],
                                                    seeded: SeededRun, rendered: Any,
                                                    signing_key: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(signing_key))
    store = LocalStore(tmp_path / "store")
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=None)
    assert result.signed


def test_writing_the_bundle_twice_gives_the_same_manifest(
        conn: psycopg.Connection[Any], seeded: SeededRun, rendered: Any,
        bundle: tuple[LocalStore, Any], signing_key: Path, tmp_path: Path) -> None:
    store, first = bundle
    second = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=signing_key)
    assert second.manifest_sha256 == first.manifest_sha256
    assert bundle_ok(check_bundle(store, second.prefix))


def test_a_wrong_quarter_is_refused(conn: psycopg.Connection[Any], seeded: SeededRun,
                                    rendered: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not 2024Q4"):
        write_bundle(conn, LocalStore(tmp_path), run_id=seeded.run_id, quarter="2024Q4",
                     files=BundleInputs(), signing_key=None)
    conn.rollback()


def test_a_downloaded_copy_outside_the_store_still_checks(bundle: tuple[LocalStore, Any],
                                                          tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    moved = tmp_path / "elsewhere"
    shutil.move(str(copy), moved)
    assert bundle_ok(check_bundle(moved, "", public_key=moved / "signing-key.pub"),
                     require_signature=True)
