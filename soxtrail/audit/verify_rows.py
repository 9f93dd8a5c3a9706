"""One evidence row's own checks: its raw object (SHA-256 and row count, re-read from the
store) and its chain link (recomputed from the row as it stands). Used for a run's rows
(verify.py) and for the earlier rows a run includes (verify_included.py)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import evidence
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import CHUNK, LocalStore, Store

GENESIS = evidence.GENESIS


def _sha256_stream(handle: Any) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def count_lines(path: Path) -> int:
    """Rows of a canonical result: lines joined by `\\n` without a trailing newline."""
    newlines = 0
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            newlines += chunk.count(b"\n")
            size += len(chunk)
    return newlines + 1 if size else 0


def _count_rows(row: dict[str, Any], path: Path) -> int:
    if row["source_system"] == "reconcile":
        return count_lines(path)
    from extract.connectors.registry import object_module

    params = row["query_params"] or {}
    module = object_module(params)
    return int(module.count_rows(params, path))



def _subject(row: dict[str, Any]) -> str:
    return f"{row['id']} {row['raw_output_s3_key']}"


def check_object(store: Store, row: dict[str, Any], scratch: Path) -> Verdict:
    """Fetch the evidence row's raw object; compare its SHA-256 and row count."""
    key = row["raw_output_s3_key"]
    subject = _subject(row)
    try:
        if not store.exists(key):
            return Verdict("MISSING", "object", subject, f"not in the store: {store.location(key)}")
        path = store.fetch(key, scratch / uuid.uuid4().hex)
    except SoxtrailError as exc:
        return Verdict("MISSING", "object", subject, str(exc))
    try:
        with path.open("rb") as handle:
            digest, size = _sha256_stream(handle)
        if digest != row["result_hash"]:
            return Verdict("MISMATCH", "object", subject,
                           f"sha256 recorded {row['result_hash']}, object {digest}")
        try:
            rows = _count_rows(row, path)
        except Exception as exc:  # a connector that cannot read its own object is a finding
            return Verdict("FAIL", "object", subject,
                           f"cannot count rows: {exc.__class__.__name__}: {exc}")
        if rows != row["result_row_count"]:
            return Verdict("MISMATCH", "object", subject,
                           f"rows recorded {row['result_row_count']}, object {rows}")
        return Verdict("OK", "object", subject, f"sha256 {digest[:16]}… {rows} rows {size} bytes")
    finally:
        if not isinstance(store, LocalStore):
            path.unlink(missing_ok=True)


def check_chain(row: dict[str, Any]) -> Verdict:
    """Recompute the row's chain link from the row as it stands and the previous link."""
    subject = str(row["id"])
    if row["seq"] is None:
        return Verdict("MISSING", "chain", subject, "no link in soxtrail.sox_evidence_chain")
    expected_prev = row["previous_link"] or GENESIS
    if row["prev_hash"] != expected_prev:
        return Verdict("MISMATCH", "chain", subject,
                       f"link {row['seq']}: prev_hash {row['prev_hash'][:16]}… but the previous "
                       f"link is {expected_prev[:16]}… (a link was changed or removed)")
    recomputed = evidence.chain_link(row["prev_hash"], row["row_text"])
    if recomputed != row["chain_hash"]:
        return Verdict("MISMATCH", "chain", subject,
                       f"link {row['seq']}: chain_hash {row['chain_hash'][:16]}…, the row as it "
                       f"stands hashes to {recomputed[:16]}… (the evidence row was changed)")
    return Verdict("OK", "chain", subject, f"link {row['seq']} {recomputed[:16]}…")
