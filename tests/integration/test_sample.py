"""Samples for re-performance: `soxtrail sample` on one real demo quarter run (real CLI, real
PostgreSQL): reproducible draws, the documented method recomputed here with hashlib from the
mart rows, stratified and oversized requests, the append-only signed record beside (never
in) the bundle, `verify` passing and failing a tampered row, file and population, and the
tester's workbook.

The requests run once in a module fixture; the tests read what they recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest

from render.sample_workbook import TESTER_COLUMNS
from render.signing import generate_signing_key
from soxtrail.audit import verify
from soxtrail.kernel.database import Database
from tests.support.cli import Result, soxtrail
from tests.support.demo_quarter import DemoRun
from tests.support.tamper import append_only_off

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

MART = "marts.fct_control_ac01__privileged_access_approved"


def _sample_verdicts(db: Database, run_id: str) -> list[verify.Verdict]:
    with verify.connect_read_only(db) as conn:
        return verify.verify_run(conn, run_id, kinds=("sample",)).verdicts


def _failed(verdicts: list[verify.Verdict]) -> list[str]:
    return [v.line() for v in verdicts if v.failed]


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The shared demo run's database (tests/support/demo_quarter.py), this module's to change."""
    return demo_run.db


@pytest.fixture(scope="module")
def drawn(demo_run: DemoRun, pg_database: Database,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = demo_run.home  # the run's: its machine key signed the bundle
    workbooks = tmp_path_factory.mktemp("workbooks")
    tester_key = tmp_path_factory.mktemp("keys") / "tester.pem"
    got: dict[str, Any] = {"tester_fp": generate_signing_key(tester_key),
                           "workbooks": workbooks}

    def cli(*args: str) -> Result:
        return soxtrail(*args, home=home, database_url=pg_database.dsn,
                        env={"BUILD_USER_ID": "ci-runner"})

    run_id = got["run_id"] = demo_run.run_id
    with verify.connect_read_only(pg_database) as conn:
        got["population"] = [str(k) for (k,) in conn.execute(
            f"select item_key from {MART} where run_id = %s", (run_id,)).fetchall()]
        got["results"] = dict(conn.execute(
            f"select item_key, result from {MART} where run_id = %s", (run_id,)).fetchall())
        store = verify.run_store(verify.runs.get_run(conn, run_id))
    manifest = Path(store.location(f"2024Q3/{run_id}/bundle/MANIFEST.sha256"))
    got["manifest_before"] = hashlib.sha256(manifest.read_bytes()).hexdigest()

    base = ("sample", run_id, "--control", "AC-01", "--out", str(workbooks), "--json")
    got["first"] = cli(*base, "--size", "5", "--seed", "42", "--as", "tess")
    got["again"] = cli(*base, "--size", "5", "--seed", "42", "--as", "tess")
    got["other_seed"] = cli(*base, "--size", "5", "--seed", "43")
    got["stratified"] = cli(*base, "--size", "10", "--seed", "7", "--stratify", "result",
                            "--key", str(tester_key))
    got["everything"] = cli(*base, "--size", "1000", "--seed", "1")
    # another machine: no $SOXTRAIL_SIGNING_KEY and no key of its own -> recorded unsigned
    got["unsigned"] = soxtrail(*base, "--size", "3", "--seed", "5",
                               home=tmp_path_factory.mktemp("keyless"),
                               database_url=pg_database.dsn,
                               env={"SOXTRAIL_SIGNING_KEY": ""})
    got["too_few"] = cli(*base, "--size", "1", "--seed", "1", "--stratify", "result")
    got["unknown_control"] = cli("sample", run_id, "--control", "ZZ-99", "--size", "5",
                                 "--seed", "1")
    got["suggest"] = cli("sample", run_id, "--control", "AC-01", "--suggest")
    got["manifest_after"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    got["verify_ok"] = _sample_verdicts(pg_database, run_id)

    # tampering, each undone before the next
    first = got["first"].json()
    with append_only_off(pg_database, "soxtrail.sox_samples") as conn:
        original = conn.execute("select drawn_items from soxtrail.sox_samples where id = %s",
                                (first["sample_id"],)).fetchone()[0]  # type: ignore[index]
        swapped = [got["population"][0] if k != got["population"][0] else got["population"][1]
                   for k in original]
        conn.execute("update soxtrail.sox_samples set drawn_items = %s::jsonb where id = %s",
                     (json.dumps(swapped), first["sample_id"]))
        got["forged_row"] = _sample_verdicts(pg_database, run_id)
        conn.execute("update soxtrail.sox_samples set drawn_items = %s::jsonb where id = %s",
                     (json.dumps(original), first["sample_id"]))
    path = Path(first["file"])
    original_file = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original_file.replace(b'"seed": 42', b'"seed": 41'))
    got["forged_file"] = _sample_verdicts(pg_database, run_id)
    path.write_bytes(original_file)
    with pg_database.connect() as conn:  # a mart row changed after the sample was drawn
        victim = first["items"][0]
        conn.execute(f"update {MART} set item_key = item_key || 'x' where run_id = %s"
                     " and item_key = %s", (run_id, victim))
        conn.commit()
        got["changed_population"] = _sample_verdicts(pg_database, run_id)
        conn.execute(f"update {MART} set item_key = %s where run_id = %s and item_key = %s",
                     (victim, run_id, victim + "x"))
        conn.commit()
    got["restored"] = _sample_verdicts(pg_database, run_id)
    return got


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()


def test_the_sample_is_the_documented_method_recomputed_from_the_mart(
        drawn: dict[str, Any]) -> None:
    first = drawn["first"]
    assert first.code == 0, first.stderr
    doc = first.json()
    population = drawn["population"]
    assert doc["items"] == sorted(population, key=lambda k: (_rank(42, k), k))[:5]
    assert doc["population_count"] == len(population) == 26
    assert doc["population_hash"] == hashlib.sha256(
        "\n".join(sorted(population)).encode()).hexdigest()
    assert (doc["method"], doc["seed"], doc["size_drawn"]) == ("sha256-rank/1", 42, 5)


def test_the_same_seed_draws_the_same_items_a_different_seed_others(
        drawn: dict[str, Any]) -> None:
    first, again, other = (drawn[k].json() for k in ("first", "again", "other_seed"))
    assert again["items"] == first["items"]
    assert again["sample_id"] != first["sample_id"]  # a second request, recorded too
    assert other["items"] != first["items"]


def test_a_stratified_sample_takes_each_result_in_proportion(drawn: dict[str, Any]) -> None:
    result = drawn["stratified"]
    assert result.code == 0, result.stderr
    doc = result.json()
    # 17 exceptions and 9 passes, 10 items: 6 and 4 (docs/auditor-guide.md)
    assert doc["strata"] == {"EXCEPTION": {"population": 17, "drawn": 6},
                             "PASS": {"population": 9, "drawn": 4}}
    for stratum, size in (("EXCEPTION", 6), ("PASS", 4)):
        members = [k for k, v in drawn["results"].items() if v == stratum]
        expected = sorted(members, key=lambda k: (_rank(7, k), k))[:size]
        assert sorted(k for k in doc["items"] if drawn["results"][k] == stratum) == sorted(
            expected)
    assert doc["key_fingerprint"] == drawn["tester_fp"]


def test_a_size_over_the_population_takes_every_item_and_says_so(
        drawn: dict[str, Any]) -> None:
    doc = drawn["everything"].json()
    assert doc["all_items"] and doc["size_drawn"] == 26 and doc["size_requested"] == 1000
    assert sorted(doc["items"]) == sorted(drawn["population"])


def test_bad_requests_are_refused_with_a_clear_message(drawn: dict[str, Any]) -> None:
    assert drawn["too_few"].code == 2
    assert "at least one item of each of the 2 strata" in drawn["too_few"].stderr
    assert drawn["unknown_control"].code == 2
    assert "--control 'ZZ-99': expected one of AC-01" in drawn["unknown_control"].stderr
    suggest = drawn["suggest"]
    assert suggest.code == 0, suggest.stderr
    assert "population: 26 items of AC-01" in suggest.stdout
    assert "the tester chooses" in suggest.stdout


def test_the_record_is_beside_the_bundle_never_in_it(drawn: dict[str, Any]) -> None:
    doc = drawn["first"].json()
    assert f"/2024Q3/{drawn['run_id']}/samples/" in doc["file"]
    assert Path(doc["file"]).is_file() and Path(doc["file"] + ".sig").is_file()
    assert drawn["manifest_after"] == drawn["manifest_before"]


def test_sample_rows_are_append_only(drawn: dict[str, Any], pg_database: Database) -> None:
    for statement in ("update soxtrail.sox_samples set seed = 1",
                      "delete from soxtrail.sox_samples"):
        with pg_database.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege,
                                                          match="append-only"):
            conn.execute(statement)
    with pg_database.connect() as conn:
        count = conn.execute("select count(*) from soxtrail.sox_samples").fetchone()
    assert count is not None and count[0] == 6


