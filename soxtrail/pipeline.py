"""The five phases of a run: snapshot → load → reconcile → render → bundle."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import (
    CancelledError,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import psycopg

from extract.connectors.postgres_catalog import query_files
from extract.connectors.registry import SPECS, connector_module
from extract.loader import LoadReport, die_with_parent, load_run
from extract.snapshot import SnapshotRun
from soxtrail.kernel import controls, evidence, runs, secrets
from soxtrail.kernel.config import CATALOG_KEYS, Config, parse_config
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import PipelineError, SourceError, SoxtrailError, StoreError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Source
from soxtrail.kernel.store import HASHING, Store, open_store
from soxtrail.reconcile import dbt

SNAPSHOT_CONCURRENCY = 4
SNAPSHOT_COUNT_WORKERS = 2

Echo = Callable[[dict[str, Any]], None]


class Observer:
    """Watches the runs this process executes: an extension point for metrics, tracing or
    fault injection. Every method does nothing unless a subclass overrides it."""

    def opened(self, p: Pipeline) -> None:
        """A pipeline was opened for a run; may wrap `p.store`, which every phase writes to."""

    def checkpoint(self, p: Pipeline, phase: str, point: str) -> None:
        """`phase` reached `point`: `start`, `done`, `object<N>` (the Nth object loaded and
        committed) or `control<N>` (the Nth control's evidence row written)."""


# observers of every pipeline this process opens (unless open_pipeline is given its own)
OBSERVERS: list[Observer] = []


class EventLog:
    """Structured events of a run (`log.jsonl`), secrets redacted, also echoed to a callback."""

    def __init__(self, path: Path, echo: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._handle: IO[str] | None = None
        self._lock = threading.Lock()  # phases emit from several threads

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                  "event": event, **fields}
        line = secrets.redact(json.dumps(record, default=str, sort_keys=True))
        with self._lock:
            if self._handle is None or self._handle.closed:
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(line + "\n")
            self._handle.flush()  # whole lines, readable at once (bundle, bench, tail -f)
        if self.echo is not None:
            self.echo(json.loads(line))

    def close(self) -> None:
        """Close the log file (a later emit opens it again)."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()


@dataclass
class Pipeline:
    """Everything a phase needs for one run."""

    db: Database
    conn: psycopg.Connection[Any]
    run: runs.Run
    config: Config
    store: Store
    events: EventLog
    template: str = "default"
    outputs: dict[str, Any] = field(default_factory=dict)
    observers: list[Observer] = field(default_factory=list)

    def checkpoint(self, phase: str, point: str) -> None:
        """Tell the observers that `phase` reached `point` (see Observer.checkpoint)."""
        for observer in self.observers:
            observer.checkpoint(self, phase, point)

    @property
    def quarter(self) -> Quarter:
        return Quarter.parse(self.run.quarter)

    @property
    def workdir(self) -> Path:
        return run_workdir(self.run.id)


def run_workdir(run_id: str) -> Path:
    """Local working folder of a run (dbt artifacts, spool, rendered files, log)."""
    return home() / "runs" / run_id


def catalog_sources(config: Config) -> list[Source]:
    """The role catalog, applications and identity map as snapshot sources."""
    return [Source(name=f"catalog-{key}", system="role_catalog", connector="catalog_file",
                   values={"path": str(config.catalogs[key]), "catalog": key},
                   base_dir=config.base_dir)
            for key in CATALOG_KEYS]


def sources_in_scope(config: Config, clusters: tuple[str, ...] | None) -> list[Source]:
    """Configured sources, minus cluster sources outside the run's `--clusters`."""
    chosen = []
    for source in config.sources:
        cluster = source.get("cluster")
        if clusters and cluster is not None and cluster not in clusters:
            continue
        chosen.append(source)
    return chosen


def record_config(config: Config, store: Store) -> dict[str, Any]:
    """The config as the run records it (redacted), with the store it writes to."""
    recorded = config.redacted()
    recorded["_store"] = store.uri
    return recorded


def config_for_run(run: runs.Run, *, resolve_secrets: bool) -> Config:
    """Rebuild the run's config from what it recorded (secrets from the environment if asked)."""
    recorded = dict(run.config)
    config = parse_config(recorded, path=None, base_dir=Path(recorded.get("_base_dir", ".")),
                          specs=SPECS, resolve_secrets=resolve_secrets)
    config.catalogs = {k: Path(v) for k, v in recorded.get("_catalogs", {}).items()}
    return config


# ---------------------------------------------------------------- phase 1


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its ended child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def capture_order(sources: list[Source]) -> list[Source]:
    """The order the capture threads take sources in: a connector serving the whole estate
    from one source (tickets, IAM, backups: thousands of pages) before the connectors with
    a source per cluster (small slices each), so that the long ones do not start last and
    run alone. Stable; evidence rows are sorted before they are written, whatever the order."""
    per_connector = Counter(source.connector for source in sources)
    return sorted(sources, key=lambda source: per_connector[source.connector])


def phase_snapshot(p: Pipeline) -> dict[str, Any]:
    """Capture every source; commit all evidence rows at once, only if every source succeeded."""
    done_objects, done_rows = evidence.snapshot_totals(p.conn, p.run.id)
    p.conn.commit()
    if done_objects:
        # evidence rows are committed all at once: if any exist, the snapshot is complete
        return {"objects": done_objects, "rows": done_rows, "already_done": True}
    sources = capture_order(sources_in_scope(p.config, p.run.clusters) + catalog_sources(p.config))
    spool_root = p.workdir / "spool"

    def one(source: Source) -> list[evidence.EvidenceRow]:
        started = time.monotonic()
        snap = SnapshotRun(run_id=p.run.id, quarter=p.quarter, executed_by=p.run.triggered_by,
                           store=p.store, spool_dir=spool_root / source.name,
                           clusters=p.run.clusters, counting=counting)
        try:
            connector_module(source.connector).snapshot(source, snap)
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
    cpu_started, hashing_started = _cpu_seconds(), HASHING.seconds
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
    cpu = _cpu_seconds() - cpu_started
    hashing = HASHING.seconds - hashing_started
    return {"sources": len(sources), "objects": len(records),
            "rows": sum(r.result_row_count for r in records),
            "cpu_seconds": round(cpu, 3), "hashing_cpu_seconds": round(hashing, 3),
            "hashing_share": round(hashing / cpu, 4) if cpu > 0 else None}


# ---------------------------------------------------------------- phase 2


def phase_load(p: Pipeline) -> dict[str, Any]:
    """COPY every snapshot object into its raw table; check read = loaded + rejected + skipped."""
    sources = sources_in_scope(p.config, p.run.clusters)
    done = [0]

    def progress(name: str, c: Any) -> None:
        p.events.emit("loaded", object=name, read=c.read, loaded=c.loaded,
                      rejected=c.rejected, skipped=c.skipped)
        done[0] += 1
        p.checkpoint("load", f"object{done[0]}")

    pending = evidence.count_not_loaded(p.conn, p.run.id)
    p.conn.commit()
    p.events.emit("load_plan", objects=int(pending))
    report: LoadReport = load_run(
        p.conn, run_id=p.run.id, store=p.store, spool_dir=p.workdir / "spool", sources=sources,
        progress=progress, dsn=p.db.dsn)
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


def dbt_vars(p: Pipeline) -> dict[str, Any]:
    """The dbt vars of this run: its id, quarter bounds, scope and policy."""
    quarter = p.quarter
    values: dict[str, Any] = {
        "run_id": p.run.id,
        "quarter": quarter.label,
        "quarter_start": quarter.start.isoformat(),
        "quarter_end": quarter.end.isoformat(),
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
    p.conn.execute("select pg_advisory_lock(hashtext('soxtrail.reconcile'))")
    p.conn.commit()
    try:
        result = dbt.invoke(
            p.db, ["build", "--exclude", "resource_type:seed", "resource_type:unit_test"],
            workdir=p.workdir / "dbt", vars=variables,
            on_node=lambda node, status, seconds: p.events.emit(
                "node_done", phase="reconcile", node=node, status=status, seconds=seconds))
    finally:
        p.conn.execute("select pg_advisory_unlock(hashtext('soxtrail.reconcile'))")
        p.conn.commit()
    failed = dbt.failures(result)
    if failed or not result.success:
        raise PipelineError("dbt build failed: " + ("; ".join(failed[:5]) or "see dbt log"))
    nodes = {getattr(r.node, "name", ""): r.node for r in result.results if hasattr(r, "node")}
    written = 0
    for control_id, model in controls.CONTROLS.items():
        node = nodes.get(model)
        if node is None:
            raise PipelineError(f"dbt build did not build control model {model}")
        written += write_control_evidence(p, control_id, model, node, variables)
        p.checkpoint("reconcile", f"control{list(controls.CONTROLS).index(control_id) + 1}")
    p.outputs["dbt_target"] = str(result.target_path)
    return {"controls": len(controls.CONTROLS), "evidence_rows": written}


def write_control_evidence(p: Pipeline, control_id: str, model: str, node: Any,
                           variables: dict[str, Any]) -> int:
    """Store the mart's canonical result and insert its evidence row (idempotent)."""
    evidence_id = controls.control_evidence_id(p.run.id, model)
    key = f"{p.quarter.label}/{p.run.id}/reconcile/{model}.jsonl"
    spool = p.workdir / "spool" / f"{model}.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    executed_at = datetime.now(timezone.utc)
    # a resumed run compares with what it recorded, in the canonical form it recorded
    existing = evidence.recorded_result(p.conn, evidence_id)
    version = existing[1] if existing else evidence.CANONICAL_VERSION
    with spool.open("wb") as handle:
        result = evidence.mart_result(p.conn, controls.MARTS_SCHEMA, model, p.run.id,
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
        canonical=version)
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
    """The workbook and per-control CSVs, written to the store under report/."""
    from render.workbook import render_workbook

    out = p.workdir / "report"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = render_workbook(p.conn, run_id=p.run.id, template=p.template, out=out)
    p.conn.commit()
    keys = []
    for path in sorted(out.rglob("*")):
        if path.is_file():
            key = f"{p.quarter.label}/{p.run.id}/report/{path.relative_to(out).as_posix()}"
            p.store.put_file(key, path)
            keys.append(key)
    workbook_key = next(k for k in keys if k.endswith(".xlsx"))
    p.outputs["report_key"] = workbook_key
    return {"files": len(keys), "report": p.store.location(workbook_key),
            "rows": getattr(result, "row_counts", None)}


def phase_bundle(p: Pipeline) -> dict[str, Any]:
    """The signed audit-log bundle."""
    from render.bundle import BundleInputs, write_bundle

    target = p.workdir / "dbt" / "target"
    key_path = os.environ.get("SOXTRAIL_SIGNING_KEY")
    inputs = BundleInputs(
        query_files=query_files(),
        manifest_json=target / "manifest.json",
        run_results_json=target / "run_results.json",
        log_jsonl=p.events.path,
        report_dir=p.workdir / "report",
    )
    result = write_bundle(p.conn, p.store, run_id=p.run.id, quarter=p.quarter.label,
                          files=inputs, signing_key=Path(key_path) if key_path else None)
    p.conn.commit()
    prefix = f"{p.quarter.label}/{p.run.id}/bundle"
    p.outputs["bundle_prefix"] = prefix
    if "report_key" not in p.outputs:  # resumed after render: name the report all the same
        report = next((k for k in p.store.list(f"{p.quarter.label}/{p.run.id}/report")
                       if k.endswith(".xlsx")), None)
        if report is not None:
            p.outputs["report_key"] = report
    return {"bundle": p.store.location(prefix), "signed": getattr(result, "signed", False)}


PHASE_FUNCTIONS: dict[str, Callable[[Pipeline], dict[str, Any]]] = {
    "snapshot": phase_snapshot,
    "load": phase_load,
    "reconcile": phase_reconcile,
    "render": phase_render,
    "bundle": phase_bundle,
}


def control_summary(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """Per control: population and exceptions, from the summary mart."""
    with conn.cursor() as cur:
        cur.execute(f"select control_id, population, exceptions from "
                    f"{controls.MARTS_SCHEMA}.{controls.SUMMARY_MODEL} where run_id = %s"
                    " order by control_id", (run_id,))
        rows = [{"control_id": c, "population": int(pop), "exceptions": int(exc)}
                for c, pop, exc in cur.fetchall()]
    conn.commit()
    return rows


def _record_failure(p: Pipeline, error: str) -> None:
    """Mark the run failed, over a fresh connection when the phase's one is broken."""
    try:
        runs.mark_failed(p.conn, p.run.id, error)
        return
    except psycopg.Error:
        pass
    try:
        with p.db.connect() as fresh:
            runs.mark_failed(fresh, p.run.id, error)
    except (psycopg.Error, SoxtrailError):
        pass  # the database itself is the problem; the run stays resumable


def run_phases(p: Pipeline, phases: list[str]) -> None:
    """Run the given phases in order, recording each one's completion.

    A database error (lost connection, server restart) becomes a PipelineError naming
    the phase: the phase's work is committed per object, so `soxtrail resume` continues.
    """
    for phase in phases:
        started = time.monotonic()
        p.events.emit("phase_start", phase=phase, run_id=p.run.id)
        try:
            p.checkpoint(phase, "start")
            stats = PHASE_FUNCTIONS[phase](p)
            p.checkpoint(phase, "done")
        except BaseException as exc:
            message = secrets.redact(" ".join(str(exc).split())) or exc.__class__.__name__
            p.events.emit("phase_failed", phase=phase, error=message)
            _record_failure(p, f"{phase}: {message}")
            if isinstance(exc, psycopg.Error):
                raise PipelineError(
                    f"{phase}: database error ({exc.__class__.__name__}): {message}; what was "
                    f"committed stays, continue with: soxtrail resume {p.run.id}") from exc
            raise
        runs.mark_phase(p.conn, p.run.id, phase)
        p.events.emit("phase_done", phase=phase, seconds=round(time.monotonic() - started, 3),
                      **{k: v for k, v in stats.items() if not isinstance(v, dict)})
        p.outputs.setdefault("phases", {})[phase] = {
            **stats, "seconds": round(time.monotonic() - started, 3)}


def open_pipeline(db: Database, conn: psycopg.Connection[Any], run: runs.Run, *,
                  resolve_secrets: bool, echo: Echo | None = None, template: str = "default",
                  observers: list[Observer] | None = None) -> Pipeline:
    """A Pipeline for an existing run, from what the run recorded (observers: OBSERVERS)."""
    config = config_for_run(run, resolve_secrets=resolve_secrets)
    store = open_store(run.config.get("_store"), home() / "store")
    events = EventLog(run_workdir(run.id) / "log.jsonl", echo)
    p = Pipeline(db=db, conn=conn, run=run, config=config, store=store, events=events,
                 template=template, observers=list(OBSERVERS if observers is None else observers))
    for observer in p.observers:
        observer.opened(p)
    return p


# ---------------------------------------------------------------- runs: start, resume, one phase


@dataclass
class Outcome:
    """Where a run stands after a command: its row, per-control counts, report and bundle."""

    run: runs.Run
    controls: list[dict[str, Any]]
    report: str | None
    bundle: str | None
    phases: dict[str, Any]


OnRun = Callable[[runs.Run, list[str]], None]  # the run is known; these phases are next


def execute(db: Database, conn: psycopg.Connection[Any], run: runs.Run, phases: list[str], *,
            resolve_secrets: bool, template: str = "default",
            echo: Echo | None = None) -> Outcome:
    """Run phases of a run (its lock held); mark it completed once every phase is done."""
    p = open_pipeline(db, conn, run, resolve_secrets=resolve_secrets, echo=echo,
                      template=template)
    try:
        run_phases(p, phases)
    finally:
        p.events.close()
    run = runs.get_run(conn, run.id)
    counts: list[dict[str, Any]] = []
    if run.phase_reached in ("reconcile", "render", "bundle"):
        counts = control_summary(conn, run.id)
    if run.next_phase() is None and run.status != "completed":
        runs.mark_completed(conn, run.id, {"controls": counts, "outputs": {
            k: v for k, v in p.outputs.items() if k != "phases"}})
        run = runs.get_run(conn, run.id)
    located = {k: p.store.location(p.outputs[k]) for k in ("report_key", "bundle_prefix")
               if k in p.outputs}
    return Outcome(run=run, controls=counts, report=located.get("report_key"),
                   bundle=located.get("bundle_prefix"), phases=p.outputs.get("phases", {}))


def start_run(db: Database, conn: psycopg.Connection[Any], config: Config, quarter: Quarter, *,
              clusters: tuple[str, ...] | None = None, wait: bool = False,
              template: str = "default", echo: Echo | None = None,
              on_run: OnRun | None = None) -> Outcome:
    """A new run of the quarter: under its lock (or `wait` for it), record it, run every phase."""
    store = open_store(config.store, home() / "store")
    with runs.quarter_lock(conn, quarter.label, wait=wait):
        run = runs.create_run(conn, quarter=quarter.label, clusters=clusters or config.clusters,
                              config=record_config(config, store), config_hash=config.hash())
        if on_run is not None:
            on_run(run, list(runs.PHASES))
        return execute(db, conn, run, list(runs.PHASES), resolve_secrets=True,
                       template=template, echo=echo)


def resume_run(db: Database, conn: psycopg.Connection[Any], run_id: str, *,
               template: str = "default", echo: Echo | None = None,
               on_run: OnRun | None = None) -> Outcome:
    """Continue a run after its last completed phase (none left: complete it if need be)."""
    run = runs.get_run(conn, run_id)
    next_phase = run.next_phase()
    phases = [] if next_phase is None else list(runs.PHASES[runs.PHASES.index(next_phase):])
    if on_run is not None:
        on_run(run, phases)
    return _continue(db, conn, run, phases, template=template, echo=echo)


def run_one_phase(db: Database, conn: psycopg.Connection[Any], run_id: str, phase: str, *,
                  template: str = "default", echo: Echo | None = None) -> Outcome:
    """Run one phase of an existing run again (each phase is idempotent)."""
    return _continue(db, conn, runs.get_run(conn, run_id), [phase], template=template, echo=echo)


def _continue(db: Database, conn: psycopg.Connection[Any], run: runs.Run, phases: list[str], *,
              template: str, echo: Echo | None) -> Outcome:
    """An existing run: take its quarter's lock (never wait), mark it running, run phases."""
    with runs.quarter_lock(conn, run.quarter, wait=False):
        runs.mark_running(conn, run.id)
        return execute(db, conn, run, phases, resolve_secrets="snapshot" in phases,
                       template=template, echo=echo)
