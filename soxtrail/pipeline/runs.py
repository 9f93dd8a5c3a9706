"""Starting, resuming and finishing runs: the quarter lock, the run row, the phases in
order, failure and completion."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from soxtrail.kernel import runs, secrets
from soxtrail.kernel.config import Config
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import PipelineError, SoxtrailError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import open_store
from soxtrail.pipeline.context import (
    OBSERVERS,
    Echo,
    EventLog,
    Observer,
    Pipeline,
    config_for_run,
    record_config,
    run_workdir,
)
from soxtrail.pipeline.phases import PHASE_FUNCTIONS, control_summary


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
