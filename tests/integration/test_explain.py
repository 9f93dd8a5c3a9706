"""`soxtrail explain` on a real demo run: one exception per control, traced to the stored
bytes, the evidence rows and the figures the decision used."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from soxtrail.audit.auditor import AUDITOR_ROLE
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from tests.support.cli import Result, soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The database of this module's demo run (tests/support/demo_quarter.py)."""
    return demo_run.db


@pytest.fixture(scope="module")
def completed_run(demo_run: DemoRun) -> dict[str, Any]:
    """The --json summary of a completed default demo run of 2024Q3, with its home."""
    summary = demo_run.summary
    summary["home"] = demo_run.home
    return summary


def _explain(run: dict[str, Any], db: Database, *args: str) -> Result:
    return soxtrail("explain", run["run_id"], *args, home=run["home"], database_url=db.dsn,
                    env={"COLUMNS": "100"})


def _first_exception(db: Database, run_id: str, control_id: str) -> dict[str, Any]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select * from marts.{CONTROLS[control_id]} where run_id = %s"  # type: ignore[arg-type]
                    " and result = 'EXCEPTION' order by item_key collate \"C\" limit 1",
                    (run_id,))
        row = cur.fetchone()
    assert row is not None, f"the demo plants exceptions in {control_id}"
    return row


def _evidence(db: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select id::text as id, result_hash, raw_output_s3_key, query_name"
                    " from soxtrail.sox_evidence where id = any(%s::uuid[])", (ids,))
        return {r["id"]: r for r in cur.fetchall()}


