"""The five phases of a run: snapshot → load → reconcile → render → bundle."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import (
    CancelledError,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from extract.connectors import inclusion
from extract.connectors.postgres_catalog import SETTINGS_TABLE, query_files
from extract.connectors.registry import SPECS, connector_module
from extract.loader import LoadReport, die_with_parent, load_run, spark_raw_tables
from extract.snapshot import SnapshotRun
from soxtrail.kernel import canonical, controls, evidence, runs, secrets, spark
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import PipelineError, SourceError, SoxtrailError, StoreError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Source
from soxtrail.kernel.store import HASHING, sha256_file
from soxtrail.pipeline.context import (
    SIGNING_KEY,
    SNAPSHOT_CONCURRENCY,
    SNAPSHOT_COUNT_WORKERS,
    Pipeline,
    capture_order,
    cpu_seconds,
    run_sources,
)
from soxtrail.reconcile import dbt, engine


def phase_snapshot(p: Pipeline) -> dict[str, Any]:
    """Capture every source; commit all evidence rows at once, only if every source succeeded."""
    done_objects, done_rows = evidence.snapshot_totals(p.conn, p.run.id)
    p.conn.commit()
    if done_objects:
        # evidence rows are committed all at once: if any exist, the snapshot is complete
        return {"objects": done_objects, "rows": done_rows, "already_done": True}
    sources = capture_order(run_sources(p.config, p.run))
    included = included_by_source(p, sources)
    spool_root = p.workdir / "spool"

    def one(source: Source) -> list[evidence.EvidenceRow]:
        started = time.monotonic()
        snap = SnapshotRun(run_id=p.run.id, quarter=p.quarter, executed_by=p.run.triggered_by,
                           store=p.store, spool_dir=spool_root / source.name,
                           clusters=p.run.clusters, counting=counting,
                           policy=p.config.policy)
        try:
            connector_module(source.connector).snapshot(source, snap)
            if included.get(source.name):
                inclusion.record(source, snap, included[source.name])
        except StoreError as exc:  # the store, not the source, is down: say so
            raise StoreError(f"evidence store failed while capturing source {source.name!r}: "
                             f"{secrets.redact(str(exc))}") from exc
        except SoxtrailError as exc:
            raise SourceError(f"source {source.name!r} ({source.connector}) failed: "
                              f"{secrets.redact(str(exc))}") from exc
        except Exception as exc:  # a connector bug or an unexpected source answer
            raise SourceError(f"source {source.name!r} ({source.connector}) failed: "
                              f"{exc.__class__.__name__}: {secrets.redact(str(exc))}") from exc
        finally:
            shutil.rmtree(spool_root / source.name, ignore_errors=True)
        for record in snap.records:
            p.events.emit("query", phase="snapshot", source=source.name,
                          query_name=record.query_name, executed_at=record.executed_at,
                          executed_by=record.executed_by, rows=record.result_row_count,
                          sha256=record.result_hash, key=record.raw_output_s3_key)
        p.events.emit("source_done", source=source.name, objects=len(snap.records),
                      rows=sum(r.result_row_count for r in snap.records),
                      seconds=round(time.monotonic() - started, 3))
        return snap.records

    records: list[evidence.EvidenceRow] = []
    errors: list[BaseException] = []
    cpu_started, hashing_started = cpu_seconds(), HASHING.seconds
    # objects counted by parsing them (JSON pages, CloudTrail files, gzip logs) are counted
    # in worker processes (started on first use), next to the capture threads
    counting = ProcessPoolExecutor(max_workers=SNAPSHOT_COUNT_WORKERS,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
    with counting, ThreadPoolExecutor(max_workers=SNAPSHOT_CONCURRENCY) as pool:
        futures = [pool.submit(one, s) for s in sources]
        for future in as_completed(futures):
            try:
                records.extend(future.result())
            except CancelledError:
                continue
            except BaseException as exc:
                errors.append(exc)
                # nothing is committed once one source failed: start no other source
                for pending in futures:
                    pending.cancel()
    if errors:
        raise errors[0]
    evidence.insert_rows(p.conn, sorted(records, key=lambda r: (r.source_system, r.query_name)))
    p.conn.commit()
    # what hashing cost: CPU seconds in SHA-256 against the CPU seconds of the whole capture
    # (this process and its counting workers)
    cpu = cpu_seconds() - cpu_started
    hashing = HASHING.seconds - hashing_started
    return {"sources": len(sources), "objects": len(records),
            "rows": sum(r.result_row_count for r in records),
            "cpu_seconds": round(cpu, 3), "hashing_cpu_seconds": round(hashing, 3),
            "hashing_share": round(hashing / cpu, 4) if cpu > 0 else None}


def included_by_source(p: Pipeline, sources: list[Source]) -> dict[str, list[dict[str, Any]]]:
    """The earlier evidence rows a quarter run includes, by the name of its source that
    includes them (kernel/evidence.py `included_rows`): the quarter's captures of each
    source that forgets, the settings captures of each catalog source's cluster. A capture
    includes nothing."""
    if p.run.kind == runs.CAPTURE:
        return {}
    forgetting = [s.name for s in sources if SPECS[s.connector].forgets_after_days is not None]
    catalogs = [(s.name, str(s.get("cluster"))) for s in sources
                if s.connector == "postgres_catalog" and s.get("cluster")]
    rows = evidence.included_rows(p.conn, p.run.id, forgetting=forgetting, catalogs=catalogs,
                                  settings_table=SETTINGS_TABLE, capture_kind=runs.CAPTURE,
                                  kind_key=runs.KIND_KEY)
    p.conn.commit()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["included_by"]), []).append(row)
    return grouped


# ---------------------------------------------------------------- phase 2


def phase_load(p: Pipeline) -> dict[str, Any]:
    """COPY every snapshot object into its raw table; check read = loaded + rejected + skipped."""
    sources = run_sources(p.config, p.run, catalogs=False)
    done = [0]

    def progress(name: str, c: Any) -> None:
        p.events.emit("loaded", object=name, read=c.read, loaded=c.loaded,
                      rejected=c.rejected, skipped=c.skipped)
        done[0] += 1
        p.checkpoint("load", f"object{done[0]}")

    pending = evidence.count_not_loaded(p.conn, p.run.id)
    p.conn.commit()
    p.events.emit("load_plan", objects=int(pending))
    spark = p.config.engine == "spark"
    report: LoadReport = load_run(
        p.conn, run_id=p.run.id, store=p.store, spool_dir=p.workdir / "spool", sources=sources,
        progress=progress, dsn=p.db.dsn,
        warehouse=engine.warehouse(p.config.spark) if spark else None)
    missing = evidence.count_not_loaded(p.conn, p.run.id)
    if missing:
        raise PipelineError(f"load: {missing} snapshot objects were not loaded")
    totals = p.conn.execute(
        "select coalesce(sum(records_read),0), coalesce(sum(records_loaded),0),"
        " coalesce(sum(records_rejected),0), coalesce(sum(records_skipped),0)"
        " from soxtrail.sox_load_stats where run_id = %s", (p.run.id,)).fetchone()
    p.conn.commit()
    read, loaded, rejected, skipped = (int(v) for v in totals)  # type: ignore[union-attr]
    if read != loaded + rejected + skipped:
        raise PipelineError(f"load: rows read {read} != loaded {loaded} + rejected {rejected}"
                            f" + skipped {skipped}")
    if not spark:  # Spark reads Parquet footers' statistics: nothing to analyze
        analyze_raw_tables(p.db)
    return {"read": read, "loaded": loaded, "rejected": rejected, "skipped": skipped,
            "objects": report.objects_loaded + report.objects_already_loaded}


RAW_TABLES_ANALYZED = ("raw.pgaudit_csvlog", "raw.pgaudit_jsonlog", "raw.pgaudit_stderr",
                       "raw.iam_events", "raw.tickets", "raw.backups",
                       "raw.catalog_memberships", "raw.catalog_roles")
# ANALYZE samples 300 rows per point of the statistics target: at the default (100), 30,000
# rows scattered over tables of millions, ~1 s per big table just after a load. 30 (9,000
# rows) still gives the planner each run's share of the rows, which is what the marts'
# plans need; results never depend on a plan.
ANALYZE_STATISTICS_TARGET = 30


def analyze_raw_tables(db: Database, workers: int = 2) -> None:
    """ANALYZE the raw tables after a load (the new run's rows), on `workers` connections."""

    def analyze(table: str) -> None:
        with db.connect(autocommit=True) as conn:
            conn.execute(f"set default_statistics_target = {ANALYZE_STATISTICS_TARGET}")
            conn.execute(f"analyze {table}")  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(analyze, table) for table in RAW_TABLES_ANALYZED]:
            future.result()


