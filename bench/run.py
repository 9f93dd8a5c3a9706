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
  any mismatch and the bench exits 1.

Results go to `bench/results/<timestamp>.json` and `.md`; `--docs` also
updates the figures of this size in docs/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import conninfo

REPO = Path(__file__).resolve().parent.parent
QUARTER = "2024Q3"
SEED = 7
PHASES = ("snapshot", "load", "reconcile", "render", "bundle")
SOURCE_DIRS = ("logs", "catalog", "cloudtrail", "hr", "jira", "backups", "seeds")
LOAD_STREAMS = 2  # the loader's parallel COPY streams; the \copy limit uses as many
CHUNK = 1 << 20
DEFAULT_WORKDIR = Path(os.environ.get("SOXTRAIL_BENCH_DIR", "/tmp/soxtrail-bench"))
RESULTS_DIR = REPO / "bench" / "results"
DOCS = REPO / "docs" / "performance.md"

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


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
# the database server


def with_dbname(dsn: str, dbname: str) -> str:
    """The DSN naming another database."""
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@dataclass
class Server:
    """The PostgreSQL the bench runs against, and how to watch its memory."""

    kind: str  # embedded | url
    admin_dsn: str
    psql: str
    postmaster: psutil.Process | None
    settings: dict[str, str] = field(default_factory=dict)
    handle: Any = None  # keeps the embedded server alive

    def processes(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return []
        try:
            return [self.postmaster, *self.postmaster.children()]
        except psutil.Error:
            return []


def _local_postmaster(backend_pid: int, host: str) -> psutil.Process | None:
    if host and not host.startswith("/") and host not in ("localhost", "127.0.0.1", "::1"):
        return None
    try:
        parent = psutil.Process(backend_pid).parent()
    except psutil.Error:
        return None
    if parent is None or "postgres" not in " ".join(parent.cmdline() or [parent.name()]):
        return None
    return parent


def open_server(workdir: Path) -> Server:
    """SOXTRAIL_DATABASE_URL's server when set, else an embedded pgserver under the work folder."""
    url = os.environ.get("SOXTRAIL_DATABASE_URL", "").strip()
    handle = None
    pgserver_psql = None
    try:
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        pgserver_psql = str(candidate) if candidate.exists() else None
    except ImportError:
        pgserver = None  # type: ignore[assignment]
    if url:
        kind, admin = "url", url
        psql = shutil.which("psql") or pgserver_psql
    else:
        if pgserver is None:
            raise SystemExit("bench: pgserver is not installed; set SOXTRAIL_DATABASE_URL")
        import warnings

        (workdir / "pg").parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        kind, admin = "embedded", str(handle.get_uri())
        psql = pgserver_psql or shutil.which("psql")
    if psql is None:
        raise SystemExit("bench: no psql client found (needed for the \\copy limit)")
    host = str(conninfo.conninfo_to_dict(admin).get("host") or "")
    with psycopg.connect(admin, autocommit=True) as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        settings = {name: str(conn.execute(f"show {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("server_version", "shared_buffers", "work_mem",
                                 "max_wal_size", "synchronous_commit",
                                 "max_parallel_workers_per_gather")}
        # while the backend lives: once the connection closes it may be gone already
        postmaster = _local_postmaster(pid, host)
    return Server(kind, admin, psql, postmaster, settings, handle)


def create_database(server: Server) -> tuple[str, str]:
    """A fresh database for one bench run: its name and DSN."""
    name = f"soxtrail_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')  # type: ignore[arg-type]
    return name, with_dbname(server.admin_dsn, name)


def drop_database(server: Server, name: str) -> None:
    """Drop the bench run's database (its connections too)."""
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# memory sampling


class Sampler(threading.Thread):
    """Samples the soxtrail process tree's RSS and the server's PSS, per phase of the run."""

    def __init__(self, proc: psutil.Process, server: Server, home: Path,
                 interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.server = server
        self.home = home
        self.interval = interval
        self.stop = threading.Event()
        self.phase = "startup"
        self.soxtrail: dict[str, int] = {}
        self.postgres: dict[str, int] = {}
        # CPU seconds per phase: the soxtrail process, its child processes (load workers),
        # the server's processes (a process's CPU since the previous sample goes to the
        # phase running now; CPU used after a process's last sample is not seen)
        self.cpu: dict[str, dict[str, float]] = {}
        self._cpu_seen: dict[int, float] = {}
        self.samples = 0
        self._log: Any = None

    def _read_phase(self) -> None:
        if self._log is None:
            found = sorted(self.home.glob("runs/*/log.jsonl"))
            if not found:
                return
            self._log = found[0].open("r", encoding="utf-8")
        for line in self._log.readlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "phase_start":
                self.phase = event["phase"]

    def _tree_rss(self) -> int:
        total = 0
        try:
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return total

    def _server_pss(self) -> int:
        total = 0
        for p in self.server.processes():
            try:
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except psutil.Error:
                pass
        return total

    def _cpu_delta(self, procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                times = p.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            total += used - self._cpu_seen.get(p.pid, 0.0)
            self._cpu_seen[p.pid] = used
        return total

    def _sample_cpu(self, phase: str) -> None:
        try:
            children = self.proc.children(recursive=True)
        except psutil.Error:
            children = []
        cpu = self.cpu.setdefault(phase, {"soxtrail": 0.0, "workers": 0.0, "postgres": 0.0})
        cpu["soxtrail"] += self._cpu_delta([self.proc])
        cpu["workers"] += self._cpu_delta(children)
        cpu["postgres"] += self._cpu_delta(self.server.processes())

    def run(self) -> None:
        while not self.stop.is_set():
            self._read_phase()
            phase = self.phase
            self._sample_cpu(phase)
            rss, pss = self._tree_rss(), self._server_pss()
            self.soxtrail[phase] = max(self.soxtrail.get(phase, 0), rss)
            self.postgres[phase] = max(self.postgres.get(phase, 0), pss)
            self.samples += 1
            self.stop.wait(self.interval)
        if self._log is not None:
            self._log.close()


# ---------------------------------------------------------------------------
# the soxtrail run


def run_soxtrail(data: Path, dsn: str, home: Path, server: Server,
                 pgoptions: str | None = None) -> dict[str, Any]:
    """`soxtrail run` as its own process, sampled; its --json summary with the peaks."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOXTRAIL_STORE",)}
    env.update(SOXTRAIL_HOME=str(home), SOXTRAIL_DATABASE_URL=dsn, PGTZ="UTC")
    if pgoptions:  # libpq reads it: every connection of the run (dbt's too) gets the settings
        env["PGOPTIONS"] = pgoptions
    cmd = [sys.executable, "-m", "soxtrail", "run", "--quarter", QUARTER,
           "--config", str(data / "soxtrail.yml"), "--json", "--quiet"]
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = psutil.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc, server, home)
    sampler.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"soxtrail run exited {proc.returncode}:\n{err[-4000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    summary["wall_seconds"] = wall
    summary["peak_rss_soxtrail"] = sampler.soxtrail
    summary["peak_pss_postgres"] = sampler.postgres
    summary["cpu_seconds"] = {phase: {k: round(v, 1) for k, v in cpu.items()}
                              for phase, cpu in sampler.cpu.items()}
    summary["samples"] = sampler.samples
    return summary


def run_facts(dsn: str, run_id: str) -> dict[str, Any]:
    """Counts from the database after the run: rows per raw table, raw bytes, mart rows."""
    with psycopg.connect(dsn) as conn:
        loaded = {t: int(n) for t, n in conn.execute(
            "select raw_table, sum(records_loaded) from soxtrail.sox_load_stats"
            " where run_id = %s group by 1", (run_id,))}
        raw_bytes = int(conn.execute(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'raw' and c.relkind = 'r'").fetchone()[0])  # type: ignore[index]
    return {"loaded_by_table": loaded, "raw_table_bytes": raw_bytes}


# ---------------------------------------------------------------------------
# results against the planted ground truth (as tests/e2e/test_quarter_run.py)


def check_results(dsn: str, run_id: str, expected_path: Path) -> list[str]:
    """Differences between the marts and the planted ground truth (none = correct)."""
    from soxtrail.kernel.controls import CONTROLS

    expected = json.loads(expected_path.read_text())["controls"]
    problems = []
    with psycopg.connect(dsn) as conn:
        for control_id, model in sorted(CONTROLS.items()):
            want = {"|".join(i["key"]): (i["result"], sorted(i["reasons"]))
                    for i in expected[control_id]}
            got = {key: (result, sorted(reasons)) for key, result, reasons in conn.execute(
                f"select item_key, result, exception_reasons from marts.{model}"  # type: ignore[arg-type]
                " where run_id = %s", (run_id,))}
            missing = sorted(set(want) - set(got))
            unexpected = sorted(set(got) - set(want))
            wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                ("wrong", wrong)):
                if keys:
                    problems.append(f"{control_id}: {len(keys)} {label} items, e.g. {keys[:3]}")
    return problems


# ---------------------------------------------------------------------------
# the limits


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
    if name.endswith(".json"):
        return f"\\copy bench_limit.documents from {quoted} with ({WHOLE_LINE})", "documents"
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

    from soxtrail.kernel.controls import CONTROLS

    tables: list[tuple[str, list[tuple[Any, ...]]]] = []
    with psycopg.connect(dsn) as conn:
        for control_id, model in sorted(CONTROLS.items()):
            rows = conn.execute(f"select * from marts.{model} where run_id = %s"  # type: ignore[arg-type]
                                " order by item_key", (run_id,)).fetchall()
            tables.append((control_id, [tuple(None if v is None else str(v) for v in r)
                                        for r in rows]))
        evidence = conn.execute("select * from soxtrail.sox_evidence where run_id = %s"
                                " order by executed_at, id", (run_id,)).fetchall()
        tables.append(("Evidence", [tuple(None if v is None else str(v)[:32000] for v in r)
                                    for r in evidence]))
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
    try:
        log(f"{size}: soxtrail run (database {dbname}) ...")
        run = run_soxtrail(data, dsn, home, server, pgoptions=args.pgoptions)
        result["run"] = run
        result["facts"] = run_facts(dsn, run["run_id"])
        problems = check_results(dsn, run["run_id"], data / "expected.json")
        result["problems"] = problems
        log(f"{size}: run {run['run_id']} in {run['wall_seconds']:.1f} s; results "
            + ("match the ground truth" if not problems else f"WRONG: {problems}"))
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
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if args.keep_db:  # e.g. to EXPLAIN the marts' compiled SQL on this size's data
            log(f"{size}: database kept: {dsn}")
        else:
            drop_database(server, dbname)
        if args.clean:
            shutil.rmtree(data, ignore_errors=True)
    result["table"] = figures(result)
    return result


# ---------------------------------------------------------------------------
# figures


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


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when every size ran and matched its ground truth."""
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
    parser.add_argument("--keep-db", action="store_true",
                        help="keep the run's database (its DSN is logged) instead of dropping it")
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
    parts = [markdown(r) for r in results]
    if len(results) > 1:
        parts.append("Time per million audit-log lines:\n\n" + scaling_markdown(results))
    report = "\n\n".join(parts)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"timestamp": stamp, "command": command, "git": git_commit(), "machine": machine(),
               "server": {"kind": server.kind, **server.settings}, "pgoptions": args.pgoptions,
               "results": results}
    (args.results_dir / f"{stamp}.json").write_text(json.dumps(payload, indent=1, default=str))
    header = (f"{stamp}, commit {payload['git']}, {payload['machine']['cpus']} CPUs, "
              f"{payload['machine']['memory_gib']} GiB, {server.kind} PostgreSQL "
              f"{server.settings.get('server_version')} (shared_buffers "
              f"{server.settings.get('shared_buffers')})"
              + (f", PGOPTIONS={args.pgoptions!r}" if args.pgoptions else ""))
    (args.results_dir / f"{stamp}.md").write_text(f"{header}\n\n`{command}`\n\n{report}\n")
    print(f"{header}\n\n{report}")
    log(f"results: {args.results_dir / (stamp + '.json')}")
    if args.docs and results and not failed:
        update_docs(f"{header}\n\n{report}", sizes, command)
    wrong = [r["size"] for r in results if r["problems"]]
    if wrong:
        log(f"RESULTS DIFFER FROM THE GROUND TRUTH for {', '.join(wrong)}")
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
