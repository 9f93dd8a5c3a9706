"""The owner and the run role (`soxtrail db init --run-role`): a run made by the run role
completes and verifies, and that role cannot change or unprotect what it recorded."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from extract.demo import generate
from soxtrail.kernel import database as database_module
from soxtrail.kernel.database import Database, bootstrap, platform_version
from soxtrail.kernel.errors import PlatformError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.roles import init_platform
from tests.conftest import ADMIN_URL, fresh_database
from tests.support.cli import soxtrail

pytestmark = pytest.mark.integration

SCOPE = "pg-fin-01"


@dataclass
class Split:
    owner: Database
    run: Database
    role: str
    run_id: str
    home: Path


def _as_role(db: Database, role: str) -> Database:
    params = psycopg.conninfo.conninfo_to_dict(db.dsn)
    params.pop("password", None)
    params["user"] = role
    return Database(dsn=psycopg.conninfo.make_conninfo("", **params), embedded=False)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    root = tmp_path_factory.mktemp("run-role")
    generate(root / "demo", Quarter.parse("2024Q3"))
    role = f"soxtrail_run_{uuid.uuid4().hex[:10]}"  # roles are server-wide: one per test db
    with fresh_database("soxtrail_role") as owner:
        init = soxtrail("db", "init", "--admin-url", owner.dsn, "--run-role", role, "--json",
                        home=root / "home", database_url=None)
        assert init.code == 0, init.stderr
        made = json.loads(init.stdout)
        assert made["run_role"] == role and made["created_role"] is True
        assert made["platform_version"] == platform_version()
        run = _as_role(owner, role)
        result = soxtrail("run", "--quarter", "2024Q3", "--config",
                          str(root / "demo" / "soxtrail.yml"), "--clusters", SCOPE, "--json",
                          "--quiet", home=root / "home", database_url=run.dsn)
        assert result.code == 0, result.stderr
        try:
            yield Split(owner, run, role, str(result.json()["run_id"]), root / "home")
        finally:
            with owner.connect(autocommit=True) as conn:
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:  # its database is gone
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def test_the_run_role_made_the_run_and_owns_no_evidence(split: Split) -> None:
    with split.owner.connect() as conn:
        made_by = conn.execute("select triggered_by, status from soxtrail.sox_runs where id = %s",
                               (split.run_id,)).fetchone()
        assert made_by is not None and made_by[1] == "completed"
        owners = {r[0] for r in conn.execute(
            "select distinct pg_get_userbyid(c.relowner) from pg_class as c"
            " inner join pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname in ('soxtrail', 'raw')").fetchall()}
        assert split.role not in owners
        # the marts are the run role's (dbt made them); they are re-derived by verify
        marts = conn.execute(
            "select count(*) from pg_tables where schemaname = 'marts' and tableowner = %s",
            (split.role,)).fetchone()
        assert marts is not None and marts[0] > 0


def test_verify_passes_as_the_run_role(split: Split) -> None:
    result = soxtrail("verify", split.run_id, home=split.home, database_url=split.run.dsn)
    assert result.code == 0, result.stdout[-3000:] + result.stderr
    assert "PASSED" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("statement", [
    "alter table soxtrail.sox_evidence disable trigger append_only",
    "alter table soxtrail.sox_evidence disable trigger all",
    "alter table soxtrail.sox_evidence_chain disable trigger append_only",
    "alter table soxtrail.sox_runs disable trigger forward_only",
    "alter table raw.tickets disable trigger append_only",
    "alter table soxtrail.sox_evidence add column note text",
    "drop trigger append_only on soxtrail.sox_evidence",
    "drop table soxtrail.sox_rejects",
    "update soxtrail.sox_evidence set executed_by = 'mallory'",
    "delete from soxtrail.sox_evidence",
    "truncate soxtrail.sox_evidence",
    "update soxtrail.sox_evidence_chain set chain_hash = prev_hash",
    "insert into soxtrail.sox_evidence_chain (evidence_id, prev_hash, chain_hash)"
    " select id, 'x', 'y' from soxtrail.sox_evidence limit 1",
    "update soxtrail.sox_runs set status = 'running'",
    "delete from soxtrail.sox_runs",
    "update soxtrail.sox_load_stats set records_rejected = 0",
    "delete from soxtrail.sox_load_stats",
    "delete from soxtrail.sox_rejects",
    "update raw.tickets set doc = '{}'",
    "delete from raw.pgaudit_csvlog",
    "truncate raw.backups",
    "create or replace function soxtrail.refuse_change() returns trigger language plpgsql"
    " as $$ begin return null; end $$",
    "create table soxtrail.shadow (x int)",
    "set session_replication_role = replica",
])
def test_the_run_role_cannot_change_or_unprotect_evidence(split: Split, statement: str) -> None:
    with psycopg.connect(split.run.dsn) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.mark.parametrize("statement", [
    # a completed run is closed: no new evidence, load statistics or rejects for it
    "insert into soxtrail.sox_evidence select gen_random_uuid(), run_id, source_system,"
    " query_name, query_text, query_params, executed_at, executed_by, result_row_count,"
    " result_hash, raw_output_s3_key || '.x' from soxtrail.sox_evidence limit 1",
    "insert into soxtrail.sox_load_stats (run_id, evidence_id, raw_table, records_read,"
    " records_loaded, records_rejected, records_skipped) select id, gen_random_uuid(),"
    " 'raw.tickets', 0, 0, 0, 0 from soxtrail.sox_runs",
    "insert into soxtrail.sox_rejects (run_id, evidence_id, source_name, raw_table, locator,"
    " reason) select id, gen_random_uuid(), 's', 'raw.tickets', 'l', 'r' from soxtrail.sox_runs",
    # status only moves forward, through the owner's functions
    "select soxtrail.run_mark_running(id) from soxtrail.sox_runs",
    "select soxtrail.run_mark_failed(id, 'x') from soxtrail.sox_runs",
    # a run starts running, with nothing recorded
    "insert into soxtrail.sox_runs (id, quarter, config, config_hash, tool_version,"
    " triggered_by, status, summary) values (gen_random_uuid(), '2024Q3', '{}', 'x', 'x', 'x',"
    " 'completed', '{\"controls\": []}')",
])
def test_what_the_run_role_may_do_is_refused_for_a_completed_run(split: Split,
                                                                 statement: str) -> None:
    with psycopg.connect(split.run.dsn) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="soxtrail: "):
            conn.execute(statement)  # type: ignore[arg-type]
    with split.owner.connect() as conn:
        status = conn.execute("select status from soxtrail.sox_runs where id = %s",
                              (split.run_id,)).fetchone()
        assert status == ("completed",)


def test_a_run_role_cannot_apply_a_new_schema_version(split: Split,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = database_module.platform_sql() + "\n-- a later release\n"
    monkeypatch.setattr(database_module, "platform_sql", lambda: text)
    with pytest.raises(PlatformError, match=r"cannot apply it: the schema belongs to .*"
                                            r"soxtrail db init"):
        bootstrap(split.run)


def test_runs_refuse_a_database_whose_protection_was_disabled(split: Split) -> None:
    with split.owner.connect(autocommit=True) as conn:
        conn.execute("alter table soxtrail.sox_load_stats disable trigger append_only")
    try:
        with pytest.raises(PlatformError, match=r"trigger append_only on soxtrail\.sox_load_stats "
                                                r"is disabled"):
            bootstrap(split.run)
        refused = soxtrail("run", "--quarter", "2024Q3", "--clusters", SCOPE, "--quiet",
                           home=split.home, database_url=split.run.dsn)
        assert refused.code == 2, refused.stderr
        assert "soxtrail db init" in refused.stderr
    finally:
        with split.owner.connect(autocommit=True) as conn:
            init_platform(conn)  # what `soxtrail db init` does: the trigger is back
    bootstrap(split.run)


def test_init_refuses_a_role_that_could_change_its_evidence(split: Split) -> None:
    with split.owner.connect(autocommit=True) as conn:
        owner = conn.execute("select current_user").fetchone()[0]  # type: ignore[index]
        with pytest.raises(PlatformError, match=r"is the owner role itself|is a superuser"):
            init_platform(conn, str(owner))
