"""`soxtrail db`: the embedded PostgreSQL that runs use when SOXTRAIL_DATABASE_URL is unset."""

from __future__ import annotations

import json
import os

import typer

from soxtrail.cli.common import JsonOpt, handled, out
from soxtrail.kernel import secrets
from soxtrail.kernel.database import embedded_pgdata, embedded_server, stop_embedded

db_app = typer.Typer(
    help="The embedded PostgreSQL: it keeps running between runs until `soxtrail db stop`.",
    no_args_is_help=True,
)


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
