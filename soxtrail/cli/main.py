"""The `soxtrail` command line: parses, calls the library, prints."""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from extract.connectors.registry import SPECS
from soxtrail import __version__, pipeline
from soxtrail.kernel import runs, secrets
from soxtrail.kernel.config import Config, load_config
from soxtrail.kernel.database import Database, bootstrap, home, resolve_database
from soxtrail.kernel.errors import (
    EXIT_EXCEPTIONS_FOUND,
    EXIT_PIPELINE_FAILURE,
    EXIT_USAGE,
    ConfigError,
    SoxtrailError,
)
from soxtrail.kernel.quarter import Quarter

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

app = typer.Typer(
    name="soxtrail",
    help="SOX IT-general-controls reports for PostgreSQL estates, every number cheap to verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

QuarterOpt = Annotated[str, typer.Option("--quarter", "-q", help="Quarter to report, e.g. 2024Q3.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c",
    help="soxtrail.yml; without it the demo estate is used (generated if missing).")]
ClustersOpt = Annotated[str | None, typer.Option(
    "--clusters", help="Comma-separated clusters in scope (default: every in-scope cluster).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Print only the final lines.")]
RunOpt = Annotated[str, typer.Option("--run", help="The run id (or a unique 8+ character prefix).")]
TemplateOpt = Annotated[str, typer.Option("--template", help="Workbook layout (render/templates).")]
LogFormatOpt = Annotated[str, typer.Option(
    "--log-format", help="Progress on stderr: text (human) or json (one event per line).")]


def check_log_format(value: str) -> str:
    """text | json, else a usage error."""
    if value not in ("text", "json"):
        raise ConfigError(f"--log-format {value!r}: expected text or json")
    return value


def fail(message: str, code: int) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {secrets.redact(message)}", markup=True)
    return typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Map soxtrail errors to their exit codes with one line, never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except SoxtrailError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_PIPELINE_FAILURE) from None


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


def open_database() -> tuple[Database, Any]:
    """Resolve, bootstrap and connect."""
    db = resolve_database()
    bootstrap(db)
    return db, db.connect()


class TerminalProgress:
    """Human progress on stderr: phases, sources, a bar for loading, dbt nodes."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._columns = (TextColumn("  load"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rows]} rows"))
        self._progress_type = Progress
        self._bar: Any = None
        self._task: Any = None
        self._rows = 0

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "phase_start":
            err.print(f"[cyan]▶ {event['phase']}[/]")
        elif kind == "phase_done":
            self._stop_bar()
            details = ", ".join(f"{k}={v}" for k, v in event.items()
                                if k not in ("ts", "event", "phase"))
            err.print(f"[green]✔ {event['phase']}[/] {details}")
        elif kind == "phase_failed":
            self._stop_bar()
            err.print(f"[red]✘ {event['phase']}[/] {event['error']}")
        elif kind == "source_done":
            err.print(f"  · {event['source']}: {event['objects']} objects, "
                      f"{event.get('rows', 0)} rows ({event.get('seconds', 0)} s)")
        elif kind == "load_plan" and event.get("objects") and err.is_terminal:
            self._rows = 0
            self._bar = self._progress_type(*self._columns, console=err, transient=True)
            self._task = self._bar.add_task("load", total=event["objects"], rows=0)
            self._bar.start()
        elif kind == "loaded" and self._bar is not None:
            self._rows += int(event.get("read", 0))
            self._bar.update(self._task, advance=1, rows=self._rows)
        elif kind == "node_done":
            node = str(event["node"])
            status = str(event["status"])
            if node.startswith(("model.", "snapshot.")) or status not in ("pass", "success"):
                colour = "green" if status in ("pass", "success") else "red"
                err.print(f"  · {node.split('.', 1)[1]}: [{colour}]{status}[/] "
                          f"({event['seconds']} s)")


def echo_events(quiet: bool, log_format: str = "text") -> Callable[[dict[str, Any]], None] | None:
    """What the terminal shows of a run's events: nothing, human progress, or JSON lines."""
    if log_format == "json":
        lock = threading.Lock()  # events come from the snapshot's threads too

        def emit_json(event: dict[str, Any]) -> None:
            line = json.dumps(event, sort_keys=True) + "\n"
            with lock:
                sys.stderr.write(line)
                sys.stderr.flush()

        return emit_json
    if quiet:
        return None
    return TerminalProgress()


def print_result(p: pipeline.Pipeline, run: runs.Run, *, as_json: bool,
                 counts: list[dict[str, Any]]) -> None:
    """The closing lines: run id, report and bundle paths, per-control counts."""
    report = p.store.location(p.outputs["report_key"]) if "report_key" in p.outputs else None
    bundle = p.store.location(p.outputs["bundle_prefix"]) if "bundle_prefix" in p.outputs else None
    if as_json:
        print(json.dumps({
            "run_id": run.id, "quarter": run.quarter, "status": run.status,
            "report": report, "bundle": bundle, "controls": counts,
            "phases": p.outputs.get("phases", {}),
        }, default=str, sort_keys=True))
        return
    if counts:
        table = Table(title=f"{run.quarter} controls", show_lines=False)
        table.add_column("control")
        table.add_column("population", justify="right")
        table.add_column("exceptions", justify="right")
        for row in counts:
            table.add_row(row["control_id"], str(row["population"]), str(row["exceptions"]))
        err.print(table)
    out.print(f"run id: {run.id}")
    out.print(f"status: {run.status}")
    if report:
        out.print(f"report: {report}")
    if bundle:
        out.print(f"bundle: {bundle}")


