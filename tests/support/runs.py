"""A bare `sox_runs` row for tests that load or record outside a pipeline run."""

from __future__ import annotations

from typing import Any

import psycopg


def running(conn: psycopg.Connection[Any], run_id: str, quarter: str = "2024Q3") -> str:
    """Insert run `run_id`, status running (what the platform lets a run start as): the
    loader and the evidence table accept rows only for a running run. Not committed."""
    conn.execute("insert into soxtrail.sox_runs (id, quarter, config, config_hash, tool_version,"
                 " triggered_by) values (%s, %s, '{}', 'test', 'test', 'pytest')",
                 (run_id, quarter))
    return run_id