def _stored(run: dict[str, Any], key: str) -> bytes:
    """The object's bytes read straight from the local store, uncompressed."""
    data = (Path(run["home"]) / "store" / key).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _plain(value: Any) -> Any:
    """A mart value as JSON carries it: times ISO 8601, ids and numerics as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _cited_ids(row: dict[str, Any]) -> list[str]:
    return [str(row["evidence_id"]), *(str(i) for i in row["supporting_evidence_ids"] or []),
            str(row["control_evidence_id"])]


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_explain_traces_one_exception_per_control(
        control_id: str, completed_run: dict[str, Any], pg_database: Database) -> None:
    row = _first_exception(pg_database, completed_run["run_id"], control_id)
    key = row["item_key"]
    doc_result = _explain(completed_run, pg_database, key, "--control", control_id, "--json")
    assert doc_result.code == 0, doc_result.stderr
    doc = doc_result.json()
    text_result = _explain(completed_run, pg_database, key, "--control", control_id)
    assert text_result.code == 0, text_result.stderr
    text = text_result.stdout

    # the item and its decision
    assert (doc["control"]["id"], doc["item_key"], doc["result"]) == (control_id, key,
                                                                       "EXCEPTION")
    assert doc["reasons"] == list(row["exception_reasons"])
    assert " ".join(doc["control"]["question"].split()) in " ".join(text.split())
    for reason in row["exception_reasons"]:
        assert reason in text
    # the figures: every column of the mart row, with its value
    assert [c["name"] for c in doc["columns"]] == list(row)
    assert doc["row"] == {column: _plain(value) for column, value in row.items()}
    for attribute in doc["attributes"]:
        assert attribute["value"] == row[attribute["name"]]
        assert attribute["test"], f"{attribute['name']} has a YAML description"
        assert attribute["name"] in text
    short = [c for c, v in row.items() if isinstance(v, str) and 0 < len(v) < 24
             and c not in ("run_id", "control_id", "candidates")]
    for column in short:
        assert row[column] in text, column

    # the evidence rows: the item's, the supporting ones and the control's, with hashes
    stored = _evidence(pg_database, _cited_ids(row))
    got = {e["id"]: e for e in doc["evidence"]}
    assert set(_cited_ids(row)) <= set(got)
    for evidence_id, want in stored.items():
        assert got[evidence_id]["found"] is True
        assert got[evidence_id]["sha256"] == want["result_hash"]
        assert got[evidence_id]["store_key"] == want["raw_output_s3_key"]
        assert got[evidence_id]["query_name"] == want["query_name"]
        assert evidence_id in text and want["result_hash"] in text
    assert got[str(row["control_evidence_id"])]["role"] == "control"
    assert got[str(row["evidence_id"])]["role"] == "item"

    # the source line(s): the exact stored bytes the locator names
    lines = {s["column"]: s for s in doc["source_lines"]}
    item = lines["evidence_locator"]
    assert item["locator"] == row["evidence_locator"]
    assert item["evidence_id"] == str(row["evidence_id"])
    data = _stored(completed_run, stored[str(row["evidence_id"])]["raw_output_s3_key"])
    if item["kind"] == "line":
        number = int(row["evidence_locator"].rsplit(":", 1)[1])
        first = data.splitlines()[number - 1].decode("utf-8", errors="backslashreplace")
        assert item["text"].splitlines()[0] == first
        assert f"│ {first}" in text
        assert item["raw_row"] is not None and item["raw_row"]["locator"] == row[
            "evidence_locator"]
    else:
        assert item["kind"] == "json_item" and item["exact_bytes"] is True
        index = int(row["evidence_locator"].rsplit("#", 1)[1].split(".")[0])
        document = json.loads(data)
        records = document if isinstance(document, list) else next(
            v for v in document.values() if isinstance(v, list))
        assert json.loads(item["text"]) == records[index]
        assert item["text"] in text
    for source in doc["source_lines"]:
        assert source["text"], f"{source['column']} {source['locator']}: {source['note']}"

    # absence claims cite the population searched (when the mart carries it)
    if row.get("searched_population"):
        searched = doc["searched"]
        assert searched["population_key"] == row["searched_population"]
        assert searched["count"] == len(searched["evidence_ids"]) > 0
        assert f"{searched['count']} evidence objects searched" in text
    # the candidates, when the rule picked among several
    candidates = row.get("candidates")
    if isinstance(candidates, str):  # text or jsonb, as the mart declares it
        candidates = json.loads(candidates)
    if candidates:
        assert doc["candidates"] == candidates
        for candidate in candidates:
            assert str(candidate.get("key", "")) in text

    # the compiled SQL: its CTEs in order, and where the reasons are decided
    ctes = [c["name"] for c in doc["sql"]["ctes"]]
    assert ctes and ctes[-1] in text
    deciding = {m for c in doc["sql"]["ctes"] for m in c["mentions"]}
    assert set(row["exception_reasons"]) <= deciding, doc["sql"]["ctes"]
    assert doc["sql"]["relevant"]


def test_explain_reads_a_gzip_json_item_and_names_the_catalog_line(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    """AC-02's deactivation is item #i of a gzip CloudTrail file: its own bytes; AC-03's
    row is a line of the stored catalog file even where the locator names the export."""
    with pg_database.connect() as conn:
        key = conn.execute(
            "select item_key from marts.fct_control_ac02__timely_revocation where run_id = %s"
            " and evidence_locator like '%%.json.gz#%%' order by item_key collate \"C\" limit 1",
            (completed_run["run_id"],)).fetchone()
    assert key is not None, "the demo's AC-02 rows cite CloudTrail files"
    doc = _explain(completed_run, pg_database, key[0], "--json").json()
    item = doc["source_lines"][0]
    assert item["kind"] == "json_item" and item["exact_bytes"]
    stored = json.loads(gzip.decompress(
        (Path(completed_run["home"]) / "store" / item["store_key"]).read_bytes()))
    index = int(item["locator"].rsplit("#", 1)[1])
    assert json.loads(item["text"]) == stored["Records"][index]
    # its own bytes, as stored: a substring of the decompressed object
    assert item["text"].encode() in gzip.decompress(
        (Path(completed_run["home"]) / "store" / item["store_key"]).read_bytes())


def test_explain_refuses_an_ambiguous_or_unknown_item(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        shared = conn.execute(
            "select b.item_key from marts.fct_control_bk01__backups_performed as b"
            " join marts.fct_control_lg01__audit_logging_complete as l using (run_id, item_key)"
            " where run_id = %s order by 1 limit 1", (completed_run["run_id"],)).fetchone()
    assert shared is not None, "BK-01 and LG-01 both key a cluster's day"
    ambiguous = _explain(completed_run, pg_database, shared[0])
    assert ambiguous.code == 2
    assert "BK-01" in ambiguous.stderr and "LG-01" in ambiguous.stderr
    assert "--control" in ambiguous.stderr
    chosen = _explain(completed_run, pg_database, shared[0], "--control", "lg-01", "--json")
    assert chosen.code == 0 and chosen.json()["control"]["id"] == "LG-01"

    unknown = _explain(completed_run, pg_database, "no|such|item")
    assert unknown.code == 2 and "no item 'no|such|item'" in unknown.stderr
    wrong_control = _explain(completed_run, pg_database, shared[0], "--control", "XX-99")
    assert wrong_control.code == 2 and "XX-99" in wrong_control.stderr
    no_run = soxtrail("explain", "00000000-0000-0000-0000-000000000000", "x",
                      home=completed_run["home"], database_url=pg_database.dsn)
    assert no_run.code == 2 and "no run" in no_run.stderr


def test_explain_runs_as_the_read_only_auditor(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    """A login with nothing but the auditor role's SELECT explains a row like the owner."""
    login, password = f"audit_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with pg_database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login password {}").format(
            sql.Identifier(login), sql.Literal(password)))
    try:
        granted = soxtrail("grant-auditor", login, home=completed_run["home"],
                           database_url=pg_database.dsn)
        assert granted.code == 0, granted.stderr
        params = psycopg.conninfo.conninfo_to_dict(pg_database.dsn)
        params.update(user=login, password=password)
        row = _first_exception(pg_database, completed_run["run_id"], "AC-01")
        as_owner = _explain(completed_run, pg_database, row["item_key"], "--json")
        as_auditor = soxtrail("explain", completed_run["run_id"], row["item_key"], "--json",
                              home=completed_run["home"],
                              database_url=psycopg.conninfo.make_conninfo("", **params))
        assert as_auditor.code == 0, as_auditor.stderr
        assert as_auditor.json() == as_owner.json()
    finally:
        with pg_database.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("drop owned by {}, {}").format(
                sql.Identifier(login), sql.Identifier(AUDITOR_ROLE)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))
            try:  # other databases on the server may still hold grants to it
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(AUDITOR_ROLE)))
            except psycopg.Error:
                pass