# ---------------------------------------------------------------- phase 3


def quarter_vars(quarter: Quarter) -> dict[str, Any]:
    """The dbt vars of a quarter: its label, its bounds as UTC instants and the reporting
    zone whose local days BK-01 counts (a name the Quarter validated as an IANA zone)."""
    return {
        "quarter": quarter.label,
        "quarter_start": quarter.start_utc.isoformat(),
        "quarter_end": quarter.end_utc.isoformat(),
        "reporting_timezone": quarter.timezone,
    }


def dbt_vars(p: Pipeline) -> dict[str, Any]:
    """The dbt vars of this run: its id, quarter bounds and zone, scope and policy."""
    values: dict[str, Any] = {
        "run_id": p.run.id,
        **quarter_vars(p.quarter),
        "clusters": list(p.run.clusters or []),
    }
    values.update(p.config.policy)
    return values


def phase_reconcile(p: Pipeline) -> dict[str, Any]:
    """dbt build for the run, then one evidence row per control with its canonical result."""
    variables = dbt_vars(p)
    # Unit tests are the project's own tests (run by the test suite, with their own
    # fixtures); a run executes the models, the snapshot and the data tests.  One
    # dbt build at a time per database: concurrent DDL on the same marts collides.
    on_spark = p.config.engine == "spark"
    session = engine.spark_session(p.config.spark, spark_raw_tables(), p.conn) if on_spark else None
    p.conn.execute("select pg_advisory_lock(hashtext('soxtrail.reconcile'))")
    p.conn.commit()
    try:
        result = dbt.invoke(
            p.db, ["build", "--exclude", "resource_type:seed", "resource_type:unit_test"],
            workdir=p.workdir / "dbt", vars=variables, engine=p.config.engine,
            on_node=lambda node, status, seconds: p.events.emit(
                "node_done", phase="reconcile", node=node, status=status, seconds=seconds))
        failed = dbt.failures(result)
        if failed or not result.success:
            raise PipelineError("dbt build failed: " + ("; ".join(failed[:5]) or "see dbt log"))
        if session is not None:  # the report's copy of each mart, in PostgreSQL
            publish_marts(p, session, variables)
    finally:
        p.conn.rollback()
        p.conn.execute("select pg_advisory_unlock(hashtext('soxtrail.reconcile'))")
        p.conn.commit()
    nodes = {getattr(r.node, "name", ""): r.node for r in result.results if hasattr(r, "node")}
    by_id = {node.unique_id: node for node in nodes.values()}

    def evidence_of(control_id: str, model: str, node: Any) -> int:
        # on Spark, with the intermediate tables the mart's SQL reads
        stages = engine.stages(node, by_id) if session is not None else None
        return write_control_evidence(p, control_id, model, node, variables, session, stages)

    written = 0
    # the controls, then the completeness marts: evidenced (and re-run) alike
    marts = {**controls.CONTROLS, **controls.COMPLETENESS}
    for n, (control_id, model) in enumerate(marts.items(), start=1):
        node = nodes.get(model)
        if node is None:
            raise PipelineError(f"dbt build did not build control model {model}")
        written += evidence_of(control_id, model, node)
        p.checkpoint("reconcile", f"control{n}")
    # the summary mart the workbook's Summary sheet shows: evidenced (and re-run) like a control
    summary = nodes.get(controls.SUMMARY_MODEL)
    if summary is None:
        raise PipelineError(f"dbt build did not build the summary model {controls.SUMMARY_MODEL}")
    written += evidence_of(controls.SUMMARY_ID, controls.SUMMARY_MODEL, summary)
    # the populations the absence claims searched, and the exceptions register: evidenced
    # (and re-run) like the summary
    for population_id, model in {**controls.POPULATIONS, **controls.REGISTERS}.items():
        node = nodes.get(model)
        if node is None:
            raise PipelineError(f"dbt build did not build the population model {model}")
        written += evidence_of(population_id, model, node)
    p.outputs["dbt_target"] = str(result.target_path)
    return {"controls": len(controls.CONTROLS), "evidence_rows": written}


