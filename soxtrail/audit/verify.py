"""Re-verify a run: raw objects and the raw tables re-derived from them, the evidence chain
against the signed anchor, control results, the report, the bundle, mart links."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.audit.verdict import FAILING as FAILING  # re-exported
from soxtrail.audit.verdict import Verdict as Verdict  # re-exported
from soxtrail.audit.verify_rows import check_chain as check_chain  # re-exported
from soxtrail.audit.verify_rows import check_object as check_object  # re-exported
from soxtrail.audit.verify_rows import count_lines as count_lines  # re-exported
from soxtrail.kernel import canonical, controls, evidence, runs, spark
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import LocalStore, Store, open_store

GENESIS = evidence.GENESIS
# The groups of checks; "control" also compares the stored mart rows ("mart" lines);
# "included", the earlier rows the run includes (verify_included: their link, and with
# "object" and "raw" their objects and raw rows); "attest", the sign-off (verify_attest);
# "sample", the samples drawn for re-performance (verify_sample).
KINDS = ("object", "raw", "chain", "included", "control", "bundle", "links", "attest",
         "sample")


@dataclass
class VerifyReport:
    """Every verdict of one `verify` of a run."""

    run_id: str
    quarter: str
    verdicts: list[Verdict] = field(default_factory=list)
    # an UNSIGNED bundle fails unless allowed (bundles are signed by default; `--no-sign`
    # is a deliberate choice the auditor accepts with --allow-unsigned)
    allow_unsigned: bool = False

    def failures(self) -> list[Verdict]:
        """The checks that did not pass (UNSIGNED too, unless allow_unsigned)."""
        return [v for v in self.verdicts
                if v.failed or (not self.allow_unsigned and v.status == "UNSIGNED")]

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


def evidence_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The run's evidence rows with their chain link and recomputed row text, in chain order."""
    rows = evidence.rows_with_links(conn, run_id)
    conn.commit()
    return rows


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


def _spark_digest(compute: Callable[[], canonical.Canonical]) -> canonical.Canonical | str:
    """The canonical digest of a Spark query, or the error text."""
    try:
        return compute()
    except Exception as exc:  # pyspark's errors (AnalysisException, Py4JJavaError, …)
        return " ".join(str(exc).split())[:300] or exc.__class__.__name__


def _spark_rerun(session: Any, row: dict[str, Any]) -> canonical.Canonical:
    spark.build_stages(session, evidence.stages_of(row["query_params"]))
    return spark.canonical_result(session, row["query_text"])


def run_session(conn: psycopg.Connection[Any], run: runs.Run) -> Any:
    """A Spark session over the run's warehouse (engine: spark), or None."""
    if run.config.get("engine") != "spark":
        return None
    from extract.loader import spark_raw_tables
    from soxtrail.reconcile import engine

    return engine.spark_session(run.config.get("spark") or {}, spark_raw_tables(), conn)


