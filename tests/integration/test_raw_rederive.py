"""`soxtrail verify` re-derives the raw tables from the stored objects (issue 17): a raw row
deleted, added or changed fails and names the object and the locator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from extract import loader
from extract.connectors.registry import RAW_TABLES, SPECS
from extract.demo import generate
from soxtrail import pipeline
from soxtrail.audit import verify, verify_raw
from soxtrail.kernel.config import load_config
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.pipeline import Observer, Pipeline

pytestmark = pytest.mark.integration

CLUSTER = "pg-fin-01"  # one cluster keeps the runs cheap; its audit log has a NO_TICKET grant
AC01 = CONTROLS["AC-01"]


@dataclass
class Estate:
    config: Path
    home: Path
    db: Database


@pytest.fixture(scope="module")
def estate(pg_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """The demo estate, and SOXTRAIL_HOME pointed at a folder of this module."""
    root = tmp_path_factory.mktemp("rederive")
    generate(root / "demo", Quarter.parse("2024Q3"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOXTRAIL_HOME", str(root / "home"))
        patch.delenv("CI", raising=False)  # signs with the home's own key, even in CI
        patch.delenv("SOXTRAIL_STORE", raising=False)
        yield Estate(root / "demo" / "soxtrail.yml", root / "home", pg_database)


def _start(estate: Estate, observers: list[Observer]) -> str:
    config = load_config(estate.config, specs=SPECS)
    with pytest.MonkeyPatch.context() as patch, estate.db.connect() as conn:
        patch.setattr(pipeline.runs, "OBSERVERS", observers)
        outcome = pipeline.start_run(estate.db, conn, config, Quarter.parse("2024Q3"),
                                     clusters=(CLUSTER,))
    assert outcome.run.status == "completed"
    return outcome.run.id


@pytest.fixture(scope="module")
def run_id(estate: Estate) -> str:
    """A completed one-cluster demo run (tests change its rows and put them back)."""
    return _start(estate, [])


def _verify(estate: Estate, run: str,
            kinds: tuple[str, ...] = (verify_raw.KIND,)) -> verify.VerifyReport:
    with verify.connect_read_only(estate.db) as conn:
        return verify.verify_run(conn, run, kinds=kinds)


def _failures(report: verify.VerifyReport) -> list[tuple[str, str, str]]:
    return [(v.status, v.kind, v.subject) for v in report.failures()]


def _object(estate: Estate, run: str, raw_table: str, locator: str | None = None
            ) -> tuple[str, str, str]:
    """(evidence id, verify subject, locator) of a row of `raw_table` in the run."""
    with estate.db.connect() as conn:
        evidence_id, key, found = conn.execute(
            f"select e.id::text, e.raw_output_s3_key, r.locator from {raw_table} as r"
            " join soxtrail.sox_evidence as e on e.id = r.evidence_id"
            " where r.run_id = %s and (%s::text is null or r.locator = %s)"
            " order by e.raw_output_s3_key, r.locator limit 1",
            (run, locator, locator)).fetchone()  # type: ignore[misc]
    return evidence_id, f"{evidence_id} {key}", found


@contextmanager
def _owner(estate: Estate, table: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection with the user triggers of `table` off (back on after)."""
    with estate.db.connect(autocommit=True) as conn:
        conn.execute(f"alter table {table} disable trigger user")
        try:
            yield conn
        finally:
            conn.execute(f"alter table {table} enable trigger user")


@contextmanager
def _row_removed(estate: Estate, table: str, run: str, evidence_id: str,
                 locator: str) -> Iterator[None]:
    """The raw row deleted while the block runs, inserted again after."""
    where = " where run_id = %s and evidence_id = %s and locator = %s"
    key = (run, evidence_id, locator)
    with _owner(estate, table) as conn:
        conn.execute(f"create temp table saved as select * from {table}" + where, key)
        assert conn.execute(f"delete from {table}" + where, key).rowcount == 1
        try:
            yield
        finally:
            conn.execute(f"insert into {table} select * from saved")
            conn.execute("drop table saved")


def _no_ticket_grant(estate: Estate, run: str) -> str:
    """The raw locator of a GRANT that AC-01 reports as NO_TICKET in the run."""
    with estate.db.connect() as conn:
        row = conn.execute(
            f"select evidence_locator from marts.{AC01} where run_id = %s"
            " and 'NO_TICKET' = any(exception_reasons) order by item_key limit 1",
            (run,)).fetchone()
    assert row is not None
    return str(row[0])