def test_an_absence_claim_lists_the_population_searched(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    """For each control with an absence claim: the searched evidence objects, as many as the
    row's searched_count, each an evidence row of the run, the first ones printed."""
    claims = 0
    for control_id, model in CONTROLS.items():
        with pg_database.connect() as conn:
            found = conn.execute(
                f"select item_key, searched_population, searched_count from marts.{model}"  # type: ignore[arg-type]
                " where run_id = %s and searched_population is not null"
                " order by item_key collate \"C\" limit 1", (completed_run["run_id"],)).fetchone()
            if found is None:
                continue
            listed = [str(r[0]) for r in conn.execute(
                "select evidence_id from marts.fct_searched_populations where run_id = %s"
                " and population_key = %s and evidence_id is not null",
                (completed_run["run_id"], found[1])).fetchall()]
        claims += 1
        doc = _explain(completed_run, pg_database, found[0], "--control", control_id,
                       "--json").json()
        searched = doc["searched"]
        assert searched["population_key"] == found[1]
        assert sorted(searched["evidence_ids"]) == sorted(listed)
        assert searched["count"] == len(listed) == found[2]
        assert all(e["found"] and e["sha256"] for e in searched["shown"])
        text = _explain(completed_run, pg_database, found[0], "--control", control_id).stdout
        assert f"{len(listed)} evidence objects searched" in text
        for shown in searched["shown"]:
            assert shown["id"] in text and shown["sha256"] in text
    assert claims >= 3, "AC-01, BK-01 and CM-01 claim absences in the demo"


def test_a_matched_change_shows_its_ticket_item_and_the_windows_considered(
        completed_run: dict[str, Any], pg_database: Database) -> None:
    """CM-01: the ticket's own item in its stored page (the locator's index and key) and,
    where the rule compared windows, the candidates with the chosen one."""
    with pg_database.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from marts.fct_control_cm01__changes_authorized where run_id = %s"
                    " and ticket_locator is not null and candidates is not null"
                    " and candidates::text <> '[]' order by item_key collate \"C\" limit 1",
                    (completed_run["run_id"],))
        row = cur.fetchone()
    assert row is not None, "the demo has window-matched changes"
    doc = _explain(completed_run, pg_database, row["item_key"], "--json").json()
    ticket = next(s for s in doc["source_lines"] if "ticket_locator" in s["columns"])
    assert ticket["kind"] == "json_item" and ticket["exact_bytes"]
    assert json.loads(ticket["text"])["key"] == row["ticket_key"]
    assert ticket["evidence_id"] in {str(i) for i in row["supporting_evidence_ids"]}
    chosen = [c for c in doc["candidates"] if c.get("chosen")]
    assert [c["key"] for c in chosen] == [row["ticket_key"]]
    text = _explain(completed_run, pg_database, row["item_key"]).stdout
    assert ticket["text"] in text and "candidates considered" in text


