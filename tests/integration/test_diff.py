"""`soxtrail diff`: every layer between two runs, and each changed item's explanation.

One database, one chain of demo runs of 2024Q3, each differing from the one before in one
layer: a re-run of the same estate (nothing differs), one Jira ticket file edited (a
source byte), a policy var in soxtrail.yml (a config key), a role catalog row; and a
2024Q4 run for the cross-quarter comparison. The SQL layer's model change is exercised
on the stored rows of two runs (a run cannot point at another dbt project).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from extract.demo import generate
from soxtrail.audit import diff, diff_sql
from soxtrail.kernel import evidence
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoRun

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
def pg_database(demo_run: DemoRun) -> Database:
    """The shared demo run's database (tests/support/demo_quarter.py), this module's to change."""
    return demo_run.db


@pytest.fixture(scope="module")
def root(demo_run: DemoRun) -> Path:
    """The shared run's folder: its estate `demo/` and SOXTRAIL_HOME `home/`."""
    assert (demo_run.demo, demo_run.home) == (demo_run.demo.parent / "demo",
                                              demo_run.demo.parent / "home")
    return demo_run.demo.parent


@dataclass
class Runs:
    q3: str
    q3_modified: str
    ticket: str
    ac01_items: list[str]
    ac03_approvals: dict[str, str | None]
    jira_pages: list[str]  # the edited files, relative to the estate


@pytest.fixture(scope="module")
def q3(demo_run: DemoRun) -> str:
    """2024Q3 of the demo estate (the chain's first run: the shared demo run).

    The chain edits the estate in place, one layer at a time: its recorded folder stays
    the same (the CloudTrail digests object records the digests' own path), so each pair
    differs in the one layer edited. (Concurrent `dbt build`s in one database collide on
    the marts and unit-test fixtures, so the runs are sequential.)
    """
    return demo_run.run_id


@pytest.fixture(scope="module")
def q3_rerun(pg_database: Database, root: Path, q3: str) -> str:
    """2024Q3 again from the same estate and home: nothing may differ."""
    return _finish(_start(pg_database, root / "home", root / "demo", "2024Q3"))


@pytest.fixture(scope="module")
def runs(pg_database: Database, root: Path, q3: str, q3_rerun: str) -> Runs:
    """The estate with one Jira approval removed (a source byte), run again."""
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
    chosen = next(((k, items) for k, items in passing if _jira_issue_files(root / "demo", k)), None)
    assert chosen is not None, "the demo has an approved grant ticketed in Jira"
    ticket, ac01_items = chosen
    path_in_issue = next(iter(status_path.values()), "fields.status")
    pages = _jira_issue_files(root / "demo", ticket)
    for page in pages:
        doc = json.loads(page.read_text(encoding="utf-8"))
        for issue in doc["issues"]:
            if issue.get("key") == ticket:
                _set_path(issue, path_in_issue, "In Progress")
                issue.pop("changelog", None)
        page.write_text(json.dumps(doc), encoding="utf-8")
    q3_modified = _finish(_start(pg_database, root / "home", root / "demo", "2024Q3"))
    return Runs(q3, q3_modified, ticket, list(ac01_items), ac03,
                [str(p.relative_to(root / "demo")) for p in pages])