def _exceptions(estate: Estate, run: str) -> int:
    with estate.db.connect() as conn:
        return int(conn.execute(f"select count(*) from marts.{AC01} where run_id = %s"
                                " and result = 'EXCEPTION'", (run,)).fetchone()[0])  # type: ignore[index]


class DeleteBeforeReconcile(Observer):
    """The attacker of the issue: deletes a raw row after load, before reconcile reads it."""

    def __init__(self, estate: Estate, table: str, locator: str) -> None:
        self.estate, self.table, self.locator = estate, table, locator
        self.deleted = 0

    def checkpoint(self, p: Pipeline, phase: str, point: str) -> None:
        if (phase, point) == ("reconcile", "start"):
            with _owner(self.estate, self.table) as conn:
                self.deleted = conn.execute(
                    f"delete from {self.table} where run_id = %s and locator = %s",
                    (p.run.id, self.locator)).rowcount


def test_every_locator_starts_with_its_objects_stored_name(estate: Estate,
                                                          run_id: str) -> None:
    """A locator names the object as stored (`catalog_memberships.csv:7`, never the export's
    `memberships.csv:7`): `<stored name>:<line>` or `<stored name>#<index>`, in every raw
    table, in sox_rejects and where a control's row cites it."""
    checked: dict[str, int] = {}
    with estate.db.connect() as conn:
        for table in sorted(RAW_TABLES):
            bad = conn.execute(
                f"select r.locator, e.raw_output_s3_key from {table} as r"
                " join soxtrail.sox_evidence as e on e.id = r.evidence_id"
                " where r.run_id = %s and not starts_with(r.locator,"
                " regexp_replace(e.raw_output_s3_key, '^.*/', '') || ':')"
                " and not starts_with(r.locator,"
                " regexp_replace(e.raw_output_s3_key, '^.*/', '') || '#') limit 3",
                (run_id,)).fetchall()
            assert bad == [], table
            rows = conn.execute(f"select count(*) from {table} where run_id = %s",
                                (run_id,)).fetchone()[0]  # type: ignore[index]
            checked[table] = int(rows)
        rejects = conn.execute(
            "select r.locator, e.raw_output_s3_key from soxtrail.sox_rejects as r"
            " join soxtrail.sox_evidence as e on e.id = r.evidence_id"
            " where r.run_id = %s", (run_id,)).fetchall()
        cited = conn.execute(
            f"select m.evidence_locator, e.raw_output_s3_key from marts.{AC01} as m"
            " join soxtrail.sox_evidence as e on e.id = m.evidence_id"
            " where m.run_id = %s", (run_id,)).fetchall()
    for locator, key in rejects + cited:
        assert locator.startswith((f"{Path(key).name}:", f"{Path(key).name}#")), (locator, key)
    # the run's objects span the connectors: catalogs, audit log, tickets, IAM, backups
    assert all(checked[t] > 0 for t in ("raw.catalog_memberships", "raw.catalog_roles",
                                        "raw.pgaudit_csvlog", "raw.tickets", "raw.iam_events",
                                        "raw.backups", "raw.role_catalog", "raw.applications",
                                        "raw.source_completeness")), checked
    assert cited


def test_an_unmodified_run_re_derives_every_object(estate: Estate, run_id: str) -> None:
    report = _verify(estate, run_id)
    assert report.passed, [v.line() for v in report.failures()]
    with estate.db.connect() as conn:
        objects = conn.execute("select count(*) from soxtrail.sox_evidence where run_id = %s"
                               " and query_params ? 'raw_table'", (run_id,)).fetchone()[0]  # type: ignore[index]
        versions = conn.execute("select distinct loader_version, content_sha256 is null"
                                " from soxtrail.sox_load_stats where run_id = %s",
                                (run_id,)).fetchall()
    assert versions == [(loader.LOADER_VERSION, False)]
    raw = [v for v in report.verdicts if v.kind == verify_raw.KIND]
    assert len(raw) == objects > 0
    assert {v.status for v in raw} == {"OK"}
    assert all("re-derived" in v.detail for v in raw)