def publish_marts(p: Pipeline, session: Any, variables: dict[str, Any]) -> None:
    """engine: spark. Publish the run's rows of every Spark mart into PostgreSQL's marts
    (soxtrail.reconcile.engine), each checked to hash as the Spark rows do."""
    models = engine.mart_models()
    engine.ensure_pg_marts(p.db, p.conn, p.workdir / "dbt_pg", variables, models)
    for model in models:
        published = engine.publish_mart(p.conn, session, model, p.run.id)
        columns = engine.mart_columns(p.conn, model)
        built = spark.canonical_result(session, spark.mart_query(model, p.run.id, columns),
                                       key=engine.mart_key(columns))
        if (published.sha256, published.row_count) != (built.sha256, built.row_count):
            p.conn.rollback()
            raise PipelineError(f"{model}: the rows published to PostgreSQL hash to "
                                f"{published.sha256[:12]} ({published.row_count} rows), the "
                                f"Spark mart's to {built.sha256[:12]} ({built.row_count} rows)")
        p.conn.commit()


def write_control_evidence(p: Pipeline, control_id: str, model: str, node: Any,
                           variables: dict[str, Any], session: Any = None,
                           stages: list[dict[str, str]] | None = None) -> int:
    """Store the mart's canonical result and insert its evidence row (idempotent); with a
    Spark `session` (engine: spark), the result of the Spark mart's rows, and the
    intermediate tables its SQL reads (`stages`, engine.stages) in the row's params."""
    evidence_id = controls.control_evidence_id(p.run.id, model)
    key = f"{p.quarter.label}/{p.run.id}/reconcile/{model}.jsonl"
    spool = p.workdir / "spool" / f"{model}.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    executed_at = datetime.now(timezone.utc)
    # a resumed run compares with what it recorded, in the canonical form it recorded
    existing = evidence.recorded_result(p.conn, evidence_id)
    version = existing[1] if existing else canonical.CANONICAL_VERSION
    with spool.open("wb") as handle:
        if session is not None:
            if version != canonical.CANONICAL_VERSION:
                raise PipelineError(f"{model}: Spark gives canonical form "
                                    f"{canonical.CANONICAL_VERSION} only")
            result = spark.canonical_result(
                session, engine.spark_mart_query(p.conn, model, p.run.id), sink=handle.write)
        else:
            result = canonical.mart_result(p.conn, controls.MARTS_SCHEMA, model, p.run.id,
                                          version=version, sink=handle.write)
    p.conn.commit()
    digest, rows = result.sha256, result.row_count
    p.store.put_file(key, spool, move=True)
    compiled = getattr(node, "compiled_code", None) or ""
    if not compiled:
        raise PipelineError(f"dbt gave no compiled SQL for {model}")
    if existing:
        if existing[0] != digest:
            raise PipelineError(f"{model}: result differs from the evidence already recorded "
                                f"for this run ({existing[0][:12]} vs {digest[:12]})")
        return 0
    params = evidence.control_params(
        control_id=control_id, model=model, unique_id=node.unique_id,
        checksum=node.checksum.checksum, git_commit=p.run.git_commit, variables=variables,
        canonical=version, stages=stages)
    evidence.insert_rows(p.conn, [evidence.EvidenceRow(
        id=evidence_id, run_id=p.run.id, source_system=evidence.RECONCILE,
        query_name=evidence.control_query_name(node.unique_id, node.checksum.checksum),
        query_text=compiled, query_params=params, executed_at=executed_at,
        executed_by=p.run.triggered_by, result_row_count=rows, result_hash=digest,
        raw_output_s3_key=key)])
    p.conn.commit()
    p.events.emit("query", phase="reconcile", control_id=control_id, model=model,
                  executed_at=executed_at, rows=rows, sha256=digest, key=key)
    return 1


