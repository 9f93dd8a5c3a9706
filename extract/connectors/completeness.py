"""A source's completeness statement as an evidence object (kernel.sources.Completeness).

A connector that can say how whole its capture is calls `record(source, ctx, statement)`
once per source at the end of its snapshot: the statement becomes a one-row JSON object
(query name `completeness`, `raw.source_completeness`), stored, hashed and evidenced like
any raw object, loaded by this module's `load` whatever the connector (extract/loader.py),
re-derived by verify, and read by the Completeness mart. Its summary (basis, claimed,
captured, finding codes) is also in the evidence row's query_params.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from soxtrail.kernel.sources import (
    COMPLETENESS_QUERY,
    COMPLETENESS_TABLE,
    DOC_TABLE,
    Completeness,
    JsonDoc,
    RawRow,
    Reject,
    Source,
)

RAW_TABLES = {COMPLETENESS_TABLE: DOC_TABLE}
QUERY_TEXT = "completeness statement of the {connector} connector (docs/configuration.md)"


def encode(statement: Completeness) -> bytes:
    """The stored bytes: canonical JSON (sorted keys), one document, newline-terminated."""
    return (json.dumps(statement.document(), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False) + "\n").encode("utf-8")


def record(source: Source, ctx: Any, statement: Completeness) -> Any:
    """Capture `statement` for `source` (ctx: the SnapshotContext); returns the Captured."""
    summary = {"basis": statement.basis, "claimed": statement.claimed,
               "captured": statement.captured, "approximate": statement.approximate,
               "findings": sorted({f.code for f in statement.findings})}
    return ctx.capture(
        source, query_name=COMPLETENESS_QUERY,
        query_text=QUERY_TEXT.format(connector=source.connector),
        params={"completeness": summary}, ext="json", raw_table=COMPLETENESS_TABLE,
        chunks=[encode(statement)], count_rows=lambda path: count_rows({}, path))


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """One statement per object."""
    return 1


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[RawRow | Reject]:
    """The statement as one `doc` row (a statement that is not a JSON object is rejected)."""
    text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except ValueError as exc:
        yield Reject(locator=f"{path.name}:1", reason=f"not JSON: {exc}", raw_text=text[:2000])
        return
    if not isinstance(value, dict):
        yield Reject(locator=f"{path.name}:1", reason="not a JSON object", raw_text=text[:2000])
        return
    yield RawRow(locator=f"{path.name}:1", values=(JsonDoc(value, text.rstrip("\n")),))
