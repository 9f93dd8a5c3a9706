"""Verify the earlier evidence rows a run includes (extract/connectors/inclusion.py).

A quarter run lists, in its own `included_evidence` objects (hashed, chained and anchored
with the run), each earlier row it reads as its own: a mid-quarter capture of a source that
forgets, an earlier settings capture. For each listed row this checks, under kind
`included`: the row is still in the database as listed (run, query, time, row count,
SHA-256, object key) and its chain link is the one the run pinned (`chain_seq`,
`chain_hash`) and still recomputes from the row as it stands; the run that captured it is
completed; and, with the run's object and raw checks, its raw object (SHA-256, row count)
and the raw rows re-derived from it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import psycopg

from soxtrail.audit import verify_raw, verify_rows
from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import evidence, runs
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.sources import INCLUDED_TABLE
from soxtrail.kernel.store import Store

KIND = "included"
# the listed fields compared with the row as it stands, by the row's column
PINNED = {"run_id": "run_id", "query_name": "query_name", "executed_at": "executed_at",
          "result_row_count": "result_row_count", "result_hash": "result_hash",
          "raw_output_s3_key": "raw_output_s3_key", "chain_seq": "seq",
          "chain_hash": "chain_hash"}


def listed(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The rows the run's `included_evidence` objects list, in the run's raw table (which
    the raw check re-derives from those objects)."""
    rows = conn.execute(
        f"select doc from {INCLUDED_TABLE} where run_id = %s"
        " order by source_name, evidence_id, locator", (run_id,)).fetchall()
    conn.commit()
    return [dict(row[0]) for row in rows]


def _same(name: str, pinned: Any, now: Any) -> bool:
    if now is None or pinned is None:
        return now is None and pinned is None
    if name == "executed_at":
        return str(pinned) == now.isoformat()
    return str(pinned) == str(now)


def check_included(conn: psycopg.Connection[Any], run: runs.Run, store: Store, *,
                   kinds: Collection[str]) -> list[Verdict]:
    """Every check of the rows the run includes (none listed: no verdict)."""
    wanted = listed(conn, run.id)
    if not wanted:
        return []
    found = {str(row["id"]): row for row in
             evidence.rows_with_links_by_id(conn, [str(w["evidence_id"]) for w in wanted])}
    conn.commit()
    verdicts: list[Verdict] = []
    good: dict[str, list[dict[str, Any]]] = {}  # by the run that captured them
    for item in wanted:
        evidence_id = str(item["evidence_id"])
        subject = f"{evidence_id} ({item.get('purpose')} of {item.get('source_name')}, " \
                  f"run {str(item.get('run_id'))[:8]})"
        row = found.get(evidence_id)
        if row is None:
            verdicts.append(Verdict("MISSING", KIND, subject, "listed by the run as included, "
                                    "not in soxtrail.sox_evidence (the row was deleted)"))
            continue
        differing = [f"{name} (listed {item.get(name)}, database {row[column]})"
                     for name, column in PINNED.items()
                     if not _same(name, item.get(name), row[column])]
        if differing:
            verdicts.append(Verdict("MISMATCH", KIND, subject, "differs from what the run "
                                    "pinned when it included it: " + "; ".join(differing)))
            continue
        chained = verify_rows.check_chain(row)
        if chained.failed:
            verdicts.append(Verdict(chained.status, KIND, subject, chained.detail))
            continue
        verdicts.append(Verdict("OK", KIND, subject,
                                f"as pinned: link {row['seq']} {str(row['chain_hash'])[:16]}…"))
        good.setdefault(str(row["run_id"]), []).append(row)
    for run_id, rows in sorted(good.items()):
        try:
            source_run = runs.get_run(conn, run_id)
            conn.commit()
        except SoxtrailError as exc:
            verdicts.append(Verdict("MISSING", KIND, f"run {run_id}", str(exc)))
            continue
        if source_run.status != "completed":
            verdicts.append(Verdict("FAIL", KIND, f"run {run_id}",
                                    f"{source_run.kind} run {source_run.status}, not "
                                    "completed: its rows cannot be included"))
        if "object" in kinds:
            with tempfile.TemporaryDirectory(prefix="soxtrail-verify-included-") as scratch:
                for row in rows:
                    verdict = verify_rows.check_object(store, row, Path(scratch))
                    verdicts.append(Verdict(verdict.status, KIND, verdict.subject,
                                            verdict.detail))
        if "raw" in kinds:
            for verdict in verify_raw.check_raw_tables(conn, source_run, rows, store,
                                                       partial=True):
                verdicts.append(Verdict(verdict.status, KIND, verdict.subject, verdict.detail))
    return verdicts
