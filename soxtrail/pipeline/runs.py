"""Starting, resuming and finishing runs: the quarter lock, the run row, the phases in
order, failure and completion."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from extract.connectors import catalog_file
from extract.connectors.registry import SPECS
from soxtrail.kernel import runs, secrets, spark
from soxtrail.kernel.config import Config
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import ConfigError, PipelineError, SoxtrailError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow
from soxtrail.kernel.store import open_store
from soxtrail.pipeline.context import (
    CAPTURE_SOURCES_KEY,
    OBSERVERS,
    Echo,
    EventLog,
    Observer,
    Pipeline,
    config_for_run,
    record_config,
    run_workdir,
)
from soxtrail.pipeline.phases import (
    PHASE_FUNCTIONS,
    control_summary,
    render_report,
    write_bundle_version,
)


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
                  observers: list[Observer] | None = None,
                  config: Config | None = None) -> Pipeline:
    """A Pipeline for an existing run, from what the run recorded (observers: OBSERVERS).

    `config`: the config the run was just started with (its literal secrets as written,
    which the recorded config has redacted).
    """
    if config is None:
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
            echo: Echo | None = None, config: Config | None = None) -> Outcome:
    """Run phases of a run (its lock held); mark it completed once every phase is done."""
    p = open_pipeline(db, conn, run, resolve_secrets=resolve_secrets, echo=echo,
                      template=template, config=config)
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


def known_clusters(config: Config) -> set[str] | None:
    """The clusters the applications catalog lists (None: the catalog cannot be read here;
    the snapshot reports that)."""
    path = config.catalogs["applications"]
    if not path.is_file():
        return None
    column = catalog_file.SPEC.raw_tables["raw.applications"].payload.index("cluster")
    rows = catalog_file.load({"catalog": "applications"}, path)
    return {str(item.values[column]) for item in rows
            if isinstance(item, RawRow) and item.values[column]}


def check_clusters(config: Config, clusters: tuple[str, ...] | None) -> None:
    """Refuse clusters that no application lists (a typo would give population 0 and
    EFFECTIVE for every control)."""
    known = known_clusters(config) if clusters else None
    unknown = [c for c in clusters or () if known is not None and c not in known]
    if unknown:
        listed = ", ".join(sorted(known or ()))
        raise ConfigError(f"clusters: {', '.join(unknown)} not listed by any application in "
                          f"{config.catalogs['applications']} (known clusters: {listed})")


def start_run(db: Database, conn: psycopg.Connection[Any], config: Config, quarter: Quarter, *,
              clusters: tuple[str, ...] | None = None, wait: bool = False,
              template: str = "default", echo: Echo | None = None,
              on_run: OnRun | None = None, sign: bool = True,
              announce: Callable[[str], None] | None = None) -> Outcome:
    """A new run of the quarter: under its lock (or `wait` for it), record it, run every phase.
    `sign=False` (`--no-sign`) writes an unsigned bundle; `announce` is told when the
    machine's signing key is created (context.record_config)."""
    check_clusters(config, clusters or config.clusters)
    if config.engine == "spark":  # before anything is recorded: the extra and Java are here
        spark.require_pyspark()
    if quarter != config.quarter(quarter.label) and quarter != Quarter.parse(quarter.label):
        raise ConfigError(f"quarter {quarter.label}: built for fiscal year start month "
                          f"{quarter.fiscal_year_start_month} and time zone {quarter.timezone}, "
                          f"but the config says {config.fiscal_year_start_month} and "
                          f"{config.timezone}")
    store = open_store(config.store, home() / "store")
    with runs.quarter_lock(conn, quarter.label, wait=wait):
        run = runs.create_run(conn, quarter=quarter.label, clusters=clusters or config.clusters,
                              config=record_config(config, store, sign=sign,
                                                   announce=announce),
                              config_hash=config.hash())
        if on_run is not None:
            on_run(run, list(run.phases))
        return execute(db, conn, run, list(run.phases), resolve_secrets=True,
                       template=template, echo=echo, config=config)


def capture_sources(config: Config, names: tuple[str, ...] | None) -> list[str]:
    """The sources a capture takes: those named, else every configured source that forgets
    (its connector's `forgets_after_days`). A named source must be one a quarter run
    includes from a capture: one that forgets, or a `postgres_catalog` source (its settings
    capture is a known point of LG-01's audit settings)."""
    configured = {source.name: source for source in config.sources}

    def includable(name: str) -> bool:
        connector = configured[name].connector
        return SPECS[connector].forgets_after_days is not None or connector == "postgres_catalog"

    if names:
        unknown = [name for name in names if name not in configured]
        if unknown:
            raise ConfigError(f"--sources: {', '.join(unknown)} not configured (sources: "
                              f"{', '.join(sorted(configured)) or 'none'})")
        refused = [name for name in names if not includable(name)]
        if refused:
            raise ConfigError(
                f"--sources: {', '.join(refused)}: the quarter's run would not include a "
                "capture of them (it includes captures of sources that forget — okta_system_log,"
                " aws_backup — and the settings of postgres_catalog sources); their quarter-end "
                "capture is whole on its own")
        return list(dict.fromkeys(names))
    forgetting = [name for name, source in configured.items()
                  if SPECS[source.connector].forgets_after_days is not None]
    if not forgetting:
        raise ConfigError("capture: no configured source forgets (okta_system_log, aws_backup);"
                          " name the sources to capture with --sources")
    return forgetting


