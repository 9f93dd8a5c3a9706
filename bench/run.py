"""The estate-scale benchmark: `python -m bench.run --size small|medium|large`.

One bench run, on one machine, side by side:

* the demo estate generated at the size asked (cached under the work folder,
  regenerated when the generator or the size changes);
* `soxtrail run` on it, as its own process, against a fresh database on the
  embedded pgserver (or on the server of SOXTRAIL_DATABASE_URL), with its
  per-phase wall seconds and the peak RSS of the soxtrail process and the
  peak PSS of the PostgreSQL server, sampled during each phase;
* the limits, measured on the same bytes in the same run (see `bench/README.md`):
  copy+SHA-256 in one pass (snapshot), hashlib SHA-256 (hashing), `psql \\copy`
  into equivalent tables with as many streams as the loader uses (load), a
  reference hash join + window query over the loaded raw rows (reconcile), and
  xlsxwriter constant-memory writing of the same rows (render);
* the marts checked against the estate's planted ground truth (expected.json):
  any mismatch and the bench exits 1;
* with `--engine spark`, after all that, the same workload run again with
  SOXTRAIL_ENGINE=spark on local Spark at local[2] (side by side with PostgreSQL)
  and local[1] (the scaling), each sampled and checked the same way.

Results go to `bench/results/<timestamp>.json` and `.md`; `--docs` also
updates the figures of this size in docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import LOAD_STREAMS, QUARTER, REPO, SPARK_MASTERS, log, master_cores
from bench.limits import (
    limit_copy_hash,
    limit_hash,
    limit_load,
    limit_reconcile,
    limit_render,
    warm_cache,
)
from bench.report import (
    figures,
    git_commit,
    machine,
    markdown,
    scaling_markdown,
    spark_figures,
    spark_markdown,
    spark_status,
    update_docs,
)
from bench.server import Server, create_database, drop_database, open_server
from bench.soxtrail_run import (
    RunFailed,
    check_results,
    logged_phases,
    run_facts,
    run_soxtrail,
    verify_soxtrail,
    warehouse_facts,
)

SEED = 7
SOURCE_DIRS = ("logs", "catalog", "cloudtrail", "hr", "jira", "backups", "seeds")
DEFAULT_WORKDIR = Path(os.environ.get("SOXTRAIL_BENCH_DIR", "/tmp/soxtrail-bench"))
RESULTS_DIR = REPO / "bench" / "results"

# name -> DemoScale keyword arguments. Tickets, backups and catalog rows are minimums the
# generator fills up to; log lines and CloudTrail records are targets.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(clusters=12, in_scope_clusters=8, log_lines=20_000, cloudtrail_records=2_000,
                 tickets=400, backup_records=0, role_catalog_rows=0),
    "small": dict(clusters=20, in_scope_clusters=12, log_lines=100_000,
                  cloudtrail_records=10_000, tickets=2_000, backup_records=250,
                  role_catalog_rows=50),
    "medium": dict(clusters=60, in_scope_clusters=36, log_lines=1_000_000,
                   cloudtrail_records=100_000, tickets=20_000, backup_records=2_500,
                   role_catalog_rows=500),
    "large": dict(clusters=200, in_scope_clusters=120, log_lines=10_000_000,
                  cloudtrail_records=1_000_000, tickets=200_000, backup_records=25_000,
                  role_catalog_rows=5_000),
}


# ---------------------------------------------------------------------------
# the workload


def workload(size: str, workdir: Path, *, regenerate: bool = False) -> tuple[Path, dict[str, Any]]:
    """The demo estate of `size` under the work folder (generated unless cached)."""
    from extract.demo import DemoScale, generate
    from soxtrail.kernel.quarter import Quarter

    folder = workdir / f"data-{size}"
    stamp = {"scale": SIZES[size], "seed": SEED, "quarter": QUARTER,
             "generator_sha256": hashlib.sha256(b"".join(
                 path.read_bytes() for path in sorted((REPO / "extract" / "demo").rglob("*.py"))
             )).hexdigest()}
    stamp_path = folder / "bench-workload.json"
    if not regenerate and stamp_path.exists():
        cached = json.loads(stamp_path.read_text())
        if cached.get("stamp") == stamp and (folder / "expected.json").exists():
            log(f"workload {size}: cached in {folder}")
            return folder, cached["summary"]
    log(f"workload {size}: generating in {folder} ...")
    started = time.monotonic()
    stamp_path.unlink(missing_ok=True)
    summary = generate(folder, Quarter.parse(QUARTER), seed=SEED, scale=DemoScale(**SIZES[size]))
    info = {k: v for k, v in asdict(summary).items() if k != "out"}
    info["generate_seconds"] = round(time.monotonic() - started, 1)
    stamp_path.write_text(json.dumps({"stamp": stamp, "summary": info}, indent=1))
    log(f"workload {size}: {info['log_lines']:,} log lines in {info['generate_seconds']} s")
    return folder, info


def input_files(data: Path) -> list[Path]:
    """Every source file of the estate (what snapshot reads and load parses)."""
    return sorted(p for d in SOURCE_DIRS for p in (data / d).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------
# one size


def bench_size(size: str, args: argparse.Namespace, server: Server) -> dict[str, Any]:
    """Workload, soxtrail run, results check and limits for one size."""
    workdir: Path = args.workdir
    data, summary = workload(size, workdir, regenerate=args.regenerate)
    files = input_files(data)
    raw_bytes = sum(p.stat().st_size for p in files)
    result: dict[str, Any] = {"size": size, "workload": summary, "input_files": len(files),
                              "input_bytes": raw_bytes, "limits": {}}
    log(f"{size}: {len(files)} files, {raw_bytes / 1e6:,.1f} MB; warming the page cache ...")
    result["cold_read_seconds"] = warm_cache(files)
    log(f"{size}: hashing limit ...")
    result["limits"]["hash"] = limit_hash(files)
    dbname, dsn = create_database(server)
    home = workdir / f"home-{size}-{uuid.uuid4().hex[:8]}"
    spark = args.engine == "spark"
    try:
        log(f"{size}: soxtrail run (database {dbname}) ...")
        run = run_soxtrail(data, dsn, home, server, pgoptions=args.pgoptions,
                           # the side-by-side run is PostgreSQL's whatever the shell says
                           env_extra={"SOXTRAIL_ENGINE": "postgres"} if spark else None)
        result["run"] = run
        result["facts"] = run_facts(dsn, run["run_id"])
        problems = check_results(dsn, run["run_id"], data / "expected.json")
        result["problems"] = problems
        log(f"{size}: run {run['run_id']} in {run['wall_seconds']:.1f} s; results "
            + ("match the ground truth" if not problems else f"WRONG: {problems}"))
        if args.verify:
            log(f"{size}: soxtrail verify {run['run_id']} ...")
            result["verify"] = verify_soxtrail(dsn, home, run["run_id"])
            log(f"{size}: verify in {result['verify']['wall_seconds']:.1f} s, exit "
                f"{result['verify']['exit_code']}: {result['verify']['last_line']}")
        shutil.rmtree(home, ignore_errors=True)  # its store holds a copy of every raw byte
        if not args.no_limits:
            log(f"{size}: copy+hash limit ...")
            result["limits"]["copy_hash"] = limit_copy_hash(files, workdir / "copy-limit")
            log(f"{size}: psql \\copy limit ({LOAD_STREAMS} streams) ...")
            result["limits"]["load"] = limit_load(server, dsn, files, LOAD_STREAMS)
            log(f"{size}: reconcile reference query ...")
            result["limits"]["reconcile"] = limit_reconcile(dsn)
            log(f"{size}: xlsxwriter limit ...")
            result["limits"]["render"] = limit_render(dsn, run["run_id"],
                                                      workdir / "render-limit")
        if spark:
            result["engines"] = {"spark": bench_spark(size, data, args, server)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if args.keep_db:  # e.g. to EXPLAIN the marts' compiled SQL on this size's data
            log(f"{size}: database kept: {dsn}")
        else:
            drop_database(server, dbname)
        if args.clean:
            shutil.rmtree(data, ignore_errors=True)
    result["table"] = figures(result)
    if spark:
        result["engines"]["spark"]["figures"] = spark_figures(result)
    return result


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def bench_spark(size: str, data: Path, args: argparse.Namespace,
                server: Server) -> dict[str, Any]:
    """`--engine spark`: the size's workload once per master of SPARK_MASTERS, each run
    with SOXTRAIL_ENGINE=spark on a fresh database and home, sampled and checked like the
    PostgreSQL run. A run that fails is recorded (with the phases its log says it finished)
    and the masters after it are skipped: the bench then exits 1."""
    from extract.loader import load_workers

    spark: dict[str, Any] = {
        "masters": list(SPARK_MASTERS), "pyspark": _version("pyspark"),
        "dbt_spark": _version("dbt-spark"), "load_workers": load_workers(1 << 30),
        "runs": {},
    }
    failed_before = None
    for master in SPARK_MASTERS:
        entry: dict[str, Any] = {"master": master, "cores": master_cores(master),
                                 "problems": [], "error": None}
        spark["runs"][master] = entry
        if failed_before is not None:
            entry["skipped"] = f"the {failed_before} run failed"
            log(f"{size}: Spark {master}: skipped ({entry['skipped']})")
            continue
        dbname, dsn = create_database(server)
        home = args.workdir / f"home-{size}-spark-{uuid.uuid4().hex[:8]}"
        try:
            log(f"{size}: soxtrail run, engine spark, {master} (database {dbname}) ...")
            try:
                run = run_soxtrail(data, dsn, home, server, pgoptions=args.pgoptions,
                                   env_extra={"SOXTRAIL_ENGINE": "spark",
                                              "SOXTRAIL_SPARK_MASTER": master})
                entry["run"] = run
                entry["facts"] = run_facts(dsn, run["run_id"])
                entry["warehouse"] = warehouse_facts(dsn, run["run_id"], home)
                entry["problems"] = check_results(dsn, run["run_id"], data / "expected.json")
            except Exception as exc:  # recorded: the PostgreSQL figures are reported anyway
                entry["error"] = f"{exc.__class__.__name__}: {str(exc)[-6000:]}"
                entry["phases_logged"] = logged_phases(home)
                if isinstance(exc, RunFailed):  # its peaks and CPU until it failed
                    entry["sampled"] = exc.sampled
                failed_before = master
                # the run's own word on why (its log), else the last line of its stderr
                why = (entry["phases_logged"].get("failed") or {}).get("error") or next(
                    (line for line in reversed(str(exc).splitlines()) if line.strip()), "")
                log(f"{size}: Spark {master}: FAILED ({spark_status(entry)}): {why[:300]}")
                continue
            log(f"{size}: Spark {master}: run {run['run_id']} in {run['wall_seconds']:.1f} s "
                f"(reconcile {float(run['phases']['reconcile']['seconds']):.1f} s); results "
                + ("match the ground truth" if not entry["problems"]
                   else f"WRONG: {entry['problems']}"))
        finally:
            shutil.rmtree(home, ignore_errors=True)
            if args.keep_db:
                log(f"{size}: Spark {master}: database kept: {dsn}")
            else:
                drop_database(server, dbname)
    return spark


def spark_failures(result: dict[str, Any]) -> list[str]:
    """The Spark runs of a size that failed, were skipped or gave wrong results."""
    runs = (result.get("engines") or {}).get("spark", {}).get("runs", {})
    return [f"Spark {master}: {spark_status(entry)}" for master, entry in runs.items()
            if spark_status(entry) != "ok"]


# ---------------------------------------------------------------------------
# the command


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when every size ran and matched its ground truth (with `--engine
    spark`, every Spark run of it too)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--sizes", help="several sizes, e.g. small,medium: adds the scaling curve")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"workloads, run homes, embedded server (default {DEFAULT_WORKDIR})")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--regenerate", action="store_true", help="regenerate cached workloads")
    parser.add_argument("--clean", action="store_true", help="delete the workloads afterwards")
    parser.add_argument("--no-limits", action="store_true", help="skip the limit measurements")
    parser.add_argument("--docs", action="store_true", help="update docs/performance.md")
    parser.add_argument("--pgoptions", help="PGOPTIONS for the soxtrail run, e.g. "
                        "'-c enable_nestloop=off' (recorded with the results)")
    parser.add_argument("--verify", action="store_true",
                        help="after the run, time `soxtrail verify` on it (before its store goes)")
    parser.add_argument("--keep-db", action="store_true",
                        help="keep the run's database (its DSN is logged) instead of dropping it")
    parser.add_argument("--engine", choices=("postgres", "spark"), default="postgres",
                        help="spark: after each size's PostgreSQL run, the same workload on "
                        f"local Spark at {' and '.join(SPARK_MASTERS)} (needs the spark extra "
                        "and Java: make spark-deps), side by side")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in (args.sizes or args.size).split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {sorted(SIZES)}")
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PGTZ", "UTC")
    server = open_server(args.workdir)
    log(f"server: {server.kind} PostgreSQL {server.settings.get('server_version')} "
        f"({'memory sampled' if server.postmaster else 'not local: memory not sampled'})")
    results = []
    failed = False
    for size in sizes:
        try:
            results.append(bench_size(size, args, server))
        except Exception as exc:  # report and carry on with the next size
            log(f"{size}: FAILED: {exc}")
            failed = True
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    parts = [markdown(r) + (f"\n\n{spark_markdown(r)}" if "engines" in r else "")
             for r in results]
    if len(results) > 1:
        parts.append("Time per million audit-log lines:\n\n" + scaling_markdown(results))
    report = "\n\n".join(parts)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"timestamp": stamp, "command": command, "git": git_commit(), "machine": machine(),
               "server": {"kind": server.kind, **server.settings}, "pgoptions": args.pgoptions,
               "results": results}
    if args.engine != "postgres":
        payload["engine"] = args.engine
    (args.results_dir / f"{stamp}.json").write_text(json.dumps(payload, indent=1, default=str))
    header = (f"{stamp}, commit {payload['git']}, {payload['machine']['cpus']} CPUs, "
              f"{payload['machine']['memory_gib']} GiB, {server.kind} PostgreSQL "
              f"{server.settings.get('server_version')} (shared_buffers "
              f"{server.settings.get('shared_buffers')})"
              + (f", PGOPTIONS={args.pgoptions!r}" if args.pgoptions else "")
              + (f"; Spark at {', '.join(SPARK_MASTERS)} after PostgreSQL"
                 if args.engine == "spark" else ""))
    (args.results_dir / f"{stamp}.md").write_text(f"{header}\n\n`{command}`\n\n{report}\n")
    print(f"{header}\n\n{report}")
    log(f"results: {args.results_dir / (stamp + '.json')}")
    spark_wrong = [f"{r['size']} ({'; '.join(spark_failures(r))})" for r in results
                   if spark_failures(r)]
    if args.docs and results and not failed and not spark_wrong:
        update_docs(f"{header}\n\n{report}", sizes, command)
    wrong = [r["size"] for r in results if r["problems"]]
    if wrong:
        log(f"RESULTS DIFFER FROM THE GROUND TRUTH for {', '.join(wrong)}")
    if spark_wrong:
        log(f"SPARK RUNS FAILED OR DIFFER FROM THE GROUND TRUTH for {', '.join(spark_wrong)}")
    return 1 if failed or wrong or spark_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
