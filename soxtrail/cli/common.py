"""What every command group shares: the consoles, option types, error mapping, the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from soxtrail.kernel import secrets
from soxtrail.kernel.database import Database, bootstrap, resolve_database
from soxtrail.kernel.errors import EXIT_PIPELINE_FAILURE, ConfigError, SoxtrailError

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


def open_database() -> tuple[Database, Any]:
    """Resolve, bootstrap and connect."""
    db = resolve_database()
    bootstrap(db)
    return db, db.connect()