def test_a_grant_deleted_between_load_and_reconcile_fails_naming_object_and_locator(
        estate: Estate, run_id: str) -> None:
    locator = _no_ticket_grant(estate, run_id)
    attacker = DeleteBeforeReconcile(estate, "raw.pgaudit_csvlog", locator)
    hidden = _start(estate, [attacker])
    assert attacker.deleted == 1
    assert _exceptions(estate, hidden) == _exceptions(estate, run_id) - 1  # it disappeared
    report = _verify(estate, hidden, kinds=(verify_raw.KIND, "control", "chain"))
    with estate.db.connect() as conn:
        evidence_id, key = conn.execute(
            "select e.id::text, e.raw_output_s3_key from soxtrail.sox_evidence as e"
            " where e.run_id = %s and e.raw_output_s3_key like %s",
            (hidden, "%/" + locator.rsplit(":", 1)[0])).fetchone()  # type: ignore[misc]
    # the control re-run agrees with the marts (both lack the row): only the raw check fails
    assert _failures(report) == [("MISMATCH", verify_raw.KIND, f"{evidence_id} {key}")]
    detail = report.failures()[0].detail
    assert f"raw.pgaudit_csvlog locator '{locator}' deleted" in detail
    assert "load stats say" in detail


def test_a_changed_raw_row_fails_naming_the_locator_and_column(
        estate: Estate, run_id: str) -> None:
    evidence_id, subject, locator = _object(estate, run_id, "raw.catalog_memberships")
    where = " where run_id = %s and evidence_id = %s and locator = %s"
    key = (run_id, evidence_id, locator)
    with _owner(estate, "raw.catalog_memberships") as conn:
        assert conn.execute("update raw.catalog_memberships set granted_role ="
                            " granted_role || '_x'" + where, key).rowcount == 1
        try:
            report = _verify(estate, run_id)
        finally:
            conn.execute("update raw.catalog_memberships set granted_role ="
                         " left(granted_role, -2)" + where, key)
    assert _failures(report) == [("MISMATCH", verify_raw.KIND, subject)]
    assert (f"raw.catalog_memberships locator '{locator}' changed in granted_role: "
            in report.failures()[0].detail)
    assert "_x'" in report.failures()[0].detail  # the table's value is shown
    assert _verify(estate, run_id).passed


def test_an_added_raw_row_fails_naming_its_locator(estate: Estate, run_id: str) -> None:
    evidence_id, subject, locator = _object(estate, run_id, "raw.catalog_roles")
    forged = locator + "0"
    with _owner(estate, "raw.catalog_roles") as conn:
        conn.execute("insert into raw.catalog_roles select run_id, evidence_id, source_name,"
                     " cluster, %s, 'forged_admin', 'true', rolcreaterole, rolcanlogin,"
                     " rolvaliduntil from raw.catalog_roles where run_id = %s"
                     " and evidence_id = %s and locator = %s",
                     (forged, run_id, evidence_id, locator))
        try:
            report = _verify(estate, run_id)
        finally:
            conn.execute("delete from raw.catalog_roles where run_id = %s and locator = %s",
                         (run_id, forged))
    assert _failures(report) == [("MISMATCH", verify_raw.KIND, subject)]
    assert f"raw.catalog_roles locator '{forged}' added" in report.failures()[0].detail


def test_a_deleted_ticket_row_fails_naming_the_locator(estate: Estate, run_id: str) -> None:
    evidence_id, subject, locator = _object(estate, run_id, "raw.tickets")
    with _row_removed(estate, "raw.tickets", run_id, evidence_id, locator):
        report = _verify(estate, run_id)
    assert _failures(report) == [("MISMATCH", verify_raw.KIND, subject)]
    detail = report.failures()[0].detail
    assert f"raw.tickets locator '{locator}' deleted" in detail
    assert "raw.tickets has" in detail and "load stats say" in detail  # the counts too
    assert _verify(estate, run_id).passed


def test_a_raw_row_moved_to_another_evidence_id_is_extra(estate: Estate, run_id: str) -> None:
    evidence_id, subject, locator = _object(estate, run_id, "raw.catalog_roles")
    stray = "00000000-0000-4000-8000-000000000017"
    where = " where run_id = %s and evidence_id = %s and locator = %s"
    with _owner(estate, "raw.catalog_roles") as conn:
        conn.execute("update raw.catalog_roles set evidence_id = %s" + where,
                     (stray, run_id, evidence_id, locator))
        try:
            report = _verify(estate, run_id)
        finally:
            conn.execute("update raw.catalog_roles set evidence_id = %s" + where,
                         (evidence_id, run_id, stray, locator))
    assert set(_failures(report)) == {
        ("MISMATCH", verify_raw.KIND, subject),
        ("EXTRA", verify_raw.KIND, f"raw.catalog_roles evidence {stray}")}


