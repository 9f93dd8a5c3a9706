"""What a run includes of earlier runs' evidence for one of its sources, as an evidence
object (query name `included_evidence`, raw table `raw.included_evidence`).

A source that forgets (Okta's System Log keeps ~90 days, AWS Backup's job list ~30) is whole
for a quarter only with captures taken during it (`soxtrail capture`); and LG-01's audit
settings are known from earlier settings captures of the cluster too. The quarter's run
does not copy those rows: it records, per source, one JSON line per earlier evidence row it
includes — the row's id, run, query, time, row count, SHA-256, object key and chain link
(`chain_seq`, `chain_hash`) — stored, hashed and chained like any object of the run. The
staging models read the raw rows of the run and of the rows it lists
(macros/utils/this_run.sql, `this_run_or_included`); `verify` checks each listed row
against its pinned link, its object and its raw rows (soxtrail/audit/verify_included.py).
Which rows a run includes: kernel/evidence.py, `included_rows`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from soxtrail.kernel.sources import (
    DOC_TABLE,
    INCLUDED_QUERY,
    INCLUDED_TABLE,
    JsonDoc,
    RawRow,
    Reject,
    Source,
)

RAW_TABLES = {INCLUDED_TABLE: DOC_TABLE}
QUERY_TEXT = ("earlier evidence rows included by source {source} (kernel/evidence.py "
              "included_rows): {count} rows of runs {runs}")
FIELDS = ("evidence_id", "run_id", "purpose", "source_name", "query_name", "raw_table",
          "executed_at", "result_row_count", "result_hash", "raw_output_s3_key", "chain_seq",
          "chain_hash")


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, int) else str(value)


def encode(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The stored bytes: one canonical JSON object per included row (sorted keys), in the
    order given, each line newline-terminated."""
    return b"".join(
        (json.dumps({name: _text(row[name]) for name in FIELDS}, sort_keys=True,
                    separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        for row in rows)


def record(source: Source, ctx: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    """Capture what `source` includes (ctx: the SnapshotContext); returns the Captured."""
    runs = sorted({str(row["run_id"]) for row in rows})
    purposes = sorted({str(row["purpose"]) for row in rows})
    return ctx.capture(
        source, query_name=INCLUDED_QUERY,
        query_text=QUERY_TEXT.format(source=source.name, count=len(rows), runs=", ".join(runs)),
        params={"included": {"rows": len(rows), "runs": runs, "purposes": purposes}},
        ext="jsonl", raw_table=INCLUDED_TABLE, chunks=[encode(rows)],
        count_rows=lambda path: count_rows({}, path))


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """One included row per line."""
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[RawRow | Reject]:
    """One `doc` row per line (a line that is not a JSON object naming an evidence row is
    rejected, with its line number)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            locator = f"{path.name}:{number}"
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield Reject(locator=locator, reason=f"not JSON: {exc}", raw_text=text[:2000])
                continue
            if not isinstance(value, dict) or not value.get("evidence_id"):
                yield Reject(locator=locator, reason="not a JSON object with an evidence_id",
                             raw_text=text[:2000])
                continue
            yield RawRow(locator=locator, values=(JsonDoc(value, text),))