def start_capture(db: Database, conn: psycopg.Connection[Any], config: Config,
                  quarter: Quarter, *, sources: tuple[str, ...] | None = None,
                  wait: bool = False, echo: Echo | None = None,
                  on_run: OnRun | None = None) -> Outcome:
    """A capture of the quarter (`soxtrail capture`): snapshot and load chosen sources now,
    under the quarter's lock; the quarter's run includes what it captured."""
    chosen = capture_sources(config, sources)
    store = open_store(config.store, home() / "store")
    recorded = record_config(config, store, sign=False)  # a capture writes no bundle
    recorded[runs.KIND_KEY] = runs.CAPTURE
    recorded[CAPTURE_SOURCES_KEY] = chosen
    with runs.quarter_lock(conn, quarter.label, wait=wait):
        run = runs.create_run(conn, quarter=quarter.label, clusters=config.clusters,
                              config=recorded, config_hash=config.hash())
        if on_run is not None:
            on_run(run, list(run.phases))
        return execute(db, conn, run, list(run.phases), resolve_secrets=True, echo=echo,
                       config=config)


def resume_run(db: Database, conn: psycopg.Connection[Any], run_id: str, *,
               template: str = "default", echo: Echo | None = None,
               on_run: OnRun | None = None) -> Outcome:
    """Continue a run after its last completed phase (none left: complete it if need be)."""
    run = runs.get_run(conn, run_id)
    next_phase = run.next_phase()
    phases = [] if next_phase is None else list(run.phases[run.phases.index(next_phase):])
    if on_run is not None:
        on_run(run, phases)
    return _continue(db, conn, run, phases, template=template, echo=echo)


def run_one_phase(db: Database, conn: psycopg.Connection[Any], run_id: str, phase: str, *,
                  template: str = "default", echo: Echo | None = None) -> Outcome:
    """Run one phase of an existing run again (each phase is idempotent); a completed run is
    immutable: refused (a new report goes to a new bundle version: new_bundle_version)."""
    run = runs.get_run(conn, run_id)
    conn.commit()
    if phase not in run.phases:
        raise ConfigError(f"run {run.id} is a {run.kind} run, whose phases are "
                          f"{', '.join(run.phases)}: {phase} refused")
    if run.status == "completed":
        hint = (" ; to write a new, numbered bundle version (the first is kept) pass "
                "--new-version --reason '…'" if phase in ("render", "bundle") else "")
        raise ConfigError(f"run {run.id} is completed and immutable: {phase} refused{hint}")
    return _continue(db, conn, run, [phase], template=template, echo=echo)


def new_bundle_version(db: Database, conn: psycopg.Connection[Any], run_id: str, *,
                       reason: str, template: str = "default",
                       echo: Echo | None = None) -> Outcome:
    """Re-render a completed run's report into a new, numbered bundle version
    (`<quarter>/<run_id>/bundle-v<N>`) recording who and why; the run row and every earlier
    version stay as they are."""
    from render.bundle import bundle_prefix

    if not reason.strip():
        raise ConfigError("--new-version needs --reason: why a new version of the bundle")
    run = runs.get_run(conn, run_id)
    conn.commit()
    if run.status != "completed":
        raise ConfigError(f"run {run.id} is {run.status}, not completed: --new-version is for "
                          f"completed runs (finish it with `soxtrail resume {run.id}`)")
    with runs.quarter_lock(conn, run.quarter, wait=False):
        p = open_pipeline(db, conn, run, resolve_secrets=False, echo=echo, template=template)
        try:
            version = 2
            while p.store.exists(f"{bundle_prefix(run.quarter, run.id, version)}/MANIFEST.sha256"):
                version += 1
            p.events.emit("bundle_version", version=version, reason=reason,
                          created_by=runs.triggered_by())
            report_dir = p.workdir / f"report-v{version}"
            render_report(p, report_dir)
            write_bundle_version(p, report_dir=report_dir, version=version, reason=reason)
        finally:
            p.events.close()
    located = {k: p.store.location(p.outputs[k]) for k in ("report_key", "bundle_prefix")
               if k in p.outputs}
    return Outcome(run=run, controls=control_summary(conn, run.id),
                   report=located.get("report_key"), bundle=located.get("bundle_prefix"),
                   phases={})


def _continue(db: Database, conn: psycopg.Connection[Any], run: runs.Run, phases: list[str], *,
              template: str, echo: Echo | None) -> Outcome:
    """An existing run: take its quarter's lock (never wait), mark it running, run phases."""
    with runs.quarter_lock(conn, run.quarter, wait=False):
        if phases or run.status != "completed":  # a completed run never goes back to running
            runs.mark_running(conn, run.id)
        return execute(db, conn, run, phases, resolve_secrets="snapshot" in phases,
                       template=template, echo=echo)