def check_control(conn: psycopg.Connection[Any], row: dict[str, Any],
                  session: Any = None) -> list[Verdict]:
    """Re-run the stored compiled SQL on the preserved raw data; compare with the evidence row.

    Also compares the mart's stored rows for the run with the same evidence row. Both are
    hashed in the canonical form the row recorded (`query_params.canonical`, absent = 1).
    With a Spark `session` (a run of engine spark) the SQL, compiled for Spark, re-runs
    there, on the run's Parquet raw tables; the mart rows compared are the report's copy
    in PostgreSQL.
    """
    control_id, model = _control_of(row)
    subject = f"{control_id} {model} (evidence {row['id']})"
    version = evidence.canonical_version(row["query_params"])
    verdicts = []
    if session is not None:  # the intermediate tables the SQL reads first, from their SQL
        rerun = _spark_digest(lambda: _spark_rerun(session, row))
    else:
        rerun = _digest(conn, lambda: canonical.sql_result(conn, row["query_text"],
                                                           version=version))
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
    return [Verdict(c.status, "bundle", c.path, c.detail + (
        " (its run was started with --no-sign, or before soxtrail signed by default): fails "
        "unless --allow-unsigned" if c.status == "UNSIGNED" else "")) for c in checks]


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
               public_key: Path | None = None, allow_unsigned: bool = False,
               require_signature: bool = False,
               store: Store | None = None, kinds: Collection[str] = KINDS,
               progress: Callable[[Verdict], None] | None = None) -> VerifyReport:
    """Every check of a run (or only those of `kinds`); `conn` should be read-only.

    An UNSIGNED bundle fails unless `allow_unsigned`; `require_signature` (an UNSIGNED
    bundle fails) is the default now and overrides `allow_unsigned`."""
    from soxtrail.audit import verify_anchor

    run = runs.get_run(conn, run_id)
    conn.commit()
    if run.kind == runs.CAPTURE:
        return _verify_capture(conn, run, store=store, kinds=kinds, progress=progress)
    # the run row's store only says where to find the bundle; objects are read from
    # --store or the store the signed bundle records (verify_anchor.choose_store)
    given, store = store, store or run_store(run)
    signed = verify_anchor.read_bundle(*_bundle_location(run, store, bundle))
    objects, source = verify_anchor.choose_store(given, signed, store)
    report = VerifyReport(run_id=run.id, quarter=run.quarter,
                          allow_unsigned=allow_unsigned and not require_signature)

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
    if "included" in kinds:
        from soxtrail.audit import verify_included

        add(verify_included.check_included(conn, run, objects, kinds=kinds))
    if "control" in kinds:
        reconcile = [r for r in rows if r["source_system"] == "reconcile"]
        seen = {_control_of(r)[0] for r in reconcile}
        for control_id, model in controls.EVIDENCED_MARTS.items():
            if control_id not in seen:
                add(Verdict("MISSING", "control", f"{control_id} {model}",
                            "no control evidence row for this run"))
        session = run_session(conn, run) if reconcile else None
        for row in reconcile:
            add(check_control(conn, row, session))
    if "bundle" in kinds:
        add(check_bundle_files(run, store, bundle, public_key))
        add(_lock_verdicts(run, store, bundle))
        add(_report_verdicts(conn, run, store, bundle, public_key, report, kinds))
    if "links" in kinds:
        add(check_links(conn, run.id))
    if "attest" in kinds:  # the sign-off: attestations of the run (verify_attest)
        from soxtrail.audit import verify_attest

        add(verify_attest.check_attestations(conn, run, store))
    if "sample" in kinds:  # samples drawn for re-performance (verify_sample)
        from soxtrail.audit import verify_sample

        add(verify_sample.check_samples(conn, run, store))
    return report


def _verify_capture(conn: psycopg.Connection[Any], run: runs.Run, *, store: Store | None,
                    kinds: Collection[str],
                    progress: Callable[[Verdict], None] | None) -> VerifyReport:
    """A capture (`soxtrail capture`): its objects, raw rows and chain links. It has no
    controls, report or bundle: the quarter run that includes its rows pins each one's
    link in its own evidence, which that run's bundle anchors (its `included` checks)."""
    report = VerifyReport(run_id=run.id, quarter=run.quarter)
    objects = store or run_store(run)

    def add(verdicts: list[Verdict]) -> None:
        for verdict in verdicts:
            report.verdicts.append(verdict)
            if progress is not None:
                progress(verdict)

    status = ("OK" if run.status == "completed" else "NOTE")
    add([Verdict(status, "bundle", "run status",
                 f"capture of {', '.join(run.config.get('_capture_sources') or [])}: "
                 f"{run.status}" + (f" {run.finished_at}" if run.finished_at else "")),
         Verdict("NOTE", "bundle", "capture", "a capture has no controls, report or bundle; "
                 "the quarter run that includes its rows pins and anchors them (verify that "
                 "run: its `included` lines)")])
    rows = evidence_rows(conn, run.id)
    if not rows:
        add([Verdict("MISSING", "object", run.id, "the capture has no evidence rows")])
    if "object" in kinds:
        with tempfile.TemporaryDirectory(prefix="soxtrail-verify-") as scratch:
            add([check_object(objects, row, Path(scratch)) for row in rows])
    if "raw" in kinds:
        from soxtrail.audit import verify_raw

        add(verify_raw.check_raw_tables(conn, run, rows, objects))
    if "chain" in kinds:
        add([check_chain(row) for row in rows])
    return report


def iter_lines(report: VerifyReport) -> Iterator[str]:
    """The report as text lines (one per check, then the summary)."""
    for verdict in report.verdicts:
        yield verdict.line()
    yield report.summary()
