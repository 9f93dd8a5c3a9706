"""dbt, in-process: the profile the wrapper writes (never in the user's home) and invocations."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soxtrail.kernel import controls
from soxtrail.kernel.database import PLANNER_OPTIONS, Database
from soxtrail.kernel.errors import PipelineError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every value comes from the environment at invocation time: no secret is written to disk.
PROFILE = """\
# Written by soxtrail: connection values come from environment variables set
# in-process for each dbt invocation.  See profiles.yml.example for a hand-run profile.
soxtrail:
  target: default
  outputs:
    default:
      type: postgres
      host: "{{ env_var('SOXTRAIL_DB_HOST') }}"
      port: "{{ env_var('SOXTRAIL_DB_PORT') | as_number }}"
      user: "{{ env_var('SOXTRAIL_DB_USER') }}"
      password: "{{ env_var('SOXTRAIL_DB_PASSWORD', '') }}"
      dbname: "{{ env_var('SOXTRAIL_DB_NAME') }}"
      schema: marts
      threads: 2
      connect_timeout: 10
"""

# engine: spark. dbt-spark's session method runs every statement in this process's Spark
# session, which the wrapper starts first (soxtrail.kernel.spark.session: its catalog, its
# warehouse folder); the marts' Parquet folders go under SOXTRAIL_SPARK_MARTS.
SPARK_PROFILE = """\
# Written by soxtrail (engine: spark): dbt-spark's session method in the wrapper's Spark
# session.  See docs/operations.md for a Thrift server or Databricks.
soxtrail:
  target: default
  outputs:
    default:
      type: spark
      method: session
      host: localhost
      schema: marts
      threads: 1
"""

PROFILES = {"postgres": PROFILE, "spark": SPARK_PROFILE}




@dataclass(frozen=True)
class DbtResult:
    """What one invocation produced."""

    success: bool
    results: list[Any]
    target_path: Path


def prepare_environment(db: Database, profiles_dir: Path, engine: str = "postgres") -> None:
    """Write the engine's profile and set the connection variables it reads, and the control
    registry the control_models() macro reads (soxtrail.kernel.controls)."""
    profiles_dir.mkdir(parents=True, exist_ok=True)
    (profiles_dir / "profiles.yml").write_text(PROFILES[engine], encoding="utf-8")
    params = db.params
    os.environ["SOXTRAIL_DB_HOST"] = str(params.get("host") or "127.0.0.1")
    os.environ["SOXTRAIL_DB_PORT"] = str(params.get("port") or "5432")
    os.environ["SOXTRAIL_DB_USER"] = str(params.get("user") or os.environ.get("USER", "postgres"))
    os.environ["SOXTRAIL_DB_PASSWORD"] = str(params.get("password") or "")
    os.environ["SOXTRAIL_DB_NAME"] = str(params.get("dbname") or "postgres")
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ["PGTZ"] = "UTC"
    os.environ.update(controls.dbt_environment())


def node_finished_callback(report: Callable[[str, str, float], None]) -> Callable[[Any], None]:
    """A dbt event callback calling `report(node, status, seconds)` as each node finishes."""

    def callback(event: Any) -> None:
        if event.info.name != "NodeFinished":
            return
        node = event.data.node_info
        status = getattr(event.data.run_result, "status", "") or node.node_status
        started, finished = node.node_started_at, node.node_finished_at
        seconds = 0.0
        if started and finished:
            from datetime import datetime

            seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)
                       ).total_seconds()
        report(node.unique_id, str(status), round(seconds, 3))

    return callback


def invoke(db: Database, args: list[str], *, workdir: Path, vars: dict[str, Any] | None = None,
           on_node: Callable[[str, str, float], None] | None = None,
           engine: str = "postgres") -> DbtResult:
    """Run one dbt command in-process against `db` (engine postgres) or this process's
    Spark session (engine spark, started by the caller); artifacts go under `workdir`.

    `on_node(unique_id, status, seconds)` is called as each node finishes.
    """
    from dbt.cli.main import dbtRunner

    profiles_dir = workdir / "profiles"
    prepare_environment(db, profiles_dir, engine)
    target_path = workdir / "target"
    full = [
        *args,
        "--project-dir", str(REPO_ROOT),
        "--profiles-dir", str(profiles_dir),
        "--target-path", str(target_path),
        "--log-path", str(workdir / "logs"),
        "--no-version-check",
        "--no-send-anonymous-usage-stats",
        "--quiet",
    ]
    if vars is not None:
        full += ["--vars", json.dumps(vars, sort_keys=True)]
    callbacks = [node_finished_callback(on_node)] if on_node is not None else []
    saved = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = PLANNER_OPTIONS  # dbt's own connections only
    try:
        result = dbtRunner(callbacks=callbacks).invoke(full)
    finally:
        if saved is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = saved
    if result.exception is not None:
        raise PipelineError(f"dbt {' '.join(args[:2])} failed: {result.exception}")
    results = list(getattr(result.result, "results", []) or [])
    return DbtResult(success=bool(result.success), results=results, target_path=target_path)


def failures(result: DbtResult) -> list[str]:
    """One line per failed node."""
    lines = []
    for item in result.results:
        status = str(getattr(item, "status", ""))
        if status.lower() in ("error", "fail", "runtime error", "skipped") or status.endswith(
                ("ERROR", "FAIL")):
            node = getattr(item, "node", None)
            name = getattr(node, "unique_id", "?")
            lines.append(f"{name}: {status}: {(getattr(item, 'message', '') or '').strip()}")
    return lines
