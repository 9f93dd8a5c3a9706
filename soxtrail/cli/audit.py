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

RunArg = Annotated[str, typer.Argument(help="The run id (or a unique 8+ character prefix).")]

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
                        "s3:// prefix, e.g. a copy (default: the store the signed bundle "
                        "records).")] = None,
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
    fmt: Annotated[str, typer.Option("--format", help="table, csv or xlsx.")] = "table",
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write to this file (required for xlsx).")] = None,
) -> None:
    """Per control: population items added, removed, and whose result or reasons changed."""
    with handled():
        if fmt not in ("table", "csv", "xlsx"):
            raise ConfigError(f"--format {fmt!r}: expected table, csv or xlsx")
        if fmt == "xlsx" and out_path is None:
            raise ConfigError("--format xlsx needs --out FILE.xlsx")
        with _read_only() as conn:
            result = diff.diff_runs(conn, run_a, run_b)
        if fmt == "xlsx":
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


def _print_diff_table(result: diff.RunDiff, out_path: Path | None) -> None:
    console = out
    if out_path is not None:
        from rich.console import Console

        console = Console(file=out_path.open("w", encoding="utf-8"), width=200,
                          highlight=False, soft_wrap=True)
    console.print(result.header(), markup=False)
    counts = Table(title="per control")
    for name in ("control", "population A", "population B", "added", "removed", "changed",
                 "unchanged"):
        counts.add_column(name, justify="left" if name == "control" else "right")
    for control in result.controls:
        counts.add_row(control.control_id, str(control.population_a), str(control.population_b),
                       *(str(control.count(k)) for k in diff.CHANGE_KINDS),
                       str(control.unchanged))
    console.print(counts)
    changes = result.changes()
    if changes:
        table = Table(title="changes")
        for name in ("control", "change", "item key", "A", "B"):
            table.add_column(name)
        for change in changes:
            row = change.row()
            a = f"{row['result_a']} {row['reasons_a']}".strip() or "-"
            b = f"{row['result_b']} {row['reasons_b']}".strip() or "-"
            table.add_row(change.control_id, change.change, change.item_key, a, b)
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