@pytest.fixture(scope="module")
def q4(pg_database: Database, root: Path, q3: str) -> str:
    generate(root / "q4", Quarter.parse("2024Q4"))
    return _finish(_start(pg_database, root / "home", root / "q4", "2024Q4"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} holds {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture(scope="module")
def config_changed(pg_database: Database, root: Path, runs: Runs) -> str:
    """Then one policy var changed in soxtrail.yml (a config key)."""
    _edit(root / "demo" / "soxtrail.yml", "revocation_sla_hours: 24", "revocation_sla_hours: 2400")
    return _finish(_start(pg_database, root / "home", root / "demo", "2024Q3"))


@pytest.fixture(scope="module")
def catalog_changed(pg_database: Database, root: Path, config_changed: str) -> str:
    """Then one role catalog row changed: `ord_admin` no longer privileged."""
    _edit(root / "demo" / "seeds" / "role_catalog.csv", "\nord_admin,pg-ord-*,true,",
          "\nord_admin,pg-ord-*,false,")
    return _finish(_start(pg_database, root / "home", root / "demo", "2024Q3"))


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
    a, b = _expected(root / "demo"), _expected(root / "q4")
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, q3, q4)
    assert result.cross_quarter
    assert "CROSS-QUARTER" in result.header()
    by_item = {c.control_id for c in result.controls if c.compared_by == "item"}
    # the registry's cross-run identity: AC-02 and AC-03 items recur across quarters
    assert by_item == {"AC-02", "AC-03"}
    assert "AC-02, AC-03 (their items recur across quarters)" in result.header()
    for control_id in CONTROLS:
        want_a, want_b = a[control_id], b[control_id]
        control = next(c for c in result.controls if c.control_id == control_id)
        if control_id in by_item:
            got = _by_kind(result, control_id)
            assert got["added"] == set(want_b) - set(want_a), control_id
            assert got["removed"] == set(want_a) - set(want_b), control_id
            assert got["changed"] == {k for k in set(want_a) & set(want_b)
                                      if want_a[k] != want_b[k]}, control_id
        else:  # items of one period: counts and reason codes from the marts, no item list
            assert not control.changes, control_id
            assert (control.population_a, control.population_b) == (len(want_a), len(want_b))
            for run_id, reasons in ((q3, control.reasons_a), (q4, control.reasons_b)):
                assert reasons == _mart_reasons(pg_database, control_id, run_id), control_id
            assert control.differs == (control.reasons_a != control.reasons_b
                                       or control.population_a != control.population_b
                                       or control.exceptions_a != control.exceptions_b)


def _mart_reasons(db: Database, control_id: str, run_id: str) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(
            f"select reason, count(*) from marts.{CONTROLS[control_id]},"
            " unnest(exception_reasons) as reason where run_id = %s group by reason",
            (run_id,)).fetchall())


def _reasons(items: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, int]:
    return dict(Counter(r for _, reasons in items.values() for r in reasons))


def _settings_known_from_an_earlier_run(db: Database, run_id: str) -> dict[str, list[str]]:
    """LG-01 items of `run_id` whose settings basis cites an evidence row of another run:
    item key -> those evidence rows' query names."""
    with db.connect() as conn:
        rows = conn.execute(
            "select lg.item_key, e.query_name from marts.fct_control_lg01__audit_logging_complete"
            " as lg cross join unnest(lg.supporting_evidence_ids) as s(id)"
            " join soxtrail.sox_evidence as e on e.id = s.id"
            " where lg.run_id = %s and e.run_id <> lg.run_id", (run_id,)).fetchall()
    found: dict[str, list[str]] = {}
    for key, query in rows:
        found.setdefault(key, []).append(query)
    return found


def test_cross_quarter_counts_match_the_two_demos_ground_truth(
        pg_database: Database, root: Path, q3: str, q4: str) -> None:
    """The 2024Q4 run, made after the 2024Q3 runs in the same database, includes the newest
    earlier settings capture of each cluster as LG-01's known point at the quarter's start
    (docs/controls.md, LG-01): the days the 2024Q4 demo alone leaves SETTINGS_UNKNOWN are
    known from the 2024Q3 run's capture. The oracle knows only its own estate, so exactly
    those items (each citing the earlier capture) lose SETTINGS_UNKNOWN."""
    a, b = _expected(root / "demo"), _expected(root / "q4")
    earlier = _settings_known_from_an_earlier_run(pg_database, q4)
    unknown_alone = {k for k, (_, reasons) in b["LG-01"].items() if "SETTINGS_UNKNOWN" in reasons}
    assert unknown_alone, "the 2024Q4 demo plants days with unknown settings"
    assert set(earlier) >= unknown_alone
    assert all(any("settings" in q for q in earlier[k]) for k in unknown_alone), earlier
    b["LG-01"] = {k: (("PASS" if reasons == ("SETTINGS_UNKNOWN",) else result),
                      tuple(r for r in reasons if r != "SETTINGS_UNKNOWN"))
                  if k in unknown_alone else (result, reasons)
                  for k, (result, reasons) in b["LG-01"].items()}
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, q3, q4)
    for control in result.controls:
        if control.compared_by == "counts":
            want_a, want_b = a[control.control_id], b[control.control_id]
            assert control.reasons_a == _reasons(want_a), control.control_id
            assert control.reasons_b == _reasons(want_b), control.control_id