def test_verify_passes_a_recorded_sample(drawn: dict[str, Any]) -> None:
    verdicts = drawn["verify_ok"]
    assert not _failed(verdicts)
    lines = "\n".join(v.line() for v in verdicts)
    assert lines.count("redrawn:") == 6
    assert "chain  6 links hold" in lines
    assert "the run's bundle key" in lines  # signed with the run's key by default
    assert "not the run's bundle key" in lines  # the stratified one: the tester's --key
    unsigned = [v for v in verdicts if v.subject.startswith("6-AC-01")]
    assert [v.status for v in unsigned if "unsigned" in v.detail] == ["NOTE"]


def test_without_a_key_the_sample_is_recorded_unsigned(drawn: dict[str, Any]) -> None:
    result = drawn["unsigned"]
    assert result.code == 0, result.stderr
    assert result.json()["key_fingerprint"] is None
    assert "unsigned: no signing key" in result.stderr
    assert not Path(result.json()["file"] + ".sig").exists()


def test_verify_fails_a_tampered_row_file_or_population(drawn: dict[str, Any]) -> None:
    row = "\n".join(_failed(drawn["forged_row"]))
    assert "the row differs from its signed document: drawn_items" in row
    file = "\n".join(_failed(drawn["forged_file"]))
    assert "samples/1-AC-01.json differs from the database's document" in file
    population = "\n".join(_failed(drawn["changed_population"]))
    assert "population: the run's fct_control_ac01__privileged_access_approved rows now" \
        in population
    assert "the drawn items are not what the seed and method give" in population
    assert not _failed(drawn["restored"])


def test_the_workbook_has_the_rows_and_empty_conclusion_columns(drawn: dict[str, Any]) -> None:
    doc = drawn["first"].json()
    book = openpyxl.load_workbook(doc["workbook"])
    sheet = book["Sample"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert header[:2] == ["sample_rank", "rank_hash"]
    assert header[-len(TESTER_COLUMNS):] == list(TESTER_COLUMNS)
    assert {"item_key", "result", "evidence_id", "grant_statement"} <= set(header)
    keys = [r[header.index("item_key")] for r in rows[1:]]
    assert keys == doc["items"]
    assert [r[1] for r in rows[1:]] == [_rank(42, k) for k in keys]
    assert all(r[header.index(c)] is None for r in rows[1:] for c in TESTER_COLUMNS)
    validation = sheet.data_validations.dataValidation
    assert len(validation) == 1 and validation[0].formula1 == '"pass,fail"'
    column = openpyxl.utils.get_column_letter(header.index("conclusion") + 1)
    assert str(validation[0].sqref) == f"{column}2:{column}6"
    about = {r[0]: r[1] for r in book["About"].iter_rows(min_row=2, values_only=True)}
    assert about["seed"] == "42"
    assert about["population hash"].startswith(doc["population_hash"])
