"""`soxtrail grant-auditor`: a read-only role that can run verify and cannot change anything."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from soxtrail.audit.auditor import AUDITOR_ROLE
from soxtrail.kernel.database import Database
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = pytest.mark.integration


@dataclass
class Auditor:
    run_id: str
    home: Path
    login: str
    dsn: str


def _as(db: Database, user: str, password: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(db.dsn)
    params.update(user=user, password=password)
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The database of this module's demo run (tests/support/demo_quarter.py)."""
    return demo_run.db


@pytest.fixture(scope="module")
def auditor(pg_database: Database, demo_run: DemoRun) -> Iterator[Auditor]:
    """A completed default demo run of 2024Q3, read by a new login granted the auditor role."""
    login = f"audit_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with pg_database.connect(autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("create role {} login password {}").format(
            psycopg.sql.Identifier(login), psycopg.sql.Literal(password)))
    granted = soxtrail("grant-auditor", login, home=demo_run.home, database_url=pg_database.dsn)
    assert granted.code == 0, granted.stderr
    assert AUDITOR_ROLE in granted.stdout
    try:
        yield Auditor(demo_run.run_id, demo_run.home, login,
                      _as(pg_database, login, password))
    finally:
        with pg_database.connect(autocommit=True) as conn:
            ident = psycopg.sql.Identifier(login)
            conn.execute(psycopg.sql.SQL("drop owned by {}, {}").format(
                ident, psycopg.sql.Identifier(AUDITOR_ROLE)))
            conn.execute(psycopg.sql.SQL("drop role {}").format(ident))
            try:  # other databases on the server may still hold grants to it
                conn.execute(psycopg.sql.SQL("drop role {}").format(
                    psycopg.sql.Identifier(AUDITOR_ROLE)))
            except psycopg.Error:
                pass


def test_verify_passes_connected_as_the_auditor(auditor: Auditor) -> None:
    result = soxtrail("verify", auditor.run_id, home=auditor.home, database_url=auditor.dsn)
    assert result.code == 0, result.stdout[-2000:] + result.stderr
    assert "PASSED" in result.stdout.splitlines()[-1]


def test_the_other_read_commands_work_as_the_auditor(auditor: Auditor) -> None:
    oscal = soxtrail("export-oscal", auditor.run_id, home=auditor.home, database_url=auditor.dsn)
    assert oscal.code == 0, oscal.stderr
    listing = soxtrail("access-as-of", "2024-09-30", "--json", home=auditor.home,
                       database_url=auditor.dsn)
    assert listing.code == 0, listing.stderr
    diff = soxtrail("diff", auditor.run_id, auditor.run_id, "--format", "csv",
                    home=auditor.home, database_url=auditor.dsn)
    assert diff.code == 0, diff.stderr
    # a run against itself: the header of the item changes and no change
    assert diff.stdout.strip() == ",".join(
        ("control_id", "change", "item_key", "result_a", "result_b", "reasons_a", "reasons_b",
         "evidence_id_a", "evidence_id_b", "explained_by", "because"))


@pytest.mark.parametrize("statement", [
    "insert into soxtrail.sox_runs (id, quarter, config, config_hash, tool_version,"
    " triggered_by) values (gen_random_uuid(), '2024Q3', '{}', 'x', 'x', 'x')",
    "update soxtrail.sox_runs set status = 'failed'",
    "insert into raw.tickets (run_id, evidence_id, source_name, connector, locator, doc)"
    " values (gen_random_uuid(), gen_random_uuid(), 's', 'file', 'l', '{}')",
    "delete from marts.fct_control_summary",
    "create table raw.sneaky (x int)",
    "select soxtrail.run_mark_failed(id, 'x') from soxtrail.sox_runs",
])
def test_the_auditor_cannot_write(auditor: Auditor, statement: str) -> None:
    with psycopg.connect(auditor.dsn) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)  # type: ignore[arg-type]


def test_granting_to_a_missing_role_is_a_clear_error_and_injection_safe(
        auditor: Auditor, pg_database: Database) -> None:
    name = 'nobody"; drop table soxtrail.sox_runs; --'
    result = soxtrail("grant-auditor", name, home=auditor.home, database_url=pg_database.dsn)
    assert result.code == 2
    assert "does not exist" in result.stderr
    with pg_database.connect() as conn:
        assert conn.execute("select count(*) from soxtrail.sox_runs").fetchone()[0] >= 1


def test_granting_again_is_idempotent(auditor: Auditor, pg_database: Database) -> None:
    again = soxtrail("grant-auditor", auditor.login, home=auditor.home,
                     database_url=pg_database.dsn)
    assert again.code == 0, again.stderr
    assert "updated" in again.stdout
