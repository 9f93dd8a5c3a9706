"""The database audit source of the demo estate: every cluster's server logs, week by week.

Planted sessions are merged into generated noise; CM-01 items are decided (by the oracle) as
their DDL statements are written.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from extract.demo.inventory import DBAS, PREFIX_SESSION
from extract.demo.model import Cluster, Session
from extract.demo.oracle import ItemSink, stmt_key
from extract.demo.oracle_changes import CmIndex
from extract.demo.plan import DemoScale, Plan
from extract.demo.writers.pgaudit_format import (
    EPOCH,
    Clock,
    Ctx,
    LogWriter,
    audit_message,
    epoch_ms,
)
from soxtrail.kernel.quarter import Quarter

# noise statement templates: (class, command, object type, object name, sql) with {s}/{t}
_READS = (
    ("READ", "SELECT", "", "", "SELECT * FROM {s}.{t} WHERE id = $1"),
    ("READ", "SELECT", "", "", "SELECT count(*) FROM {s}.{t}"),
    ("READ", "SELECT", "", "", "SELECT a.id, a.status\n  FROM {s}.{t} a\n "
                               "WHERE a.updated_at >= now() - interval '1 day';"),
    ("READ", "SELECT", "", "", "/* metabase */ SELECT status, count(*) FROM {s}.{t} "
                               "GROUP BY status"),
    ("READ", "SELECT", "", "", "SELECT note FROM {s}.{t} WHERE note LIKE '%\"urgent\"%'"),
)
_WRITES = (
    ("WRITE", "INSERT", "", "", "INSERT INTO {s}.{t} (id, payload) VALUES ($1, $2)"),
    ("WRITE", "UPDATE", "", "", "UPDATE {s}.{t} SET status = 'done' WHERE id = $1"),
    ("WRITE", "COPY", "", "", "COPY {s}.{t} FROM STDIN"),
    ("WRITE", "DELETE", "", "", "DELETE FROM {s}.{t} WHERE created_at < now() - interval "
                                "'90 days'"),
)
_MISC = (
    ("MISC", "SET", "", "", "SET search_path TO {s}, public"),
    ("MISC", "BEGIN", "", "", "BEGIN"),
    ("MISC", "COMMIT", "", "", "COMMIT"),
    ("MISC", "VACUUM", "", "", "VACUUM ANALYZE {s}.{t}"),
)
_DBA = (
    ("ROLE", "GRANT", "TABLE", "", "GRANT SELECT ON {s}.{t} TO readonly"),
    ("ROLE", "ALTER ROLE", "", "", "ALTER ROLE svc_{db} SET statement_timeout = '30s'"),
)
_MIGRATIONS = (
    ("ALTER TABLE", "TABLE", "{s}.{t}", "ALTER TABLE {s}.{t} ADD COLUMN IF NOT EXISTS c{n} text"),
    ("CREATE INDEX", "INDEX", "{s}.idx_{t}_{n}", "CREATE INDEX idx_{t}_{n} ON {s}.{t} (id, "
                                                 "updated_at)"),
    ("COMMENT", "TABLE", "{s}.{t}", "COMMENT ON TABLE {s}.{t} IS 'schema v{n}'"),
)
_APPS_PLAIN = ("psql", "pg_dump", "airflow-etl", "metabase", "orders-api", "svc-batch")
_APPS_SPACED = ("PostgreSQL JDBC Driver", "DBeaver 24.1.0 - Main", "psql", "metabase")
_SSL = "SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"


class _ClusterLog:
    """Writes one cluster's log files: planted sessions merged into generated noise."""

    def __init__(self, plan: Plan, cluster: Cluster, folder: Path, sink: ItemSink,
                 cm: CmIndex, per_day: float, clock: Clock) -> None:
        self.plan = plan
        self.c = cluster
        self.folder = folder
        self.sink = sink
        self.cm = cm
        self.per_day = per_day
        index = plan.clusters.index(cluster)
        self.rng = random.Random(plan.seed * 100_003 + index)
        self.w = LogWriter(cluster.fmt, cluster.prefix, clock)
        self.pid = 2000 + self.rng.randrange(30000)
        self.backend_id = 3
        self.lxid = 100
        self.host_base = f"10.{10 + index % 200}.{1 + index % 7}."
        self.users = self._noise_users()
        self.apps = _APPS_PLAIN if cluster.fmt == "stderr" else _APPS_SPACED
        self.scoped = cluster.in_scope
        self.stmt_pool = self._pool()
        self.windows = plan.windows.get(cluster.name, [])
        self.mig_n = 0
        self.ckpt: Ctx | None = None
        self.postmaster: Ctx | None = None
        self.shut_down_at: int | None = None
        self.random = self.rng.random
        self.fast_pool = self._fast_pool()

    def _noise_users(self) -> list[str]:
        roles, _ = self.plan.initial[self.c.name]
        keep = [f"svc_{self.c.db}", "svc_etl", "svc_monitor", *DBAS]
        return [u for u in keep if u in roles]

    def _pool(self) -> dict[str, list[tuple[str, str, str, str, str]]]:
        s, tables = self.c.schema, self.c.tables
        pool: dict[str, list[tuple[str, str, str, str, str]]] = {}
        for name, group in (("read", _READS), ("write", _WRITES), ("misc", _MISC),
                            ("dba", _DBA)):
            pool[name] = [(cls, cmd, ot, on, sql.format(s=s, t=t, db=self.c.db))
                          for t in tables for cls, cmd, ot, on, sql in group]
        return pool

    def _fast_pool(self) -> list[list[tuple[str, str, int]]]:
        """Noise statements as (command tag, escaped message tail, physical lines)."""
        groups = []
        for name in ("read", "write", "misc", "dba"):
            group = []
            for cls, cmd, ot, on, sql in self.stmt_pool[name]:
                tail = audit_message(0, 1, cls, cmd, ot, on, sql)[len("AUDIT: SESSION,0"):]
                esc, nlines = self.w.escape(tail)
                group.append((cmd, esc, nlines))
            groups.append(group)
        return groups

    def _next_pid(self) -> int:
        self.pid += 1 + int(self.random() * 40)
        return self.pid

    def _vxid(self) -> str:
        self.lxid += 1
        return f"{self.backend_id}/{self.lxid}"

    def _open_session(self, start_ms: int, user: str, db: str, app: str) -> Ctx:
        rnd = self.random
        pid = self._next_pid()
        self.backend_id = 3 + int(rnd() * 60)
        ctx = Ctx(pid, f"{start_ms // 1000:x}.{pid:x}", self.w.clock.start(start_ms), None,
                  None, None, self.host_base + str(2 + int(rnd() * 248)),
                  30000 + int(rnd() * 30000))
        self.w.received(ctx, start_ms)
        ctx.user, ctx.db, ctx.app = user, db, app
        self.w.prepare(ctx)
        # names in the demo hold no quote, backslash or newline: no escaping needed
        self.w.fast(ctx, start_ms + 4, "authentication", f"{self.backend_id}/0",
                    f"connection authorized: user={user} database={db} "
                    f"application_name={app} {_SSL}", 1)
        return ctx

    def _close_session(self, ctx: Ctx, start_ms: int, end_ms: int) -> None:
        took = end_ms - start_ms
        h, rem = divmod(took, 3_600_000)
        m, rem = divmod(rem, 60_000)
        sec, milli = divmod(rem, 1000)
        self.w.fast(ctx, end_ms, "idle", "",
                    f"disconnection: session time: {h}:{m:02d}:{sec:02d}.{milli:03d} "
                    f"user={ctx.user} database={ctx.db} host={ctx.host} port={ctx.port}", 1)

    def _session_key(self, ctx: Ctx) -> str:
        return ctx.sid if self.c.fmt != "stderr" or self.c.prefix == PREFIX_SESSION \
            else str(ctx.pid)

    def _audit(self, ctx: Ctx, ms: int, stmt_id: int, entries: Iterable[tuple[Any, ...]],
               sql: str, sub_sql: tuple[str | None, ...] | None = None) -> None:
        vxid = self._vxid()
        for i, (sub, cls, command, otype, oname) in enumerate(entries):
            text = sql
            if sub_sql and i < len(sub_sql) and sub_sql[i]:
                text = str(sub_sql[i])
            self.w.entry(ctx, ms, command, vxid,
                         audit_message(stmt_id, sub, cls, command, otype, oname, text))

    # -- planted sessions ---------------------------------------------------
    def _planted(self, sess: Session) -> int:
        first = epoch_ms(sess.stmts[0].at)
        start = first - 2000 - self.rng.randrange(15000)
        ctx = self._open_session(start, sess.user, sess.db, sess.app)
        stmt_id = 1
        cls, cmd, ot, on, sql = self.stmt_pool["misc"][0]
        self._audit(ctx, start + 400, stmt_id, [(1, cls, cmd, ot, on)], sql)
        for st in sess.stmts:
            stmt_id += 1 + (self.rng.random() < 0.3)
            sub_sql = next((e[1] for e in st.effects if e[0] == "sub_sql"), None)
            self._audit(ctx, epoch_ms(st.at), stmt_id, st.entries, st.sql, sub_sql)
            if any(e[1] == "DDL" for e in st.entries) and self.scoped \
                    and self.plan.in_quarter(st.at):
                key = stmt_key(st.sql, sess.app)
                self.sink.add([self.c.name, self._session_key(ctx), str(stmt_id)],
                              self.cm.reasons(self.c.name, st.at, key))
        end = epoch_ms(sess.stmts[-1].at) + 1500 + self.rng.randrange(30000)
        self._close_session(ctx, start, end)
        return end

    # -- noise --------------------------------------------------------------
    def _noise_session(self, start: int) -> int:
        rnd = self.random
        users = self.users
        user = users[int(rnd() * len(users))]
        if user in ("svc_etl", "svc_monitor"):
            app = user
        else:
            app = self.apps[int(rnd() * len(self.apps))]
        ctx = self._open_session(start, user, self.c.db, app)
        ms = start + 20 + int(rnd() * 200)
        reads, writes, misc, dba = self.fast_pool
        is_dba = user in DBAS
        fast = self.w.fast
        stmt_id = 0
        for _ in range(2 + int(rnd() * 6)):
            ms += 1 + int(rnd() * 800)
            stmt_id += 2 if rnd() < 0.1 else 1
            r = rnd()
            if r < 0.02:
                self.w.general(ctx, ms, "SELECT", "ERROR", "42P01",
                               f'relation "{self.c.schema}.jornal" does not exist',
                               query=f"SELECT * FROM {self.c.schema}.jornal", query_pos=15,
                               vxid=self._vxid())
                continue
            if r < 0.55:
                group = reads
            elif r < 0.85:
                group = writes
            elif r < 0.97 or not is_dba:
                group = misc
            else:
                group = dba
            cmd, esc, nlines = group[int(rnd() * len(group))]
            self.lxid += 1
            fast(ctx, ms, cmd, f"{self.backend_id}/{self.lxid}",
                 f"AUDIT: SESSION,{stmt_id}{esc}", nlines)
        if not self.scoped and rnd() < 0.05:
            ms += 50
            stmt_id += 1
            t = self.c.tables[int(rnd() * len(self.c.tables))]
            self.w.entry(ctx, ms, "CREATE TABLE", self._vxid(), audit_message(
                stmt_id, 1, "DDL", "CREATE TABLE", "TABLE", f"{self.c.schema}.{t}_copy",
                f"CREATE TABLE {self.c.schema}.{t}_copy (LIKE {self.c.schema}.{t})"))
        end = ms + 5 + int(rnd() * 3000)
        self._close_session(ctx, start, end)
        return end

    def _failed_login(self, at: int) -> int:
        pid = self._next_pid()
        ctx = Ctx(pid, f"{at // 1000:x}.{pid:x}", self.w.clock.start(at), None, None, None,
                  self.host_base + str(self.rng.randrange(2, 250)),
                  30000 + self.rng.randrange(30000))
        self.w.received(ctx, at)
        ctx.user, ctx.db, ctx.app = "reporting", self.c.db, None
        self.w.general(ctx, at + 3, "authentication", "FATAL", "28P01",
                       'password authentication failed for user "reporting"',
                       detail='Connection matched pg_hba.conf line 98: '
                              '"hostssl all all 10.0.0.0/8 scram-sha-256"')
        return at + 10

    def _checkpoint(self, at: int) -> None:
        if self.ckpt is None:
            pid = 1000 + self.plan.clusters.index(self.c)
            boot = epoch_ms(self.plan.quarter.start) - 41 * 86_400_000 + 7_777_123
            self.ckpt = Ctx(pid, f"{boot // 1000:x}.{pid:x}", self.w.clock.start(boot), None,
                            None, None, None, None, backend="checkpointer")
        ctx = self.ckpt
        self.w.general(ctx, at, None, "LOG", "00000", "checkpoint starting: time")
        bufs = 200 + self.rng.randrange(5000)
        self.w.general(ctx, at + 269_000 + self.rng.randrange(2000), None, "LOG", "00000",
                       f"checkpoint complete: wrote {bufs} buffers ({bufs / 1310.72:.1f}%); "
                       f"0 WAL file(s) added, 0 removed, 1 recycled; write=269.1 s, "
                       f"sync=0.004 s, total=269.2 s; sync files=41, longest=0.002 s, "
                       f"average=0.001 s; distance=15234 kB, estimate=16012 kB")

    def _server(self, at: int, kind: str, value: str | None) -> int:
        """Planted server lines (LG-01) as PostgreSQL 15 writes them: a configuration reload
        that changes pgaudit.log, a fast shutdown, or a startup after one."""
        if self.postmaster is None or kind == "startup":
            pid = 900 + self.plan.clusters.index(self.c) + (50 if kind == "startup" else 0)
            self.postmaster = Ctx(pid, f"{at // 1000:x}.{pid:x}", self.w.clock.start(at), None,
                                  None, None, None, None, backend="postmaster")
        pm = self.postmaster
        log = self.w.general
        if kind == "reload":
            log(pm, at, None, "LOG", "00000", "received SIGHUP, reloading configuration files")
            log(pm, at + 2, None, "LOG", "00000", f'parameter "pgaudit.log" changed to "{value}"')
            return at + 2
        if kind == "shutdown":
            log(pm, at, None, "LOG", "00000", "received fast shutdown request")
            log(pm, at + 3, None, "LOG", "00000", "aborting any active transactions")
            log(pm, at + 9, None, "LOG", "00000", "shutting down")
            log(pm, at + 240, None, "LOG", "00000", "database system is shut down")
            self.shut_down_at = at + 240
            return at + 240
        # startup: the startup process names the last shutdown (to the second, in UTC)
        log(pm, at, None, "LOG", "00000", "starting PostgreSQL 15.8 (Debian 15.8-1.pgdg120+1) "
            "on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit")
        log(pm, at + 1, None, "LOG", "00000", 'listening on IPv4 address "0.0.0.0", port 5432')
        pid = pm.pid + 1
        startup = Ctx(pid, f"{(at + 5) // 1000:x}.{pid:x}", self.w.clock.start(at + 5), None,
                      None, None, None, None, backend="startup")
        named = (EPOCH + timedelta(milliseconds=self.shut_down_at or at)).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
        log(startup, at + 5, None, "LOG", "00000", f"database system was shut down at {named}")
        log(pm, at + 30, None, "LOG", "00000", "database system is ready to accept connections")
        return at + 30

    def _migration(self, start: int, key: str, index: int, count: int) -> int:
        mode = index % 3
        app = f"flyway-{key}" if mode == 0 else "flyway"
        ctx = self._open_session(start, "svc_migrate", self.c.db, app)
        ms = start + 500
        stmt_id = 1
        self.w.entry(ctx, ms, "SET", self._vxid(), audit_message(
            1, 1, "MISC", "SET", "", "", f"SET search_path TO {self.c.schema}, public"))
        for k in range(count):
            self.mig_n += 1
            ms += 200 + self.rng.randrange(60_000)
            stmt_id += 1
            command, otype, oname, sql = _MIGRATIONS[self.mig_n % len(_MIGRATIONS)]
            t = self.c.tables[self.mig_n % len(self.c.tables)]
            fmt = {"s": self.c.schema, "t": t, "n": self.mig_n}
            sql = sql.format(**fmt)
            if mode == 1:
                sql = f"/* {key} */ {sql}"
            entries = [(1, "DDL", command, otype, oname.format(**fmt))]
            if command == "ALTER TABLE" and k % 2:
                entries.append((1, "DDL", "ALTER TABLE", "TABLE", f"{self.c.schema}.{t}"))
            self._audit(ctx, ms, stmt_id, entries, sql)
            when = EPOCH + timedelta(milliseconds=ms)
            self.sink.add([self.c.name, self._session_key(ctx), str(stmt_id)],
                          self.cm.reasons(self.c.name, when, stmt_key(sql, app)))
        end = ms + 1000
        self._close_session(ctx, start, end)
        return end

    # -- the whole cluster ----------------------------------------------------
    def write(self) -> int:
        """Write every weekly file of the cluster; returns the number of files."""
        plan = self.plan
        folder = self.folder / self.c.name
        folder.mkdir(parents=True, exist_ok=True)
        scheduled: list[tuple[int, str, Any]] = [
            (epoch_ms(s.stmts[0].at) - 60_000, "planted", s)
            for s in plan.sessions if s.cluster == self.c.name]
        for when, kind, value in plan.server_lines.get(self.c.name, []):
            scheduled.append((epoch_ms(when), "server", (epoch_ms(when), kind, value)))
        per_window = 1 + int(self.per_day // 300)
        for i, (start, _end, key) in enumerate(self.windows):
            scheduled.append((epoch_ms(start) + 300_000 + self.rng.randrange(600_000), "migration",
                              (key, i, per_window)))
        scheduled.sort(key=lambda x: x[0])
        q_start, q_end = epoch_ms(plan.quarter.start), epoch_ms(plan.quarter.end)
        first = min([q_start, *(x[0] for x in scheduled)])
        last = max([q_end - 1, *(x[0] for x in scheduled)])
        day0 = (EPOCH + timedelta(milliseconds=first)).date()
        # one file a week (Mondays), or one a day for a cluster that rotates daily (LG-01)
        rotation = timedelta(days=plan.log_rotation_days.get(self.c.name, 7))
        if rotation.days == 7:
            day0 -= timedelta(days=day0.weekday())
        week = datetime.combine(day0, time(0), tzinfo=UTC)
        missing = plan.missing_log_days.get(self.c.name, set())
        quiet = [(epoch_ms(a), epoch_ms(b)) for a, b in plan.quiet_windows.get(self.c.name, [])]
        ext = {"csvlog": "csv", "jsonlog": "json", "stderr": "log"}[self.c.fmt]
        session_gap = 86_400_000 * 8.0 / max(self.per_day * 0.9, 1e-9)
        next_ckpt = q_start + self.rng.randrange(3_600_000)
        ckpt_every = max(300_000, int(2 * 86_400_000 / max(self.per_day * 0.1, 1e-9)))
        files = si = 0
        while epoch_ms(week) <= last:
            week_start, week_end = epoch_ms(week), epoch_ms(week + rotation)
            noise_from, noise_to = max(week_start, q_start), min(week_end, q_end)
            has_noise = noise_from < noise_to
            has_scheduled = si < len(scheduled) and scheduled[si][0] < week_end
            if not has_noise and not has_scheduled:
                week += rotation
                continue
            path = folder / f"postgresql-{week.strftime('%Y-%m-%d')}_000000.{ext}"
            self.w.open(path)
            lines_before = self.w.lines
            files += 1
            t = noise_from if has_noise else scheduled[si][0]
            if has_scheduled:
                t = min(t, scheduled[si][0])
            while True:
                nxt = scheduled[si][0] if si < len(scheduled) and \
                    scheduled[si][0] < week_end else None
                if nxt is not None and nxt <= t + 60_000:
                    kind, payload = scheduled[si][1], scheduled[si][2]
                    si += 1
                    if kind == "planted":
                        t = max(t, self._planted(payload) + 1000)
                    elif kind == "server":
                        t = max(t, self._server(*payload) + 1000)
                    else:
                        t = max(t, self._migration(max(t, nxt), *payload) + 1000)
                    continue
                if not noise_from <= t < noise_to:
                    if nxt is None:
                        break
                    t = nxt if t >= noise_to or nxt < noise_from else noise_from
                    continue
                calm = next((b for a, b in quiet if a <= t < b), None)
                if calm is not None:  # down, or pgaudit off: no sessions (plan_logging)
                    t = calm if nxt is None or nxt > calm else nxt
                    continue
                if next_ckpt <= t:
                    self._checkpoint(t)
                    next_ckpt = t + ckpt_every
                    t += 1000
                    continue
                target = t + int(self.rng.expovariate(1.0) * session_gap) + 1
                calm = next((a for a, b in quiet if t < a <= target + 60_000), None)
                if calm is not None and (nxt is None or calm < nxt):
                    t = calm
                elif nxt is not None and nxt <= target + 60_000:
                    t = nxt
                elif target >= noise_to:
                    t = noise_to
                elif self.rng.random() < 0.01:
                    t = self._failed_login(target)
                else:
                    t = self._noise_session(target)
            self.w.close()
            if week.date() in missing:  # the planted missing log day (plan_logging)
                path.unlink()
                files -= 1
                self.w.lines = lines_before
            week += rotation
        return files


def write_logs(plan: Plan, folder: Path, sink: ItemSink,
               workers: int | None = None) -> tuple[int, int]:
    """Every cluster's logs; CM-01 items go to `sink` in cluster order.

    Large estates are written by worker processes, one share of the clusters each: every
    cluster has its own random stream, so the bytes do not depend on the number of workers.
    """
    if workers is None:
        workers = min(os.cpu_count() or 1, 8, len(plan.clusters)) \
            if plan.scale.log_lines >= 200_000 else 1
    if workers <= 1:
        files = lines = 0
        for index in range(len(plan.clusters)):
            f, n = _write_cluster_log(plan, index, folder, sink)
            files, lines = files + f, lines + n
        return files, lines
    tmp = folder.parent / ".demo-cm01"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shares = [list(range(w, len(plan.clusters), workers)) for w in range(workers)]
    args = [(plan.quarter.label, plan.scale, plan.seed, share, str(folder), str(tmp))
            for share in shares]
    results: dict[int, tuple[int, int, int, int]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(_log_worker, args):
            results.update(done)
    files = lines = 0
    for index in range(len(plan.clusters)):
        f, n, count, exceptions = results[index]
        files, lines = files + f, lines + n
        with (tmp / f"{index:05d}.jsonl").open(encoding="utf-8") as part:
            shutil.copyfileobj(part, sink.handle)
        sink.count += count
        sink.exceptions += exceptions
    shutil.rmtree(tmp)
    return files, lines


def _write_cluster_log(plan: Plan, index: int, folder: Path, sink: ItemSink) -> tuple[int, int]:
    per_day = plan.scale.log_lines / (len(plan.clusters) * len(plan.days))
    writer = _ClusterLog(plan, plan.clusters[index], folder, sink, CmIndex(plan), per_day,
                         Clock())
    return writer.write(), writer.w.lines


def _log_worker(args: tuple[str, DemoScale, int, list[int], str, str]
                ) -> dict[int, tuple[int, int, int, int]]:
    label, scale, seed, share, folder, tmp = args
    plan = Plan.build(Quarter.parse(label), scale, seed)
    done = {}
    for index in share:
        with (Path(tmp) / f"{index:05d}.jsonl").open("w", encoding="utf-8") as part:
            sink = ItemSink(part)
            files, lines = _write_cluster_log(plan, index, Path(folder), sink)
        done[index] = (files, lines, sink.count, sink.exceptions)
    return done
