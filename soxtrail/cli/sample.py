"""`soxtrail sample`: a reproducible, signed and recorded sample of a control's population
for the auditor's manual re-performance (docs/auditor-guide.md, "Drawing a sample for
re-performance")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from soxtrail.audit import sample as sampler
from soxtrail.audit.verify import run_store
from soxtrail.cli.common import JsonOpt, err, handled, open_database, out
from soxtrail.kernel import runs, sampling
from soxtrail.kernel.errors import ConfigError

sample_app = typer.Typer()


def _guidance() -> list[dict[str, str]]:
    return [{"frequency": f, "occurrences_per_year": n, "sample_size": s}
            for f, n, s in sampling.SIZE_GUIDANCE]


def _print_guidance() -> None:
    out.print("suggested sample sizes (common audit practice guidance; the tester chooses):",
              markup=False)
    for frequency, occurrences, size in sampling.SIZE_GUIDANCE:
        out.print(f"  {frequency:<30} {occurrences:>10} a year   {size:>6} items", markup=False)
    out.print("  a population smaller than the size is tested in full", markup=False)


@sample_app.command()
def sample(
    run_id: Annotated[str, typer.Argument(
        help="The completed quarter run to sample (id, 8+ character prefix, or `latest`).")],
    control: Annotated[str | None, typer.Option(
        "--control", help="The control whose population is sampled, e.g. AC-01.")] = None,
    size: Annotated[int | None, typer.Option(
        "--size", help="How many items to draw (every item when the population is "
                       "smaller).")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="The seed, a whole number from 0 to 2**63-1: the same seed on the same "
                       "run draws the same items.")] = None,
    stratify: Annotated[str | None, typer.Option(
        "--stratify", help="Draw per value of this column (result): at least one item of "
                           "each, the rest in proportion.")] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Folder for the tester's workbook.")] = Path("."),
    requested_by: Annotated[str | None, typer.Option(
        "--as", help="Who draws the sample (default: the login, as a run records it).")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", help="Ed25519 private key (PEM) to sign with; default $SOXTRAIL_SIGNING_KEY, "
                      "else this machine's signing key.")] = None,
    suggest: Annotated[bool, typer.Option(
        "--suggest", help="Print the suggested sample sizes and the control's population "
                          "size; draw nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Draw a reproducible sample of a control's items for manual re-performance: rank the
    population by SHA-256 of `seed|item_key`, take the first N. Records it (a signed,
    hash-chained row of sox_samples and a signed file beside the bundle, never a change to
    the run) and writes the tester's workbook. `soxtrail verify` rechecks it."""
    with handled():
        if control is None:
            raise ConfigError("--control: give the control to sample, e.g. --control AC-01")
        _, conn = open_database()
        with conn:
            run = runs.get_quarter_run(conn, run_id, "sample")
            conn.commit()
            if suggest:
                _, model = sampler.control_model(control)
                count = len(sampler.population(conn, run.id, model, None))
                conn.commit()
                _suggestion(control, count, as_json)
                return
            if size is None or seed is None:
                raise ConfigError("--size and --seed are required (or --suggest)")
            recorded = sampler.record_sample(
                conn, run, run_store(run), control_id=control, size=size, seed=seed,
                stratify=stratify, requested_by=requested_by or runs.triggered_by(), key=key)
            workbook = sampler.write_workbook(conn, recorded, out_dir)
        _report(recorded, workbook, as_json)


def _suggestion(control: str, count: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"control_id": control, "population_count": count,
                          "guidance": _guidance(), "chooses": "the tester"}, sort_keys=True))
        return
    out.print(f"population: {count} items of {control} in this run", markup=False)
    _print_guidance()


def _report(recorded: sampler.Recorded, workbook: Path, as_json: bool) -> None:
    doc: dict[str, Any] = recorded.doc
    if doc["signer_key"] is None:
        err.print("unsigned: no signing key (--key, $SOXTRAIL_SIGNING_KEY or this machine's "
                  "key); the sample is recorded and can be redrawn, but not attributed",
                  markup=False)
    if as_json:
        print(json.dumps({
            "sample_id": doc["id"], "run_id": doc["run_id"], "control_id": doc["control_id"],
            "method": doc["method"], "seed": doc["seed"],
            "size_requested": doc["size_requested"], "size_drawn": doc["size_drawn"],
            "all_items": doc["all_items"], "stratify": doc["stratify"], "strata": doc["strata"],
            "population_count": doc["population_count"],
            "population_hash": doc["population_hash"],
            "items": [i["item_key"] for i in doc["items"]],
            "requested_by": doc["requested_by"],
            "key_fingerprint": (doc["signer_key"] or {}).get("fingerprint"),
            "file": recorded.location, "workbook": str(workbook),
            "chain_hash": recorded.row["chain_hash"], "guidance": _guidance()},
            sort_keys=True))
        return
    out.print(f"sample: {doc['id']} ({doc['control_id']} of run {doc['run_id']})", markup=False)
    out.print(f"population: {doc['population_count']} items, sha256 {doc['population_hash']}",
              markup=False)
    out.print(f"method: {doc['method']}, seed {doc['seed']}: {doc['size_drawn']} drawn of "
              f"{doc['size_requested']} asked", markup=False)
    if doc["all_items"]:
        out.print(f"note: --size {doc['size_requested']} is at least the population "
                  f"({doc['population_count']}): every item is in the sample", markup=False)
    for name, counts in (doc["strata"] or {}).items():
        out.print(f"stratum {name}: {counts['drawn']} of {counts['population']}", markup=False)
    for item in doc["items"]:
        out.print(f"  {item['rank']:>3}  {item['item_key']}", markup=False)
    out.print(f"file: {recorded.location}", markup=False)
    out.print(f"workbook: {workbook}", markup=False)
    _print_guidance()
