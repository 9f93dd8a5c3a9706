"""The `soxtrail` command tree: one typer app per command group, joined with `add_typer`."""

from __future__ import annotations

import os
import sys
import warnings

import typer

from soxtrail.cli.audit import audit_app
from soxtrail.cli.common import err
from soxtrail.cli.db import db_app
from soxtrail.cli.docs import docs_app
from soxtrail.cli.respond import respond_app
from soxtrail.cli.review import review_app
from soxtrail.cli.run import run_app
from soxtrail.cli.sample import sample_app
from soxtrail.cli.signoff import signoff_app
from soxtrail.cli.trend import trend_app
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import EXIT_PIPELINE_FAILURE

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

app = typer.Typer(
    name="soxtrail",
    help="SOX IT-general-controls reports for PostgreSQL estates, every number cheap to verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(run_app)  # run, capture, snapshot … bundle, resume, runs, demo, keygen, version
app.add_typer(audit_app)  # verify, diff, access-as-of, evidence, export-oscal, grant-auditor
app.add_typer(signoff_app)  # signoff: a person attests a run (the official run)
app.add_typer(respond_app)  # respond: management's response to an exception
app.add_typer(sample_app)  # sample: a recorded sample for re-performance
app.add_typer(trend_app)  # trend: quarter over quarter, per control
app.add_typer(review_app, name="review")  # export, import: the user access review (AC-03)
app.add_typer(docs_app, name="docs")
app.add_typer(db_app, name="db")  # status, stop: the embedded PostgreSQL


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
