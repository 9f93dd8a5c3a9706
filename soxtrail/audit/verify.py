"""Re-verify a run: raw objects and the raw tables re-derived from them, the evidence chain
against the signed anchor, control results, the report, the bundle, mart links."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.audit.verdict import FAILING as FAILING  # re-exported
from soxtrail.audit.verdict import Verdict as Verdict  # re-exported
from soxtrail.kernel import canonical, controls, evidence, runs
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import CHUNK, LocalStore, Store, open_store

GENESIS = evidence.GENESIS
# The groups of checks; "control" also compares the stored mart rows ("mart" lines).
KINDS = ("object", "raw", "chain", "control", "bundle", "links")


@dataclass
class VerifyReport:
    """Every verdict of one `verify` of a run."""

    run_id: str
    quarter: str
    verdicts: list[Verdict] = field(default_factory=list)
    require_signature: bool = False

    def failures(self) -> list[Verdict]:
        """The checks that did not pass."""
        return [v for v in self.verdicts
                if v.failed or (self.require_signature and v.status == "UNSIGNED")]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.failures()

    def counts(self) -> dict[str, int]:
        """How many verdicts of each status."""
        result: dict[str, int] = {}
        for verdict in self.verdicts:
            result[verdict.status] = result.get(verdict.status, 0) + 1
        return result

    def summary(self) -> str:
        """One closing line."""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        word = "PASSED" if self.passed else "FAILED"
        return (f"verify {self.run_id} ({self.quarter}): {word} — "
                f"{len(self.verdicts)} checks: {counts}")


def connect_read_only(db: Database) -> psycopg.Connection[Any]:
    """A connection whose every transaction is READ ONLY (no bootstrap, nothing written)."""
    conn = db.connect()
    conn.read_only = True  # psycopg opens each transaction with BEGIN READ ONLY
    conn.execute("set session characteristics as transaction read only")
    conn.execute("set time zone 'UTC'")
    conn.commit()
    return conn


def run_store(run: runs.Run) -> Store:
    """The evidence store the run wrote to (`sox_runs.config->>'_store'`)."""
    return open_store(run.config.get("_store"), home() / "store")


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



def evidence_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The run's evidence rows with their chain link and recomputed row text, in chain order."""
    rows = evidence.rows_with_links(conn, run_id)
    conn.commit()
    return rows


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


def _control_of(row: dict[str, Any]) -> tuple[str, str]:
    params = row["query_params"] or {}
    model = str(params.get(evidence.MODEL_KEY)
                or str(row["query_name"]).split("@")[0].rsplit(".", 1)[-1])
    control_id = str(params.get(evidence.CONTROL_ID_KEY) or next(
        (c for c, m in controls.EVIDENCED_MARTS.items() if m == model), model))
    return control_id, model


def _digest(conn: psycopg.Connection[Any],
            compute: Callable[[], canonical.Canonical]) -> canonical.Canonical | str:
    """The canonical digest, or the error text (the transaction is rolled back)."""
    try:
        result = compute()
        conn.commit()
        return result
    except (psycopg.Error, SoxtrailError) as exc:
        conn.rollback()
        return " ".join(str(exc).split())[:300] or exc.__class__.__name__


def check_control(conn: psycopg.Connection[Any], row: dict[str, Any]) -> list[Verdict]:
    """Re-run the stored compiled SQL on the preserved raw data; compare with the evidence row.

    Also compares the mart's stored rows for the run with the same evidence row. Both are
    hashed in the canonical form the row recorded (`query_params.canonical`, absent = 1).
    """
    control_id, model = _control_of(row)
    subject = f"{control_id} {model} (evidence {row['id']})"
    version = evidence.canonical_version(row["query_params"])
    verdicts = []
    rerun = _digest(conn, lambda: canonical.sql_result(conn, row["query_text"], version=version))
    if isinstance(rerun, str):
        verdicts.append(Verdict("FAIL", "control", subject,
                                f"the stored compiled SQL does not run: {rerun}"))
    elif (rerun.sha256, rerun.row_count) != (row["result_hash"], row["result_row_count"]):
        verdicts.append(Verdict(
            "MISMATCH", "control", subject,
            f"re-run of the compiled SQL gives {rerun.row_count} rows sha256 {rerun.sha256}; "
            f"evidence says {row['result_row_count']} rows sha256 {row['result_hash']}"))
    else:
        verdicts.append(Verdict("OK", "control", subject,
                                f"re-run: {rerun.row_count} rows sha256 {rerun.sha256[:16]}…"))
    stored = _digest(conn, lambda: canonical.mart_result(
        conn, controls.MARTS_SCHEMA, model, str(row["run_id"]), version=version))
    mart = f"{controls.MARTS_SCHEMA}.{model}"
    if isinstance(stored, str):
        verdicts.append(Verdict("FAIL", "mart", f"{control_id} {mart}", stored))
    elif (stored.sha256, stored.row_count) != (row["result_hash"], row["result_row_count"]):
        verdicts.append(Verdict(
            "MISMATCH", "mart", f"{control_id} {mart}",
            f"the run's mart rows give {stored.row_count} rows sha256 {stored.sha256}; "
            f"evidence says {row['result_row_count']} rows sha256 {row['result_hash']}"))
    else:
        verdicts.append(Verdict("OK", "mart", f"{control_id} {mart}",
                                f"{stored.row_count} rows match the control evidence"))
    return verdicts


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> set[str]:
    rows = conn.execute("select column_name from information_schema.columns"
                        " where table_schema = %s and table_name = %s", (schema, table)).fetchall()
    return {r[0] for r in rows}


