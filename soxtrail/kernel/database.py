"""The database: a DSN from SOXTRAIL_DATABASE_URL, or the embedded pgserver under `.soxtrail/pg`."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from soxtrail.kernel import secrets
from soxtrail.kernel.errors import DatabaseUnavailable


def home() -> Path:
    """Where soxtrail keeps its local state (embedded database, store, dbt files)."""
    return Path(os.environ.get("SOXTRAIL_HOME", ".soxtrail")).resolve()


@dataclass(frozen=True)
class Database:
    """A reachable PostgreSQL and how to reach it."""

    dsn: str
    embedded: bool

    @property
    def params(self) -> dict[str, Any]:
        """Connection parameters (host, port, user, password, dbname)."""
        return conninfo.conninfo_to_dict(self.dsn)

    @property
    def display(self) -> str:
        """The DSN without its password, for messages."""
        return secrets.redact_url(self.dsn) if "://" in self.dsn else secrets.redact(self.dsn)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection (autocommit off unless asked)."""
        try:
            return psycopg.connect(self.dsn, **kwargs)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()) or exc.__class__.__name__
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.display}: {secrets.redact(reason)}"
            ) from exc


def _embedded_dsn() -> str:
    import pgserver

    pgdata = home() / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # keep running across commands
    return str(server.get_uri())


def resolve_database() -> Database:
    """SOXTRAIL_DATABASE_URL when set, else the embedded server (started if needed)."""
    dsn = os.environ.get("SOXTRAIL_DATABASE_URL", "").strip()
    if dsn:
        secrets.remember(str(conninfo.conninfo_to_dict(dsn).get("password") or ""))
        return Database(dsn=dsn, embedded=False)
    try:
        return Database(dsn=_embedded_dsn(), embedded=True)
    except Exception as exc:  # pgserver raises plain exceptions on start-up failures
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL under {home() / 'pg'}: {exc}") from exc


def bootstrap(db: Database) -> None:
    """Create (idempotently) the platform schema: runs, evidence, rejects, raw tables, triggers."""
    sql = resources.files("soxtrail.kernel").joinpath("sql/platform.sql").read_text(
        encoding="utf-8")
    with db.connect(autocommit=True) as conn:
        # one bootstrap at a time (concurrent CREATE ... IF NOT EXISTS can still collide)
        conn.execute("select pg_advisory_lock(hashtext('soxtrail.bootstrap'))")
        try:
            conn.execute(sql)  # type: ignore[arg-type]
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('soxtrail.bootstrap'))")
