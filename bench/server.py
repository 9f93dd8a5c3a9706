"""The PostgreSQL the bench runs against (embedded or SOXTRAIL_DATABASE_URL's), a database a run."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import conninfo


def with_dbname(dsn: str, dbname: str) -> str:
    """The DSN naming another database."""
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@dataclass
class Server:
    """The PostgreSQL the bench runs against, and how to watch its memory."""

    kind: str  # embedded | url
    admin_dsn: str
    psql: str
    postmaster: psutil.Process | None
    settings: dict[str, str] = field(default_factory=dict)
    handle: Any = None  # keeps the embedded server alive

    def processes(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return []
        try:
            return [self.postmaster, *self.postmaster.children()]
        except psutil.Error:
            return []


def _local_postmaster(backend_pid: int, host: str) -> psutil.Process | None:
    if host and not host.startswith("/") and host not in ("localhost", "127.0.0.1", "::1"):
        return None
    try:
        parent = psutil.Process(backend_pid).parent()
    except psutil.Error:
        return None
    if parent is None or "postgres" not in " ".join(parent.cmdline() or [parent.name()]):
        return None
    return parent


def open_server(workdir: Path) -> Server:
    """SOXTRAIL_DATABASE_URL's server when set, else an embedded pgserver under the work folder."""
    url = os.environ.get("SOXTRAIL_DATABASE_URL", "").strip()
    handle = None
    pgserver_psql = None
    try:
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        pgserver_psql = str(candidate) if candidate.exists() else None
    except ImportError:
        pgserver = None  # type: ignore[assignment]
    if url:
        kind, admin = "url", url
        psql = shutil.which("psql") or pgserver_psql
    else:
        if pgserver is None:
            raise SystemExit("bench: pgserver is not installed; set SOXTRAIL_DATABASE_URL")
        import warnings

        (workdir / "pg").parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        kind, admin = "embedded", str(handle.get_uri())
        psql = pgserver_psql or shutil.which("psql")
    if psql is None:
        raise SystemExit("bench: no psql client found (needed for the \\copy limit)")
    host = str(conninfo.conninfo_to_dict(admin).get("host") or "")
    with psycopg.connect(admin, autocommit=True) as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        settings = {name: str(conn.execute(f"show {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("server_version", "shared_buffers", "work_mem",
                                 "max_wal_size", "synchronous_commit",
                                 "max_parallel_workers_per_gather")}
        # while the backend lives: once the connection closes it may be gone already
        postmaster = _local_postmaster(pid, host)
    return Server(kind, admin, psql, postmaster, settings, handle)


def create_database(server: Server) -> tuple[str, str]:
    """A fresh database for one bench run: its name and DSN."""
    name = f"soxtrail_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')  # type: ignore[arg-type]
    return name, with_dbname(server.admin_dsn, name)


def drop_database(server: Server, name: str) -> None:
    """Drop the bench run's database (its connections too)."""
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')  # type: ignore[arg-type]
