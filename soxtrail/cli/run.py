"""Run commands: run, the single phases, resume, runs, demo, keygen, version."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from extract.connectors.registry import SPECS
from soxtrail import __version__, pipeline
from soxtrail.cli.common import (
    ClustersOpt,
    ConfigOpt,
    JsonOpt,
    LogFormatOpt,
    QuarterOpt,
    QuietOpt,
    RunOpt,
    TemplateOpt,
    check_log_format,
    err,
    fail,
    handled,
    open_database,
    out,
)
from soxtrail.cli.db import still_running_note
from soxtrail.cli.progress import echo_events
from soxtrail.kernel import runs
from soxtrail.kernel.config import load_config
from soxtrail.kernel.database import home
from soxtrail.kernel.errors import EXIT_EXCEPTIONS_FOUND, EXIT_USAGE, ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.pipeline.context import SIGNING_KEY
from soxtrail.pipeline.runs import new_bundle_version

run_app = typer.Typer()


def demo_config(quarter: Quarter) -> Path:
    """The demo estate's config for a quarter, generating the estate if missing."""
    from extract.demo import generate

    folder = home() / "demo" / quarter.label
    config = folder / "soxtrail.yml"
    if not config.exists():
        generate(folder, quarter)
    return config


def parse_clusters(value: str | None) -> tuple[str, ...] | None:
    """`a,b` → ('a', 'b'); empty → None."""
    if not value:
        return None
    clusters = tuple(c.strip() for c in value.split(",") if c.strip())
    return clusters or None


def completeness_exceptions(outcome: pipeline.Outcome) -> int:
    """Completeness exceptions of the run (0 before reconcile)."""
    return sum(int(c["exceptions"]) for c in outcome.controls if c.get("kind") == "completeness")


def signing_words(run: runs.Run) -> str | None:
    """How the run's bundle is signed, as recorded when it started (`_signing`)."""
    from render import signing

    record = run.config.get(SIGNING_KEY)
    if not isinstance(record, dict) or run.kind == runs.CAPTURE:
        return None
    if not record.get("signed"):
        return ("unsigned (--no-sign): `soxtrail verify` fails it unless given --allow-unsigned"
                if record.get("key") == signing.OPTED_OUT else "unsigned")
    where = {signing.FROM_LOCAL: f"this machine's key {signing.local_key_path()}",
             signing.FROM_ENV: signing.KEY_ENV}.get(str(record.get("key")), "a key")
    return f"Ed25519, key fingerprint {record.get('fingerprint')} ({where})"


NoSignOpt = Annotated[bool, typer.Option(
    "--no-sign", help="Write the bundle unsigned, on purpose (recorded in the run; `verify` "
                      "then needs --allow-unsigned). By default a run signs with "
                      "SOXTRAIL_SIGNING_KEY, else with this machine's own key (created on the "
                      "first run under $SOXTRAIL_HOME/keys/); under CI (CI=true) "
                      "SOXTRAIL_SIGNING_KEY is required.")]


def print_result(outcome: pipeline.Outcome, *, as_json: bool) -> None:
    """The closing lines: run id, report and bundle paths, per-control counts."""
    run = outcome.run
    incomplete = completeness_exceptions(outcome)
    if as_json:
        print(json.dumps({
            "run_id": run.id, "quarter": run.quarter, "status": run.status,
            "report": outcome.report, "bundle": outcome.bundle, "controls": outcome.controls,
            "completeness_exceptions": incomplete, "phases": outcome.phases,
            "signing": run.config.get(SIGNING_KEY),
        }, default=str, sort_keys=True))
        return
    if outcome.controls:
        table = Table(title=f"{run.quarter} controls", show_lines=False)
        table.add_column("control")
        table.add_column("population", justify="right")
        table.add_column("exceptions", justify="right")
        table.add_column("result")
        for row in outcome.controls:
            result = str(row.get("result") or "")
            if row.get("qualified_by"):
                result += f" (qualified: {len(row['qualified_by'])} completeness exceptions)"
            table.add_row(row["control_id"], str(row["population"]), str(row["exceptions"]),
                          result)
        err.print(table)
    out.print(f"run id: {run.id}")
    if incomplete:
        out.print(f"status: {run.status} — {incomplete} completeness exception"
                  f"{'s' if incomplete != 1 else ''} (see the Completeness sheet)")
    else:
        out.print(f"status: {run.status}")
    if outcome.report:
        out.print(f"report: {outcome.report}")
    if outcome.bundle:
        out.print(f"bundle: {outcome.bundle}")
    if words := signing_words(run):
        out.print(f"signing: {words}", markup=False)
    if note := still_running_note():
        err.print(note, markup=False)