# ---------------------------------------------------------------- phases 4 and 5


def phase_render(p: Pipeline) -> dict[str, Any]:
    """The workbook and per-control CSVs, in the run's work folder (the bundle carries them:
    one report, in the bundle; the template used is recorded there for verify)."""
    out = p.workdir / "report"
    result = render_report(p, out)
    p.checkpoint("render", "rendered")
    return {"files": len(result.csvs) + 1, "report": str(result.xlsx),
            "rows": getattr(result, "row_counts", None)}


RENDER_RECORD = "render.json"  # beside report/ in the work folder: how the report was rendered


def render_report(p: Pipeline, out: Path) -> Any:
    """Render the run's report into `out` (emptied first) and record how beside it."""
    from render.workbook import render_workbook, template_path

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = render_workbook(p.conn, run_id=p.run.id, template=p.template, out=out)
    p.conn.commit()
    record = {"template": p.template,
              "template_sha256": sha256_file(template_path(p.template))[0],
              "workbook": result.xlsx.name}
    (out.parent / f"{out.name}.{RENDER_RECORD}").write_text(json.dumps(record, sort_keys=True))
    return result


def phase_bundle(p: Pipeline) -> dict[str, Any]:
    """The signed audit-log bundle (version 1, `<quarter>/<run_id>/bundle`)."""
    if not (p.workdir / "report").is_dir():  # resumed elsewhere: the render is deterministic
        render_report(p, p.workdir / "report")
    return write_bundle_version(p, report_dir=p.workdir / "report")


