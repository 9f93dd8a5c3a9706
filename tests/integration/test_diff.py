"""`soxtrail diff`: items added, removed and changed, across quarters and within one."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from extract.demo import generate
from soxtrail.audit import diff
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import soxtrail

pytestmark = pytest.mark.integration


def _start(db: Database, home: Path, demo: Path, quarter: str) -> subprocess.Popen[str]:
    """`soxtrail run` as a subprocess."""
    env = {k: v for k, v in os.environ.items()  # no CI: as tests.support.cli.soxtrail
           if k not in ("SOXTRAIL_DATABASE_URL", "SOXTRAIL_STORE", "CI")}
    env.update(SOXTRAIL_HOME=str(home), SOXTRAIL_DATABASE_URL=db.dsn)
    return subprocess.Popen(
        [sys.executable, "-m", "soxtrail", "run", "--quarter", quarter, "--config",
         str(demo / "soxtrail.yml"), "--json", "--quiet", "--wait"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> str:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return str(json.loads(stdout)["run_id"])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diff")


@dataclass
class Runs:
    q3: str
    q3_modified: str
    ticket: str
    ac01_items: list[str]
    ac03_approvals: dict[str, str | None]


@pytest.fixture(scope="module")
def runs(pg_database: Database, root: Path) -> Runs:
    """2024Q3, then 2024Q3 again with one Jira approval removed (2024Q4: the `q4` fixture).

    (Concurrent `dbt build`s in one database collide on the marts and unit-test fixtures.)
    """
    generate(root / "q3", Quarter.parse("2024Q3"))
    q3 = _finish(_start(pg_database, root / "home", root / "q3", "2024Q3"))
    with pg_database.connect() as conn:
        # a ticket named explicitly by every grant it covers, one of them passing: taking
        # its approval away cannot move those grants to another ticket
        passing = conn.execute(
            f"select ticket_key, array_agg(item_key) from marts.{CONTROLS['AC-01']}"
            " where run_id = %s and ticket_key is not null group by ticket_key"
            " having bool_and(ticket_match = 'explicit') and bool_or(result = 'PASS')"
            " order by ticket_key", (q3,)).fetchall()
        status_path = dict(conn.execute(
            "select source_name, value from raw.source_settings where run_id = %s"
            " and connector = 'jira' and setting = 'field' and key = 'status'", (q3,)).fetchall())
        ac03 = dict(conn.execute(
            f"select item_key, approval_ticket_key from marts.{CONTROLS['AC-03']}"
            " where run_id = %s", (q3,)).fetchall())
    chosen = next(((k, items) for k, items in passing if _jira_issue_files(root / "q3", k)), None)
    assert chosen is not None, "the demo has an approved grant ticketed in Jira"
    ticket, ac01_items = chosen
    path_in_issue = next(iter(status_path.values()), "fields.status")
    modified = root / "q3-modified"
    shutil.copytree(root / "q3", modified)
    for page in _jira_issue_files(modified, ticket):
        doc = json.loads(page.read_text(encoding="utf-8"))
        for issue in doc["issues"]:
            if issue.get("key") == ticket:
                _set_path(issue, path_in_issue, "In Progress")
                issue.pop("changelog", None)
        page.write_text(json.dumps(doc), encoding="utf-8")
    q3_modified = _finish(_start(pg_database, root / "home-b", modified, "2024Q3"))
    return Runs(q3, q3_modified, ticket, list(ac01_items), ac03)


@pytest.fixture(scope="module")
def q3(runs: Runs) -> str:
    return runs.q3


@pytest.fixture(scope="module")
def q4(pg_database: Database, root: Path, runs: Runs) -> str:
    generate(root / "q4", Quarter.parse("2024Q4"))
    return _finish(_start(pg_database, root / "home", root / "q4", "2024Q4"))


def _expected(demo: Path) -> dict[str, dict[str, tuple[str, tuple[str, ...]]]]:
    doc = json.loads((demo / "expected.json").read_text())["controls"]
    return {control: {"|".join(item["key"]): (item["result"], tuple(sorted(item["reasons"])))
                      for item in items} for control, items in doc.items()}


def _by_kind(result: diff.RunDiff, control_id: str) -> dict[str, set[str]]:
    control = next(c for c in result.controls if c.control_id == control_id)
    return {kind: {c.item_key for c in control.changes if c.change == kind}
            for kind in diff.CHANGE_KINDS}


def test_cross_quarter_diff_matches_the_two_demos_ground_truth(
        pg_database: Database, root: Path, q3: str, q4: str) -> None:
    a, b = _expected(root / "q3"), _expected(root / "q4")
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, q3, q4)
    assert result.cross_quarter
    assert "CROSS-QUARTER" in result.header()
    for control_id in CONTROLS:
        want_a, want_b = a[control_id], b[control_id]
        got = _by_kind(result, control_id)
        assert got["added"] == set(want_b) - set(want_a), control_id
        assert got["removed"] == set(want_a) - set(want_b), control_id
        assert got["changed"] == {k for k in set(want_a) & set(want_b)
                                  if want_a[k] != want_b[k]}, control_id
    # BK-01's keys carry the day: no item survives from one quarter to the next
    bk = _by_kind(result, "BK-01")
    assert bk["added"] and bk["removed"]


def test_cli_csv_and_xlsx_hold_the_same_changes(pg_database: Database, root: Path, q3: str,
                                                q4: str, tmp_path: Path) -> None:
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, q3, q4)
    expected = {(c.control_id, c.change, c.item_key) for c in result.changes()}
    out = soxtrail("diff", q3, q4, "--format", "csv", home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {(r["control_id"], r["change"], r["item_key"]) for r in rows} == expected
    xlsx = tmp_path / "diff.xlsx"
    out = soxtrail("diff", q3, q4, "--format", "xlsx", "--out", str(xlsx), home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    sheet = openpyxl.load_workbook(xlsx)["changes"]
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == list(diff.COLUMNS)
    assert {(r[0], r[1], r[2]) for r in values[1:]} == expected
    table = soxtrail("diff", q3, q4, home=root / "home", database_url=pg_database.dsn)
    assert table.code == 0
    assert "CROSS-QUARTER" in table.stdout


def _jira_issue_files(demo: Path, key: str) -> list[Path]:
    found = []
    for path in sorted(demo.rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and any(isinstance(i, dict) and i.get("key") == key
                                         for i in doc.get("issues", [])):
            found.append(path)
    return found


def _set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        doc = doc[part]
    if isinstance(doc.get(parts[-1]), dict) and "name" in doc[parts[-1]]:
        doc[parts[-1]]["name"] = value  # Jira's status object
    else:
        doc[parts[-1]] = value


def test_same_quarter_diff_after_removing_one_approval(pg_database: Database,
                                                       runs: Runs) -> None:
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, runs.q3, runs.q3_modified)
    assert not result.cross_quarter
    assert "same quarter" in result.header()
    assert not [c for c in result.changes() if c.change != "changed"]
    ac01 = [c for c in result.changes() if c.control_id == "AC-01"]
    assert {c.item_key for c in ac01} == set(runs.ac01_items)
    for change in ac01:
        assert change.a is not None and change.b is not None
        assert change.b.result == "EXCEPTION"
        assert "NOT_APPROVED" in change.b.reasons and "NOT_APPROVED" not in change.a.reasons
    assert any(c.a is not None and c.a.result == "PASS" for c in ac01)
    # the ticket may also have been an access approval on record at quarter end
    on_record = {key for key, approval in runs.ac03_approvals.items() if approval == runs.ticket}
    for change in result.changes():
        if change.control_id == "AC-03":
            assert change.item_key in on_record
            assert change.b is not None and "NO_APPROVAL_ON_RECORD" in change.b.reasons
        else:
            assert change.control_id == "AC-01", change
