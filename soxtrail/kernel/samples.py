"""Recorded samples (`soxtrail sample`): the signed sample document, its row of
`soxtrail.sox_samples` and its file beside the bundle.

A sample request is made after the run, so it is never part of the run's record (a
completed run's evidence and bundle do not change): the sample document (`document_bytes`,
the method, seed, population hash and count, sizes and the drawn items) is kept twice, as
a row of `soxtrail.sox_samples` (append-only, hash-chained by the owner's trigger,
platform.sql) and as a file beside the bundle (`<quarter>/<run>/samples/<n>-<control>.json`
and its `.sig`), signed with the run's signing key or the tester's. That row is the
sample's evidence (docs/auditor-guide.md, "Drawing a sample for re-performance").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from soxtrail.kernel import attestations
from soxtrail.kernel.sampling import Sample
from soxtrail.kernel.store import check_key, safe_name

FORMAT = 1
KIND = "soxtrail-sample"
GENESIS = attestations.GENESIS
SIGNATURE_SUFFIX = attestations.SIGNATURE_SUFFIX
TABLE = "soxtrail.sox_samples"
# the document's exact bytes and chain links are the attestations' (one home)
document_bytes = attestations.document_bytes
chain_link = attestations.chain_link


def document(*, sample_id: str, run_id: str, quarter: str, control_id: str, model: str,
             sample: Sample, requested_by: str, requested_at: datetime,
             signer_key: Mapping[str, Any] | None, run_key_fingerprint: str | None,
             previous: str) -> dict[str, Any]:
    """The sample document that is signed, stored and chained."""
    return {
        "format": FORMAT,
        "kind": KIND,
        "id": sample_id,
        "run_id": run_id,
        "quarter": quarter,
        "control_id": control_id,
        "population_source": f"marts.{model} where run_id = '{run_id}'",
        "method": sample.method,
        "seed": sample.seed,
        "size_requested": sample.size_requested,
        "size_drawn": sample.size_drawn,
        "all_items": sample.all_items,
        "stratify": sample.stratify,
        "strata": sample.strata,
        "population_count": sample.population_count,
        "population_hash": sample.population_hash,
        "items": [{"rank": d.rank, "item_key": d.item_key, "rank_hash": d.rank_hash,
                   "stratum": d.stratum} for d in sample.items],
        "requested_by": requested_by,
        "requested_at": attestations.utc_text(requested_at),
        "signer_key": dict(signer_key) if signer_key is not None else None,
        "run_key_fingerprint": run_key_fingerprint,
        "previous": previous,
    }


def store_key(quarter: str, run_id: str, ordinal: int, control_id: str) -> str:
    """`<quarter>/<run>/samples/<n>-<control>.json`."""
    return check_key(f"{quarter}/{run_id}/samples/{ordinal}-{safe_name(control_id)}.json")


def list_samples(conn: psycopg.Connection[Any], run_id: str | None = None,
                 ) -> list[dict[str, Any]]:
    """Sample rows in chain order (of one run, or all)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if run_id is None:
            cur.execute("select * from soxtrail.sox_samples order by seq")
        else:
            cur.execute("select * from soxtrail.sox_samples where run_id = %s order by seq",
                        (run_id,))
        return list(cur.fetchall())


def begin_chain(conn: psycopg.Connection[Any]) -> str:
    """Inside the insert's transaction: lock the chain, return the latest chain hash (the
    new document's `previous`, which the trigger checks)."""
    conn.execute("select pg_advisory_xact_lock(hashtext('soxtrail.sox_samples'))")
    row = conn.execute("select chain_hash from soxtrail.sox_samples"
                       " order by seq desc limit 1").fetchone()
    return str(row[0]) if row else GENESIS


def next_ordinal(conn: psycopg.Connection[Any], run_id: str) -> int:
    """The run's next sample number (1, 2, …), under begin_chain's lock."""
    row = conn.execute("select count(*) from soxtrail.sox_samples where run_id = %s",
                       (run_id,)).fetchone()
    return int(row[0] if row else 0) + 1


def insert(conn: psycopg.Connection[Any], doc: Mapping[str, Any], signature: bytes | None,
           key: str, ordinal: int) -> dict[str, Any]:
    """Insert the sample row (the trigger chains it and checks it against `doc`)."""
    text = document_bytes(doc).decode("utf-8")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "insert into soxtrail.sox_samples (id, run_id, quarter, ordinal, control_id,"
            " method, seed, size_requested, size_drawn, stratify, population_count,"
            " population_hash, drawn_items, requested_by, requested_at, key_fingerprint,"
            " document, signature, store_key)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s,"
            " %s, %s, %s) returning *",
            (doc["id"], doc["run_id"], doc["quarter"], ordinal, doc["control_id"],
             doc["method"], doc["seed"], doc["size_requested"], doc["size_drawn"],
             doc["stratify"], doc["population_count"], doc["population_hash"],
             json.dumps(drawn_keys(doc)), doc["requested_by"], doc["requested_at"],
             (doc.get("signer_key") or {}).get("fingerprint"), text,
             signature.hex() if signature is not None else None, key))
        row = cur.fetchone()
    assert row is not None
    return dict(row)


def drawn_keys(doc: Mapping[str, Any]) -> list[str]:
    """The document's drawn item keys, in rank order."""
    return [str(item.get("item_key")) for item in doc.get("items") or []
            if isinstance(item, Mapping)]


# The row columns each document field must equal (verify; the insert trigger checks some).
ROW_FIELDS = ("id", "run_id", "quarter", "control_id", "method", "seed", "size_requested",
              "size_drawn", "stratify", "population_count", "population_hash", "requested_by",
              "requested_at")


def row_differences(row: Mapping[str, Any], doc: Mapping[str, Any]) -> list[str]:
    """Which of the row's columns differ from its signed document."""
    found = []
    for name in ROW_FIELDS:
        value = row.get(name)
        now = attestations.utc_text(value) if isinstance(value, datetime) else value
        now = str(now) if name in ("id", "run_id") else now
        if now != doc.get(name):
            found.append(f"{name} (row {now!r}, document {doc.get(name)!r})")
    if row.get("drawn_items") != drawn_keys(doc):
        found.append("drawn_items (the row's item keys are not the document's)")
    fp = (doc.get("signer_key") or {}).get("fingerprint")
    if row.get("key_fingerprint") != fp:
        found.append(f"key_fingerprint (row {row.get('key_fingerprint')!r}, document {fp!r})")
    if row.get("prev_hash") != doc.get("previous"):
        found.append(f"prev_hash (row {row.get('prev_hash')}, document {doc.get('previous')})")
    return found