# Reasons that claim something is absent: the row must cite the population it searched.
ABSENCE = frozenset({"NO_TICKET", "NO_CHANGE_TICKET", "NO_BACKUP", "NOT_REVOKED",
                     "NO_APPROVAL_ON_RECORD", "NO_LOG_EVIDENCE", "LOG_GAP", "UNKNOWN_ROLE"})


def _sheet_rows(book: Any, sheet: str) -> list[dict[str, Any]]:
    """A control sheet's rows as header -> value (the header row is the one starting
    `Item`), continuation sheets included."""
    rows: list[dict[str, Any]] = []
    for name in [n for n in book.sheetnames if n == sheet or n.startswith(f"{sheet} (")]:
        values = list(book[name].iter_rows(values_only=True))
        start = next(i for i, r in enumerate(values) if r and r[0] == "Item")
        headers = values[start]
        rows += [dict(zip(headers, r, strict=False)) for r in values[start + 1:] if r and r[0]]
    return rows


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_a_walkthrough_from_the_workbook_row_needs_only_explain(
        control_id: str, completed_run: dict[str, Any], pg_database: Database) -> None:
    """An auditor's walkthrough: the first exception of the control's sheet in the bundled
    workbook, then `soxtrail explain` on its item. The row itself names the source line,
    the population searched (absence claims) and the candidates (matches); explain gives
    the stored bytes and the exact figures."""
    import openpyxl

    from soxtrail.kernel.controls import registry

    sheet = next(c.sheet or c.id for c in registry() if c.id == control_id)
    book = openpyxl.load_workbook(completed_run["report"], read_only=True)
    rows = _sheet_rows(book, sheet)
    row = next(r for r in rows if r["Result"] == "EXCEPTION")
    reasons = set(str(row["Exception reasons"]).replace(",", " ").split())
    # the row on its own: where it came from, and what an absence claim searched
    assert row["Evidence locator"], f"{control_id}: the row names its source line"
    if reasons & ABSENCE:
        assert row["Searched (absence claims)"] and int(row["Objects searched"]) > 0, row
    # matches show their candidates somewhere on the sheet (AC-01's implicit match,
    # CM-01's window match)
    if control_id in ("AC-01", "CM-01"):
        assert any(r.get("Candidates considered") for r in rows), control_id
    # then one command: the same item, its stored bytes, its evidence, its figures
    doc = _explain(completed_run, pg_database, str(row["Item"]), "--control", control_id,
                   "--json").json()
    assert doc["item_key"] == row["Item"] and doc["result"] == "EXCEPTION"
    assert set(doc["reasons"]) == reasons
    source = next(s for s in doc["source_lines"] if s["column"] == "evidence_locator")
    assert source["locator"] == row["Evidence locator"] and source["text"]
    if reasons & ABSENCE:
        assert doc["searched"]["population_key"] == row["Searched (absence claims)"]
        assert doc["searched"]["count"] == int(row["Objects searched"])
    if control_id == "AC-02":  # the duration that decided the SLA, exactly
        figure = doc["row"]["time_to_revoke"]
        assert figure is None or (len(figure.split(":")) == 3 and figure[0].isdigit())