def check_links(conn: psycopg.Connection[Any], run_id: str) -> list[Verdict]:
    """Every mart row's evidence ids exist in sox_evidence for the same run."""
    verdicts = []
    models = list(controls.EVIDENCED_MARTS.values())
    for model in models:
        subject = f"{controls.MARTS_SCHEMA}.{model}"
        columns = _columns(conn, controls.MARTS_SCHEMA, model)
        if not columns:
            conn.commit()
            verdicts.append(Verdict("MISSING", "links", subject, "no such relation"))
            continue
        refs = [sql.SQL("{}::uuid").format(sql.Identifier(c))
                for c in ("evidence_id", "control_evidence_id") if c in columns]
        if "supporting_evidence_ids" in columns:
            refs.append(sql.SQL("unnest({}::uuid[])").format(
                sql.Identifier("supporting_evidence_ids")))
        key = sql.Identifier("item_key") if "item_key" in columns else sql.Identifier("control_id")
        union = sql.SQL(" union all ").join(
            sql.SQL("select {key}::text as item_key, {ref} as ref from {table}"
                    " where run_id = %(run)s").format(
                key=key, ref=ref, table=sql.Identifier(controls.MARTS_SCHEMA, model))
            for ref in refs)
        try:
            total, dangling, examples, nulls = evidence.reference_counts(conn, union, run_id)
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            verdicts.append(Verdict("FAIL", "links", subject, " ".join(str(exc).split())[:300]))
            continue
        if dangling:
            verdicts.append(Verdict("MISMATCH", "links", subject,
                                    f"{dangling} of {total} evidence references not in this run's "
                                    f"evidence, e.g. {'; '.join(examples or [])}"))
        else:
            note = f" ({nulls} empty)" if nulls else ""
            verdicts.append(Verdict("OK", "links", subject,
                                    f"{total} evidence references resolve{note}"))
    return verdicts


def _bundle_location(run: runs.Run, store: Store, bundle: str | None) -> tuple[Store, str]:
    if not bundle:
        return store, f"{run.quarter}/{run.id}/bundle"
    if bundle.startswith("s3://"):
        return open_store(bundle, home() / "store"), ""
    return LocalStore(Path(bundle)), ""


def check_bundle_files(run: runs.Run, store: Store, bundle: str | None,
                       public_key: Path | None) -> list[Verdict]:
    """The bundle's manifest entries and signature (render.bundle.check_bundle)."""
    from render.bundle import check_bundle

    target, prefix = _bundle_location(run, store, bundle)
    try:
        checks = check_bundle(target, prefix, public_key=public_key)
    except SoxtrailError as exc:
        return [Verdict("FAIL", "bundle", target.location(prefix or "."), str(exc))]
    return [Verdict(c.status, "bundle", c.path, c.detail) for c in checks]


def _lock_verdicts(run: runs.Run, store: Store, bundle: str | None) -> list[Verdict]:
    """The Object Lock of each bundle version's anchor, manifest and signature (verify_lock)."""
    from soxtrail.audit import verify_lock, verify_report

    target, prefix = _bundle_location(run, store, bundle)
    prefixes = [prefix] if bundle else verify_report.version_prefixes(store, run.quarter, run.id)
    return verify_lock.check_locks(target, prefixes)


def _report_verdicts(conn: psycopg.Connection[Any], run: runs.Run, store: Store,
                     bundle: str | None, public_key: Path | None, report: VerifyReport,
                     kinds: Collection[str]) -> list[Verdict]:
    """Later bundle versions, and the report of each version re-rendered (verify_report)."""
    from soxtrail.audit import verify_report

    if bundle:
        target, prefix = _bundle_location(run, store, bundle)
        bundles = [("bundle", target, prefix)]
        verdicts = []
    else:
        prefixes = verify_report.version_prefixes(store, run.quarter, run.id)
        bundles = [(prefix.rsplit("/", 1)[-1], store, prefix) for prefix in prefixes]
        verdicts = verify_report.later_versions(store, run.quarter, run.id, public_key)
    # what the report is rendered from (marts, evidence rows) and did not verify: no
    # re-render from it proves anything; those lines already fail the run
    unverified = [f"{v.kind} {v.subject}" for v in report.verdicts if v.failed and (
        v.kind in ("mart", "chain") or (v.kind == "control" and v.status == "MISSING"))]
    return (verdicts + verify_report.check_run_files(conn, run, bundles)
            + verify_report.check_report(conn, run, bundles, unverified=unverified))


