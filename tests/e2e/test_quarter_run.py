"""The whole pipeline on the demo estate: results equal the demo's planted ground truth."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from psycopg.rows import dict_row

from soxtrail.kernel.controls import (
    COMPLETENESS,
    CONTROLS,
    EVIDENCED_MARTS,
    POPULATIONS,
    REGISTERS,
)
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import LocalStore
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The database of this module's demo run (tests/support/demo_quarter.py)."""
    return demo_run.db


@pytest.fixture(scope="module")
def demo_estate(demo_run: DemoRun) -> Path:
    return demo_run.demo


@pytest.fixture(scope="module")
def completed_run(demo_run: DemoRun) -> dict[str, Any]:
    """The --json summary of `soxtrail run --quarter 2024Q3` on the demo estate, in a new
    database on a new SOXTRAIL_HOME, with that home."""
    summary = demo_run.summary
    summary["home"] = demo_run.home
    return summary


def _mart_rows(conn: psycopg.Connection, model: str,
               run_id: str) -> dict[str, tuple[str, list[str]]]:
    rows = conn.execute(f"select item_key, result, exception_reasons from marts.{model}"
                        " where run_id = %s", (run_id,)).fetchall()
    return {key: (result, sorted(reasons)) for key, result, reasons in rows}


def test_the_run_completes_and_names_its_report_and_bundle(completed_run: dict[str, Any]) -> None:
    assert completed_run["status"] == "completed"
    assert Path(completed_run["report"]).is_file()
    assert completed_run["report"].endswith(".xlsx")
    assert Path(completed_run["bundle"]).is_dir()
    kinds = {c["control_id"]: c["kind"] for c in completed_run["controls"]}
    assert {c for c, kind in kinds.items() if kind == "control"} == set(CONTROLS)
    assert {c for c, kind in kinds.items() if kind == "completeness"} == set(COMPLETENESS)


def test_the_completeness_sheet_reproduces_the_planted_findings(
        completed_run: dict[str, Any], pg_database: Database, demo_estate: Path) -> None:
    """Each planted completeness finding of expected.json, on its source's or cluster's
    row, and no exception anywhere else."""
    truth = json.loads((demo_estate / "expected.json").read_text())
    expected = truth.get("completeness", {})
    clusters = truth.get("completeness_clusters", {})
    assert expected and clusters, "the demo plants completeness findings"
    with pg_database.connect() as conn:
        got = {key: sorted(reasons) for key, reasons in conn.execute(
            "select item_key, exception_reasons from marts.fct_completeness__sources"
            " where run_id = %s", (completed_run["run_id"],)).fetchall()}
    want = {f"source|{name}": sorted(codes) for name, codes in expected.items()}
    want.update({f"cluster|{name}": sorted(codes) for name, codes in clusters.items()})
    assert {k: got.get(k) for k in want} == want
    assert {k: v for k, v in got.items() if v and k not in want} == {}


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_every_control_reproduces_the_planted_ground_truth(
        control_id: str, completed_run: dict[str, Any], pg_database: Database,
        demo_estate: Path) -> None:
    expected = json.loads((demo_estate / "expected.json").read_text())["controls"][control_id]
    want = {"|".join(item["key"]): (item["result"], sorted(item["reasons"])) for item in expected}
    with pg_database.connect() as conn:
        got = _mart_rows(conn, CONTROLS[control_id], completed_run["run_id"])
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    assert not missing, f"{control_id}: population items missing: {missing[:10]}"
    assert not unexpected, f"{control_id}: unexpected population items: {unexpected[:10]}"
    assert not wrong, f"{control_id}: wrong results: {[(k, got[k], want[k]) for k in wrong[:10]]}"
    assert any(r == "EXCEPTION" for r, _ in got.values())


