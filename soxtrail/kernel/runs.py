"""The run registry (`sox_runs`): create, advance phases, fail, complete, lock.

A run row changes only through the schema owner's functions (platform.sql `run_mark_*`):
a run role has INSERT and SELECT on sox_runs, no UPDATE."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from soxtrail import __version__
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import EXIT_PIPELINE_FAILURE, ConfigError, PipelineError, SoxtrailError

PHASES = ("snapshot", "load", "reconcile", "render", "bundle")
# A run's kind (recorded as `_kind` in its config; absent = quarter): a quarter run does
# every phase; a capture (`soxtrail capture`) snapshots and loads chosen sources mid-quarter,
# for the quarter's run to include (docs/operations.md, "Mid-quarter captures").
KIND_KEY = "_kind"
CAPTURE = "capture"
QUARTER = "quarter"
PHASES_OF = {QUARTER: PHASES, CAPTURE: PHASES[:2]}
REPO_ROOT = Path(__file__).resolve().parents[2]


class RunBusy(SoxtrailError):
    """Another run of the same quarter holds the lock.

    Exit 3 (not 2): the command was right, it just cannot run now; CI retries it later or
    passes `--wait` (docs/reliability.md).
    """

    exit_code = EXIT_PIPELINE_FAILURE


@dataclass(frozen=True)
class Run:
    """One `sox_runs` row."""

    id: str
    quarter: str
    clusters: tuple[str, ...] | None
    config: dict[str, Any]
    config_hash: str
    tool_version: str
    git_commit: str | None
    triggered_by: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    phase_reached: str | None
    error: str | None
    summary: dict[str, Any]

    @property
    def kind(self) -> str:
        """`quarter` or `capture`."""
        return str(self.config.get(KIND_KEY) or QUARTER)

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases of a run of this kind, in order."""
        return PHASES_OF.get(self.kind, PHASES)

    def next_phase(self) -> str | None:
        """The first phase not yet completed (None when all are)."""
        phases = self.phases
        if self.phase_reached is None:
            return phases[0]
        index = phases.index(self.phase_reached) + 1
        return phases[index] if index < len(phases) else None


def triggered_by() -> str:
    """The triggering user: CI's user variables first, then the login."""
    for name in ("BUILD_USER_ID", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def git_commit() -> str | None:
    """The tool's git commit (with `-dirty` when the tree has changes), if known."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SOXTRAIL_GIT_COMMIT")


def _row_to_run(row: dict[str, Any]) -> Run:
    return Run(
        id=str(row["id"]), quarter=row["quarter"],
        clusters=tuple(row["clusters"]) if row["clusters"] else None,
        config=row["config"], config_hash=row["config_hash"], tool_version=row["tool_version"],
        git_commit=row["git_commit"], triggered_by=row["triggered_by"],
        started_at=row["started_at"], finished_at=row["finished_at"], status=row["status"],
        phase_reached=row["phase_reached"], error=row["error"], summary=row["summary"] or {},
    )


def create_run(conn: psycopg.Connection[Any], *, quarter: str, clusters: tuple[str, ...] | None,
               config: dict[str, Any], config_hash: str) -> Run:
    """Insert a new run in status `running`."""
    run_id = str(uuid.uuid4())
    conn.execute(
        "insert into soxtrail.sox_runs (id, quarter, clusters, config, config_hash, tool_version,"
        " git_commit, triggered_by) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (run_id, quarter, list(clusters) if clusters else None, json.dumps(config), config_hash,
         __version__, git_commit(), triggered_by()),
    )
    conn.commit()
    return get_run(conn, run_id)


LATEST = "latest"  # a run argument: the newest completed quarter run


def get_run(conn: psycopg.Connection[Any], run_id: str) -> Run:
    """The run with that id (a unique prefix of at least 8 characters also works; `latest`:
    the newest completed quarter run)."""
    if run_id.strip().lower() == LATEST:
        newest = latest_completed_run(conn)
        if newest is None:
            raise PipelineError("no completed quarter run yet: `latest` names none")
        return newest
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            uuid.UUID(run_id)
            cur.execute("select * from soxtrail.sox_runs where id = %s", (run_id,))
            rows = cur.fetchall()
        except ValueError:
            if len(run_id) < 8:
                raise PipelineError(
                    f"run id {run_id!r}: give the full id or at least 8 characters") from None
            cur.execute("select * from soxtrail.sox_runs where id::text like %s", (run_id + "%",))
            rows = cur.fetchall()
    if not rows:
        raise PipelineError(f"no run with id {run_id}")
    if len(rows) > 1:
        raise PipelineError(f"run id prefix {run_id!r} is ambiguous")
    return _row_to_run(rows[0])


def get_quarter_run(conn: psycopg.Connection[Any], run_id: str, purpose: str) -> Run:
    """`get_run`, refusing a capture (it has no controls or report) for `purpose`."""
    run = get_run(conn, run_id)
    if run.kind == CAPTURE:
        raise ConfigError(f"run {run.id} is a capture (soxtrail capture): it has no controls "
                            f"or report to {purpose}; give the quarter run that includes it")
    return run


def list_runs(conn: psycopg.Connection[Any], limit: int = 20) -> list[Run]:
    """The most recent runs first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from soxtrail.sox_runs order by started_at desc limit %s", (limit,))
        return [_row_to_run(r) for r in cur.fetchall()]


def latest_completed_run(conn: psycopg.Connection[Any]) -> Run | None:
    """The newest completed quarter run (not a capture), if any."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from soxtrail.sox_runs where status = 'completed'"
                    " and config ->> %s is distinct from %s"
                    " order by finished_at desc limit 1", (KIND_KEY, CAPTURE))
        row = cur.fetchone()
    return _row_to_run(row) if row else None


def mark_phase(conn: psycopg.Connection[Any], run_id: str, phase: str) -> None:
    """Record that `phase` completed."""
    conn.execute("select soxtrail.run_mark_phase(%s, %s)", (run_id, phase))
    conn.commit()


def mark_failed(conn: psycopg.Connection[Any], run_id: str, error: str) -> None:
    """Record the failure (message redacted)."""
    conn.rollback()
    conn.execute("select soxtrail.run_mark_failed(%s, %s)", (run_id, secrets.redact(error)[:4000]))
    conn.commit()


def mark_completed(conn: psycopg.Connection[Any], run_id: str, summary: dict[str, Any]) -> None:
    """Record success and the run's summary."""
    conn.execute("select soxtrail.run_mark_completed(%s, %s)", (run_id, json.dumps(summary)))
    conn.commit()


def mark_running(conn: psycopg.Connection[Any], run_id: str) -> None:
    """Resume: the run is running again."""
    conn.execute("select soxtrail.run_mark_running(%s)", (run_id,))
    conn.commit()


@contextmanager
def quarter_lock(conn: psycopg.Connection[Any], quarter: str, *, wait: bool) -> Iterator[None]:
    """One run of a quarter at a time: a session advisory lock on the quarter."""
    key = f"soxtrail.kernel.quarter.{quarter}"
    if wait:
        conn.execute("select pg_advisory_lock(hashtext(%s))", (key,))
    else:
        row = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not row or not row[0]:
            conn.commit()
            raise RunBusy(f"another soxtrail run of {quarter} is in progress; "
                          "wait for it to finish (or pass --wait)")
    conn.commit()
    try:
        yield
    finally:
        try:
            conn.rollback()
            conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))
            conn.commit()
        except psycopg.Error:
            pass  # the connection is gone: the server released the lock with it
