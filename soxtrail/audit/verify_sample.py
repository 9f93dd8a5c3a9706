"""Check a run's recorded samples (`verify` kind `sample`): the samples' chain, each row
against its signed document and the file in the store, the signature under the key it
records, and the sample itself recomputed: the population hash and count from the run's
mart rows now, and the drawn items from the seed and the method."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from soxtrail.audit import sample, verify_attest
from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import runs, samples, sampling
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import Store

KIND = "sample"
NOUN = "sample"


def _document(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        doc = json.loads(row["document"])
    except ValueError as exc:
        return None, f"the document is not JSON ({exc})"
    return (doc, None) if isinstance(doc, dict) else (None, "the document is not a JSON object")


def _signature(row: dict[str, Any], doc: dict[str, Any], run: runs.Run,
               subject: str) -> list[Verdict]:
    key_doc = doc.get("signer_key")
    if not isinstance(key_doc, dict):
        if row.get("signature"):
            return [Verdict("FAIL", KIND, subject, "has a signature but records no key")]
        return [Verdict("NOTE", KIND, subject, "unsigned: no signing key was found when it "
                        "was drawn; the recomputation below is what proves it")]
    fp, failed = verify_attest.recorded_key_signature(row, key_doc, kind=KIND, subject=subject,
                                                      whose="the recorded key")
    if failed is not None:
        return [failed]
    bundle_key = sample.run_key_fingerprint(run)
    whose = ("the run's bundle key" if fp == bundle_key
             else f"not the run's bundle key ({bundle_key or 'unsigned bundle'}): the "
                  f"tester's key ({key_doc.get('source')})")
    return [Verdict("OK", KIND, subject, f"Ed25519 signature, key {fp}, {whose}")]


def _recompute(conn: psycopg.Connection[Any], run: runs.Run, doc: dict[str, Any],
               subject: str) -> list[Verdict]:
    if doc.get("method") != sampling.METHOD:
        return [Verdict("FAIL", KIND, subject, f"method {doc.get('method')!r} is not one this "
                        f"version knows ({sampling.METHOD})")]
    try:
        _, model = sample.control_model(str(doc.get("control_id")))
        items = sample.population(conn, run.id, model, doc.get("stratify"))
        conn.commit()
    except SoxtrailError as exc:
        conn.rollback()
        return [Verdict("MISSING", KIND, subject, f"the population cannot be read: {exc}")]
    keys = [key for key, _ in items]
    verdicts = []
    digest = sampling.population_hash(keys)
    if (digest, len(keys)) != (doc.get("population_hash"), doc.get("population_count")):
        verdicts.append(Verdict("MISMATCH", KIND, subject,
                                f"population: the run's {model} rows now hash to {digest} "
                                f"({len(keys)} items); the sample records "
                                f"{doc.get('population_hash')} ({doc.get('population_count')})"))
    else:
        verdicts.append(Verdict("OK", KIND, subject, f"population: {len(keys)} items of "
                                f"{model}, hash {digest}"))
    try:
        redrawn = sampling.draw(items, seed=int(doc.get("seed", -1)),
                                size=int(doc.get("size_requested", 0)),
                                stratify=doc.get("stratify"))
    except (SoxtrailError, TypeError, ValueError) as exc:
        return [*verdicts, Verdict("FAIL", KIND, subject, f"cannot redraw the sample: {exc}")]
    recorded = [(i.get("item_key"), i.get("rank_hash"), i.get("stratum"))
                for i in doc.get("items") or [] if isinstance(i, dict)]
    again = [(d.item_key, d.rank_hash, d.stratum) for d in redrawn.items]
    if recorded != again:
        missing = sorted({r[0] for r in again} - {r[0] for r in recorded})
        extra = sorted({str(r[0]) for r in recorded} - {r[0] for r in again})
        verdicts.append(Verdict("MISMATCH", KIND, subject,
                                "the drawn items are not what the seed and method give: "
                                f"{len(missing)} not recorded ({', '.join(missing[:3])}), "
                                f"{len(extra)} recorded but not drawn "
                                f"({', '.join(extra[:3])})" if missing or extra else
                                "the drawn items are not what the seed and method give "
                                "(order, rank hash or stratum)"))
    else:
        verdicts.append(Verdict("OK", KIND, subject,
                                f"redrawn: seed {redrawn.seed}, size {redrawn.size_requested} "
                                f"-> the same {redrawn.size_drawn} items"))
    return verdicts


def check_samples(conn: psycopg.Connection[Any], run: runs.Run, store: Store) -> list[Verdict]:
    """Every check of the run's recorded samples (none when nobody drew one)."""
    table = conn.execute("select to_regclass(%s)", (samples.TABLE,)).fetchone()
    if table is None or table[0] is None:  # a schema from before samples: none recorded
        conn.commit()
        return []
    every = samples.list_samples(conn)
    conn.commit()
    rows = [r for r in every if str(r["run_id"]) == run.id]
    if not rows:
        return []
    verdicts = verify_attest.check_chain(every, run.id, kind=KIND, noun=NOUN)
    for row in rows:
        subject = f"{row['ordinal']}-{row['control_id']} ({row['id']})"
        doc, problem = _document(row)
        if doc is None:
            verdicts.append(Verdict("FAIL", KIND, subject, str(problem)))
            continue
        differences = samples.row_differences(row, doc)
        if differences:
            verdicts.append(Verdict("MISMATCH", KIND, subject,
                                    "the row differs from its signed document: "
                                    + "; ".join(differences)))
        verdicts += _signature(row, doc, run, subject)
        verdicts += verify_attest.check_file(store, row, subject, kind=KIND, noun=NOUN)
        verdicts += _recompute(conn, run, doc, subject)
    return verdicts