def test_cli_csv_and_xlsx_hold_the_same_changes(pg_database: Database, root: Path,
                                                runs: Runs, tmp_path: Path) -> None:
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, runs.q3, runs.q3_modified)
    expected = {(c.control_id, c.change, c.item_key) for c in result.changes()}
    assert expected
    args = (runs.q3, runs.q3_modified)
    out = soxtrail("diff", *args, "--format", "csv", home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {(r["control_id"], r["change"], r["item_key"]) for r in rows} == expected
    assert {r["explained_by"] for r in rows} == {diff.SUPPORTING}
    xlsx = tmp_path / "diff.xlsx"
    out = soxtrail("diff", *args, "--format", "xlsx", "--out", str(xlsx), home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    workbook = openpyxl.load_workbook(xlsx)
    assert workbook.sheetnames == ["summary", "evidence", "config", "catalogs", "sql",
                                   "decisions", "changes"]
    values = list(workbook["changes"].iter_rows(values_only=True))
    assert list(values[0]) == list(diff.COLUMNS)
    assert {(r[0], r[1], r[2]) for r in values[1:]} == expected


def test_cli_cross_quarter_says_how_each_control_is_compared(
        pg_database: Database, root: Path, q3: str, q4: str, tmp_path: Path) -> None:
    xlsx = tmp_path / "quarters.xlsx"
    out = soxtrail("diff", q3, q4, "--format", "xlsx", "--out", str(xlsx), home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    workbook = openpyxl.load_workbook(xlsx)
    # the decisions sheet: one row per control, the one-period controls compared by counts
    decisions = list(workbook["decisions"].iter_rows(values_only=True))
    assert [r[0] for r in decisions[1:]] == list(CONTROLS)
    assert {r[0]: r[1] for r in decisions[1:]} == {
        c: "item" if c in ("AC-02", "AC-03") else "counts" for c in CONTROLS}
    # the config sheet lists the quarter as a counted scope change
    config = list(workbook["config"].iter_rows(values_only=True))
    assert ("scope.quarter", "changed", "2024Q3", "2024Q4", True) in config
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


# ---------------------------------------------------------------- every layer


def _diff(db: Database, run_a: str, run_b: str) -> diff.RunDiff:
    with db.connect() as conn:
        return diff.diff_runs(conn, run_a, run_b)


def _layers(result: diff.RunDiff) -> tuple[Any, Any, Any]:
    assert result.evidence is not None and result.config is not None and result.sql is not None
    return result.evidence, result.config, result.sql


def test_a_rerun_of_the_same_estate_differs_in_no_layer(pg_database: Database, root: Path,
                                                        q3: str, q3_rerun: str) -> None:
    result = _diff(pg_database, q3, q3_rerun)
    evidence, config, sql = _layers(result)
    assert result.differences() == {"evidence": 0, "config": 0, "sql": 0, "decisions": 0}
    assert not result.differs and not result.changes() and not config.keys
    # what differs is the record only: the run ids in the store keys and the SQL
    keys_a = {o.store_key for o in evidence.objects_a.values()}
    keys_b = {o.store_key for o in evidence.objects_b.values()}
    assert len(keys_a) == len(evidence.objects_a) > 0 and not keys_a & keys_b
    assert all(c.status == "same" for c in sql.controls) and len(sql.controls) > len(CONTROLS)
    out = soxtrail("diff", q3, q3_rerun, "--fail-on-change", home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    assert "UNEXPLAINED" not in out.stderr


def test_a_ticket_file_edit_is_explained_by_the_supporting_evidence(
        pg_database: Database, root: Path, q3_rerun: str, runs: Runs) -> None:
    result = _diff(pg_database, q3_rerun, runs.q3_modified)
    evidence, config, sql = _layers(result)
    changed = {c.identity for c in evidence.changes}
    assert {source for source, _ in changed} == {"jira"}
    assert {c.change for c in evidence.changes} == {"changed"}
    for page in runs.jira_pages:
        assert any(name.endswith(Path(page).stem) for _, name in changed), page
    assert not config.counted_keys and not config.catalog_rows and not sql.differs
    assert result.changes()
    for change in result.changes():
        assert change.explained_by == (diff.SUPPORTING,), change
        assert change.because[0].startswith(f"{diff.SUPPORTING}: jira/"), change
    out = soxtrail("diff", q3_rerun, runs.q3_modified, "--fail-on-change", home=root / "home",
                   database_url=pg_database.dsn)
    assert out.code == 1
    assert f"runs differ (evidence {len(evidence.changes)}" in " ".join(out.stderr.split())


def test_a_policy_var_is_explained_by_the_config(pg_database: Database, runs: Runs,
                                                 config_changed: str) -> None:
    result = _diff(pg_database, runs.q3_modified, config_changed)
    evidence, config, sql = _layers(result)
    assert [(k.key, k.a, k.b) for k in config.keys] == [("policy.revocation_sla_hours", 24, 2400)]
    assert not evidence.differs and not config.catalog_rows
    # only AC-02 reads the var: only its compiled SQL differs, and only by the var
    assert [(c.control_id, c.cause) for c in sql.controls if c.status != "same"] == [
        ("AC-02", "vars")]
    ac02 = sql.get("AC-02")
    assert ac02 is not None and ac02.vars_changed == ["revocation_sla_hours"]
    assert re.search(r"^\+.*2400", ac02.unified_diff, re.M)
    changes = result.changes()
    assert changes and {c.control_id for c in changes} == {"AC-02"}
    for change in changes:
        assert change.explained_by == (diff.CONFIG,), change
        assert change.because == (f"{diff.CONFIG}: var revocation_sla_hours",)
        assert change.a is not None and change.b is not None
        assert "REVOKED_LATE" in change.a.reasons and change.b.result == "PASS"


def test_a_catalog_row_is_explained_by_the_catalog(pg_database: Database, root: Path,
                                                   config_changed: str, catalog_changed: str,
                                                   tmp_path: Path) -> None:
    result = _diff(pg_database, config_changed, catalog_changed)
    evidence, config, sql = _layers(result)
    assert [(c.catalog, c.key, c.change) for c in config.catalog_rows] == [
        ("role_catalog", "ord_admin|pg-ord-*", "changed")]
    row = config.catalog_rows[0]
    assert row.a is not None and row.b is not None
    assert (row.a["is_privileged"], row.b["is_privileged"]) == ("true", "false")
    assert [c.identity for c in evidence.changes] == [
        ("catalog-role_catalog", "catalog-role_catalog/role_catalog")]
    assert not config.keys and not sql.differs
    changes = result.changes()
    # ord_admin grants leave AC-01's population of privileged grants
    assert any(c.control_id == "AC-01" and c.change == "removed" for c in changes)
    for change in changes:
        assert change.explained_by == (diff.CATALOG,), change

    out = soxtrail("diff", config_changed, catalog_changed, "--json", "--fail-on-change",
                   home=root / "home", database_url=pg_database.dsn)
    assert out.code == 1, out.stderr
    doc = out.json()
    assert {"run_a", "run_b", "differs", "differences", "counted", "not_counted", "evidence",
            "config", "sql", "decisions"} <= set(doc)
    assert doc["differences"] == {"evidence": 1, "config": 1, "sql": 0,
                                  "decisions": len(changes)}
    assert doc["evidence"]["changes"][0]["source"] == "catalog-role_catalog"
    assert doc["evidence"]["changes"][0]["size_b"] > 0
    assert doc["config"]["catalog_rows"][0]["key"] == "ord_admin|pg-ord-*"
    assert {c["explained_by"] for c in doc["decisions"]["changes"]} == {diff.CATALOG}
    assert doc["decisions"]["unexplained"] == 0

    xlsx = tmp_path / "layers.xlsx"
    out = soxtrail("diff", config_changed, catalog_changed, "--format", "xlsx", "--out",
                   str(xlsx), home=root / "home", database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    workbook = openpyxl.load_workbook(xlsx)
    evidence_rows = list(workbook["evidence"].iter_rows(values_only=True))
    assert [r[:3] for r in evidence_rows[1:]] == [
        ("catalog-role_catalog", "catalog-role_catalog/role_catalog", "changed")]
    catalog_rows = list(workbook["catalogs"].iter_rows(values_only=True))
    assert [r[:3] for r in catalog_rows[1:]] == [("role_catalog", "ord_admin|pg-ord-*", "changed")]
    summary = {r[0]: r[1] for r in workbook["summary"].iter_rows(values_only=True)
               if r[0] in diff.COUNTED}
    assert summary == doc["differences"]


def test_a_model_sql_change_is_explained_by_the_sql(pg_database: Database, q3: str,
                                                    q3_rerun: str) -> None:
    """A run cannot point at another dbt project: the re-run's stored AC-01 row is rewritten
    (in memory) as a changed model would have compiled, and one AC-01 item decided
    otherwise is explained by it."""
    with pg_database.connect() as conn:
        result = diff.diff_runs(conn, q3, q3_rerun)
        rows_a, rows_b = evidence.control_rows(conn, q3), evidence.control_rows(conn, q3_rerun)
        items_a = diff.load_items(conn, CONTROLS["AC-01"], q3)
        items_b = diff.load_items(conn, CONTROLS["AC-01"], q3_rerun)
    row = next(r for r in rows_b if r["query_params"]["control_id"] == "AC-01")
    edited = {**row, "query_text": row["query_text"].replace(
        "\nwith\n", "\nwith\n-- stricter: a second approver\n", 1),
        "query_params": {**row["query_params"], "checksum": "0" * 64}}
    assert edited["query_text"] != row["query_text"]
    sql = diff_sql.diff_compiled([diff_sql.compiled(r) for r in rows_a],
                                 [diff_sql.compiled(edited if r is row else r) for r in rows_b],
                                 CONTROLS)
    assert [(c.control_id, c.cause) for c in sql.controls if c.status != "same"] == [
        ("AC-01", "model")]
    ac01 = sql.get("AC-01")
    assert ac01 is not None and "+-- stricter: a second approver" in ac01.unified_diff
    key = next(k for k, item in items_a.items() if item.result == "PASS")
    change = diff.Change("AC-01", "changed", key, items_a[key],
                         replace(items_b[key], result="EXCEPTION"))
    assert result.evidence is not None and result.config is not None
    explained = diff.explain(change, None, result.evidence, result.config, sql)
    assert explained.explained_by == (diff.SQL_CHANGED,)
    assert explained.because == (f"{diff.SQL_CHANGED}: AC-01 compiled SQL (model)",)
    # without the rewrite, the same change has no changed input: UNEXPLAINED
    assert result.sql is not None
    unexplained = diff.explain(change, None, result.evidence, result.config, result.sql)
    assert unexplained.explained_by == (diff.UNEXPLAINED,)
