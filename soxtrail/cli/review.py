"""`soxtrail review`: the user access review behind AC-03: export the review files of a run's
role owners, import the returned ones for the next quarter run to capture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extract.connectors.access_review import folder_path
from extract.connectors.registry import SPECS
from soxtrail.audit import review
from soxtrail.cli.common import ConfigOpt, err, handled, open_database, out
from soxtrail.cli.run import demo_config
from soxtrail.kernel.config import load_config
from soxtrail.kernel.errors import EXIT_USAGE, ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.pipeline.context import access_review_sources

review_app = typer.Typer(
    help="The user access review behind AC-03: export a run's review files per role owner, "
         "import the returned ones for the next quarter run to capture.",
    no_args_is_help=True,
)


@review_app.command(name="export")
def export_command(
    run_id: Annotated[str, typer.Argument(
        metavar="RUN", help="The completed quarter run (id, 8+ character prefix, or `latest`: "
                            "the newest completed quarter run).")],
    by: Annotated[str, typer.Option(
        "--by", help="How the items are split into files: `owner` (one file per role owner "
                     "of the role catalog; the only one so far).")],
    file_format: Annotated[str, typer.Option(
        "--format", help="xlsx (for people), csv (for systems) or both.")] = "xlsx",
    out_dir: Annotated[Path, typer.Option(
        "--out", help="The folder to write the files to (created if missing; a file of "
                      "the same name is replaced).")] = Path("."),
) -> None:
    """Write the review files of RUN's AC-03 items: one per role owner,
    access-review_<quarter>_<owner>.<ext> (roles without an owner: _unowned), every
    membership on an in-scope cluster at quarter end with holder, identity status, last
    grant and its evidence, and empty decision, reviewer, reviewed_at and comment columns."""
    with handled():
        if by not in review.GROUPINGS:
            raise ConfigError(f"--by {by!r}: only `owner` is supported (one file per role "
                              "owner)")
        if file_format not in review.FORMAT_CHOICES:
            raise ConfigError(f"--format {file_format!r}: expected xlsx, csv or both")
        _, conn = open_database()
        with conn:
            run = review.resolve_run(conn, run_id, "export a review of")
            result = review.export_review(conn, run, by=by,
                                          formats=review.FORMAT_CHOICES[file_format],
                                          out=out_dir)
        owners = {f.owner for f in result.files}
        out.print(f"run {run.id} ({run.quarter}): {result.items} AC-03 items, "
                  f"{len(owners - {None})} role owners"
                  + (", and roles without an owner" if None in owners else ""), markup=False)
        for written in result.files:
            out.print(f"{written.path}: {written.rows} rows", markup=False)


@review_app.command(name="import")
def import_command(
    files: Annotated[list[Path], typer.Argument(
        metavar="FILES", help="Returned review files (.xlsx or .csv).")],
    quarter: Annotated[str, typer.Option(
        "--quarter", "-q", help="The quarter reviewed, e.g. 2024Q3: its folder is "
                                "`access_review:` with {quarter} filled in.")],
    config: ConfigOpt = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace a different file of the same name already imported.")
    ] = False,
) -> None:
    """Check returned review files with the load's own rules and copy them, bytes unchanged,
    into the quarter's `access_review:` folder, where the next `soxtrail run --quarter Q`
    captures them as evidence. Any problem refuses every file (exit 2)."""
    with handled():
        q = Quarter.parse(quarter)
        cfg = load_config(config or demo_config(q), specs=SPECS, resolve_secrets=False)
        sources = access_review_sources(cfg)
        if not sources:
            raise ConfigError(f"{cfg.path}: no `access_review:` key: add e.g. "
                              "`access_review: reviews/{quarter}` (docs/configuration.md, "
                              "access_review)")
        folder = folder_path(sources[0], q.label)
        checked = [review.check_review(path, q.label) for path in files]
        problems = [problem for found in checked for problem in found.problems]
        if problems:
            for problem in problems:
                err.print(problem, markup=False)
            err.print(f"[bold red]error:[/] {len(problems)} problem(s): nothing imported",
                      markup=True)
            raise typer.Exit(EXIT_USAGE)
        review.file_reviews(checked, folder, replace=replace)
    for found in checked:
        out.print(f"{found.path.name}: {found.status} into {folder}", markup=False)
        out.print(f"    owners: {', '.join(found.owners) or '-'}; rows: {found.rows}; "
                  f"keep: {found.keep}, remove: {found.remove}, undecided: {found.undecided}",
                  markup=False)
        out.print(f"    reviewers: {', '.join(found.reviewers) or '-'}; reviewed_at: "
                  f"{found.first_reviewed_at or '-'} .. {found.last_reviewed_at or '-'}",
                  markup=False)
        out.print(f"    sha256: {found.sha256}", markup=False)
    again = f"soxtrail run --quarter {q.label}" + (f" --config {config}" if config else "")
    out.print(f"the next `{again}` captures them (an evidence row and SHA-256 per file, one "
              "raw row per review row)", markup=False)
