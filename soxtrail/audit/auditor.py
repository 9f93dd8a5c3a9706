"""The read-only `soxtrail_auditor` role: SELECT on the evidence, raw, mart and snapshot schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.kernel.errors import ConfigError

AUDITOR_ROLE = "soxtrail_auditor"
AUDITED_SCHEMAS = ("soxtrail", "raw", "marts", "snapshots")


@dataclass
class GrantReport:
    """What grant_auditor did."""

    login_role: str
    role_created: bool
    schemas: list[str] = field(default_factory=list)
    schemas_absent: list[str] = field(default_factory=list)


def _role_exists(conn: psycopg.Connection[Any], name: str) -> tuple[bool, bool]:
    row = conn.execute("select true, rolcanlogin from pg_roles where rolname = %s",
                       (name,)).fetchone()
    return (bool(row), bool(row[1])) if row else (False, False)


def _default_privileges_for_owner(conn: psycopg.Connection[Any], schema: str,
                                  grantee: sql.Identifier) -> None:
    """Future tables made by the schema's owner (e.g. the dbt user) are readable too."""
    row = conn.execute("select pg_get_userbyid(nspowner) from pg_namespace where nspname = %s"
                       " and pg_get_userbyid(nspowner) <> current_user", (schema,)).fetchone()
    if not row:
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("alter default privileges for role {} in schema {} grant select"
                                 " on tables to {}").format(sql.Identifier(row[0]),
                                                            sql.Identifier(schema), grantee))
    except psycopg.errors.InsufficientPrivilege:
        pass  # not a member of the owner role: its future tables need a re-run of grant-auditor


def grant_auditor(conn: psycopg.Connection[Any], login_role: str, *,
                  role: str = AUDITOR_ROLE) -> GrantReport:
    """Create (if missing) the NOLOGIN auditor role, give it read access, grant it to `login_role`.

    `login_role` must already exist.  Every identifier is quoted; nothing is interpolated.
    """
    if not login_role:
        raise ConfigError("grant-auditor: give the login role to grant the auditor role to")
    exists, can_login = _role_exists(conn, login_role)
    if not exists:
        conn.rollback()
        raise ConfigError(f"role {login_role!r} does not exist: create the login role first "
                          f"(CREATE ROLE ... LOGIN), then grant {role} to it")
    if not can_login:
        conn.rollback()
        raise ConfigError(f"role {login_role!r} cannot log in (NOLOGIN): grant {role} to a "
                          "login role")
    ident = sql.Identifier(role)
    created = not _role_exists(conn, role)[0]
    if created:
        conn.execute(sql.SQL("create role {} nologin").format(ident))
    report = GrantReport(login_role=login_role, role_created=created)
    present = {r[0] for r in conn.execute(
        "select nspname from pg_namespace where nspname = any(%s)",
        (list(AUDITED_SCHEMAS),)).fetchall()}
    for schema in AUDITED_SCHEMAS:
        if schema not in present:
            # a schema created later (snapshots, before the first dbt snapshot) needs a re-run
            report.schemas_absent.append(schema)
            continue
        name = sql.Identifier(schema)
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(name, ident))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(name, ident))
        conn.execute(sql.SQL("alter default privileges in schema {} grant select on tables to {}")
                     .format(name, ident))
        _default_privileges_for_owner(conn, schema, ident)
        report.schemas.append(schema)
    # verify calls soxtrail.evidence_row_text(); functions are executable by PUBLIC by
    # default, but say so explicitly in case the database revoked that (only that one: the
    # owner's run_mark_* functions change run rows and are the run role's alone)
    if "soxtrail" in present:
        conn.execute(sql.SQL("grant execute on function soxtrail.evidence_row_text("
                             "uuid, uuid, text, text, text, jsonb, timestamptz, text, integer,"
                             " text, text) to {}").format(ident))
    conn.execute(sql.SQL("grant {} to {}").format(ident, sql.Identifier(login_role)))
    conn.commit()
    return report
