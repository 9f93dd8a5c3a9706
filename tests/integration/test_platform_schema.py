"""The platform schema: append-only evidence and raw tables, the hash chain, bootstrap."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from soxtrail.kernel import runs
from soxtrail.kernel.database import Database, bootstrap

pytestmark = pytest.mark.integration


def _run(conn: psycopg.Connection) -> str:
    return runs.create_run(conn, quarter="2024Q3", clusters=None, config={}, config_hash="x").id


def _evidence(conn: psycopg.Connection, run_id: str) -> str:
    evidence_id = str(uuid.uuid4())
    conn.execute(
        "insert into soxtrail.sox_evidence (id, run_id, source_system, query_name, query_text,"
        " query_params, executed_at, executed_by, result_row_count, result_hash,"
        " raw_output_s3_key) values (%s,%s,'db_audit','q','select 1',%s,now(),'ci',1,'ab','k')",
        (evidence_id, run_id, json.dumps({"a": 1})))
    conn.commit()
    return evidence_id


def test_bootstrap_is_idempotent(pg_database: Database) -> None:
    bootstrap(pg_database)
    bootstrap(pg_database)
    with pg_database.connect() as conn:
        tables = conn.execute("select count(*) from information_schema.tables"
                              " where table_schema in ('soxtrail', 'raw')").fetchone()[0]
    assert tables >= 17


@pytest.mark.parametrize("statement", [
    "update soxtrail.sox_evidence set result_hash = 'x'",
    "delete from soxtrail.sox_evidence",
    "truncate soxtrail.sox_evidence cascade",
    "update soxtrail.sox_evidence_chain set chain_hash = 'x'",
])
def test_evidence_cannot_be_rewritten(pg_database: Database, statement: str) -> None:
    with pg_database.connect() as conn:
        _evidence(conn, _run(conn))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)


@pytest.mark.parametrize("table", ["raw.pgaudit_csvlog", "raw.tickets", "raw.role_catalog"])
def test_raw_rows_cannot_be_updated_or_deleted(pg_database: Database, table: str) -> None:
    with pg_database.connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"delete from {table}")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"update {table} set locator = 'x'")


def test_each_evidence_row_extends_the_hash_chain(pg_database: Database) -> None:
    with pg_database.connect() as conn:
        run_id = _run(conn)
        first, second = _evidence(conn, run_id), _evidence(conn, run_id)
        rows = conn.execute(
            "select evidence_id::text, prev_hash, chain_hash from soxtrail.sox_evidence_chain"
            " where evidence_id in (%s, %s) order by seq", (first, second)).fetchall()
    assert [r[0] for r in rows] == [first, second]
    assert rows[1][1] == rows[0][2]  # the second link covers the first
    assert len({r[2] for r in rows}) == 2


def test_a_second_run_of_the_same_quarter_is_refused_while_one_holds_the_lock(
        pg_database: Database) -> None:
    with pg_database.connect() as first, pg_database.connect() as second:
        with runs.quarter_lock(first, "2031Q1", wait=False):
            with pytest.raises(runs.RunBusy, match="2031Q1 is in progress"):
                with runs.quarter_lock(second, "2031Q1", wait=False):
                    pass
        with runs.quarter_lock(second, "2031Q1", wait=False):
            pass  # released: now it can run
