"""The limits: what the hardware and the standard tools do with the same bytes, phase by phase."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.server import Server

CHUNK = 1 << 20


def warm_cache(files: list[Path]) -> float:
    """Read every file once so every measurement (soxtrail's and the limits') reads from
    the page cache, not from the disk."""
    started = time.monotonic()
    for path in files:
        with path.open("rb") as handle:
            while handle.read(CHUNK * 8):
                pass
    return time.monotonic() - started


def limit_hash(files: list[Path]) -> dict[str, Any]:
    """hashlib SHA-256 over every raw byte (page-cache reads, 1 MiB chunks)."""
    size = 0
    started = time.monotonic()
    for path in files:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return {"seconds": time.monotonic() - started, "bytes": size}


def limit_copy_hash(files: list[Path], target: Path) -> dict[str, Any]:
    """Read, SHA-256 and write every raw byte once: the least a snapshot must do."""
    target.mkdir(parents=True, exist_ok=True)
    size = 0
    started = time.monotonic()
    for n, path in enumerate(files):
        digest = hashlib.sha256()
        with path.open("rb") as src, (target / f"{n:06d}").open("wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    seconds = time.monotonic() - started
    shutil.rmtree(target, ignore_errors=True)
    return {"seconds": seconds, "bytes": size}


LIMIT_DDL = """
drop schema if exists bench_limit cascade;
create schema bench_limit;
create table bench_limit.csvlog ({csvlog});
create table bench_limit.jsonlog (doc jsonb);
create table bench_limit.stderr_lines (line text);
create table bench_limit.documents (doc jsonb);
"""
# one line = one value: CSV with a delimiter and quote that never occur in the data
WHOLE_LINE = "format csv, delimiter E'\\x1f', quote E'\\x1e'"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _one_line(path: Path) -> bool:
    """The file holds one line (a JSON document written without indentation)."""
    with path.open("rb") as handle:
        return handle.read().rstrip(b"\n").count(b"\n") == 0


def _copy_command(path: Path, csv_tables: dict[int, str]) -> tuple[str, str]:
    """The `\\copy` of one raw file into its equivalent table, and the table."""
    name, rel = path.name, path.as_posix()
    quoted = _sql_literal(str(path))
    if "/logs/" in rel and name.endswith(".csv"):
        return f"\\copy bench_limit.csvlog from {quoted} with (format csv)", "csvlog"
    if "/logs/" in rel and name.endswith(".json"):
        return f"\\copy bench_limit.jsonlog from {quoted} with ({WHOLE_LINE})", "jsonlog"
    if "/logs/" in rel:
        return f"\\copy bench_limit.stderr_lines from {quoted} with ({WHOLE_LINE})", "stderr"
    if name.endswith(".json.gz"):
        program = _sql_literal(f"gzip -dc '{path}'")
        return (f"\\copy bench_limit.documents from program {program} with ({WHOLE_LINE})",
                "documents")
    if name.endswith(".json") and _one_line(path):
        return f"\\copy bench_limit.documents from {quoted} with ({WHOLE_LINE})", "documents"
    if name.endswith(".json"):  # indented (key lists, digest signature sidecars): one line
        program = _sql_literal(f"{sys.executable} -c 'import json, sys; "
                               f"print(json.dumps(json.load(open(sys.argv[1]))))' '{path}'")
        return (f"\\copy bench_limit.documents from program {program} with ({WHOLE_LINE})",
                "documents")
    with path.open(newline="", encoding="utf-8") as handle:
        width = len(next(csv.reader(handle)))
    table = csv_tables.setdefault(width, f"bench_limit.csv{width}")
    return f"\\copy {table} from {quoted} with (format csv, header)", table


def limit_load(server: Server, dsn: str, files: list[Path], streams: int) -> dict[str, Any]:
    """`psql \\copy` of the raw files into equivalent tables, `streams` psql sessions at once.

    csvlog files into a 26-text-column table (the raw table's columns); jsonlog lines into
    a jsonb column (the raw table's type); stderr lines into a text column; JSON documents
    (CloudTrail .json.gz, Jira pages, pgBackRest info) one jsonb row per file; other CSVs
    (catalogs, HR, seeds) into text tables of their width. Every line is loaded, audit or
    not: soxtrail parses the same bytes and loads only the audit entries.
    """
    from extract.connectors.pgaudit_log import CSVLOG_COLUMNS

    csv_tables: dict[int, str] = {}
    commands = [(_copy_command(p, csv_tables), p.stat().st_size) for p in files]
    ddl = LIMIT_DDL.format(csvlog=", ".join(f"{c} text" for c in CSVLOG_COLUMNS))
    ddl += "".join(f"create table {t} ({', '.join(f'c{i} text' for i in range(w))});\n"
                   for w, t in csv_tables.items())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)  # type: ignore[arg-type]
    # biggest files first, each to the least loaded stream
    shares: list[list[str]] = [[] for _ in range(streams)]
    weights = [0] * streams
    for (command, _), size in sorted(commands, key=lambda c: -c[1]):
        i = weights.index(min(weights))
        shares[i].append(command)
        weights[i] += size
    tmp = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    scripts = []
    for i, share in enumerate(shares):
        script = tmp / f"stream{i}.sql"
        script.write_text("\n".join(share) + "\n", encoding="utf-8")
        scripts.append(script)
    env = {**os.environ, "PGTZ": "UTC"}
    started = time.monotonic()
    procs = [subprocess.Popen([server.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                               "-f", str(s)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
             for s in scripts if s.stat().st_size > 1]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.monotonic() - started
    shutil.rmtree(tmp, ignore_errors=True)
    if any(p.returncode for p in procs):
        raise RuntimeError("psql \\copy limit failed: "
                           + " | ".join(e.strip() for e in errors if e))
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = ["bench_limit.csvlog", "bench_limit.jsonlog", "bench_limit.stderr_lines",
                  "bench_limit.documents", *csv_tables.values()]
        rows = {t: int(conn.execute(f"select count(*) from {t}").fetchone()[0])  # type: ignore[arg-type,index]
                for t in tables}
        conn.execute("drop schema bench_limit cascade")
    return {"seconds": seconds, "rows": sum(rows.values()), "rows_by_table": rows,
            "streams": len(procs)}


RECONCILE_REFERENCE = """
with audit as (
    select cluster, user_name, session_id, log_time, message from raw.pgaudit_csvlog
    union all
    select cluster, doc ->> 'user', doc ->> 'session_id', doc ->> 'timestamp', doc ->> 'message'
    from raw.pgaudit_jsonlog
    union all
    select cluster, user_name, session_id, log_time, message from raw.pgaudit_stderr
),
tickets as (
    select doc ->> 'key' as ticket_key from raw.tickets
),
ranked as (
    select audit.*, row_number() over (
        partition by audit.cluster, audit.session_id order by audit.log_time) as entry_rank
    from audit
)
select count(*), count(tickets.ticket_key), max(ranked.entry_rank)
from ranked left join tickets on tickets.ticket_key = ranked.user_name
"""


def limit_reconcile(dsn: str) -> dict[str, Any]:
    """A reference query of the controls' shape: every raw audit row hash-joined to the
    tickets, with one window over it (after the ANALYZE the load phase ran)."""
    with psycopg.connect(dsn) as conn:
        started = time.monotonic()
        rows = conn.execute(RECONCILE_REFERENCE).fetchone()  # type: ignore[arg-type]
        seconds = time.monotonic() - started
    return {"seconds": seconds, "rows": int(rows[0])}  # type: ignore[index]


def limit_render(dsn: str, run_id: str, target: Path) -> dict[str, Any]:
    """xlsxwriter in constant-memory mode writing the same mart and evidence rows (as text),
    plus the per-control CSVs: the rows are fetched before the clock starts."""
    import xlsxwriter

    from soxtrail.kernel import evidence
    from soxtrail.kernel.controls import CONTROLS

    tables: list[tuple[str, list[tuple[Any, ...]]]] = []
    with psycopg.connect(dsn) as conn:
        for control_id, model in sorted(CONTROLS.items()):
            rows = conn.execute(f"select * from marts.{model} where run_id = %s"  # type: ignore[arg-type]
                                " order by item_key", (run_id,)).fetchall()
            tables.append((control_id, [tuple(None if v is None else str(v) for v in r)
                                        for r in rows]))
        tables.append(("Evidence", [tuple(None if v is None else str(v)[:32000]
                                          for v in r.values())
                                    for r in evidence.run_rows(conn, run_id)]))
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    book = xlsxwriter.Workbook(str(target / "limit.xlsx"),
                               {"constant_memory": True, "tmpdir": str(target)})
    count = 0
    for name, rows in tables:
        sheet = book.add_worksheet(name)
        write_row = sheet.write_row
        for r, row in enumerate(rows):
            write_row(r, 0, row)
        count += len(rows)
        if name != "Evidence":
            with (target / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(rows)
    book.close()
    seconds = time.monotonic() - started
    shutil.rmtree(target, ignore_errors=True)
    return {"seconds": seconds, "rows": count}
