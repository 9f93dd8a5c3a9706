"""The database: a DSN from SOXTRAIL_DATABASE_URL, or the embedded pgserver under `.soxtrail/pg`."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from soxtrail.kernel import secrets
from soxtrail.kernel.errors import DatabaseUnavailable, PlatformError

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


def embedded_pgdata() -> Path:
    """The embedded server's data folder."""
    return home() / "pg"


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL: its data folder, postmaster pid and socket folder."""

    pgdata: Path
    pid: int
    socket_dir: Path

    @property
    def dsn(self) -> str:
        """How to reach it (a unix socket; it listens on no TCP port)."""
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process (pgserver runs it as `pgserver` for root)
        return True
    return True


def embedded_server() -> EmbeddedServer | None:
    """The embedded PostgreSQL under home() if it is running; never starts it."""
    pgdata = embedded_pgdata()
    try:
        # postmaster.pid: pid, data folder, start time, port, socket folder, ...
        lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), Path(lines[4].strip())
    except (OSError, ValueError, IndexError):
        return None
    # a crash leaves postmaster.pid behind; its pid may be reused, its socket is gone
    if not (_alive(pid) and (socket_dir / f".s.PGSQL.{port}").exists()):
        return None
    return EmbeddedServer(pgdata=pgdata, pid=pid, socket_dir=socket_dir)


def stop_embedded(timeout: float = 30) -> EmbeddedServer | None:
    """Stop the embedded PostgreSQL (fast shutdown) if it runs: the server stopped, or None."""
    server = embedded_server()
    if server is None:
        return None
    try:
        os.kill(server.pid, signal.SIGINT)  # PostgreSQL's fast shutdown, as `pg_ctl -m fast`
    except ProcessLookupError:
        return server
    deadline = time.monotonic() + timeout
    while _alive(server.pid):
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(f"the embedded PostgreSQL (pid {server.pid}) did not "
                                      f"stop within {timeout:g} s")
        time.sleep(0.05)
    return server


def _embedded_dsn() -> str:
    import pgserver

    pgdata = embedded_pgdata()
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
            f"cannot start the embedded PostgreSQL under {embedded_pgdata()}: {exc}") from exc


def platform_sql() -> str:
    """The platform schema's DDL (sql/platform.sql)."""
    return resources.files("soxtrail.kernel").joinpath("sql/platform.sql").read_text(
        encoding="utf-8")


def platform_version() -> str:
    """This release's schema version: the SHA-256 of platform.sql."""
    return hashlib.sha256(platform_sql().encode("utf-8")).hexdigest()


def _applied(conn: psycopg.Connection[Any], version: str) -> bool:
    row = conn.execute("select to_regclass('soxtrail.sox_platform') is not null").fetchone()
    if not row or not row[0]:
        return False
    row = conn.execute("select exists (select 1 from soxtrail.sox_platform where version = %s)",
                       (version,)).fetchone()
    return bool(row and row[0])


def _may_apply(conn: psycopg.Connection[Any]) -> str | None:
    """Why the connected role may not apply the schema (None: it may)."""
    row = conn.execute(
        "select rolsuper from pg_roles where rolname = current_user").fetchone()
    if row and row[0]:
        return None
    row = conn.execute(
        "select nspowner::regrole::text, pg_has_role(current_user, nspowner, 'USAGE')"
        " from pg_namespace where nspname = 'soxtrail'").fetchone()
    if row is None:
        allowed = conn.execute(
            "select has_database_privilege(current_database(), 'CREATE')").fetchone()
        return None if allowed and allowed[0] else "it may not create schemas in this database"
    return None if row[1] else f"the schema belongs to {row[0]}"


def apply_platform(conn: psycopg.Connection[Any]) -> None:
    """Apply platform.sql as the connected (owning) role and record its version.

    Autocommit connection; one statement string, so one implicit transaction: all or nothing.
    """
    conn.execute(platform_sql())  # type: ignore[arg-type]
    conn.execute("insert into soxtrail.sox_platform (version) values (%s) on conflict do nothing",
                 (platform_version(),))


def protection_problems(conn: psycopg.Connection[Any]) -> list[str]:
    """The append-only triggers that are missing or disabled (empty when all hold)."""
    return [str(r[0]) for r in conn.execute("select soxtrail.protection_problems()").fetchall()]


def bootstrap(db: Database) -> None:
    """Make sure the platform schema is at this release's version, and intact.

    A database already at this version is only checked (no DDL, no lock on a run in
    progress). Otherwise the connected role applies platform.sql if it owns the schema (the
    default: one role for runs and schema); a run role that does not gets a PlatformError
    naming `soxtrail db init`. A run never writes into a database whose append-only
    triggers are missing or disabled.
    """
    version = platform_version()
    with db.connect(autocommit=True) as conn:
        if not _applied(conn, version):
            # one bootstrap at a time (concurrent CREATE ... IF NOT EXISTS can still collide)
            conn.execute("select pg_advisory_lock(hashtext('soxtrail.bootstrap'))")
            try:
                if not _applied(conn, version):
                    why_not = _may_apply(conn)
                    if why_not:
                        raise PlatformError(
                            f"database {conn.info.dbname}: the soxtrail schema is not at this "
                            f"release's version ({version[:12]}) and role {conn.info.user} "
                            f"cannot apply it: {why_not}; its owner applies it with "
                            "`soxtrail db init --admin-url …` (docs/operations.md, "
                            "\"Database roles\")")
                    apply_platform(conn)
            finally:
                conn.execute("select pg_advisory_unlock(hashtext('soxtrail.bootstrap'))")
        problems = protection_problems(conn)
    if problems:
        raise PlatformError(
            f"database {db.display}: its append-only protection was changed ("
            + "; ".join(problems) + "): runs refuse to record evidence in it; the schema's "
            "owner restores the triggers with `soxtrail db init` (and should find out who "
            "changed them: verify the runs made since)")