def _status_verdict(run: runs.Run, bundled: bool) -> Verdict:
    """A run with a bundle is completed: the bundle is its last phase, and status only moves
    forward. A bundled run that is not completed had its row set back (or was interrupted
    between writing its bundle and completing: resume it, then verify)."""
    if run.status == "completed":
        return Verdict("OK", "bundle", "run status", f"completed {run.finished_at}")
    if not bundled:
        return Verdict("NOTE", "bundle", "run status",
                       f"{run.status} (phase {run.phase_reached or '-'}): no bundle yet, so "
                       "no report to verify; what it recorded so far is checked below")
    return Verdict("FAIL", "bundle", "run status",
                   f"the run has a bundle but the database says {run.status}, phase "
                   f"{run.phase_reached or '-'}: a run's status only moves forward and the "
                   "bundle is its last phase, so its row was set back (or the run stopped "
                   "between its bundle and its completion: resume it, then verify)")


def verify_run(conn: psycopg.Connection[Any], run_id: str, *, bundle: str | None = None,
               public_key: Path | None = None, require_signature: bool = False,
               store: Store | None = None, kinds: Collection[str] = KINDS,
               progress: Callable[[Verdict], None] | None = None) -> VerifyReport:
    """Every check of a run (or only those of `kinds`); `conn` should be read-only."""
    from soxtrail.audit import verify_anchor

    run = runs.get_run(conn, run_id)
    conn.commit()
    # the run row's store only says where to find the bundle; objects are read from
    # --store or the store the signed bundle records (verify_anchor.choose_store)
    given, store = store, store or run_store(run)
    signed = verify_anchor.read_bundle(*_bundle_location(run, store, bundle))
    objects, source = verify_anchor.choose_store(given, signed, store)
    report = VerifyReport(run_id=run.id, quarter=run.quarter, require_signature=require_signature)

    def add(verdicts: Verdict | list[Verdict]) -> None:
        for verdict in verdicts if isinstance(verdicts, list) else [verdicts]:
            report.verdicts.append(verdict)
            if progress is not None:
                progress(verdict)

    refused = verify_anchor.binding(run, signed)
    if refused is not None:
        add(refused)
        if refused.failed and signed.run_id is not None:  # another run's bundle: refused
            return report
    if "bundle" in kinds:
        add(verify_anchor.context_verdicts(conn, signed, objects, source, store, public_key))
        add(_status_verdict(run, signed.readable))

    rows = evidence_rows(conn, run.id)
    if not rows:
        add(Verdict("MISSING", "object", run.id, "the run has no evidence rows"))
    if "object" in kinds:
        with tempfile.TemporaryDirectory(prefix="soxtrail-verify-") as scratch:
            for row in rows:
                add(check_object(objects, row, Path(scratch)))
    if "raw" in kinds:  # raw tables re-derived from the objects with the loader's code
        from soxtrail.audit import verify_raw

        # a run with a bundle got past load, whatever its (mutable) row says
        add(verify_raw.check_raw_tables(conn, run, rows, objects, bundled=signed.readable))
    if "chain" in kinds:
        anchored = verify_anchor.AnchorCheck(signed)
        for row in rows:
            add(anchored.row(check_chain(row), row))
        add(anchored.run(conn, rows))
    if "control" in kinds:
        reconcile = [r for r in rows if r["source_system"] == "reconcile"]
        seen = {_control_of(r)[0] for r in reconcile}
        for control_id, model in controls.EVIDENCED_MARTS.items():
            if control_id not in seen:
                add(Verdict("MISSING", "control", f"{control_id} {model}",
                            "no control evidence row for this run"))
        for row in reconcile:
            add(check_control(conn, row))
    if "bundle" in kinds:
        add(check_bundle_files(run, store, bundle, public_key))
        add(_lock_verdicts(run, store, bundle))
        add(_report_verdicts(conn, run, store, bundle, public_key, report, kinds))
    if "links" in kinds:
        add(check_links(conn, run.id))
    return report


def iter_lines(report: VerifyReport) -> Iterator[str]:
    """The report as text lines (one per check, then the summary)."""
    for verdict in report.verdicts:
        yield verdict.line()
    yield report.summary()