def _set_loader_version(estate: Estate, run: str, version: int | None,
                        content: str | None = "keep") -> list[tuple[Any, ...]]:
    with _owner(estate, "soxtrail.sox_load_stats") as conn:
        saved = conn.execute("select evidence_id, loader_version, content_sha256"
                             " from soxtrail.sox_load_stats where run_id = %s", (run,)).fetchall()
        conn.execute("update soxtrail.sox_load_stats set loader_version = %s,"
                     " content_sha256 = case when %s = 'keep' then content_sha256 end"
                     " where run_id = %s", (version, content, run))
    return saved


def _restore_load_stats(estate: Estate, run: str, saved: list[tuple[Any, ...]]) -> None:
    with _owner(estate, "soxtrail.sox_load_stats") as conn, conn.cursor() as cur:
        cur.executemany("update soxtrail.sox_load_stats set loader_version = %s,"
                        " content_sha256 = %s where run_id = %s and evidence_id = %s",
                        [(version, content, run, evidence_id)
                         for evidence_id, version, content in saved])


def test_a_run_loaded_before_hashes_were_recorded_gets_one_note(
        estate: Estate, run_id: str) -> None:
    saved = _set_loader_version(estate, run_id, None, None)
    try:
        report = _verify(estate, run_id)
        evidence_id, subject, locator = _object(estate, run_id, "raw.tickets")
        with _row_removed(estate, "raw.tickets", run_id, evidence_id, locator):
            counted = _verify(estate, run_id)
    finally:
        _restore_load_stats(estate, run_id, saved)
    assert report.passed
    notes = [v for v in report.verdicts if v.status == "NOTE"]
    assert [(v.kind, v.subject) for v in notes] == [(verify_raw.KIND, run_id)]
    assert "loaded before loader versions were recorded" in notes[0].detail
    assert "verify the run with the release that produced it" in notes[0].detail
    # not re-derived, but read = loaded + rejected + skipped is still held against the table
    assert _failures(counted) == [("MISMATCH", verify_raw.KIND, subject)]
    assert "raw.tickets has" in counted.failures()[0].detail


def test_a_run_of_another_loader_version_is_not_re_derived(
        estate: Estate, run_id: str) -> None:
    saved = _set_loader_version(estate, run_id, loader.LOADER_VERSION + 1)
    try:
        report = _verify(estate, run_id)
    finally:
        _restore_load_stats(estate, run_id, saved)
    assert report.passed
    notes = [v for v in report.verdicts if v.status == "NOTE"]
    assert len(notes) == 1
    assert f"loaded by loader version {loader.LOADER_VERSION + 1}" in notes[0].detail


def test_a_changed_content_hash_in_the_load_stats_fails(estate: Estate, run_id: str) -> None:
    evidence_id, subject, _ = _object(estate, run_id, "raw.tickets")
    with _owner(estate, "soxtrail.sox_load_stats") as conn:
        original = conn.execute("select content_sha256 from soxtrail.sox_load_stats"
                                " where run_id = %s and evidence_id = %s",
                                (run_id, evidence_id)).fetchone()[0]  # type: ignore[index]
        conn.execute("update soxtrail.sox_load_stats set content_sha256 = %s"
                     " where run_id = %s and evidence_id = %s", ("0" * 64, run_id, evidence_id))
        try:
            report = _verify(estate, run_id)
        finally:
            conn.execute("update soxtrail.sox_load_stats set content_sha256 = %s"
                         " where run_id = %s and evidence_id = %s",
                         (original, run_id, evidence_id))
    assert _failures(report) == [("MISMATCH", verify_raw.KIND, subject)]
    assert f"the object gives {original}" in report.failures()[0].detail


def test_the_content_hash_is_the_same_row_by_row_and_from_copy_text_blocks() -> None:
    head = loader._head_text("r", "e", {"raw_table": "raw.catalog_roles", "source": "s",
                                        "cluster": "c"})
    rows = [("r", "e", "s", "c", "f:1", "a\tb", None, "x\\y", "line\nbreak", "é"),
            ("r", "e", "s", "c", "f:2", "", "t", None, None, None)]
    by_row = loader.ContentHash(head)
    for row in rows:
        by_row.update_row(row)
    by_block = loader.ContentHash(head, keep=True)
    by_block.update(b"".join(loader._copy_line(row).encode() for row in rows))
    assert by_row.hexdigest() == by_block.hexdigest()
    assert list(verify_raw.derived_rows(by_block.kept or [])) == [row[4:] for row in rows]