def test_every_evidence_row_hashes_the_object_it_names(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    store = LocalStore(Path(completed_run["home"]) / "store")
    with pg_database.connect() as conn:
        rows = conn.execute("select source_system, result_hash, raw_output_s3_key"
                            " from soxtrail.sox_evidence where run_id = %s",
                            (completed_run["run_id"],)).fetchall()
    systems = {r[0] for r in rows}
    assert {"db_audit", "db_catalog", "iam", "tickets", "backups", "role_catalog",
            "responses", "reconcile"} <= systems
    # one reconcile row per control, completeness, searched-population and register mart, and
    # one for the summary mart
    assert sum(1 for r in rows if r[0] == "reconcile") == len(EVIDENCED_MARTS) \
        == len(CONTROLS) + len(COMPLETENESS) + 1 + len(POPULATIONS) + len(REGISTERS)
    for _, digest, key in rows:
        with store.open(key) as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest, key


def test_loading_accounts_for_every_record(completed_run: dict[str, Any],
                                           pg_database: Database) -> None:
    with pg_database.connect() as conn:
        read, loaded, rejected, skipped = conn.execute(
            "select sum(records_read), sum(records_loaded), sum(records_rejected),"
            " sum(records_skipped) from soxtrail.sox_load_stats where run_id = %s",
            (completed_run["run_id"],)).fetchone()
        rejects = conn.execute("select count(*) from soxtrail.sox_rejects where run_id = %s",
                               (completed_run["run_id"],)).fetchone()[0]
    assert read == loaded + rejected + skipped
    assert rejects == rejected
    assert loaded > 0


def _register(conn: psycopg.Connection, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from marts.fct_exceptions_register where run_id = %s", (run_id,))
        return {(row["control_id"], row["control_item_key"]): row for row in cur.fetchall()}


def test_the_exceptions_register_shows_the_planted_responses_and_waivers(
        completed_run: dict[str, Any], pg_database: Database, demo_estate: Path) -> None:
    expected = json.loads((demo_estate / "expected.json").read_text())["register"]
    with pg_database.connect() as conn:
        register = _register(conn, completed_run["run_id"])
        exceptions = sum(len(conn.execute(
            f"select 1 from marts.{model} where run_id = %s and result = 'EXCEPTION'",
            (completed_run["run_id"],)).fetchall()) for model in CONTROLS.values())
    # the first run of its database: nothing earlier to recur from or resolve
    assert {row["recurrence"] for row in register.values()} == {"new"}
    assert len(register) == exceptions == expected["exceptions"]
    assert sum(not row["has_response"] for row in register.values()) \
        == expected["without_response"]
    for want in expected["rows"]:
        row = register[(want["control"], want["item"])]
        assert {k: row[k] for k in ("register_status", "waiver_state", "owner",
                                    "response_status")} == {
            k: want[k] for k in ("register_status", "waiver_state", "owner", "response_status")}
    # the workbook: an Exceptions sheet, one row per exception, and the Summary's count
    book = openpyxl.load_workbook(completed_run["report"], read_only=True)
    sheet = [list(r) for r in book["Exceptions"].iter_rows(values_only=True)]
    statuses = [v for r in sheet for v in r if isinstance(v, str) and v.startswith("EXCEPTION")]
    assert len(statuses) == len(register)
    assert any(v.startswith("EXCEPTION (waived until ") for v in statuses)
    summary = [str(v) for r in book["Summary"].iter_rows(values_only=True) for v in r if v]
    assert f"{expected['without_response']} of {expected['exceptions']} exceptions" in " ".join(
        summary)
    # a waiver never makes a pass: every register row is an exception, waived or not
    assert all(row["result"] == "EXCEPTION" and row["register_status"].startswith("EXCEPTION")
               for row in register.values())
    assert {row["waiver_state"] for row in register.values()} >= {"expired", "none"}


def test_a_second_run_is_a_new_run_and_leaves_the_first_alone(
        completed_run: dict[str, Any], pg_database: Database, demo_estate: Path) -> None:
    with pg_database.connect() as conn:
        before = conn.execute("select count(*), max(created_at) from soxtrail.sox_evidence"
                              " where run_id = %s", (completed_run["run_id"],)).fetchone()
    result = soxtrail("run", "--quarter", "2024Q3", "--config", str(demo_estate / "soxtrail.yml"),
                      "--json", "--log-format", "json", home=completed_run["home"],
                      database_url=pg_database.dsn)
    assert result.code == 0, result.stderr
    second = result.json()
    # --log-format json: stderr is one structured event per line, every phase in order
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["phase"] for e in events if e["event"] == "phase_done"] == [
        "snapshot", "load", "reconcile", "render", "bundle"]
    assert {e["event"] for e in events} >= {"query", "source_done", "load_plan", "loaded",
                                            "node_done"}
    assert second["run_id"] != completed_run["run_id"]
    assert second["controls"] == completed_run["controls"]
    with pg_database.connect() as conn:
        after = conn.execute("select count(*), max(created_at) from soxtrail.sox_evidence"
                             " where run_id = %s", (completed_run["run_id"],)).fetchone()
        first_status = conn.execute("select status from soxtrail.sox_runs where id = %s",
                                    (completed_run["run_id"],)).fetchone()[0]
    assert after == before
    assert first_status == "completed"
    # the second run compares with the first: every exception recurs, with its response
    with pg_database.connect() as conn:
        first = _register(conn, completed_run["run_id"])
        again = _register(conn, second["run_id"])
    assert set(again) == set(first)
    assert {row["recurrence"] for row in again.values()} == {"recurring"}
    assert {row["earlier_run_id"] for row in again.values()} == {
        uuid.UUID(completed_run["run_id"])}
    assert [(k, row["earlier_response_status"]) for k, row in sorted(again.items())
            if row["earlier_response_status"]] == [
        (k, row["response_status"]) for k, row in sorted(first.items()) if row["has_response"]]
