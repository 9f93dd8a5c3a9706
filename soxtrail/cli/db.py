"""`soxtrail db`: the platform schema and its roles (`init`), and the embedded PostgreSQL that
runs use when SOXTRAIL_DATABASE_URL is unset (`status`, `stop`)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from psycopg import conninfo

from soxtrail.cli.common import JsonOpt, handled, out
from soxtrail.kernel import secrets
from soxtrail.kernel.database import (
    Database,
    embedded_pgdata,
    embedded_server,
    resolve_database,
    stop_embedded,
)
from soxtrail.kernel.roles import init_platform

db_app = typer.Typer(
    help="The platform schema and its roles (`init`); the embedded PostgreSQL, which keeps "
         "running between runs until `soxtrail db stop`.",
    no_args_is_help=True,
)

AdminUrlOpt = Annotated[str | None, typer.Option(
    "--admin-url", envvar="SOXTRAIL_ADMIN_DATABASE_URL", show_envvar=True,
    help="DSN of the role that owns the schema (default: SOXTRAIL_DATABASE_URL, else the "
         "embedded server).")]
RunRoleOpt = Annotated[str | None, typer.Option(
    "--run-role", help="The role runs connect as: created if missing (LOGIN, no password) and "
                       "granted only what a run needs; it can record evidence, never change it.")]


def _database_url() -> str:
    return os.environ.get("SOXTRAIL_DATABASE_URL", "").strip()


def still_running_note() -> str | None:
    """The end-of-run line when the run used the embedded server: where it runs, how to stop it."""
    if _database_url():
        return None
    server = embedded_server()
    if server is None:
        return None
    return (f"embedded PostgreSQL still running (pid {server.pid}, data {server.pgdata}) "
            "for the next run; stop it with `soxtrail db stop`")


@db_app.command()
def status(as_json: JsonOpt = False) -> None:
    """Whether the embedded PostgreSQL is running, where, and how to reach it."""
    with handled():
        server = embedded_server()
        url = _database_url()
        if as_json:
            print(json.dumps({
                "running": server is not None, "pgdata": str(embedded_pgdata()),
                "pid": server.pid if server else None, "dsn": server.dsn if server else None,
                "database_url": secrets.redact_url(url) if url else None}, sort_keys=True))
            return
        if server is None:
            out.print(f"embedded PostgreSQL: not running (data {embedded_pgdata()})",
                      markup=False)
        else:
            out.print(f"embedded PostgreSQL: running, pid {server.pid}, data {server.pgdata}",
                      markup=False)
            out.print(f"connect: {server.dsn}", markup=False)
            out.print("stop it with: soxtrail db stop", markup=False)
        if url:
            out.print(f"runs use SOXTRAIL_DATABASE_URL ({secrets.redact_url(url)}), "
                      "not the embedded server", markup=False)


@db_app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL (the next run starts it again)."""
    with handled():
        server = stop_embedded()
        if server is None:
            out.print(f"embedded PostgreSQL: not running (data {embedded_pgdata()})",
                      markup=False)
        else:
            out.print(f"embedded PostgreSQL: stopped (pid {server.pid}, data {server.pgdata})",
                      markup=False)


@db_app.command()
def init(admin_url: AdminUrlOpt = None, run_role: RunRoleOpt = None,
         as_json: JsonOpt = False) -> None:
    """Apply the platform schema as its owner (restoring any disabled or dropped append-only
    trigger) and, with --run-role, set up the role runs use (docs/operations.md)."""
    with handled():
        if admin_url and admin_url.strip():
            secrets.remember(str(conninfo.conninfo_to_dict(admin_url).get("password") or ""))
            db = Database(dsn=admin_url.strip(), embedded=False)
        else:
            db = resolve_database()
        with db.connect(autocommit=True) as conn:
            result = init_platform(conn, run_role)
        run_url = None
        if run_role:
            params = conninfo.conninfo_to_dict(db.dsn)
            params.pop("password", None)
            params["user"] = run_role
            run_url = conninfo.make_conninfo("", **params)
        if as_json:
            print(json.dumps({"database": result.database, "owner": result.owner,
                              "platform_version": result.version, "run_role": result.run_role,
                              "created_role": result.created_role, "run_dsn": run_url},
                             sort_keys=True))
            return
        out.print(f"database {result.database}: platform schema {result.version[:12]} applied "
                  f"by its owner {result.owner}", markup=False)
        if run_role:
            made = "created (LOGIN, no password: set one or use your pg_hba rules)" \
                if result.created_role else "existing"
            out.print(f"run role {run_role} ({made}): may record runs, evidence, load "
                      "statistics, rejects and raw rows, build marts; may not update, delete, "
                      "alter or disable triggers", markup=False)
            out.print(f"runs connect with SOXTRAIL_DATABASE_URL={run_url}", markup=False)