@run_app.command()
def run(
    quarter: QuarterOpt,
    clusters: ClustersOpt = None,
    config: ConfigOpt = None,
    template: TemplateOpt = "default",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = "text",
    fail_on_exceptions: Annotated[bool, typer.Option(
        "--fail-on-exceptions", help="Exit 1 when any control has exceptions (CI gates).")] = False,
    fail_on_incomplete: Annotated[bool, typer.Option(
        "--fail-on-incomplete",
        help="Exit 1 when the Completeness sheet has an exception (a population may not be "
             "whole); without it the run completes and reports them.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for another run of the same quarter instead of refusing.")] = False,
    no_sign: NoSignOpt = False,
) -> None:
    """Run all five phases for a quarter: snapshot, load, reconcile, render, bundle.

    The raw tables and controls run on the config's `engine:` (postgres, or spark with the
    `spark` extra); SOXTRAIL_ENGINE overrides it, SOXTRAIL_SPARK_MASTER the Spark master.
    """
    with handled():
        from render.signing import check_ci

        check_log_format(log_format)
        check_ci(no_sign=no_sign)  # before anything: no fresh key per CI machine
        q = Quarter.parse(quarter)
        cfg = load_config(config or demo_config(q), specs=SPECS)
        q = cfg.quarter(q.label)  # its months and days: the config's fiscal year and zone
        db, conn = open_database()

        def announce(run_row: runs.Run, _phases: list[str]) -> None:
            if not (quiet or as_json) and log_format == "text":
                err.print(f"run {run_row.id} ({q.label}) on {db.display}")

        with conn:
            outcome = pipeline.start_run(db, conn, cfg, q, clusters=parse_clusters(clusters),
                                         wait=wait, template=template, on_run=announce,
                                         echo=echo_events(quiet or as_json, log_format),
                                         sign=not no_sign,
                                         announce=lambda text: err.print(text, markup=False))
        print_result(outcome, as_json=as_json)
        if fail_on_exceptions and any(c["exceptions"] for c in outcome.controls
                                      if c.get("kind", "control") == "control"):
            raise typer.Exit(EXIT_EXCEPTIONS_FOUND)
        if fail_on_incomplete and completeness_exceptions(outcome):
            raise typer.Exit(EXIT_EXCEPTIONS_FOUND)


CaptureQuarterOpt = Annotated[str, typer.Option(
    "--quarter", "-q", help="Quarter to capture for, YYYYQn, or `current`: the fiscal quarter "
                            "holding today in the config's fiscal year and time zone (for a "
                            "scheduled CI job).")]


