"""The owner and the run role: who may change the platform schema, who only records into it.

`soxtrail db init --admin-url … --run-role NAME` (docs/operations.md, "Database roles"):
the admin DSN's role owns every platform object and applies platform.sql; the run role
gets exactly what a run needs (RUN_GRANTS) and nothing that could disable a trigger, alter a
table or change a recorded row: it owns none of the evidence, load or raw tables, so it
cannot ALTER or DISABLE TRIGGER, and it has no UPDATE, DELETE or TRUNCATE. Run rows change
only through the owner's `run_mark_*` functions, whose trigger lets status only move forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.kernel.database import apply_platform, platform_version
from soxtrail.kernel.errors import ConfigError, PlatformError

# Where dbt builds the marts (models/ +schema; macros/utils/generate_schema_name.sql): the
# owner creates the schemas, the run role creates and replaces its mart tables in them.
DBT_SCHEMAS = ("marts", "snapshots")
RECORD_TABLES = ("soxtrail.sox_runs", "soxtrail.sox_evidence", "soxtrail.sox_load_stats",
                 "soxtrail.sox_rejects",
                 "soxtrail.sox_attestations",  # sign-off: chained by the owner's trigger
                 "soxtrail.sox_samples")  # samples for re-performance: likewise
READ_TABLES = ("soxtrail.sox_evidence_chain", "soxtrail.sox_platform")
RUN_FUNCTIONS = ("soxtrail.run_mark_phase(uuid, text)", "soxtrail.run_mark_failed(uuid, text)",
                 "soxtrail.run_mark_completed(uuid, jsonb)", "soxtrail.run_mark_running(uuid)")
# What may not be true of a run role: each would let it change or disable the protection.
_UNSAFE = """
select 'is a superuser' from pg_roles where rolname = %(role)s and rolsuper
union all
select 'may bypass row security' from pg_roles where rolname = %(role)s and rolbypassrls
union all
select format('owns %%s.%%s', n.nspname, c.relname)
from pg_class as c inner join pg_namespace as n on n.oid = c.relnamespace
where n.nspname in ('soxtrail', 'raw') and pg_get_userbyid(c.relowner) = %(role)s
union all
select format('owns schema %%s', nspname) from pg_namespace
where nspname in ('soxtrail', 'raw') and pg_get_userbyid(nspowner) = %(role)s
union all
select format('is a member of the owner role %%s', current_user)
where %(role)s <> current_user and pg_has_role(%(role)s, current_user, 'MEMBER')
union all
select 'is the owner role itself' where %(role)s = current_user
"""


@dataclass(frozen=True)
class InitResult:
    """What `soxtrail db init` did."""

    database: str
    owner: str
    version: str
    run_role: str | None
    created_role: bool


def _ident(name: str) -> sql.Identifier:
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table) if table else sql.Identifier(name)


def run_grants(role: str, database: str) -> list[sql.Composed]:
    """Every GRANT that makes `role` a run role (and only that); docs/operations.md lists them."""
    who = sql.Identifier(role)
    statements = [
        sql.SQL("grant connect, temporary on database {} to {}").format(
            sql.Identifier(database), who),
        sql.SQL("grant usage on schema soxtrail, raw to {}").format(who),
        sql.SQL("grant usage, create on schema {} to {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in DBT_SCHEMAS), who),
        sql.SQL("grant select, insert on {} to {}").format(
            sql.SQL(", ").join(_ident(t) for t in RECORD_TABLES), who),
        sql.SQL("grant select on {} to {}").format(
            sql.SQL(", ").join(_ident(t) for t in READ_TABLES), who),
        sql.SQL("grant select, insert on all tables in schema raw to {}").format(who),
        # marts are derived (verify re-derives them): dbt replaces a run's rows in tables an
        # earlier single-role run may have created
        sql.SQL("grant select, insert, update, delete on all tables in schema {} to {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in DBT_SCHEMAS), who),
    ]
    statements += [sql.SQL("grant execute on function {} to {}").format(sql.SQL(f), who)
                   for f in RUN_FUNCTIONS]
    return statements


def unsafe_reasons(conn: psycopg.Connection[Any], role: str) -> list[str]:
    """Why `role` cannot serve as a run role (empty: it can)."""
    return [str(r[0]) for r in conn.execute(_UNSAFE, {"role": role}).fetchall()]  # type: ignore[arg-type]


def init_platform(conn: psycopg.Connection[Any], run_role: str | None = None) -> InitResult:
    """As the owner (an autocommit connection with the admin DSN): apply platform.sql (also
    restoring any trigger that was dropped or disabled), create the dbt schemas and, with
    `run_role`, create that role if missing (LOGIN, no password) and grant it RUN_GRANTS."""
    owner = str(conn.execute("select current_user").fetchone()[0])  # type: ignore[index]
    database = str(conn.info.dbname)
    conn.execute("select pg_advisory_lock(hashtext('soxtrail.bootstrap'))")
    try:
        apply_platform(conn)
        for schema in DBT_SCHEMAS:
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    finally:
        conn.execute("select pg_advisory_unlock(hashtext('soxtrail.bootstrap'))")
    created = False
    if run_role:
        if not run_role.strip() or run_role != run_role.strip():
            raise ConfigError(f"--run-role {run_role!r}: give a role name")
        exists = conn.execute("select 1 from pg_roles where rolname = %s",
                              (run_role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(run_role)))
            created = True
        reasons = unsafe_reasons(conn, run_role)
        if reasons:
            raise PlatformError(f"role {run_role} cannot be the run role: it "
                                + "; it ".join(reasons)
                                + " (a run role must not be able to change its evidence)")
        with conn.transaction():
            for statement in run_grants(run_role, database):
                conn.execute(statement)
    return InitResult(database=database, owner=owner, version=platform_version(),
                      run_role=run_role, created_role=created)
