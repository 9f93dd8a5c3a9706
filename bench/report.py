"""The figures of a bench run: each phase against its limit, as Markdown and in the docs."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import psutil

from bench.common import LOAD_STREAMS, PHASES, REPO

DOCS = REPO / "docs" / "performance.md"


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
