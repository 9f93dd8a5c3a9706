"""`soxtrail respond`: management's response to one exception, written to the responses file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from extract.connectors import responses
from soxtrail.cli.common import handled, open_database, out
from soxtrail.kernel import controls
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.runs import get_quarter_run
from soxtrail.pipeline.context import config_for_run

respond_app = typer.Typer()


def responses_file(run_config: dict[str, object], quarter: str) -> Path:
    """The run's quarter's responses file, from the config the run recorded."""
    template = run_config.get("responses")
    if not isinstance(template, str) or not template:
        raise ConfigError("the run's config names no responses file: add "
                          "`responses: responses/{quarter}.yml` to soxtrail.yml")
    path = Path(template.replace("{quarter}", quarter))
    return path if path.is_absolute() else Path(str(run_config.get("_base_dir", "."))) / path


@respond_app.command()
def respond(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run (id or 8+ char prefix).")],
    item: Annotated[str, typer.Argument(metavar="ITEM", help="The item key in its control.")],
    control: Annotated[str, typer.Option("--control", help="The control id, e.g. AC-01.")],
    owner: Annotated[str, typer.Option("--owner", help="Who answers for the remediation.")],
    due: Annotated[str, typer.Option("--due", help="Due date, YYYY-MM-DD.")],
    status: Annotated[str, typer.Option(
        "--status", help="open, remediated or accepted-risk (a waiver).")],
    root_cause: Annotated[str | None, typer.Option("--root-cause")] = None,
    remediation: Annotated[str | None, typer.Option(
        "--remediation", help="The remediation ticket key.")] = None,
    compensating: Annotated[str | None, typer.Option("--compensating-control")] = None,
    approver: Annotated[str | None, typer.Option(
        "--approver", help="A waiver's approver (never the owner).")] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="A waiver's expiry date, YYYY-MM-DD.")] = None,
) -> None:
    """Record management's response to one exception of RUN in the quarter's responses file
    (version-controlled; the next run captures it). A waiver needs --approver and --expires."""
    with handled():
        if control not in controls.CONTROLS:
            raise ConfigError(f"--control {control!r}: unknown (known: "
                              f"{', '.join(controls.CONTROLS)})")
        _, conn = open_database()
        with conn:
            run = get_quarter_run(conn, run_id, "respond to")
            model = controls.CONTROLS[control]
            found = conn.execute(
                f"select result from {controls.MARTS_SCHEMA}.{model}"
                " where run_id = %s and item_key = %s", (run.id, item)).fetchone()
        if found is None:
            raise ConfigError(f"{control} of run {run.id} has no item {item!r}")
        if found[0] != "EXCEPTION":
            raise ConfigError(f"{control} {item} is not an exception in run {run.id}")
        config_for_run(run, resolve_secrets=False)  # the recorded config still validates
        path = responses_file(run.config, run.quarter)
        replaced = responses.write_response(path, {
            "control": control, "item": item, "root_cause": root_cause,
            "remediation": remediation, "owner": owner, "due": due, "status": status,
            "compensating_control": compensating, "approver": approver, "expires": expires})
        verb = "replaced" if replaced else "added"
        out.print(f"{verb} the response to {control} {item} in {path} "
                  f"({dt.date.today().isoformat()}); commit it, the next run captures it")
