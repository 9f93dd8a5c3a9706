"""Control marts: their names, deterministic evidence ids and canonical results."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from soxtrail.kernel.database import PLANNER_SQL

CONTROLS: dict[str, str] = {
    "AC-01": "fct_control_ac01__privileged_access_approved",
    "AC-02": "fct_control_ac02__timely_revocation",
    "AC-03": "fct_control_ac03__quarter_end_access",
    "CM-01": "fct_control_cm01__changes_authorized",
    "BK-01": "fct_control_bk01__backups_performed",
}
SUMMARY_MODEL = "fct_control_summary"
MARTS_SCHEMA = "marts"


def control_evidence_id(run_id: str, model: str) -> str:
    """The control's evidence id: md5('soxtrail:' || run_id || ':' || model)::uuid, as in SQL."""
    return str(uuid.UUID(hashlib.md5(f"soxtrail:{run_id}:{model}".encode()).hexdigest()))


def _strip_sql(sql: str) -> str:
    sql = sql.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    return sql


def canonical_query_for_sql(sql: str) -> str:
    """Wrap a control's compiled SQL so it yields the canonical lines of its result."""
    return (f"select row_to_json(t)::text from (\n{_strip_sql(sql)}\n) as t "
            'order by t.item_key collate "C"')


def canonical_query_for_mart(model: str) -> str:
    """The canonical lines of one run's rows of a built mart (parameter: run_id)."""
    return (f"select row_to_json(t)::text from {MARTS_SCHEMA}.{model} as t "
            'where t.run_id = %s order by t.item_key collate "C"')


@dataclass(frozen=True)
class Canonical:
    """A canonical result: its hash and row count."""

    sha256: str
    row_count: int


def canonical_lines(conn: psycopg.Connection[Any], query: str,
                    params: tuple[Any, ...] = ()) -> Iterator[bytes]:
    """Stream the canonical text (lines joined by `\\n`) as bytes, in UTC, server-side."""
    conn.execute("set time zone 'UTC'")
    for statement in PLANNER_SQL:  # the plan reconcile used (results never depend on it)
        conn.execute(statement)
    with conn.cursor(name="soxtrail_canonical") as cur:
        cur.itersize = 5000
        # no parameters → no placeholder parsing, so a `%` in compiled SQL is literal
        cur.execute(query, params or None)  # type: ignore[arg-type]
        first = True
        for (line,) in cur:
            yield (line if first else "\n" + line).encode("utf-8")
            first = False


def canonical_digest(conn: psycopg.Connection[Any], query: str,
                     params: tuple[Any, ...] = ()) -> Canonical:
    """SHA-256 and row count of a canonical result, without keeping it."""
    digest = hashlib.sha256()
    rows = 0
    for chunk in canonical_lines(conn, query, params):
        digest.update(chunk)
        rows += 1
    return Canonical(digest.hexdigest(), rows)
