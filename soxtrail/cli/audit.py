"""Auditor commands on the `soxtrail` CLI: verify, diff, access-as-of, evidence, explain,
OSCAL, roles."""

from __future__ import annotations

import json
import os
import shlex
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from soxtrail.audit import access, auditor, diff, explain, oscal, verify
from soxtrail.cli.common import JsonOpt, err, handled, open_database, out
from soxtrail.kernel.database import home, resolve_database
from soxtrail.kernel.errors import EXIT_EXCEPTIONS_FOUND, ConfigError, PipelineError
from soxtrail.kernel.store import open_store

RunArg = Annotated[str, typer.Argument(help="The run id (or a unique 8+ character prefix, or "
                                            "`latest`: the newest completed quarter run).")]

audit_app = typer.Typer()


def _read_only() -> Any:
    """A read-only connection; never bootstraps, so an auditor's SELECT-only role suffices."""
    return verify.connect_read_only(resolve_database())


@audit_app.command(name="verify")
def verify_command(
    run_id: RunArg,
    bundle: Annotated[str | None, typer.Option(
        "--bundle", help="Bundle folder or s3:// prefix (default: the run's own).")] = None,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="The signer's Ed25519 public key (PEM) the auditor holds.")] = None,
    allow_unsigned: Annotated[bool, typer.Option(
        "--allow-unsigned", help="Accept an UNSIGNED bundle (a run started with --no-sign): "
                                 "its verdict is UNSIGNED, not a failure. Without it an "
                                 "unsigned bundle fails verification.")] = False,
    require_signature: Annotated[bool, typer.Option(
        "--require-signature", help="An UNSIGNED bundle fails verification: the default "
                                    "now (kept for scripts that pass it; not with "
                                    "--allow-unsigned).")] = False,
    store_uri: Annotated[str | None, typer.Option(
        "--store", help="Read the raw objects (and find the bundle) in this store: a folder or "
                        "s3:// prefix, e.g. an auditor's copy (default: the store the signed "
                        "bundle records). Another store or database than the run's is a NOTE; "
                        "the hashes decide.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check a run: raw objects (hash, rows, and the raw tables re-derived from them), the
    hash chain against the signed bundle's anchor, control re-runs, the report re-rendered,
    the bundle and its signature, mart evidence links."""
    with handled():
        if public_key is not None and not public_key.is_file():
            raise ConfigError(f"--public-key {public_key}: no such file")
        if allow_unsigned and require_signature:
            raise ConfigError("--allow-unsigned and --require-signature contradict each other")
        store = None
        if store_uri is not None:
            if not store_uri.startswith("s3://") and not Path(store_uri).is_dir():
                raise ConfigError(f"--store {store_uri}: no such folder")
            store = open_store(store_uri, home() / "store")
        with _read_only() as conn:
            report = verify.verify_run(
                conn, run_id, bundle=bundle, public_key=public_key,
                allow_unsigned=allow_unsigned, require_signature=require_signature, store=store,
                progress=None if as_json else lambda v: out.print(v.line(), markup=False))
        if as_json:
            print(json.dumps({"run_id": report.run_id, "quarter": report.quarter,
                              "passed": report.passed, "counts": report.counts(),
                              "checks": [v.as_dict() for v in report.verdicts]}, sort_keys=True))
        else:
            out.print(report.summary(), markup=False)
        _warn_unpinned(report)
        if not report.passed:
            raise typer.Exit(EXIT_EXCEPTIONS_FOUND)


def _warn_unpinned(report: verify.VerifyReport) -> None:
    """Without --public-key: the signer's fingerprint, loudly, and what it does not prove."""
    for verdict in report.verdicts:
        if (verdict.kind, verdict.subject, verdict.status) == ("bundle", "signature", "NOTE"):
            err.print("[bold yellow]WARNING: the signature was checked with the bundle's own "
                      "key only[/]", markup=True)
            err.print(f"  {verdict.detail}", markup=False)


@audit_app.command(name="diff")
def diff_command(
    run_a: Annotated[str, typer.Argument(help="The earlier run (A).")],
    run_b: Annotated[str, typer.Argument(help="The later run (B).")],
    fmt: Annotated[str, typer.Option(
        "--format", help="table (every layer), csv (the changed items) or xlsx (one sheet "
                         "per layer).")] = "table",
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write to this file (required for xlsx).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print every layer as JSON (instead of --format).")] = False,
    fail_on_change: Annotated[bool, typer.Option(
        "--fail-on-change",
        help="Exit 1 when any layer differs (CI: a re-run must reproduce a run exactly). "
             "Counted: evidence objects added, removed or changed (SHA-256, rows) and "
             "sources; recorded config keys, scope and catalog rows; a control's compiled "
             "SQL (run id replaced) or model checksum; items added, removed or changed "
             "(counts and reason codes where items are compared by counts). Not counted: "
             "run ids, timestamps, store keys, evidence ids, git commit, tool version and "
             "the config's record keys _base_dir, _catalogs, _store, _signing.")] = False,
) -> None:
    """Why results moved between two runs, layer by layer: evidence objects per source,
    config and catalogs, each control's compiled SQL, and the items added, removed or
    changed, each explained by the layer whose input changed (UNEXPLAINED: none did).
    Runs of two quarters match items only for controls whose items recur across
    quarters; the others are compared by counts and reason codes."""
    with handled():
        if fmt not in ("table", "csv", "xlsx"):
            raise ConfigError(f"--format {fmt!r}: expected table, csv or xlsx")
        if fmt == "xlsx" and out_path is None:
            raise ConfigError("--format xlsx needs --out FILE.xlsx")
        with _read_only() as conn:
            result = diff.diff_runs(conn, run_a, run_b, sizes=fmt != "csv" or as_json)
        if as_json:
            text = json.dumps(result.as_dict(), sort_keys=True, default=str)
            if out_path is not None:
                out_path.write_text(text + "\n", encoding="utf-8")
            else:
                print(text)
        elif fmt == "xlsx":
            assert out_path is not None
            diff.write_xlsx(result, out_path)
            err.print(result.header(), markup=False)
            out.print(f"diff written to {out_path}", markup=False)
        elif fmt == "csv":
            text = diff.to_csv(result)
            if out_path is not None:
                out_path.write_text(text, encoding="utf-8")
                err.print(result.header(), markup=False)
            else:
                print(text, end="")
        else:
            _print_diff_table(result, out_path)
        if result.unexplained():
            err.print(f"[bold red]UNEXPLAINED: {len(result.unexplained())} changed decision(s) "
                      "with no changed input: a determinism bug[/]", markup=True)
        if fail_on_change and result.differs:
            counts = ", ".join(f"{k} {v}" for k, v in result.differences().items() if v)
            err.print(f"runs differ ({counts}): --fail-on-change", markup=False)
            raise typer.Exit(EXIT_EXCEPTIONS_FOUND)


_SQL_DIFF_LINES = 40  # per control in the table; --json and xlsx carry the whole diff


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    table = Table(title=title)
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _print_diff_table(result: diff.RunDiff, out_path: Path | None) -> None:
    console = out
    if out_path is not None:
        from rich.console import Console

        console = Console(file=out_path.open("w", encoding="utf-8"), width=200,
                          highlight=False, soft_wrap=True)
    console.print(result.header(), markup=False)
    console.print(_table("layers (what --fail-on-change counts)", ("layer", "differences"),
                         list(result.differences().items())))
    evidence = result.evidence
    if evidence is not None and evidence.differs:
        console.print(_table(
            "evidence, per source", ("source", "objects A", "objects B", "added", "removed",
                                     "changed", "status"),
            [tuple(r.values()) for r in evidence.per_source() if r["status"] != "same"]))
        console.print(_table(
            "evidence objects", ("source", "object", "change", "rows A", "rows B", "bytes A",
                                 "bytes B", "sha256 A", "sha256 B"),
            [(r["source"], r["query_name"], r["change"], r["rows_a"], r["rows_b"],
              r["size_a"], r["size_b"], str(r["sha256_a"])[:12], str(r["sha256_b"])[:12])
             for r in (c.row() for c in evidence.changes)]))
    if result.config is not None and result.config.keys:
        console.print(_table("config (recorded, ${…} references as written)",
                             ("key", "change", "A", "B", "counted"),
                             [tuple(k.row().values()) for k in result.config.keys]))
    if result.config is not None and result.config.catalog_rows:
        console.print(_table("catalog rows", ("catalog", "key", "change", "what differs"),
                             [(c.catalog, c.key, c.change, c.delta())
                              for c in result.config.catalog_rows]))
    if result.sql is not None and result.sql.differs:
        changed_sql = [c for c in result.sql.controls if c.status != "same"]
        console.print(_table(
            "control SQL", ("control", "status", "cause", "SQL sha256 A", "SQL sha256 B",
                            "vars changed", "git commit A", "git commit B"),
            [(c.control_id, c.status, c.cause, c.row()["sql_sha256_a"][:12],
              c.row()["sql_sha256_b"][:12], c.row()["vars_changed"],
              c.row()["git_commit_a"][:12], c.row()["git_commit_b"][:12])
             for c in changed_sql]))
        for entry in changed_sql:
            lines = entry.unified_diff.splitlines()
            console.print("\n".join(lines[:_SQL_DIFF_LINES]), markup=False, highlight=False)
            if len(lines) > _SQL_DIFF_LINES:
                console.print(f"… {len(lines) - _SQL_DIFF_LINES} more lines of {entry.control_id}"
                              "'s SQL diff (all of it: --json or --format xlsx)", markup=False)
    counts = Table(title="decisions, per control")
    for name in ("control", "compared by", "population A", "population B", "exceptions A",
                 "exceptions B", "added", "removed", "changed"):
        counts.add_column(name, justify="left" if name in ("control", "compared by")
                          else "right")
    for control in result.controls:
        counts.add_row(control.control_id, control.compared_by, str(control.population_a),
                       str(control.population_b), str(control.exceptions_a),
                       str(control.exceptions_b),
                       *(str(control.count(k)) if control.compared_by == "item" else "-"
                         for k in diff.CHANGE_KINDS))
    console.print(counts)
    by_counts = [c for c in result.controls if c.compared_by == "counts" and c.differs]
    if by_counts:
        console.print(_table("reason codes (controls compared by counts)",
                             ("control", "reasons A", "reasons B"),
                             [(c.control_id, c.counts_row()["reasons_a"],
                               c.counts_row()["reasons_b"]) for c in by_counts]))
    changes = result.changes()
    if changes:
        table = Table(title="changed items, and the layer that explains each")
        for name in ("control", "change", "item key", "A", "B", "explained by"):
            table.add_column(name)
        for change in changes:
            row = change.row()
            a = f"{row['result_a']} {row['reasons_a']}".strip() or "-"
            b = f"{row['result_b']} {row['reasons_b']}".strip() or "-"
            table.add_row(change.control_id, change.change, change.item_key, a, b,
                          "\n".join(change.because), style="bold red"
                          if diff.UNEXPLAINED in change.explained_by else None)
        console.print(table)
    if out_path is not None:
        console.file.close()


@audit_app.command(name="access-as-of")
def access_as_of_command(
    moment: Annotated[str, typer.Argument(
        help="A timestamp (2024-09-15T12:00:00Z) or a date (its last instant, UTC).")],
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster.")] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run", help="Use this run (default: the newest reconciled run of the quarter).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who held which role on which cluster at that moment, with the evidence it rests on."""
    with handled():
        at = access.parse_moment(moment)
        with _read_only() as conn:
            result = access.access_as_of(conn, at, cluster=cluster, run_id=run_id)
        if as_json:
            print(json.dumps({"at": at.isoformat(), "run_id": result.run_id,
                              "quarter": result.quarter, "source": result.source,
                              "holdings": [h.as_dict() for h in result.holdings]},
                             sort_keys=True))
            return
        err.print(result.header(), markup=False)
        table = Table()
        for name in ("cluster", "login role", "role", "evidence", "basis"):
            table.add_column(name)
        for h in result.holdings:
            table.add_row(h.cluster, h.login_role, h.role,
                          "\n".join(f"{e} {loc}".strip() for e, loc in
                                    zip(h.evidence_ids, h.locators or ("",) * len(h.evidence_ids),
                                        strict=False)), h.basis)
        out.print(table)
        out.print(f"{len(result.holdings)} holdings", markup=False)


def fetch_commands(location: str, expected: str) -> list[str]:
    """Shell commands an auditor runs to fetch an object and check its SHA-256."""
    if location.startswith("s3://"):
        name = location.rsplit("/", 1)[-1] or "object"
        endpoint = os.environ.get("SOXTRAIL_S3_ENDPOINT_URL")
        flag = f" --endpoint-url {shlex.quote(endpoint)}" if endpoint else ""
        return [f"aws s3 cp{flag} {shlex.quote(location)} {shlex.quote('./' + name)}"
                f" && sha256sum {shlex.quote('./' + name)}",
                f"echo {shlex.quote(expected + '  ./' + name)} | sha256sum -c -"]
    return [f"sha256sum {shlex.quote(location)}",
            f"echo {shlex.quote(expected + '  ' + location)} | sha256sum -c -"]


def evidence_details(conn: Any, evidence_id: str) -> dict[str, Any]:
    """The evidence row, its chain link, its store location and the commands to check it."""
    try:
        uuid.UUID(evidence_id)
    except ValueError as exc:
        raise ConfigError(f"{evidence_id!r} is not an evidence id (a UUID)") from exc
    from soxtrail.kernel import evidence, runs

    row = evidence.row_with_link(conn, evidence_id)
    if row is None:
        raise PipelineError(f"no evidence row with id {evidence_id}")
    run = runs.get_run(conn, str(row["run_id"]))
    conn.commit()
    location = verify.run_store(run).location(row["raw_output_s3_key"])
    return {"evidence": row, "quarter": run.quarter, "location": location,
            "commands": fetch_commands(location, row["result_hash"])}


@audit_app.command(name="evidence")
def evidence_command(
    evidence_id: Annotated[str, typer.Argument(help="The evidence id (a UUID).")],
    as_json: JsonOpt = False,
) -> None:
    """Show an evidence row, where its raw object is, and how to fetch it and check its hash."""
    with handled():
        with _read_only() as conn:
            details = evidence_details(conn, evidence_id)
        row = details["evidence"]
        if as_json:
            print(json.dumps(details, default=str, sort_keys=True))
            return
        for name in ("id", "run_id", "source_system", "query_name", "executed_at", "executed_by",
                     "result_row_count", "result_hash", "raw_output_s3_key", "created_at",
                     "chain_seq", "chain_hash"):
            out.print(f"{name + ':':<18} {row[name]}", markup=False)
        out.print(f"{'query_params:':<18} {json.dumps(row['query_params'], sort_keys=True)}",
                  markup=False)
        out.print("query_text:", markup=False)
        out.print("    " + "\n    ".join(str(row["query_text"]).splitlines()), markup=False)
        out.print(f"{'location:':<18} {details['location']}", markup=False)
        out.print("check it:", markup=False)
        for command in details["commands"]:
            out.print(f"    {command}", markup=False)


@audit_app.command(name="explain")
def explain_command(
    run_id: RunArg,
    item_key: Annotated[str, typer.Argument(
        help="The item key, as the workbook's first column shows it.")],
    control: Annotated[str | None, typer.Option(
        "--control", help="The control (AC-01 …); needed only when two controls share the "
                          "key.")] = None,
    store_uri: Annotated[str | None, typer.Option(
        "--store", help="Read the raw objects from this store (a folder or s3:// prefix, "
                        "e.g. a copy; default: the run's own).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One row's whole decision: the item, its source lines as stored, the evidence rows it
    rests on, the candidates, each test and its value, the reasons and the SQL's CTEs."""
    with handled():
        store = None
        if store_uri is not None:
            if not store_uri.startswith("s3://") and not Path(store_uri).is_dir():
                raise ConfigError(f"--store {store_uri}: no such folder")
            store = open_store(store_uri, home() / "store")
        with _read_only() as conn:
            result = explain.explain(conn, run_id, item_key, control_id=control, store=store)
        if as_json:
            print(json.dumps(result.as_dict(), sort_keys=True, ensure_ascii=False))
            return
        explain.print_explanation(out, result)


@audit_app.command(name="export-oscal")
def export_oscal_command(
    run_id: RunArg,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the JSON here.")] = None,
) -> None:
    """The run as NIST OSCAL assessment-results JSON."""
    with handled():
        with _read_only() as conn:
            text = oscal.to_json(oscal.assessment_results(conn, run_id))
        if out_path is None:
            print(text, end="")
        else:
            out_path.write_text(text, encoding="utf-8")
            out.print(f"OSCAL assessment-results written to {out_path}", markup=False)


@audit_app.command(name="grant-auditor")
def grant_auditor_command(
    name: Annotated[str, typer.Argument(help="An existing login role to make an auditor.")],
) -> None:
    """Create the read-only soxtrail_auditor role if missing and grant it to a login role."""
    with handled():
        _, conn = open_database()
        with conn:
            report = auditor.grant_auditor(conn, name)
        verb = "created" if report.role_created else "updated"
        out.print(f"{auditor.AUDITOR_ROLE} {verb}: SELECT on {', '.join(report.schemas)}; "
                  f"granted to {name}", markup=False)
        if report.schemas_absent:
            out.print(f"schemas not there yet: {', '.join(report.schemas_absent)} "
                      "(run grant-auditor again once they exist)", markup=False)