def check_signing(p: Pipeline) -> Path | None:
    """The key to sign the bundle with, as the run recorded when it started (its workbook
    says so): None for a run recorded unsigned (`--no-sign`), else SOXTRAIL_SIGNING_KEY or
    the machine's own key, refused unless it is the recorded key (rather than write a
    bundle its own report misdescribes)."""
    from render import signing

    recorded = p.run.config.get(SIGNING_KEY)
    if not isinstance(recorded, dict):
        return signing.signing_key_path(None)  # a run recorded before `_signing` existed
    if not recorded.get("signed"):
        return None  # bundled unsigned, as it started
    wanted = recorded.get("fingerprint")
    key = signing.signing_key_path(None, local=True)
    if key is None:
        raise PipelineError(
            f"bundle: the run was started signed with the key of fingerprint {wanted}, which "
            f"its workbook states, but {signing.KEY_ENV} is not set and this machine has no "
            f"key ({signing.local_key_path()}): set {signing.KEY_ENV} to that key and resume "
            f"(soxtrail resume {p.run.id}), or start a new run")
    now = signing.fingerprint(signing.load_private_key(key).public_key())
    if now != wanted:
        where = (signing.KEY_ENV if os.environ.get(signing.KEY_ENV, "").strip()
                 else "this machine's key")
        raise PipelineError(
            f"bundle: the run was started signed with the key of fingerprint {wanted}, which "
            f"its workbook states; {where} ({key}) has fingerprint {now}: point "
            f"{signing.KEY_ENV} at the key the run started with and resume "
            f"(soxtrail resume {p.run.id}), or start a new run")
    return key


def write_bundle_version(p: Pipeline, *, report_dir: Path, version: int = 1,
                         reason: str | None = None) -> dict[str, Any]:
    """Write bundle `version` of the run with the report in `report_dir`, signed as the run
    recorded when it started (check_signing)."""
    from render.bundle import BundleInputs, bundle_prefix, write_bundle

    target = p.workdir / "dbt" / "target"
    key_path = check_signing(p)
    record_path = report_dir.parent / f"{report_dir.name}.{RENDER_RECORD}"
    render = json.loads(record_path.read_text()) if record_path.is_file() else None
    inputs = BundleInputs(
        query_files=query_files(),
        manifest_json=target / "manifest.json",
        run_results_json=target / "run_results.json",
        log_jsonl=p.events.path,
        report_dir=report_dir,
        render=render,
        version=version,
        reason=reason,
        created_by=runs.triggered_by() if version > 1 else None,
    )
    result = write_bundle(p.conn, p.store, run_id=p.run.id, quarter=p.quarter.label,
                          files=inputs, signing_key=key_path, unsigned=key_path is None)
    p.conn.commit()
    prefix = bundle_prefix(p.quarter.label, p.run.id, version)
    p.outputs["bundle_prefix"] = prefix
    workbook = next((k for k in result.keys if k.startswith(f"{prefix}/report/")
                     and k.endswith(".xlsx")), None)
    if workbook is not None:  # the report the run prints is the bundle's copy
        p.outputs["report_key"] = workbook
    return {"bundle": p.store.location(prefix), "signed": getattr(result, "signed", False),
            "version": version}


PHASE_FUNCTIONS: dict[str, Callable[[Pipeline], dict[str, Any]]] = {
    "snapshot": phase_snapshot,
    "load": phase_load,
    "reconcile": phase_reconcile,
    "render": phase_render,
    "bundle": phase_bundle,
}


def control_summary(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """Per control, then per completeness mart: `kind` (control | completeness), population,
    exceptions, result and, for a control, the completeness items that qualify it, from the
    summary mart."""
    with conn.cursor() as cur:
        cur.execute(f"select * from {controls.MARTS_SCHEMA}.{controls.SUMMARY_MODEL}"
                    " where run_id = %s order by control_id", (run_id,))
        names = [d.name for d in cur.description or ()]
        found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    conn.commit()
    rows = []
    for row in found:
        kind = "completeness" if row["control_id"] in controls.COMPLETENESS else "control"
        rows.append({"control_id": row["control_id"], "kind": kind,
                     "population": int(row["population"]), "exceptions": int(row["exceptions"]),
                     "result": row.get("result"),
                     "qualified_by": list(row.get("qualified_by") or [])})
    rows.sort(key=lambda r: (r["kind"] != "control", r["control_id"]))
    return rows


