"""The figures of a bench run: each phase against its limit, as Markdown and in the docs."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from typing import Any

import psutil

from bench.common import LOAD_STREAMS, PHASES, REPO

DOCS = REPO / "docs" / "performance.md"
# `--engine spark`'s estimate: the reconcile (and, separately, the load) of these many
# audit-log lines per quarter within this budget, on executors of this many cores
ESTIMATE_LINES = (100_000_000, 1_000_000_000)
ESTIMATE_BUDGET_SECONDS = 15 * 60
EXECUTOR_CORES = 4


def _mb(n: float) -> float:
    return n / 1e6


def figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per phase (and end to end): seconds, rows/s, MB/s, peaks, limit and ratio."""
    run, limits = result["run"], result["limits"]
    phases = run["phases"]
    rss, pss = run["peak_rss_soxtrail"], run["peak_pss_postgres"]
    render_rows = sum(v for v in (phases["render"].get("rows") or {}).values()
                      if isinstance(v, int))
    loaded = phases["load"].get("loaded", 0)
    rows = {
        "snapshot": (phases["snapshot"].get("rows", 0), result["input_bytes"]),
        "load": (phases["load"].get("read", 0), result["input_bytes"]),
        "reconcile": (loaded, result["facts"]["raw_table_bytes"]),
        "render": (render_rows, 0),
        "bundle": (0, 0),
    }
    limit_of = {
        "snapshot": ("copy+sha256, one pass", limits.get("copy_hash")),
        "load": (f"psql \\copy x{LOAD_STREAMS}", limits.get("load")),
        "reconcile": ("reference join+window SQL", limits.get("reconcile")),
        "render": ("xlsxwriter constant_memory", limits.get("render")),
        "bundle": ("-", None),
    }
    table = []
    for phase in PHASES:
        seconds = float(phases[phase]["seconds"])
        n, size = rows[phase]
        name, limit = limit_of[phase]
        table.append({
            "phase": phase, "seconds": seconds, "rows": n,
            "rows_per_s": n / seconds if n and seconds else None,
            "mb_per_s": _mb(size) / seconds if size and seconds else None,
            "peak_rss_soxtrail_mb": _mb(rss.get(phase, 0)),
            "peak_pss_postgres_mb": _mb(pss.get(phase, 0)),
            "limit": name, "limit_seconds": limit["seconds"] if limit else None,
            "limit_rows_per_s": (limit["rows"] / limit["seconds"]
                                 if limit and limit.get("rows") else None),
            "speed_vs_limit": limit["seconds"] / seconds if limit and seconds else None,
        })
    hashing = limits["hash"]
    table.append({
        "phase": "(hashing)", "seconds": None, "rows": None, "rows_per_s": None,
        "mb_per_s": None, "peak_rss_soxtrail_mb": None, "peak_pss_postgres_mb": None,
        "limit": "hashlib sha256", "limit_seconds": hashing["seconds"],
        "limit_rows_per_s": None,
        "limit_mb_per_s": _mb(hashing["bytes"]) / hashing["seconds"],
        "share_of_snapshot": hashing["seconds"] / float(phases["snapshot"]["seconds"]),
        # measured inside the run: CPU seconds in SHA-256 / CPU seconds of the snapshot
        "hashing_cpu_seconds": phases["snapshot"].get("hashing_cpu_seconds"),
        "snapshot_cpu_seconds": phases["snapshot"].get("cpu_seconds"),
        "hashing_share_of_snapshot_cpu": phases["snapshot"].get("hashing_share"),
        "speed_vs_limit": None,
    })
    limit_sum = sum(r["limit_seconds"] or 0 for r in table if r["phase"] in PHASES)
    wall = float(run["wall_seconds"])
    table.append({
        "phase": "end to end", "seconds": wall,
        "rows": result["workload"]["log_lines"],
        "rows_per_s": result["workload"]["log_lines"] / wall,
        "mb_per_s": _mb(result["input_bytes"]) / wall,
        "peak_rss_soxtrail_mb": _mb(max(rss.values(), default=0)),
        "peak_pss_postgres_mb": _mb(max(pss.values(), default=0)),
        "limit": "sum of the limits", "limit_seconds": limit_sum or None,
        "limit_rows_per_s": None,
        "speed_vs_limit": limit_sum / wall if limit_sum else None,
    })
    return table


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if digits == 0 or abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def markdown(result: dict[str, Any]) -> str:
    """The figures of one size as a Markdown table."""
    w = result["workload"]
    lines = [
        f"**{result['size']}**: {w['log_lines']:,} audit-log lines, {w['clusters']} clusters "
        f"({w['in_scope_clusters']} in scope), {w['cloudtrail_records']:,} CloudTrail records, "
        f"{w['tickets']:,} tickets, {w['backups']:,} backup records, "
        f"{result['input_files']:,} files, {_mb(result['input_bytes']):,.0f} MB; "
        f"results {'match the ground truth' if not result['problems'] else 'WRONG'}.",
        "",
        "| phase | s | rows | rows/s | MB/s | peak RSS soxtrail MB | peak PSS postgres MB "
        "| limit | limit s | limit rows/s | speed vs limit |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["table"]:
        extra = ""
        if r["phase"] == "(hashing)":
            extra = (f" ({_f(r['limit_mb_per_s'], 0)} MB/s; "
                     f"{r['share_of_snapshot'] * 100:.1f}% of the snapshot's wall time)")
            if r.get("hashing_share_of_snapshot_cpu") is not None:
                extra += (f"; in the run: {r['hashing_cpu_seconds']:.1f} CPU s of SHA-256 = "
                          f"{r['hashing_share_of_snapshot_cpu'] * 100:.1f}% of the snapshot's "
                          f"{r['snapshot_cpu_seconds']:.1f} CPU s")
        lines.append(
            f"| {r['phase']} | {_f(r['seconds'])} | {_f(r['rows'])} | {_f(r['rows_per_s'], 0)} "
            f"| {_f(r['mb_per_s'])} | {_f(r['peak_rss_soxtrail_mb'], 0)} "
            f"| {_f(r['peak_pss_postgres_mb'], 0)} | {r['limit']}{extra} "
            f"| {_f(r['limit_seconds'])} | {_f(r['limit_rows_per_s'], 0)} "
            f"| {_f(r['speed_vs_limit'], 2)} |")
    cpu = result["run"].get("cpu_seconds") or {}
    if cpu:
        lines += ["", f"CPU seconds by phase ({os.cpu_count()} CPUs; sampled every "
                      "0.2 s):", "",
                  "| phase | wall s | soxtrail | its workers | postgres | CPUs busy |",
                  "|---|---:|---:|---:|---:|---:|"]
        for phase in PHASES:
            used = cpu.get(phase)
            seconds = float(result["run"]["phases"][phase]["seconds"])
            if used is None or not seconds:
                continue
            total = used["soxtrail"] + used["workers"] + used["postgres"]
            lines.append(f"| {phase} | {seconds:.1f} | {used['soxtrail']:.1f} "
                         f"| {used['workers']:.1f} | {used['postgres']:.1f} "
                         f"| {total / seconds:.2f} |")
    return "\n".join(lines)


def scaling_markdown(results: list[dict[str, Any]]) -> str:
    """Seconds per million audit-log lines, per phase and size."""
    lines = ["| size | audit lines | " + " | ".join(f"{p} s/M" for p in PHASES)
             + " | end to end s/M |", "|---|---:|" + "---:|" * (len(PHASES) + 1)]
    for r in results:
        million = r["workload"]["log_lines"] / 1e6
        cells = [_f(float(r["run"]["phases"][p]["seconds"]) / million) for p in PHASES]
        lines.append(f"| {r['size']} | {r['workload']['log_lines']:,} | " + " | ".join(cells)
                     + f" | {_f(r['run']['wall_seconds'] / million)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# --engine spark: PostgreSQL and Spark side by side, Spark's scaling, the estimate


def spark_phase_seconds(entry: dict[str, Any], phase: str) -> float | None:
    """A Spark run's seconds in `phase` (`total`: the run's wall seconds): from its summary
    when it completed, else from its log for the phases it finished before failing."""
    run = entry.get("run")
    if phase == "total":
        return float(run["wall_seconds"]) if run else None
    if run:
        done = run["phases"].get(phase)
    else:
        done = (entry.get("phases_logged") or {}).get(phase)
    return float(done["seconds"]) if done and done.get("seconds") is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def spark_status(entry: dict[str, Any]) -> str:
    """`ok`, `WRONG` (results differ), `failed at <phase>`, `failed` or `skipped`."""
    if entry.get("skipped"):
        return "skipped"
    if entry.get("error"):
        failed = (entry.get("phases_logged") or {}).get("failed") or {}
        return f"failed at {failed['phase']}" if failed.get("phase") else "failed"
    return "WRONG" if entry.get("problems") else "ok"


def spark_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The Spark runs of one size against its PostgreSQL run.

    * `phases`: per phase (and `total`), PostgreSQL seconds, Spark seconds at the first of
      the masters (local[2]) and their ratio (Spark / PostgreSQL), with each run's peak RSS;
    * `scaling`: per master (fewest cores first), load and reconcile seconds, audit-log
      lines per second (reconcile: per core), speed-ups against the fewest cores;
    * `estimate`: from the lowest measured per-core reconcile rate, the cores (and
      executors of EXECUTOR_CORES) that reconcile ESTIMATE_LINES within
      ESTIMATE_BUDGET_SECONDS if the reconcile scaled linearly with cores; the load apart
      (it runs on the driver machine's Python workers, not on Spark) from its measured rate.
    """
    spark = result["engines"]["spark"]
    masters: list[str] = list(spark["masters"])
    runs: dict[str, dict[str, Any]] = spark["runs"]
    lines = int(result["workload"]["log_lines"])
    pg = result["run"]
    side = runs.get(masters[0], {})
    side_run = side.get("run") or {}
    phases: list[dict[str, Any]] = []
    for phase in (*PHASES, "total"):
        pg_seconds = (float(pg["wall_seconds"]) if phase == "total"
                      else float(pg["phases"][phase]["seconds"]))
        spark_seconds = spark_phase_seconds(side, phase)
        pg_rss, spark_rss = pg["peak_rss_soxtrail"], side_run.get("peak_rss_soxtrail") or {}
        phases.append({
            "phase": phase, "postgres_seconds": pg_seconds, "spark_seconds": spark_seconds,
            "ratio": _ratio(spark_seconds, pg_seconds),
            "postgres_peak_rss_mb": _mb(max(pg_rss.values(), default=0) if phase == "total"
                                        else pg_rss.get(phase, 0)),
            "spark_peak_rss_mb": (_mb(max(spark_rss.values(), default=0) if phase == "total"
                                      else spark_rss.get(phase, 0)) if spark_rss else None),
        })

    scaling: list[dict[str, Any]] = []
    for master in masters:
        entry = runs.get(master)
        if entry is None:
            continue
        cores = entry.get("cores")
        load, reconcile = (spark_phase_seconds(entry, "load"),
                           spark_phase_seconds(entry, "reconcile"))
        cpu = ((entry.get("run") or {}).get("cpu_seconds") or {}).get("reconcile")
        scaling.append({
            "master": master, "cores": cores, "status": spark_status(entry),
            "load_seconds": load, "reconcile_seconds": reconcile,
            "load_lines_per_s": lines / load if load else None,
            "reconcile_lines_per_s": lines / reconcile if reconcile else None,
            "reconcile_lines_per_core_s": (lines / (reconcile * cores)
                                           if reconcile and cores else None),
            # soxtrail, its children (the JVM among them) and the server, per wall second
            "reconcile_cpus_busy": (sum(cpu.values()) / reconcile
                                    if cpu and reconcile else None),
        })
    scaling.sort(key=lambda r: (r["cores"] is None, r["cores"] or 0))
    # speed-ups against the run with the fewest cores (none when that run has no figure)
    fewest = scaling[0] if scaling and scaling[0]["cores"] else None
    base = fewest if fewest and fewest["reconcile_seconds"] else None
    base_load = fewest if fewest and fewest["load_seconds"] else None
    for r in scaling:
        r["reconcile_speedup"] = (_ratio(base["reconcile_seconds"], r["reconcile_seconds"])
                                  if base else None)
        r["reconcile_efficiency"] = (r["reconcile_speedup"] / (r["cores"] / base["cores"])
                                     if base and r["reconcile_speedup"] and r["cores"]
                                     else None)
        r["load_speedup"] = (_ratio(base_load["load_seconds"], r["load_seconds"])
                             if base_load else None)
    return {"masters": masters, "phases": phases, "scaling": scaling,
            "estimate": spark_estimate(result, scaling, side)}


def spark_estimate(result: dict[str, Any], scaling: list[dict[str, Any]],
                   side: dict[str, Any]) -> dict[str, Any] | None:
    """Cores for the reconcile, and what the load needs, of ESTIMATE_LINES in the budget.

    None when no Spark run finished its reconcile.
    """
    measured = [r for r in scaling if r["reconcile_lines_per_core_s"]]
    if not measured:
        return None
    lines = int(result["workload"]["log_lines"])
    slowest = min(measured, key=lambda r: r["reconcile_lines_per_core_s"])
    rate = float(slowest["reconcile_lines_per_core_s"])
    estimate: dict[str, Any] = {
        "budget_seconds": ESTIMATE_BUDGET_SECONDS, "executor_cores": EXECUTOR_CORES,
        "measured_lines": lines, "reconcile_lines_per_core_s": rate,
        "rate_from": slowest["master"],
    }
    # the two runs with the most and the fewest cores fitted to t = F + W / cores (Amdahl):
    # F the serial seconds, W the parallel core-seconds
    fit = [r for r in measured if r["cores"]]
    if len(fit) >= 2 and fit[0]["cores"] != fit[-1]["cores"]:
        few, many = fit[0], fit[-1]
        estimate["speedup"] = many["reconcile_speedup"]
        estimate["efficiency"] = many["reconcile_efficiency"]
        estimate["speedup_cores"] = (few["cores"], many["cores"])
        parallel = ((few["reconcile_seconds"] - many["reconcile_seconds"])
                    / (1 / few["cores"] - 1 / many["cores"]))
        serial = few["reconcile_seconds"] - parallel / few["cores"]
        if parallel > 0 and serial >= 0:
            estimate["serial_seconds"] = serial
            estimate["parallel_core_seconds"] = parallel
    load = spark_phase_seconds(side, "load")
    cpu = ((side.get("run") or {}).get("cpu_seconds") or {}).get("load")
    load_cpu = cpu["soxtrail"] + cpu["workers"] if cpu else None
    estimate["load_lines_per_s"] = lines / load if load else None
    estimate["load_lines_per_cpu_s"] = lines / load_cpu if load_cpu else None
    estimate["load_workers"] = result["engines"]["spark"].get("load_workers")
    targets = []
    for target in ESTIMATE_LINES:
        core_seconds = target / rate
        cores = math.ceil(core_seconds / ESTIMATE_BUDGET_SECONDS)
        row: dict[str, Any] = {
            "lines": target, "reconcile_core_seconds": core_seconds,
            "reconcile_cores": cores, "executors": math.ceil(cores / EXECUTOR_CORES),
        }
        if estimate["load_lines_per_s"]:
            row["load_seconds_at_measured_rate"] = target / estimate["load_lines_per_s"]
            row["load_rate_needed"] = target / ESTIMATE_BUDGET_SECONDS
            row["load_times_measured"] = (row["load_rate_needed"]
                                          / estimate["load_lines_per_s"])
        if estimate["load_lines_per_cpu_s"]:
            row["load_cores"] = math.ceil(target / estimate["load_lines_per_cpu_s"]
                                          / ESTIMATE_BUDGET_SECONDS)
        targets.append(row)
    estimate["targets"] = targets
    return estimate


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.1f} min" if seconds >= 60 else f"{seconds:,.0f} s"


def spark_markdown(result: dict[str, Any]) -> str:
    """`--engine spark`'s tables of one size: PostgreSQL and Spark per phase, Spark's
    scaling over its masters, and the estimate for 100M and 1B audit-log lines."""
    spark = result["engines"]["spark"]
    fig = spark["figures"]
    masters = fig["masters"]
    side = masters[0]
    statuses = ", ".join(f"{m}: {spark_status(spark['runs'][m])}" for m in masters
                         if m in spark["runs"])
    lines = [
        f"**{result['size']}, PostgreSQL and Spark** (pyspark {spark.get('pyspark') or '?'}, "
        f"dbt-spark {spark.get('dbt_spark') or '?'}, session mode; the same workload bytes; "
        f"each run on a fresh database and home): {statuses}.",
        "",
        f"| phase | PostgreSQL s | Spark {side} s | Spark / PostgreSQL "
        f"| peak RSS MB, PostgreSQL run | peak RSS MB, Spark run (JVM included) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in fig["phases"]:
        lines.append(f"| {r['phase']} | {_f(r['postgres_seconds'])} | {_f(r['spark_seconds'])} "
                     f"| {_f(r['ratio'], 2)} | {_f(r['postgres_peak_rss_mb'], 0)} "
                     f"| {_f(r['spark_peak_rss_mb'], 0)} |")
    lines += [
        "",
        "Spark's scaling (reconcile: the dbt models on Spark, then the marts published to "
        "PostgreSQL; load: the Python load workers writing Parquet, not Spark):",
        "",
        "| Spark master | cores | status | load s | reconcile s "
        "| reconcile audit-log lines/s per core | load audit-log lines/s "
        "| reconcile CPUs busy | reconcile speed-up | load speed-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in fig["scaling"]:
        lines.append(
            f"| {r['master']} | {_f(r['cores'])} | {r['status']} | {_f(r['load_seconds'])} "
            f"| {_f(r['reconcile_seconds'])} | {_f(r['reconcile_lines_per_core_s'], 0)} "
            f"| {_f(r['load_lines_per_s'], 0)} | {_f(r['reconcile_cpus_busy'], 2)} "
            f"| {_f(r['reconcile_speedup'], 2)} | {_f(r['load_speedup'], 2)} |")
    est = fig["estimate"]
    lines.append("")
    if est is None:
        lines.append("No Spark run finished its reconcile: no estimate.")
        return "\n".join(lines)
    budget = est["budget_seconds"] / 60
    text = (f"Estimate for a larger estate, from the measured reconcile rate: "
            f"{_f(est['reconcile_lines_per_core_s'], 0)} audit-log lines per second per core "
            f"({est['rate_from']}, the lowest measured per-core rate; "
            f"{est['measured_lines']:,} lines). Assumption: the reconcile scales linearly "
            f"with cores from that per-core rate.")
    if est.get("speedup") is not None:
        few, many = est["speedup_cores"]
        text += (f" The measured local[{few}] to local[{many}] speed-up, "
                 f"{est['speedup']:.2f}x ({est['efficiency'] * 100:.0f}% of linear), is all "
                 f"that supports it: beyond {many} cores the figures below extrapolate.")
        if est.get("serial_seconds") is not None:
            text += (f" The two runs fit t = F + W / cores with F = {est['serial_seconds']:.1f} s "
                     f"serial (JVM and session start, dbt parsing, publishing to PostgreSQL) "
                     f"and W = {est['parallel_core_seconds']:.1f} core-seconds: the measured "
                     f"rate counts F as per-line work, so at this size the cores below "
                     f"overstate what a large estate needs, and no cluster gets the reconcile "
                     f"under F.")
    else:
        text += " With one core count measured, nothing checks that assumption."
    lines += [text, "",
              f"| audit-log lines per quarter | reconcile core-seconds "
              f"| cores for the reconcile in {budget:.0f} min "
              f"| executors of {est['executor_cores']} cores | load at the measured rate "
              f"| load rate needed for {budget:.0f} min | load cores at the measured "
              f"per-CPU rate |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for t in est["targets"]:
        at_rate = t.get("load_seconds_at_measured_rate")
        needed = (f"{t['load_rate_needed']:,.0f} lines/s ({t['load_times_measured']:,.1f}x)"
                  if t.get("load_rate_needed") else "-")
        lines.append(
            f"| {t['lines']:,} | {_f(t['reconcile_core_seconds'], 0)} "
            f"| {t['reconcile_cores']:,} | {t['executors']:,} "
            f"| {_hours(at_rate) if at_rate else '-'} | {needed} "
            f"| {_f(t.get('load_cores'))} |")
    if est["load_lines_per_s"]:
        workers = est.get("load_workers")
        first = est["targets"][0]
        load_text = (
            f"The load is not part of that: it parses the raw files in Python on the driver "
            f"machine ({workers if workers else 'its'} load worker processes, "
            f"{os.cpu_count()} CPUs here) and writes Parquet, measured at "
            f"{_f(est['load_lines_per_s'], 0)} audit-log lines/s")
        if est["load_lines_per_cpu_s"]:
            load_text += f" ({_f(est['load_lines_per_cpu_s'], 0)} per CPU-second)"
        load_text += (
            f". At that rate {first['lines']:,} lines take "
            f"{_hours(first['load_seconds_at_measured_rate'])}; loading them in {budget:.0f} "
            f"min needs {first['load_times_measured']:,.1f}x the measured rate")
        if first.get("load_cores"):
            load_text += (f", about {first['load_cores']:,} busy cores at the measured "
                          f"per-CPU rate (for {est['targets'][-1]['lines']:,} lines: "
                          f"{est['targets'][-1]['load_cores']:,})")
        load_text += "."
        slowest = max(t.get("load_seconds_at_measured_rate") or 0 for t in est["targets"])
        if slowest > est["budget_seconds"]:
            load_text += (" The load runs on the driver machine whatever the Spark "
                          "cluster's size: to keep within the budget it needs a machine with "
                          f"that many cores (this one has {os.cpu_count()}), or the load "
                          "spread over machines, or run as the files arrive during the "
                          "quarter.")
        lines += ["", load_text]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """CPUs, memory, Python and platform."""
    return {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def git_commit() -> str | None:
    """The checkout's commit, `+dirty` with local changes."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def update_docs(report: str, sizes: list[str], command: str) -> None:
    """Replace the block of these sizes in docs/performance.md (between its markers)."""
    tag = ",".join(sizes)
    begin, end = f"<!-- bench:{tag}:begin -->", f"<!-- bench:{tag}:end -->"
    block = f"{begin}\n`{command}`\n\n{report}\n{end}"
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Performance\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(text, encoding="utf-8")
