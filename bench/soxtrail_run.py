"""The soxtrail run, measured: its own process, sampled per phase (memory and CPU), then checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import QUARTER, REPO
from bench.server import Server

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


class RunFailed(RuntimeError):
    """`soxtrail run` exited non-zero; `sampled`: what the sampler saw of it until then."""

    def __init__(self, message: str, sampled: dict[str, Any]) -> None:
        super().__init__(message)
        self.sampled = sampled


def run_soxtrail(data: Path, dsn: str, home: Path, server: Server,
                 pgoptions: str | None = None,
                 env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """`soxtrail run` as its own process, sampled; its --json summary with the peaks.

    `env_extra`: more environment for the run, e.g. SOXTRAIL_ENGINE=spark and
    SOXTRAIL_SPARK_MASTER (Spark's JVM is a child process of the run: the process tree's
    RSS and its workers' CPU seconds include it).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("SOXTRAIL_STORE",)}
    env.update(SOXTRAIL_HOME=str(home), SOXTRAIL_DATABASE_URL=dsn, PGTZ="UTC")
    env.update(env_extra or {})
    if pgoptions:  # libpq reads it: every connection of the run (dbt's too) gets the settings
        env["PGOPTIONS"] = pgoptions
    cmd = [sys.executable, "-m", "soxtrail", "run", "--quarter", QUARTER,
           "--config", str(data / "soxtrail.yml"), "--json", "--quiet"]
    if env.get("CI", "").lower() in ("true", "1") and not env.get("SOXTRAIL_SIGNING_KEY"):
        # under CI a run needs a signing key from the CI's secrets (docs/operations.md); the
        # bench's throwaway runs are then measured unsigned rather than refused
        cmd.append("--no-sign")
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
    sampled = {
        "wall_seconds": wall, "peak_rss_soxtrail": sampler.soxtrail,
        "peak_pss_postgres": sampler.postgres,
        "cpu_seconds": {phase: {k: round(v, 1) for k, v in cpu.items()}
                        for phase, cpu in sampler.cpu.items()},
        "samples": sampler.samples,
    }
    if proc.returncode != 0:
        raise RunFailed(f"soxtrail run exited {proc.returncode}:\n{err[-4000:]}", sampled)
    summary = json.loads(out.strip().splitlines()[-1])
    summary.update(sampled)
    return summary


def verify_soxtrail(dsn: str, home: Path, run_id: str) -> dict[str, Any]:
    """`soxtrail verify RUN` on the run just made (same store, same database): its wall time,
    whether it passed, and its verdict counts."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOXTRAIL_STORE",)}
    env.update(SOXTRAIL_HOME=str(home), SOXTRAIL_DATABASE_URL=dsn, PGTZ="UTC")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "soxtrail", "verify", run_id], env=env,
                          cwd=str(REPO), capture_output=True, text=True)
    wall = time.monotonic() - started
    statuses: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        word = line.split(" ", 1)[0]
        if word.isupper() and word.isalpha():
            statuses[word] = statuses.get(word, 0) + 1
    return {"wall_seconds": wall, "exit_code": proc.returncode, "verdicts": statuses,
            "last_line": (proc.stdout.strip().splitlines() or [""])[-1]}


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


def logged_phases(home: Path) -> dict[str, Any]:
    """The phases a run's `log.jsonl` under `home` says finished (their phase_done fields) and
    the one that failed (`failed`: phase and error): what a failed run got through."""
    found = sorted(home.glob("runs/*/log.jsonl"))
    phases: dict[str, Any] = {}
    if not found:
        return phases
    with found[0].open("r", encoding="utf-8") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "phase_done":
                phases[event["phase"]] = {k: v for k, v in event.items()
                                          if k not in ("event", "phase", "ts")}
            elif event.get("event") == "phase_failed":
                phases["failed"] = {"phase": event.get("phase"),
                                    "error": str(event.get("error", ""))[:2000]}
    return phases


def warehouse_facts(dsn: str, run_id: str, home: Path) -> dict[str, Any]:
    """A Spark run's Parquet under its warehouse (as the run recorded it, else
    `<home>/warehouse`): files and bytes of its raw tables and of its marts."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select config from soxtrail.sox_runs where id = %s",
                           (run_id,)).fetchone()
    recorded = ((row[0] if row else None) or {}).get("spark") or {}
    warehouse = Path(recorded.get("warehouse") or home / "warehouse")
    facts: dict[str, Any] = {"warehouse": str(warehouse)}
    for part in ("raw", "marts"):
        files = [p for p in (warehouse / part).rglob("*.parquet") if p.is_file()]
        facts[f"{part}_parquet_files"] = len(files)
        facts[f"{part}_parquet_bytes"] = sum(p.stat().st_size for p in files)
    return facts


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
