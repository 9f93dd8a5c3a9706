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

# The marts chain ephemeral CTEs whose filtered row estimates collapse to 1, and
# the planner then nests CTE scans inside loops: quadratic or worse at estate
# scale (CM-01 at 1M audit lines: 14.7 s with nested loops, 1.9 s without).
# work_mem: the ticket staging's sorts spill to disk at the default 4 MB.
# jit: enable_nestloop=off adds its "disabled" cost (1e10) to every plan with a
# nested loop left in it, which puts every mart far past jit_above_cost; where the
# server has JIT (Debian's and most packaged builds), compiling these statements
# took seconds per mart for nothing (AC-02 at 100k audit lines on PostgreSQL 15:
# 7.1 s with JIT, 0.14 s without).
# Results never depend on the plan; verify's re-runs use the same settings.
PLANNER_SETTINGS = {"enable_nestloop": "off", "work_mem": "64MB", "jit": "off"}
# the same settings for a connection (PGOPTIONS) and for a transaction (SET LOCAL)
PLANNER_OPTIONS = " ".join(f"-c {name}={value}" for name, value in PLANNER_SETTINGS.items())
PLANNER_SQL = tuple(f"set local {name} = '{value}'" for name, value in PLANNER_SETTINGS.items())


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
