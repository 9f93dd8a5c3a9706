"""What a run must look like after any fault: same results, nothing lost, nothing twice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg

from extract.connectors.registry import RAW_TABLES
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database


def only_run_id(home: Path) -> str:
    """The one run a fresh SOXTRAIL_HOME has seen."""
    runs = [p.name for p in (home / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def run_row(db: Database, run_id: str) -> dict[str, Any]:
    with db.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("select * from soxtrail.sox_runs where id = %s", (run_id,))
        row = cur.fetchone()
    assert row is not None, run_id
    return row


def count(db: Database, sql: str, *params: Any) -> int:
    with db.connect() as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


def _stable_ids(conn: psycopg.Connection[Any], run_id: str) -> dict[str, str]:
    """evidence id → a name that is the same in every run (source + query, or the control)."""
    rows = conn.execute(
        "select id::text, source_system, coalesce(query_params->>'source', ''), query_name,"
        " query_params->>'model' from soxtrail.sox_evidence where run_id = %s",
        (run_id,)).fetchall()
    return {i: (f"control:{model}" if system == "reconcile" else f"{system}:{source}:{query}")
            for i, system, source, query, model in rows}


def stable_results(db: Database, run_id: str) -> dict[str, tuple[int, str]]:
    """Per control: (rows, SHA-256 of its mart rows with run-specific ids made stable).

    The pipeline's own control result hash covers run_id and evidence ids (uuid4 per run),
    so two runs are compared on this instead: every column, ids named by what they point to.
    """
    out: dict[str, tuple[int, str]] = {}
    with db.connect() as conn:
        conn.execute("set time zone 'UTC'")
        names = _stable_ids(conn, run_id)
        for control_id, model in CONTROLS.items():
            digest = hashlib.sha256()
            rows = conn.execute(
                f"select row_to_json(t)::text from marts.{model} as t where t.run_id = %s"
                ' order by t.item_key collate "C"', (run_id,)).fetchall()
            for (text,) in rows:
                row = json.loads(text)
                row.pop("run_id", None)
                for key, value in list(row.items()):
                    if key.endswith("evidence_id") and value is not None:
                        row[key] = names.get(value, f"UNKNOWN:{value}")
                    elif key.endswith("evidence_ids") and value is not None:
                        row[key] = sorted(names.get(v, f"UNKNOWN:{v}") for v in value)
                digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
            out[control_id] = (len(rows), digest.hexdigest())
    return out


def load_totals(db: Database, run_id: str) -> tuple[int, int, int, int]:
    with db.connect() as conn:
        row = conn.execute(
            "select coalesce(sum(records_read),0), coalesce(sum(records_loaded),0),"
            " coalesce(sum(records_rejected),0), coalesce(sum(records_skipped),0)"
            " from soxtrail.sox_load_stats where run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def integrity_problems(db: Database, run_id: str, *, loaded: bool = True) -> list[str]:
    """Duplicates, orphans and partial loads of one run (empty when all is well)."""
    problems: list[str] = []
    with db.connect() as conn:
        def one(sql: str, *params: Any) -> int:
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
            return int(row[0]) if row and row[0] is not None else 0

        dup_objects = one("select count(*) - count(distinct raw_output_s3_key)"
                          " from soxtrail.sox_evidence where run_id = %s", run_id)
        if dup_objects:
            problems.append(f"{dup_objects} evidence rows name an object another row names")
        unchained = one("select count(*) from soxtrail.sox_evidence e where run_id = %s and not"
                        " exists (select 1 from soxtrail.sox_evidence_chain c"
                        " where c.evidence_id = e.id)", run_id)
        if unchained:
            problems.append(f"{unchained} evidence rows without a chain link")
        if loaded:
            unloaded = one("select count(*) from soxtrail.sox_evidence e where run_id = %s"
                           " and source_system <> 'reconcile' and not exists (select 1 from"
                           " soxtrail.sox_load_stats s where s.run_id = e.run_id"
                           " and s.evidence_id = e.id)", run_id)
            if unloaded:
                problems.append(f"{unloaded} snapshot objects without load stats")
        orphan_stats = one("select count(*) from soxtrail.sox_load_stats s where run_id = %s"
                           " and not exists (select 1 from soxtrail.sox_evidence e"
                           " where e.id = s.evidence_id and e.run_id = s.run_id)", run_id)
        if orphan_stats:
            problems.append(f"{orphan_stats} load stats rows without their evidence row")
        for table in RAW_TABLES:
            # rows per object must equal what its load stats say: nothing twice, no half object
            bad = conn.execute(
                f"select r.evidence_id, r.n, s.records_loaded from (select evidence_id,"
                f" count(*) as n from {table} where run_id = %s group by evidence_id) as r"
                " left join soxtrail.sox_load_stats as s on s.run_id = %s"
                " and s.evidence_id = r.evidence_id"
                " where s.records_loaded is distinct from r.n limit 3",
                (run_id, run_id)).fetchall()
            if bad:
                problems.append(f"{table}: rows per object differ from load stats: {bad}")
        bad_rejects = conn.execute(
            "select s.evidence_id, s.records_rejected, count(r.*) from soxtrail.sox_load_stats s"
            " left join soxtrail.sox_rejects r on r.run_id = s.run_id"
            " and r.evidence_id = s.evidence_id where s.run_id = %s"
            " group by s.evidence_id, s.records_rejected"
            " having count(r.*) <> s.records_rejected limit 3", (run_id,)).fetchall()
        if bad_rejects:
            problems.append(f"rejects rows differ from load stats: {bad_rejects}")
        orphan_rejects = one("select count(*) from soxtrail.sox_rejects r where run_id = %s"
                             " and not exists (select 1 from soxtrail.sox_load_stats s"
                             " where s.run_id = r.run_id and s.evidence_id = r.evidence_id)",
                             run_id)
        if orphan_rejects:
            problems.append(f"{orphan_rejects} rejects without their object's load stats")
        settings_dups = one("select count(*) - count(distinct (source_name, setting, key))"
                            " from raw.source_settings where run_id = %s", run_id)
        if settings_dups:
            problems.append(f"{settings_dups} duplicate source settings")
        exists = one("select count(*) from information_schema.tables where table_schema ="
                     " 'marts' and table_name = %s", CONTROLS["AC-01"])
        if exists:
            for control_id, model in CONTROLS.items():
                dups = one(f"select count(*) - count(distinct item_key) from marts.{model}"
                           " where run_id = %s", run_id)
                if dups:
                    problems.append(f"{control_id}: {dups} duplicate population items")
    return problems