@run_app.command()
def capture(
    quarter: CaptureQuarterOpt,
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Comma-separated source names (default: every configured source "
                          "that forgets: okta_system_log, aws_backup). A postgres_catalog "
                          "source may be named too: its settings capture is a known point "
                          "of LG-01's audit settings.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = "text",
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for another run of the same quarter instead of refusing.")] = False,
) -> None:
    """Capture sources now, during the quarter (snapshot and load only; run monthly from CI).

    Okta's System Log keeps ~90 days and AWS Backup's job list ~30: the quarter's `run`
    includes every completed capture of its quarter (referencing the captured evidence
    rows, not copying them), and its Completeness sheet says which capture covers which
    part of the quarter (COVERAGE_GAP for a stretch none covers).
    """
    with handled():
        check_log_format(log_format)
        if config is None:
            raise ConfigError("capture: --config is required (the demo estate has no source "
                              "that forgets)")
        cfg = load_config(config, specs=SPECS)
        if quarter.strip().lower() == "current":
            q = Quarter.containing(datetime.now(UTC),
                                   fiscal_year_start_month=cfg.fiscal_year_start_month,
                                   timezone=cfg.timezone)
        else:
            q = cfg.quarter(Quarter.parse(quarter).label)
        db, conn = open_database()

        def announce(run_row: runs.Run, _phases: list[str]) -> None:
            if not (quiet or as_json) and log_format == "text":
                names = ", ".join(run_row.config.get(pipeline.CAPTURE_SOURCES_KEY) or ())
                err.print(f"capture {run_row.id} ({q.label}: {names}) on {db.display}")

        with conn:
            outcome = pipeline.start_capture(db, conn, cfg, q, sources=parse_clusters(sources),
                                             wait=wait, on_run=announce,
                                             echo=echo_events(quiet or as_json, log_format))
        run = outcome.run
        captured = run.config.get(pipeline.CAPTURE_SOURCES_KEY) or []
        if as_json:
            print(json.dumps({"run_id": run.id, "kind": run.kind, "quarter": run.quarter,
                              "status": run.status, "sources": captured,
                              "phases": outcome.phases}, default=str, sort_keys=True))
            return
        out.print(f"capture id: {run.id}")
        out.print(f"sources: {', '.join(captured)}")
        out.print(f"status: {run.status} (the {run.quarter} run will include it)")


NewVersionOpt = Annotated[bool, typer.Option(
    "--new-version", help="On a completed run: re-render into a new, numbered bundle version "
                          "(<quarter>/<run>/bundle-v<N>); the first is kept.")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why the new version (required with --new-version; recorded in run.json).")]


def _one_phase(phase: str) -> Callable[..., None]:
    def command(run_id: RunOpt, as_json: JsonOpt = False, quiet: QuietOpt = False,
                template: TemplateOpt = "default", log_format: LogFormatOpt = "text") -> None:
        with handled():
            check_log_format(log_format)
            db, conn = open_database()
            with conn:
                outcome = pipeline.run_one_phase(db, conn, run_id, phase, template=template,
                                                 echo=echo_events(quiet or as_json, log_format))
            print_result(outcome, as_json=as_json)

    def versioned(run_id: RunOpt, as_json: JsonOpt = False, quiet: QuietOpt = False,
                  template: TemplateOpt = "default", log_format: LogFormatOpt = "text",
                  new_version: NewVersionOpt = False, reason: ReasonOpt = None) -> None:
        if not new_version:
            if reason is not None:
                raise fail("--reason goes with --new-version", EXIT_USAGE)
            command(run_id, as_json, quiet, template, log_format)
            return
        with handled():
            check_log_format(log_format)
            if not (reason or "").strip():
                raise ConfigError("--new-version needs --reason: why a new bundle version")
            db, conn = open_database()
            with conn:
                outcome = new_bundle_version(db, conn, run_id, reason=str(reason),
                                             template=template,
                                             echo=echo_events(quiet or as_json, log_format))
            print_result(outcome, as_json=as_json)

    chosen = versioned if phase in ("render", "bundle") else command
    chosen.__doc__ = (f"Run only the {phase} phase of an existing run (idempotent); a completed "
                      "run is immutable (refused" + (", unless --new-version" if chosen is versioned
                                                     else "") + ").")
    return chosen


for _phase in runs.PHASES:
    run_app.command(name=_phase)(_one_phase(_phase))


@run_app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    template: TemplateOpt = "default",
    log_format: LogFormatOpt = "text",
) -> None:
    """Continue a run after its last completed phase."""
    with handled():
        check_log_format(log_format)
        db, conn = open_database()

        def nothing_left(run_row: runs.Run, phases: list[str]) -> None:
            if not phases:
                err.print(f"run {run_row.id} already completed every phase")

        with conn:
            outcome = pipeline.resume_run(db, conn, run_id, template=template, on_run=nothing_left,
                                          echo=echo_events(quiet or as_json, log_format))
        print_result(outcome, as_json=as_json)


@run_app.command(name="runs")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first; a quarter run is `official` (its quarter's newest reviewer
    sign-off, `soxtrail signoff`) or a `draft`."""
    with handled():
        from soxtrail.kernel import attestations

        _, conn = open_database()
        with conn:
            rows = runs.list_runs(conn, limit)
            official = {o["run_id"] for o in attestations.official_runs(conn).values()}

        def signoff(r: runs.Run) -> str | None:
            """official (the quarter's newest reviewer sign-off), draft, or None (capture)."""
            if r.kind == runs.CAPTURE:
                return None
            return "official" if r.id in official else "draft"

        if as_json:
            print(json.dumps([{"run_id": r.id, "kind": r.kind, "quarter": r.quarter,
                               "status": r.status, "signoff": signoff(r),
                               "phase_reached": r.phase_reached, "started_at": r.started_at,
                               "finished_at": r.finished_at, "triggered_by": r.triggered_by}
                              for r in rows], default=str))
            return
        table = Table()
        for column in ("run id", "kind", "quarter", "status", "sign-off", "phase", "started",
                       "by"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.id, r.kind, r.quarter, r.status, signoff(r) or "-",
                          r.phase_reached or "-", r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                          r.triggered_by)
        out.print(table)


@run_app.command()
def demo(
    quarter: QuarterOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the estate to.")],
    clusters: Annotated[int, typer.Option(help="Number of clusters.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
) -> None:
    """Generate the demo estate in the real source formats, with expected.json."""
    with handled():
        from extract.demo import generate

        q = Quarter.parse(quarter)
        if clusters < 4:
            raise ConfigError("--clusters: the demo needs at least 4 clusters")
        generate(out_dir, q, clusters=clusters, seed=seed)
        out.print(f"demo estate for {q.label}: {out_dir / 'soxtrail.yml'}")


@run_app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the Ed25519 private key (PEM).")],
) -> None:
    """Create a bundle signing key; point SOXTRAIL_SIGNING_KEY at it."""
    with handled():
        from render.bundle import generate_signing_key

        if path.exists():
            raise ConfigError(f"{path} exists; refusing to overwrite a signing key")
        fingerprint = generate_signing_key(path)
        out.print(f"signing key: {path}")
        out.print(f"fingerprint: {fingerprint}")


@run_app.command()
def version() -> None:
    """Print the soxtrail version and git commit."""
    out.print(f"soxtrail {__version__} ({runs.git_commit() or 'unknown commit'})")