def execute(db: Database, conn: Any, run: runs.Run, phases: list[str], *, quiet: bool,
            as_json: bool, fail_on_exceptions: bool, template: str,
            resolve_secrets: bool, log_format: str = "text") -> None:
    """Run phases of a run and print the result; exit with the right code."""
    p = pipeline.open_pipeline(db, conn, run, resolve_secrets=resolve_secrets,
                               echo=echo_events(quiet or as_json, log_format),
                               template=template)
    try:
        pipeline.run_phases(p, phases)
    finally:
        p.events.close()
    run = runs.get_run(conn, run.id)
    counts: list[dict[str, Any]] = []
    if run.phase_reached in ("reconcile", "render", "bundle"):
        counts = pipeline.control_summary(conn, run.id)
    if run.next_phase() is None and run.status != "completed":
        runs.mark_completed(conn, run.id, {"controls": counts, "outputs": {
            k: v for k, v in p.outputs.items() if k != "phases"}})
        run = runs.get_run(conn, run.id)
    print_result(p, run, as_json=as_json, counts=counts)
    if fail_on_exceptions and any(c["exceptions"] for c in counts):
        raise typer.Exit(EXIT_EXCEPTIONS_FOUND)


@app.command()
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
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for another run of the same quarter instead of refusing.")] = False,
) -> None:
    """Run all five phases for a quarter: snapshot, load, reconcile, render, bundle."""
    with handled():
        check_log_format(log_format)
        q = Quarter.parse(quarter)
        path = config or demo_config(q)
        cfg: Config = load_config(path, specs=SPECS)
        scope = parse_clusters(clusters) or cfg.clusters
        db, conn = open_database()
        with conn:
            from soxtrail.kernel.store import open_store

            store = open_store(cfg.store, home() / "store")
            with runs.quarter_lock(conn, q.label, wait=wait):
                run_row = runs.create_run(conn, quarter=q.label, clusters=scope,
                                          config=pipeline.record_config(cfg, store),
                                          config_hash=cfg.hash())
                if not (quiet or as_json) and log_format == "text":
                    err.print(f"run {run_row.id} ({q.label}) on {db.display}")
                execute(db, conn, run_row, list(runs.PHASES), quiet=quiet, as_json=as_json,
                        fail_on_exceptions=fail_on_exceptions, template=template,
                        resolve_secrets=True, log_format=log_format)


def _one_phase(phase: str) -> Callable[..., None]:
    def command(run_id: RunOpt, as_json: JsonOpt = False, quiet: QuietOpt = False,
                template: TemplateOpt = "default", log_format: LogFormatOpt = "text") -> None:
        with handled():
            check_log_format(log_format)
            db, conn = open_database()
            with conn:
                run_row = runs.get_run(conn, run_id)
                with runs.quarter_lock(conn, run_row.quarter, wait=False):
                    runs.mark_running(conn, run_row.id)
                    execute(db, conn, run_row, [phase], quiet=quiet, as_json=as_json,
                            fail_on_exceptions=False, template=template,
                            resolve_secrets=phase == "snapshot", log_format=log_format)

    command.__doc__ = f"Run only the {phase} phase of an existing run (idempotent)."
    return command


for _phase in runs.PHASES:
    app.command(name=_phase)(_one_phase(_phase))


@app.command()
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
        with conn:
            run_row = runs.get_run(conn, run_id)
            next_phase = run_row.next_phase()
            if next_phase is None:
                err.print(f"run {run_row.id} already completed every phase")
                phases: list[str] = []
            else:
                phases = list(runs.PHASES[runs.PHASES.index(next_phase):])
            with runs.quarter_lock(conn, run_row.quarter, wait=False):
                runs.mark_running(conn, run_row.id)
                execute(db, conn, run_row, phases, quiet=quiet, as_json=as_json,
                        fail_on_exceptions=False, template=template,
                        resolve_secrets="snapshot" in phases, log_format=log_format)


@app.command(name="runs")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    with handled():
        _, conn = open_database()
        with conn:
            rows = runs.list_runs(conn, limit)
        if as_json:
            print(json.dumps([{"run_id": r.id, "quarter": r.quarter, "status": r.status,
                               "phase_reached": r.phase_reached, "started_at": r.started_at,
                               "finished_at": r.finished_at, "triggered_by": r.triggered_by}
                              for r in rows], default=str))
            return
        table = Table()
        for column in ("run id", "quarter", "status", "phase", "started", "by"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.id, r.quarter, r.status, r.phase_reached or "-",
                          r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.triggered_by)
        out.print(table)


@app.command()
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


@app.command()
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


@app.command()
def version() -> None:
    """Print the soxtrail version and git commit."""
    out.print(f"soxtrail {__version__} ({runs.git_commit() or 'unknown commit'})")


def main() -> None:
    """Entry point (console script and `python -m soxtrail`)."""
    os.environ.setdefault("PGTZ", "UTC")
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # a bug: one line, the traceback only with SOXTRAIL_DEBUG
        if os.environ.get("SOXTRAIL_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {exc.__class__.__name__}: "
                  f"{secrets.redact(str(exc))} (set SOXTRAIL_DEBUG=1 for the traceback)")
        sys.exit(EXIT_PIPELINE_FAILURE)


_ = EXIT_USAGE  # re-exported for callers that import exit codes from the CLI

# command groups living in their own modules register themselves on `app`
import soxtrail.cli.audit  # noqa: E402
import soxtrail.cli.docs  # noqa: E402, F401
