"""The demo estate: a deterministic quarter of every source in its real format, with ground truth.

`generate()` writes PostgreSQL server logs with pgaudit entries (csvlog, jsonlog and stderr),
catalog exports, CloudTrail files, an HR terminations export, Jira search pages, a pgBackRest
`info` document, the seeds, a `soxtrail.yml` using the real connectors, and `expected.json`:
every population item of every control of docs/controls.md with its result, computed from the
generator's own model of what it planted (never by running the SQL).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter

CONTROLS = ("AC-01", "AC-02", "AC-03", "CM-01", "BK-01")
APPROVED_STATUSES = ("Approved", "Done", "Closed", "Implemented")
REVOCATION_SLA = timedelta(hours=24)
APPROVAL_VALIDITY = timedelta(days=30)
ACCOUNT = "123456789012"
JIRA = "https://jira.example.com"
TICKET_KEY = re.compile(r"[A-Z][A-Z0-9]+-[0-9]+")
PREFIX_PLAIN = "%m [%p] %q%u@%d "
PREFIX_SESSION = "%m [%p] %c %l %q%u@%d %a "
BUFFER = 1 << 20


# ---------------------------------------------------------------------------
# public API


@dataclass(frozen=True)
class DemoScale:
    """Size knobs; the planted cases stay the same, the noise and populations grow.

    `log_lines` is a target for the whole estate (noise fills it); `tickets`,
    `backup_records` and `role_catalog_rows` are minimums (filler is added up to them).
    """

    clusters: int = 12
    in_scope_clusters: int = 8
    log_lines: int = 8_000
    cloudtrail_records: int = 1_200
    tickets: int = 0
    backup_records: int = 0
    role_catalog_rows: int = 0

    def __post_init__(self) -> None:
        if self.clusters < 12 or self.in_scope_clusters < 8:
            raise ConfigError("the demo estate needs at least 12 clusters, 8 of them in scope "
                              f"(got {self.clusters}, {self.in_scope_clusters} in scope)")
        if self.clusters - self.in_scope_clusters < 4:
            raise ConfigError("the demo estate needs at least 4 out-of-scope clusters")


@dataclass
class DemoSummary:
    """What `generate()` wrote."""

    out: Path
    quarter: str
    clusters: int
    in_scope_clusters: int
    log_files: int = 0
    log_lines: int = 0
    cloudtrail_files: int = 0
    cloudtrail_records: int = 0
    tickets: int = 0
    backups: int = 0
    role_catalog_rows: int = 0
    population: dict[str, int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)


def default_scale(clusters: int = 12) -> DemoScale:
    """The default estate for `clusters` clusters (two thirds of the extra ones in scope)."""
    return DemoScale(clusters=clusters, in_scope_clusters=8 + (max(clusters, 12) - 12) * 2 // 3)


def generate(out: Path, quarter: Quarter, *, clusters: int = 12, seed: int = 7,
             scale: DemoScale | None = None) -> DemoSummary:
    """Write the demo estate for `quarter` under `out` (same arguments → identical bytes)."""
    scale = scale or default_scale(clusters)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "catalog", "cloudtrail", "hr", "jira", "backups", "seeds"):
        shutil.rmtree(out / sub, ignore_errors=True)
    plan = _Plan.build(quarter, scale, seed)
    summary = DemoSummary(out=out, quarter=quarter.label, clusters=len(plan.clusters),
                          in_scope_clusters=sum(c.in_scope for c in plan.clusters))
    _write_seeds(plan, out / "seeds", summary)
    _write_catalogs(plan, out / "catalog")
    _write_hr(plan, out / "hr")
    summary.tickets = _write_jira(plan, out / "jira")
    summary.cloudtrail_files, summary.cloudtrail_records = _write_cloudtrail(plan,
                                                                             out / "cloudtrail")
    cm01_tmp = out / ".expected-cm01.jsonl"
    with cm01_tmp.open("w", encoding="utf-8") as cm01:
        sink = _ItemSink(cm01)
        summary.log_files, summary.log_lines = _write_logs(plan, out / "logs", sink)
    bk01_tmp = out / ".expected-bk01.jsonl"
    with bk01_tmp.open("w", encoding="utf-8") as bk01:
        bk_sink = _ItemSink(bk01)
        summary.backups = _write_backups(plan, out / "backups", bk_sink)
    controls = _evaluate_access(plan)
    counts = {c: (len(items), sum(1 for i in items if i[1] != "PASS"))
              for c, items in controls.items()}
    counts["CM-01"] = (sink.count, sink.exceptions)
    counts["BK-01"] = (bk_sink.count, bk_sink.exceptions)
    _write_expected(out / "expected.json", quarter, controls, {"CM-01": cm01_tmp,
                                                               "BK-01": bk01_tmp})
    cm01_tmp.unlink()
    bk01_tmp.unlink()
    (out / "soxtrail.yml").write_text(_config_text(plan), encoding="utf-8")
    summary.population = {c: counts[c][0] for c in CONTROLS}
    summary.exceptions = {c: counts[c][1] for c in CONTROLS}
    return summary


# ---------------------------------------------------------------------------
# the estate model


@dataclass(frozen=True)
class _Cluster:
    name: str
    application: str
    in_scope: bool
    policy: str  # daily | weekly
    fmt: str  # csvlog | jsonlog | stderr
    prefix: str | None
    db: str
    schema: str
    tables: tuple[str, ...]
    family: str  # fin | hr | pay | ord | ... (role names)


_BASE_CLUSTERS = (
    # name, application, in scope, policy, format, prefix, db, schema, tables, family
    ("pg-fin-01", "general-ledger", True, "daily", "csvlog", None, "ledger", "gl",
     ("journal", "account", "period_close"), "fin"),
    ("pg-fin-02", "accounts-payable", True, "daily", "jsonlog", None, "ledger", "ap",
     ("invoice", "vendor", "payment_run"), "fin"),
    ("pg-fin-03", "treasury", True, "daily", "stderr", PREFIX_PLAIN, "treasury", "treasury",
     ("fx_rate", "cash_position", "hedge"), "fin"),
    ("pg-hr-01", "hris", True, "daily", "csvlog", None, "hr", "hr",
     ("employee", "position", "leave_request"), "hr"),
    ("pg-hr-02", "payroll-history", True, "daily", "jsonlog", None, "hr", "hr",
     ("payroll", "payslip", "tax_code"), "hr"),
    ("pg-pay-01", "payments-core", True, "daily", "stderr", PREFIX_SESSION, "payments",
     "payments", ("transfer", "mandate", "beneficiary"), "pay"),
    ("pg-pay-02", "payments-settlement", True, "daily", "csvlog", None, "payments", "payments",
     ("settlement", "batch", "fee"), "pay"),
    ("pg-ord-01", "order-management", True, "weekly", "jsonlog", None, "orders", "orders",
     ("order_line", "customer", "shipment"), "ord"),
    ("pg-web-01", "web-storefront", False, "daily", "stderr", PREFIX_PLAIN, "web", "web",
     ("session", "cart", "page_view"), "web"),
    ("pg-analytics-01", "analytics", False, "weekly", "csvlog", None, "warehouse", "mart",
     ("daily_sales", "funnel", "cohort"), "analytics"),
    ("pg-dev-01", "dev-sandbox", False, "weekly", "jsonlog", None, "devdb", "scratch",
     ("t1", "t2", "fixture"), "dev"),
    ("pg-test-01", "qa", False, "daily", "stderr", PREFIX_SESSION, "testdb", "qa",
     ("run", "case", "result"), "test"),
)
_FORMAT_CYCLE = (("csvlog", None), ("jsonlog", None), ("stderr", PREFIX_PLAIN),
                 ("csvlog", None), ("jsonlog", None), ("stderr", PREFIX_SESSION))

PEOPLE = {
    "alice": "Alice Martin", "bruno": "Bruno Costa", "carla": "Carla Diaz",
    "dara": "Dara Walsh", "elena": "Elena Petrova", "farid": "Farid Haddad",
    "grace": "Grace Liu", "hiro": "Hiro Tanaka", "ines": "Ines Moreau", "jonas": "Jonas Berg",
    "kemal": "Kemal Aydin", "lena": "Lena Fischer", "marco": "Marco Rossi",
    "nadia": "Nadia Karim", "oscar": "Oscar Lindqvist", "priya": "Priya Nair",
    "quentin": "Quentin Blanc", "rosa": "Rosa Alvarez", "sven": "Sven Olsen",
    "tara": "Tara Singh", "umar": "Umar Farouk", "vera": "Vera Novak", "wei": "Wei Zhang",
    "xenia": "Xenia Popa", "yusuf": "Yusuf Demir", "zoe": "Zoe Clarke",
    "anders": "Anders Holm", "bea": "Bea Santos", "chen": "Chen Wu", "dmitri": "Dmitri Volkov",
    "mkeller": "Mara Keller", "ivo": "Ivo Horvat", "jana": "Jana Dvorak",
    "lars": "Lars Eriksen", "mila": "Mila Jovanovic", "noor": "Noor Aziz", "otto": "Otto Braun",
    "pia": "Pia Schmid", "kofi": "Kofi Mensah",
}
DBAS = ("grace", "sven", "dmitri")
SERVICE_ACCOUNTS = ("postgres", "svc_etl", "svc_migrate", "svc_monitor")
BUILTIN_ROLES = (
    "pg_checkpoint", "pg_database_owner", "pg_execute_server_program", "pg_monitor",
    "pg_read_all_data", "pg_read_all_settings", "pg_read_all_stats", "pg_read_server_files",
    "pg_signal_backend", "pg_stat_scan_tables", "pg_write_all_data", "pg_write_server_files",
)

# role_name, cluster_pattern, is_privileged, description, owner, allowed_holders
ROLE_CATALOG: tuple[tuple[str, str, bool, str, str, str], ...] = (
    ("SUPERUSER", "*", True, "Superuser attribute (pseudo-role)", "platform-dba",
     "postgres; DBAs under break-glass ticket"),
    ("CREATEROLE", "*", True, "CREATEROLE attribute (pseudo-role)", "platform-dba",
     "postgres; DBAs"),
    ("dba", "*", True, "Platform DBA group", "platform-dba", "DBA team"),
    ("migrator", "*", True, "Schema owner used by migrations", "platform-dba", "svc_migrate"),
    ("readonly", "*", False, "Read-only on application schemas", "platform-dba",
     "any employee with a ticket"),
    ("etl_writer", "*", False, "Batch load writer", "data-eng", "svc_etl"),
    ("pg_monitor", "*", False, "Built-in monitoring role", "platform-dba", "monitoring agents"),
    ("fin_admin", "pg-fin-*", True, "Finance schema administration", "finance-it",
     "finance DBAs and leads with an approved ticket"),
    ("fin_rw", "pg-fin-*", False, "Finance read/write", "finance-it", "finance applications"),
    ("fin_ro", "pg-fin-*", False, "Finance read-only", "finance-it", "finance staff"),
    ("hr_admin", "pg-hr-*", True, "HR schema administration", "hr-it",
     "HR IT leads with an approved ticket"),
    ("hr_rw", "pg-hr-*", False, "HR read/write", "hr-it", "HR applications"),
    ("hr_ro", "pg-hr-*", False, "HR read-only", "hr-it", "HR staff"),
    ("pay_admin", "pg-pay-*", True, "Payments schema administration", "payments-it",
     "payments leads with an approved ticket"),
    ("pay_rw", "pg-pay-*", False, "Payments read/write", "payments-it", "payments apps"),
    ("ord_admin", "pg-ord-*", True, "Orders schema administration", "commerce-it",
     "commerce leads with an approved ticket"),
    ("ord_rw", "pg-ord-*", False, "Orders read/write", "commerce-it", "order services"),
    ("web_app", "pg-web-*", False, "Storefront application role", "web-team", "web services"),
    ("analytics_ro", "pg-analytics-*", False, "Warehouse read-only", "data-eng", "analysts"),
    ("app_rw", "pg-svc-*", False, "Shared-service read/write", "platform-dba", "applications"),
)
_FAMILY_ROLES = {
    "fin": ("fin_admin", "fin_rw", "fin_ro"), "hr": ("hr_admin", "hr_rw", "hr_ro"),
    "pay": ("pay_admin", "pay_rw"), "ord": ("ord_admin", "ord_rw"), "web": ("web_app",),
    "analytics": ("analytics_ro",), "dev": (), "test": (), "svc": ("app_rw",), "lab": (),
}
_APP_RW = {"fin": "fin_rw", "hr": "hr_rw", "pay": "pay_rw", "ord": "ord_rw", "web": "web_app",
           "analytics": "analytics_ro", "svc": "app_rw"}


@dataclass
class _Ticket:
    key: str
    itype: str  # Access Request | Change | Task
    status: str
    reporter: str
    approver: str | None
    created: datetime
    history: list[tuple[datetime, str, str]]  # (when, from status, to status)
    subject: str | None = None
    cluster: str | None = None
    role: str | None = None
    window: tuple[datetime, datetime] | None = None
    summary: str = ""
    offset_hours: int = 0  # the Jira server's UTC offset used to print this issue's times

    @property
    def kind(self) -> str:
        return {"Access Request": "access", "Change": "change"}.get(self.itype, "other")

    @property
    def approved_at(self) -> datetime | None:
        for when, _, to in self.history:
            if to in APPROVED_STATUSES:
                return when
        return None

    @property
    def is_approved(self) -> bool:
        return self.status in APPROVED_STATUSES and self.approved_at is not None


@dataclass
class _Stmt:
    at: datetime
    sql: str
    entries: tuple[tuple[int, str, str, str, str], ...]  # substmt, class, command, type, name
    effects: tuple[tuple[Any, ...], ...] = ()


@dataclass
class _Session:
    cluster: str
    user: str
    db: str
    app: str
    stmts: list[_Stmt]
    label: str = ""  # the planted case id, for tests and the report


@dataclass
class _IamEvent:
    at: datetime
    name: str  # CloudTrail eventName
    user: str


@dataclass
class _Hr:
    username: str  # as HR spells it
    at: datetime
    offset_hours: float
    reason: str
    employee_id: str


def _stmt_key(sql: str, app: str) -> str | None:
    """The ticket key of a statement per docs/controls.md: comments first, then application_name."""
    for comment in _comments(sql):
        match = TICKET_KEY.search(comment)
        if match:
            return match.group(0)
    match = TICKET_KEY.search(app or "")
    return match.group(0) if match else None


def _comments(sql: str) -> Iterator[str]:
    """SQL comments of a statement in order, skipping string literals and quoted identifiers."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == ch:
                end = sql.find(ch, end + 2)
            i = n if end == -1 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            yield sql[i + 2:end]
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end
            yield sql[i + 2:end]
            i = end + 2
        else:
            i += 1


class _Plan:
    """Everything the writers and the evaluators share (small; the noise is not in here)."""

    def __init__(self, quarter: Quarter, scale: DemoScale, seed: int) -> None:
        self.quarter = quarter
        self.scale = scale
        self.seed = seed
        self.rng = random.Random(seed)
        self.clusters: list[_Cluster] = []
        self.tickets: dict[str, _Ticket] = {}
        self.sessions: list[_Session] = []
        self.iam: list[_IamEvent] = []
        self.hr: list[_Hr] = []
        self.identity_map: dict[str, tuple[str, str, str]] = {}
        self.initial: dict[str, tuple[dict[str, dict[str, Any]], dict[tuple[str, str], bool]]] = {}
        self.final: dict[str, tuple[dict[str, dict[str, Any]], dict[tuple[str, str], bool]]] = {}
        self.role_catalog: list[tuple[str, str, bool, str, str, str]] = list(ROLE_CATALOG)
        self.windows: dict[str, list[tuple[datetime, datetime, str]]] = {}
        self.backup_gaps: dict[str, set[date]] = {}
        self.backup_errors: dict[str, set[date]] = {}
        self.backup_late: dict[str, set[date]] = {}
        self.weekly_skip: dict[str, set[date]] = {}

    # -- time helpers -----------------------------------------------------
    def at(self, month: int, day: int, hms: str = "00:00:00.000") -> datetime:
        """Day `day` of the quarter's `month`-th month (1-3), UTC."""
        first = self.quarter.first_day
        year, mon = first.year, first.month + month - 1
        clock = time.fromisoformat(hms)
        return datetime.combine(date(year, mon, day), clock, tzinfo=UTC)

    def before(self, days: int, hms: str = "10:00:00.000") -> datetime:
        """`days` days before the quarter starts, UTC."""
        start = self.quarter.first_day - timedelta(days=days)
        return datetime.combine(start, time.fromisoformat(hms), tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        first, end = self.quarter.first_day, self.quarter.end_day
        return [first + timedelta(days=i) for i in range((end - first).days)]

    def cluster(self, name: str) -> _Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def identity(self, login: str) -> str:
        mapped = self.identity_map.get(login)
        return mapped[0] if mapped else login.lower()

    def catalog_entries(self, role: str, cluster: str) -> list[tuple[str, str, bool, str, str,
                                                                   str]]:
        return [row for row in self.role_catalog
                if row[0] == role and fnmatchcase(cluster, row[1])]

    def is_privileged(self, role: str, cluster: str) -> bool:
        return any(row[2] for row in self.catalog_entries(role, cluster))

    def in_quarter(self, when: datetime) -> bool:
        return self.quarter.start <= when < self.quarter.end

    # -- building ---------------------------------------------------------
    @classmethod
    def build(cls, quarter: Quarter, scale: DemoScale, seed: int) -> _Plan:
        plan = cls(quarter, scale, seed)
        plan._build_clusters()
        plan._build_identities()
        plan._build_initial_catalog()
        plan._plant_access()
        plan._plant_revocations()
        plan._plant_changes()
        plan._plant_backups()
        plan._build_noise_tickets()
        plan._apply_effects()
        return plan

    def _build_clusters(self) -> None:
        for row in _BASE_CLUSTERS:
            self.clusters.append(_Cluster(*row))
        extra_in = self.scale.in_scope_clusters - 8
        extra_out = self.scale.clusters - 12 - extra_in
        for i in range(max(extra_in, 0) + max(extra_out, 0)):
            in_scope = i < extra_in
            fmt, prefix = _FORMAT_CYCLE[i % len(_FORMAT_CYCLE)]
            name = f"pg-svc-{i + 1:03d}" if in_scope else f"pg-lab-{i - extra_in + 1:03d}"
            self.clusters.append(_Cluster(
                name, f"shared-service-{i + 1:03d}" if in_scope else f"lab-{i + 1:03d}",
                in_scope, "daily", fmt, prefix, "svc" if in_scope else "lab", "app",
                ("event", "account", "job"), "svc" if in_scope else "lab"))
        for i in range(len(self.role_catalog), self.scale.role_catalog_rows):
            self.role_catalog.append((f"app_role_{i:05d}", f"pg-svc-{i % 997:03d}", i % 7 == 0,
                                      "Generated application role", "app-team",
                                      "application users"))

    def _build_identities(self) -> None:
        refs = {"postgres": "SOX-SA-001", "svc_etl": "SOX-SA-002", "svc_migrate": "SOX-SA-003",
                "svc_monitor": "SOX-SA-004"}
        for login, ref in refs.items():
            self.identity_map[login] = (login, "service", ref)
        for dba in DBAS:
            self.identity_map[dba] = (dba, "person", "SOX-DBA-2024")
        self.identity_map["kemal_adm"] = ("kemal", "person", "")
        for db in sorted({c.db for c in self.clusters}):
            self.identity_map[f"svc_{db}"] = (f"svc_{db}", "service", "")

    def _build_initial_catalog(self) -> None:
        people: dict[str, list[tuple[str, str | None, bool]]] = {
            # cluster: (login, role or None for login only, admin option)
            "pg-fin-01": [("alice", "fin_rw", False), ("elena", "fin_ro", False),
                          ("hiro", "fin_ro", False), ("jonas", "fin_ro", False),
                          ("kemal_adm", "fin_admin", True), ("rosa", "fin_ro", False),
                          ("lena", "fin_ro", False), ("carla", None, False),
                          ("lars", None, False)],
            "pg-fin-02": [("lars", "tmp_fix", False), ("bea", "fin_ro", False),
                          ("kemal_adm", None, False), ("jonas", None, False)],
            "pg-fin-03": [("vera", None, False), ("quentin", "fin_ro", False),
                          ("anders", "fin_ro", False)],
            "pg-hr-01": [("bruno", "hr_ro", False), ("marco", "hr_ro", False),
                         ("mila", "legacy_report", False), ("dara", "hr_ro", False),
                         ("jana", None, False)],
            "pg-hr-02": [("wei", "hr_ro", False), ("yusuf", None, False)],
            "pg-pay-01": [("carla", "pay_rw", False), ("ines", None, False),
                          ("xenia", "pay_rw", False), ("otto", "fin_admin", False),
                          ("pia", "pay_admin", False)],
            "pg-pay-02": [("umar", "pay_rw", False), ("lena", None, False),
                          ("chen", None, False), ("noor", "pay_admin", False)],
            "pg-ord-01": [("elena", None, False), ("farid", None, False),
                          ("nadia", "ord_rw", False), ("zoe", None, False),
                          ("kofi", "ord_admin", False)],
            "pg-web-01": [("ivo", "web_app", False), ("web_app_user", "web_app", False),
                          ("otto", "hack_role", False)],
            "pg-analytics-01": [("elena", "analytics_ro", False), ("chen", "analytics_ro", False),
                                ("wei", "bi_tmp", False)],
            "pg-dev-01": [("alice", "dba", False), ("bruno", "dba", False)],
            "pg-test-01": [("xenia", "readonly", False)],
        }
        for c in self.clusters:
            roles: dict[str, dict[str, Any]] = {}
            members: dict[tuple[str, str], bool] = {}

            def role(name: str, *, login: bool, superuser: bool = False,
                     createrole: bool = False, valid: str = "",
                     roles: dict[str, dict[str, Any]] = roles) -> None:
                roles.setdefault(name, {"super": superuser, "createrole": createrole,
                                        "login": login, "valid": valid})

            role("postgres", login=True, superuser=True, createrole=True)
            for name in BUILTIN_ROLES:
                role(name, login=False)
            for name in ("dba", "readonly", "migrator", "etl_writer"):
                role(name, login=False)
            for name in _FAMILY_ROLES.get(c.family, ()):
                role(name, login=False)
            for name in ("pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables"):
                members[("pg_monitor", name)] = False
            members[("dba", "pg_monitor")] = False
            for login in (*DBAS, "svc_etl", "svc_migrate", "svc_monitor"):
                role(login, login=True)
            for dba in DBAS:
                members[(dba, "dba")] = c.family not in ("dev", "test", "lab")
            members[("svc_migrate", "migrator")] = False
            members[("svc_monitor", "pg_monitor")] = False
            if c.family in ("fin", "pay", "ord", "hr", "svc", "analytics"):
                members[("svc_etl", "etl_writer")] = False
            app_user = f"svc_{c.db}"
            role(app_user, login=True)
            rw = _APP_RW.get(c.family)
            members[(app_user, rw or "readonly")] = False
            if c.family == "fin":
                members[("fin_admin", "fin_rw")] = False
                members[("fin_rw", "fin_ro")] = False
                role("report_owner", login=False)
                members[("report_owner", "fin_ro")] = False
            if c.family == "hr":
                members[("hr_admin", "hr_rw")] = False
            for login, granted, admin in people.get(c.name, []):
                role(login, login=True)
                if granted:
                    role(granted, login=False)
                    members[(login, granted)] = admin
            if c.name == "pg-hr-01":
                roles["lars"] = {"super": False, "createrole": True, "login": True, "valid": ""}
            if c.name == "pg-fin-03":
                roles["vera"]["valid"] = "2025-06-30 00:00:00+00"
            if c.family == "svc":
                for i in range(1, 4):
                    role(f"appuser_{i:02d}", login=True)
                    members[(f"appuser_{i:02d}", "readonly")] = False
            self.initial[c.name] = (roles, members)

    # -- planted cases ------------------------------------------------------
    def _ticket(self, key: str, itype: str, *, reporter: str, approver: str | None,
                created: datetime, flow: list[tuple[datetime, str]], subject: str | None = None,
                cluster: str | None = None, role: str | None = None,
                window: tuple[datetime, datetime] | None = None, summary: str = "",
                offset_hours: int = 0) -> _Ticket:
        history: list[tuple[datetime, str, str]] = []
        status = "Open"
        for when, to in flow:
            history.append((when, status, to))
            status = to
        ticket = _Ticket(key, itype, status, reporter, approver, created, history, subject,
                         cluster, role, window, summary, offset_hours)
        self.tickets[key] = ticket
        return ticket

    def _access(self, key: str, subject: str, cluster: str, role: str, *, approver: str | None,
                approved: datetime | None, reporter: str | None = None,
                status: str | None = None, created: datetime | None = None,
                window: tuple[datetime, datetime] | None = None,
                extra: list[tuple[datetime, str]] | None = None,
                offset_hours: int = 0) -> _Ticket:
        anchor = approved or created or self.at(1, 1)
        created = created or anchor - timedelta(hours=20, minutes=35)
        flow: list[tuple[datetime, str]] = [(created + timedelta(minutes=7), "Pending Approval")]
        if approved is not None:
            flow.append((approved, "Approved"))
            if status in (None, "Done"):
                flow.append((approved + timedelta(hours=3, minutes=12), "Done"))
        flow += extra or []
        ticket = self._ticket(key, "Access Request", reporter=reporter or subject,
                              approver=approver, created=created, flow=flow, subject=subject,
                              cluster=cluster, role=role, window=window,
                              summary=f"Grant {role} on {cluster} to {subject}",
                              offset_hours=offset_hours)
        if status is not None and status != "Done":
            ticket.status = status
        return ticket

    def _change(self, key: str, cluster: str, *, approver: str | None,
                approved: datetime | None, window: tuple[datetime, datetime] | None,
                reporter: str = "sven", status: str | None = None,
                extra: list[tuple[datetime, str]] | None = None, summary: str = "") -> _Ticket:
        anchor = approved or (window[0] - timedelta(days=2) if window else self.at(1, 1))
        created = anchor - timedelta(days=1, hours=4)
        first = status if approved is None and status else "Pending Approval"
        flow: list[tuple[datetime, str]] = (
            [] if first == "Open" else [(created + timedelta(minutes=30), first)])
        if approved is not None:
            flow.append((approved, "Approved"))
            if status is None and window is not None and window[1] < self.quarter.end:
                flow.append((window[1] + timedelta(minutes=20), "Implemented"))
        flow += extra or []
        ticket = self._ticket(key, "Change", reporter=reporter, approver=approver,
                              created=created, flow=flow, cluster=cluster, window=window,
                              summary=summary or f"Schema change on {cluster}")
        if status is not None:
            ticket.status = status
        return ticket

    def _session(self, label: str, cluster: str, user: str, stmts: list[_Stmt], *,
                 app: str = "psql", db: str = "postgres") -> None:
        self.sessions.append(_Session(cluster, user, db, app, stmts, label))

    def _plant_access(self) -> None:
        at, before = self.at, self.before
        s = self._session
        # ---- AC-01 look-alikes that PASS
        self._access("ACC-101", "alice", "pg-fin-01", "fin_admin", approver="mkeller",
                     approved=at(1, 5, "14:02:00.000"), created=at(1, 4, "16:20:00.000"))
        s("AC01-pass-explicit-comment", "pg-fin-01", "grace", [
            _grant(at(1, 8, "09:15:02.311"), "/* ACC-101 */ GRANT fin_admin TO alice;",
                   ["fin_admin"], ["alice"])])
        self._access("ACC-102", "bruno", "pg-hr-01", "hr_admin", approver="priya",
                     approved=at(1, 10, "17:45:00.000"))
        s("AC01-pass-implicit", "pg-hr-01", "sven", [
            _grant(at(1, 11, "10:03:44.120"), "GRANT hr_admin TO bruno;", ["hr_admin"],
                   ["bruno"])])
        self._access("ACC-103", "carla", "pg-pay-01", "pay_admin", approver="tara",
                     approved=at(1, 12, "11:00:00.000"))
        s("AC01-pass-explicit-appname", "pg-pay-01", "dmitri", [
            _grant(at(1, 15, "14:22:10.005"), "GRANT pay_admin TO carla;", ["pay_admin"],
                   ["carla"])], app="dbops-ACC-103")
        self._access("ACC-104", "kemal", "pg-fin-02", "FIN_ADMIN", approver="mkeller",
                     approved=at(1, 16, "09:30:00.000"))
        s("AC01-pass-implicit-identity-map", "pg-fin-02", "grace", [
            _grant(at(1, 17, "08:40:00.450"), "GRANT fin_admin TO kemal_adm;", ["fin_admin"],
                   ["kemal_adm"])])
        self._access("ACC-105", "elena", "pg-ord-01", "ord_admin", approver="oscar",
                     approved=at(1, 17, "10:00:00.000"))
        self._access("ACC-106", "farid", "pg-ord-01", "ord_admin", approver="oscar",
                     approved=at(1, 17, "10:05:00.000"))
        s("AC01-pass-multi-grant", "pg-ord-01", "sven", [
            _grant(at(1, 18, "11:12:13.141"), "GRANT ord_admin, ord_rw TO elena, farid;",
                   ["ord_admin", "ord_rw"], ["elena", "farid"])])
        self._access("ACC-107", "umar", "pg-pay-02", "pay_admin", approver="tara",
                     approved=at(1, 19, "15:00:00.000"))
        s("AC01-pass-lowercase-admin-option", "pg-pay-02", "dmitri", [
            _grant(at(1, 22, "16:05:30.000"), "grant pay_admin to umar with admin option;",
                   ["pay_admin"], ["umar"], admin=True)])
        self._access("ACC-108", "vera", "pg-fin-03", "SUPERUSER", approver="mkeller",
                     approved=at(1, 23, "18:00:00.000"),
                     window=(at(1, 24, "12:00:00.000"), at(1, 24, "18:00:00.000")))
        s("AC01-pass-alter-superuser", "pg-fin-03", "dmitri", [
            _alter_attr(at(1, 24, "13:00:00.250"), "/* ACC-108 */ ALTER ROLE vera WITH SUPERUSER;",
                        "vera", "SUPERUSER", True)])
        s("AC01-lookalike-nosuperuser", "pg-fin-03", "dmitri", [
            _alter_attr(at(1, 24, "17:30:00.000"), "ALTER ROLE vera NOSUPERUSER;", "vera",
                        "SUPERUSER", False)])
        self._access("ACC-109", "wei", "pg-hr-02", "hr_admin", approver="priya",
                     approved=before(90, "09:00:00.000"))
        self._access("ACC-110", "wei", "pg-hr-02", "hr_admin", approver="priya",
                     approved=at(1, 18, "15:00:00.000"))
        s("AC01-pass-most-recent-approval", "pg-hr-02", "sven", [
            _grant(at(1, 20, "10:10:10.010"), "GRANT hr_admin TO wei;", ["hr_admin"], ["wei"])])
        # ---- AC-01 exceptions
        s("AC01-no-ticket", "pg-fin-01", "grace", [
            _grant(at(1, 9, "15:40:00.700"), "GRANT fin_admin TO hiro;", ["fin_admin"],
                   ["hiro"])])
        s("AC01-no-ticket-unknown-key", "pg-pay-01", "dmitri", [
            _grant(at(1, 29, "09:05:00.000"), "/* ACC-999 */ GRANT pay_admin TO ines;",
                   ["pay_admin"], ["ines"])])
        s("AC01-no-ticket-create-role", "pg-hr-01", "sven", [
            _create(at(2, 2, "11:11:11.111"), "CREATE ROLE tmp_admin WITH LOGIN CREATEROLE;",
                    "tmp_admin", login=True, attrs=("CREATEROLE",))])
        self._access("ACC-111", "jonas", "pg-fin-01", "fin_admin", approver="mkeller",
                     approved=at(2, 2, "10:00:00.000"))
        s("AC01-cluster-mismatch-comment", "pg-fin-02", "grace", [
            _grant(at(2, 5, "10:20:00.000"), "/* ACC-111 */ GRANT fin_admin TO jonas;",
                   ["fin_admin"], ["jonas"])])
        self._access("ACC-112", "lena", "pg-pay-01", "pay_admin", approver="tara",
                     approved=at(2, 5, "12:00:00.000"))
        s("AC01-cluster-mismatch-appname", "pg-pay-02", "sven", [
            _grant(at(2, 6, "15:00:00.000"), "GRANT pay_admin TO lena;", ["pay_admin"],
                   ["lena"])], app="jira-ACC-112")
        self._access("ACC-113", "marco", "pg-hr-01", "hr_admin", approver=None, approved=None,
                     status="Pending Approval", created=at(2, 7, "09:00:00.000"))
        s("AC01-not-approved-pending", "pg-hr-01", "sven", [
            _grant(at(2, 8, "09:30:00.000"), "-- ACC-113\nGRANT hr_admin TO marco;",
                   ["hr_admin"], ["marco"])])
        self._access("ACC-114", "nadia", "pg-ord-01", "ord_admin", approver="oscar",
                     approved=None, status="Rejected", created=at(2, 8, "10:00:00.000"),
                     extra=[(at(2, 8, "16:00:00.000"), "Rejected")])
        s("AC01-not-approved-rejected", "pg-ord-01", "sven", [
            _grant(at(2, 9, "14:45:00.000"), "GRANT ord_admin TO nadia;", ["ord_admin"],
                   ["nadia"])])
        self._access("ACC-115", "quentin", "pg-fin-03", "fin_admin", approver="mkeller",
                     approved=at(2, 10, "11:00:00.000"), status="Cancelled",
                     extra=[(at(2, 11, "09:00:00.000"), "Cancelled")])
        s("AC01-not-approved-cancelled", "pg-fin-03", "dmitri", [
            _grant(at(2, 12, "16:00:00.000"), "/* ACC-115 */ GRANT fin_admin TO quentin;",
                   ["fin_admin"], ["quentin"])])
        self._access("ACC-116", "rosa", "pg-fin-01", "fin_admin", approver="mkeller",
                     approved=at(1, 22, "15:30:00.000"), created=at(1, 21, "09:00:00.000"))
        s("AC01-approved-after-grant", "pg-fin-01", "grace", [
            _grant(at(1, 22, "10:00:00.000"), "/* ACC-116 */ GRANT fin_admin TO rosa;",
                   ["fin_admin"], ["rosa"])])
        # approved 08:00 at UTC-5 = 13:00 UTC, after the 09:30 UTC grant
        self._access("ACC-117", "xenia", "pg-pay-01", "pay_admin", approver="tara",
                     approved=at(2, 6, "13:00:00.000"), created=at(2, 5, "14:00:00.000"),
                     offset_hours=-5)
        s("AC01-approved-after-grant-zone", "pg-pay-01", "dmitri", [
            _grant(at(2, 6, "09:30:00.000"), "GRANT pay_admin TO xenia;", ["pay_admin"],
                   ["xenia"])])
        self._access("ACC-118", "yusuf", "pg-hr-02", "hr_admin", approver="priya",
                     approved=before(21, "10:00:00.000"))
        s("AC01-approval-expired-validity", "pg-hr-02", "sven", [
            _grant(at(2, 1, "11:00:00.000"), "GRANT hr_admin TO yusuf;", ["hr_admin"],
                   ["yusuf"])])
        self._access("ACC-119", "zoe", "pg-ord-01", "ord_admin", approver="oscar",
                     approved=at(1, 1, "12:00:00.000"),
                     window=(at(1, 2, "00:00:00.000"), at(1, 5, "23:59:59.000")))
        s("AC01-approval-expired-window", "pg-ord-01", "sven", [
            _grant(at(1, 9, "10:00:00.000"), "/* ACC-119 */ GRANT ord_admin TO zoe;",
                   ["ord_admin"], ["zoe"])])
        self._access("ACC-120", "anders", "pg-fin-03", "fin_admin", approver="anders",
                     reporter="bea", approved=at(2, 13, "10:00:00.000"))
        s("AC01-self-approval", "pg-fin-03", "dmitri", [
            _grant(at(2, 14, "11:30:00.000"), "GRANT fin_admin TO anders;", ["fin_admin"],
                   ["anders"])])
        self._access("ACC-121", "chen", "pg-pay-02", "pay_admin", approver="chen",
                     approved=at(2, 14, "16:00:00.000"))
        s("AC01-self-approval-and-requester", "pg-pay-02", "dmitri", [
            _grant(at(2, 15, "10:45:00.000"), "GRANT pay_admin TO chen;", ["pay_admin"],
                   ["chen"])])
        self._access("ACC-122", "dara", "pg-hr-01", "hr_admin", approver="oscar",
                     reporter="oscar", approved=at(2, 15, "12:00:00.000"))
        s("AC01-approver-is-requester", "pg-hr-01", "sven", [
            _grant(at(2, 16, "13:15:00.000"), "/* ACC-122 */ GRANT hr_admin TO dara;",
                   ["hr_admin"], ["dara"])])
        self._access("ACC-123", "bea", "pg-fin-02", "fin_admin", approver="grace",
                     approved=at(2, 18, "17:00:00.000"))
        s("AC01-approver-ran-grant", "pg-fin-02", "grace", [
            _grant(at(2, 19, "09:00:00.000"), "GRANT fin_admin TO bea;", ["fin_admin"],
                   ["bea"])])
        self._access("ACC-124", "lena", "pg-fin-01", "fin_admin", approver="kemal",
                     approved=at(2, 19, "12:00:00.000"))
        s("AC01-approver-ran-grant-identity-map", "pg-fin-01", "kemal_adm", [
            _grant(at(2, 20, "14:00:00.000"), "GRANT fin_admin TO lena;", ["fin_admin"],
                   ["lena"])])
        # ---- not in the AC-01 population
        s("AC01-out-of-scope-cluster", "pg-web-01", "postgres", [
            _grant(at(1, 12, "12:00:00.000"), "GRANT dba TO ivo;", ["dba"], ["ivo"])])
        s("AC01-non-privileged-role", "pg-fin-01", "grace", [
            _grant(at(1, 16, "09:00:00.000"), "GRANT fin_ro TO carla;", ["fin_ro"], ["carla"])])
        s("AC01-before-quarter", "pg-fin-01", "grace", [
            _grant(self.quarter.start - timedelta(minutes=2),
                   "GRANT fin_admin TO lars;", ["fin_admin"], ["lars"])])
        s("AC01-non-privileged-role-hr", "pg-hr-01", "sven", [
            _grant(at(1, 3, "10:00:00.000"), "GRANT hr_ro TO jana;", ["hr_ro"], ["jana"])])
        s("AC01-alter-role-set", "pg-fin-01", "postgres", [
            _role_misc(at(1, 5, "08:00:00.000"),
                       "ALTER ROLE svc_etl SET statement_timeout = '15min';"),
            _alter_attr(at(1, 5, "08:00:02.000"), "ALTER ROLE svc_monitor NOCREATEROLE;",
                        "svc_monitor", "CREATEROLE", False)])
        # ---- AC-03: standing access approved before the quarter (or not)
        self._access("ACC-090", "kemal", "pg-fin-01", "fin_admin", approver="mkeller",
                     approved=before(60))
        self._access("ACC-091", "lars", "pg-hr-01", "CREATEROLE", approver="priya",
                     approved=before(45))
        self._access("ACC-092", "pia", "pg-pay-01", "pay_admin", approver="tara",
                     approved=before(30))
        self._access("ACC-093", "kofi", "pg-ord-01", "ord_admin", approver="oscar",
                     approved=self.quarter.end + timedelta(days=1, hours=10),
                     created=self.at(3, 28, "09:00:00.000"))

    def _plant_revocations(self) -> None:
        at, s = self.at, self._session
        # nadia: HR (UTC-4) is the earliest deactivation; revoked exactly at the 24 h SLA
        self.hr.append(_Hr("nadia", at(2, 14, "21:30:00.000"), -4, "resignation", "E10231"))
        self.iam.append(_IamEvent(at(2, 15, "09:00:00.000"), "DeleteUser", "nadia"))
        s("AC02-revoked-at-sla", "pg-ord-01", "sven", [
            _revoke(at(2, 15, "21:30:00.000"), "REVOKE ord_admin, ord_rw FROM nadia;",
                    ["ord_admin", "ord_rw"], ["nadia"]),
            _drop(at(2, 15, "21:30:00.000"), "DROP ROLE nadia;", "nadia")])
        # elena: two clusters, revoked on one (pg-ord-01), forgotten on the other (pg-fin-01)
        self.iam.append(_IamEvent(at(1, 25, "16:40:12.000"), "DeleteLoginProfile", "elena"))
        self.iam.append(_IamEvent(at(1, 25, "16:41:03.000"), "DeleteUser", "elena"))
        s("AC02-revoked-on-one-cluster", "pg-ord-01", "sven", [
            _revoke(at(1, 26, "10:00:00.000"), "REVOKE ord_admin, ord_rw FROM elena;",
                    ["ord_admin", "ord_rw"], ["elena"]),
            _nologin(at(1, 26, "10:00:01.500"), "ALTER ROLE elena NOLOGIN;", "elena")])
        # farid: dropped one second after the SLA
        self.hr.append(_Hr("farid", at(3, 2, "09:00:00.000"), 0, "termination", "E10377"))
        s("AC02-revoked-late-by-drop", "pg-ord-01", "sven", [
            _drop(at(3, 3, "09:00:01.000"), "DROP ROLE farid;", "farid")])
        # jonas: late on pg-fin-02, in time on pg-fin-01
        self.iam.append(_IamEvent(at(2, 20, "11:00:00.000"), "DeleteUser", "jonas"))
        s("AC02-revoked-in-time", "pg-fin-01", "grace", [
            _revoke(at(2, 20, "15:00:00.000"), "REVOKE fin_ro FROM jonas;", ["fin_ro"],
                    ["jonas"]),
            _drop(at(2, 20, "15:00:02.000"), "DROP USER jonas;", "jonas")])
        s("AC02-revoked-late", "pg-fin-02", "grace", [
            _revoke(at(2, 23, "10:00:00.000"), "REVOKE fin_admin FROM jonas;", ["fin_admin"],
                    ["jonas"]),
            _nologin(at(2, 23, "10:00:03.000"), "ALTER USER jonas NOLOGIN;", "jonas")])
        # hiro: HR spells him in capitals, zone +02:00; never revoked
        self.hr.append(_Hr("HIRO", at(3, 10, "10:00:00.000"), 2, "termination", "E10412"))
        # ines: offboarded before HR termination: nothing held at deactivation
        s("AC02-offboarded-before-termination", "pg-pay-01", "dmitri", [
            _revoke(at(2, 20, "10:00:00.000"), "REVOKE pay_admin FROM ines;", ["pay_admin"],
                    ["ines"])])
        s("AC02-dropped-before-termination", "pg-pay-01", "dmitri", [
            _drop(at(2, 21, "10:00:00.000"), "DROP ROLE ines;", "ines")])
        self.hr.append(_Hr("ines", at(2, 22, "09:00:00.000"), 0, "resignation", "E10198"))
        # ivo: only out-of-scope access
        self.iam.append(_IamEvent(at(1, 30, "13:00:00.000"), "DeleteUser", "ivo"))
        # jana: granted in the quarter, dropped without explicit revoke, in time
        self.iam.append(_IamEvent(at(3, 16, "08:00:00.000"), "DeleteLoginProfile", "jana"))
        s("AC02-dropped-in-time", "pg-hr-01", "sven", [
            _drop(at(3, 16, "13:00:00.000"), "DROP USER jana;", "jana")])
        # people who leave holding nothing in the estate
        self.hr.append(_Hr("s.meyer", at(1, 19, "17:00:00.000"), 1, "end of contract",
                           "E09921"))
        self.iam.append(_IamEvent(at(2, 27, "10:30:00.000"), "DeleteUser", "contractor07"))

    def _plant_changes(self) -> None:
        at, s = self.at, self._session
        self._change("CHG-2001", "pg-fin-01", approver="priya", approved=at(1, 8, "16:00:00.000"),
                     window=(at(1, 10, "20:00:00.000"), at(1, 10, "23:00:00.000")),
                     summary="Journal archive table")
        self._change("CHG-2002", "pg-fin-02", approver="priya",
                     approved=at(1, 16, "11:00:00.000"),
                     window=(at(1, 17, "21:00:00.000"), at(1, 17, "23:00:00.000")))
        self._change("CHG-2003", "pg-pay-01", approver="tara", approved=at(2, 5, "10:00:00.000"),
                     window=(at(2, 7, "22:00:00.000"), at(2, 8, "01:00:00.000")))
        self._change("CHG-2004", "pg-hr-01", approver=None, approved=None,
                     window=(at(2, 12, "18:00:00.000"), at(2, 12, "20:00:00.000")),
                     status="Awaiting Approval")
        self._change("CHG-2005", "pg-ord-01", approver="oscar",
                     approved=at(2, 19, "10:00:00.000"), window=None)
        self._change("CHG-2006", "pg-fin-03", approver="mkeller",
                     approved=at(3, 3, "10:00:00.000"),
                     window=(at(3, 5, "20:00:00.000"), at(3, 5, "22:00:00.000")),
                     status="Cancelled", extra=[(at(3, 4, "09:00:00.000"), "Cancelled")])
        self._change("CHG-2007", "pg-pay-02", approver="tara", approved=at(3, 9, "10:00:00.000"),
                     window=(at(3, 11, "21:00:00.000"), at(3, 11, "23:30:00.000")))
        self._change("CHG-2008", "pg-hr-01", approver="priya", approved=at(1, 22, "10:00:00.000"),
                     window=(at(1, 24, "19:00:00.000"), at(1, 24, "21:00:00.000")))
        self._change("CHG-2009", "pg-hr-02", approver=None, approved=None,
                     window=(at(2, 3, "09:00:00.000"), at(2, 3, "11:00:00.000")), status="Open")
        self._ticket("DBA-501", "Task", reporter="sven", approver=None,
                     created=at(2, 1, "09:00:00.000"),
                     flow=[(at(2, 1, "09:30:00.000"), "In Progress"),
                           (at(2, 2, "16:00:00.000"), "Done")],
                     cluster="pg-hr-02",
                     window=(at(2, 3, "08:00:00.000"), at(2, 4, "12:00:00.000")),
                     summary="Investigate payroll variance on pg-hr-02")
        s("CM01-pass-explicit-two-entries", "pg-fin-01", "sven", [
            _ddl(at(1, 10, "21:05:00.000"),
                 "/* CHG-2001 */ CREATE TABLE gl.journal_archive (\n"
                 "    journal_id bigint PRIMARY KEY,\n    posted_at timestamptz NOT NULL,\n"
                 "    amount numeric(18,2)\n);",
                 [("DDL", "CREATE TABLE", "TABLE", "gl.journal_archive"),
                  ("DDL", "CREATE INDEX", "INDEX", "gl.journal_archive_pkey")], same_sub=True),
            _ddl(at(1, 10, "21:20:00.000"),
                 "COMMENT ON TABLE gl.journal_archive IS 'Archive per CHG-9999, see runbook';",
                 [("DDL", "COMMENT", "TABLE", "gl.journal_archive")])], db="ledger")
        s("CM01-outside-window-explicit", "pg-fin-01", "sven", [
            _ddl(at(1, 11, "09:00:00.000"),
                 "/* CHG-2001 */ ALTER TABLE gl.journal_archive ADD COLUMN source text;",
                 [("DDL", "ALTER TABLE", "TABLE", "gl.journal_archive")])], db="ledger")
        s("CM01-no-change-ticket-unknown-key", "pg-fin-01", "grace", [
            _ddl(at(1, 14, "15:10:00.000"), "/* CHG-4040 */ DROP INDEX gl.idx_journal_old;",
                 [("DDL", "DROP INDEX", "INDEX", "gl.idx_journal_old")])], db="ledger")
        s("CM01-pass-appname-service", "pg-fin-02", "svc_migrate", [
            _ddl(at(1, 17, "21:40:00.000"),
                 "CREATE INDEX CONCURRENTLY idx_invoice_due ON ap.invoice (due_date);",
                 [("DDL", "CREATE INDEX", "INDEX", "ap.idx_invoice_due")])],
          app="flyway-CHG-2002", db="ledger")
        s("CM01-outside-window-implicit-2", "pg-fin-02", "grace", [
            _ddl(at(2, 26, "16:20:00.000"), "DROP VIEW ap.v_old_aging;",
                 [("DDL", "DROP VIEW", "VIEW", "ap.v_old_aging")])], db="ledger")
        s("CM01-cluster-mismatch-multiline", "pg-fin-03", "dmitri", [
            _ddl(at(1, 10, "21:30:00.000"),
                 "/* CHG-2001 */\nALTER TABLE treasury.fx_rate\n    ADD COLUMN source text,\n"
                 "    ADD COLUMN loaded_at timestamptz;",
                 [("DDL", "ALTER TABLE", "TABLE", "treasury.fx_rate")])], db="treasury")
        s("CM01-no-change-ticket-unknown-key-2", "pg-fin-03", "dmitri", [
            _ddl(at(1, 19, "11:00:00.000"), "/* CHG-7777 */ CREATE SCHEMA treasury_tmp;",
                 [("DDL", "CREATE SCHEMA", "SCHEMA", "treasury_tmp")])], db="treasury")
        s("CM01-not-approved-cancelled", "pg-fin-03", "dmitri", [
            _ddl(at(3, 5, "20:30:00.000"), "/* CHG-2006 */ DROP TABLE treasury.fx_rate_2019;",
                 [("DDL", "DROP TABLE", "TABLE", "treasury.fx_rate_2019")])], db="treasury")
        s("CM01-window-boundary", "pg-pay-01", "svc_migrate", [
            _ddl(at(2, 8, "01:00:00.000"),
                 "ALTER TABLE payments.transfer ADD COLUMN iban_hash text;",
                 [("DDL", "ALTER TABLE", "TABLE", "payments.transfer")]),
            _ddl(at(2, 8, "01:00:01.000"),
                 "/* CHG-2003 */ CREATE INDEX idx_transfer_iban ON payments.transfer "
                 "(iban_hash);",
                 [("DDL", "CREATE INDEX", "INDEX", "payments.idx_transfer_iban")])],
          app="flyway-CHG-2003", db="payments")
        s("CM01-cluster-mismatch-appname", "pg-pay-02", "svc_migrate", [
            _ddl(at(2, 7, "22:30:00.000"),
                 "ALTER TABLE payments.settlement ADD COLUMN batch_ref text;",
                 [("DDL", "ALTER TABLE", "TABLE", "payments.settlement")])],
          app="deploy-CHG-2003", db="payments")
        s("CM01-pass-service-in-window", "pg-pay-02", "svc_migrate", [
            _ddl(at(3, 11, "21:30:00.000"),
                 "ALTER TABLE payments.batch ADD COLUMN settled_at timestamptz;",
                 [("DDL", "ALTER TABLE", "TABLE", "payments.batch")])],
          app="svc_migrate", db="payments")
        s("CM01-not-approved-awaiting", "pg-hr-01", "sven", [
            _ddl(at(2, 12, "18:30:00.000"),
                 "/* CHG-2004 */ CREATE VIEW hr.v_headcount AS SELECT dept, count(*) "
                 "FROM hr.employee GROUP BY dept;",
                 [("DDL", "CREATE VIEW", "VIEW", "hr.v_headcount")])], db="hr")
        s("CM01-outside-window-implicit", "pg-hr-01", "sven", [
            _ddl(at(3, 20, "14:00:00.000"),
                 "ALTER TABLE hr.employee ADD COLUMN remote boolean DEFAULT false;",
                 [("DDL", "ALTER TABLE", "TABLE", "hr.employee")])], db="hr")
        s("CM01-pass-do-block-substatement", "pg-hr-01", "svc_migrate", [
            _ddl(at(1, 24, "19:30:00.000"),
                 "DO $$\nBEGIN\n  CREATE TABLE IF NOT EXISTS hr.audit_note (id bigint, "
                 "note text);\nEND $$;",
                 [("FUNCTION", "DO", "", ""), ("DDL", "CREATE TABLE", "TABLE", "hr.audit_note")],
                 sub_sql=(None, "CREATE TABLE IF NOT EXISTS hr.audit_note (id bigint, "
                                "note text)"))],
          app="flyway-CHG-2008", db="hr")
        s("CM01-no-change-ticket-implicit", "pg-hr-02", "sven", [
            _ddl(at(2, 3, "10:00:00.000"),
                 "CREATE TABLE hr.tmp_payroll_fix AS SELECT * FROM hr.payroll "
                 "WHERE period = '2024-07';",
                 [("READ", "SELECT", "TABLE", "hr.payroll"),
                  ("DDL", "CREATE TABLE AS", "TABLE", "hr.tmp_payroll_fix")])], db="hr")
        s("CM01-no-change-ticket-implicit-2", "pg-hr-02", "sven", [
            _ddl(at(2, 4, "10:00:00.000"), "DROP TABLE hr.tmp_payroll_fix;",
                 [("DDL", "DROP TABLE", "TABLE", "hr.tmp_payroll_fix")])], db="hr")
        s("CM01-pass-windowless-line-comment", "pg-ord-01", "sven", [
            _ddl(at(2, 21, "10:00:00.000"),
                 "-- CHG-2005\nALTER TABLE orders.order_line ALTER COLUMN qty TYPE "
                 "numeric(12,3);",
                 [("DDL", "ALTER TABLE", "TABLE", "orders.order_line")])], db="orders")
        s("CM01-out-of-scope", "pg-dev-01", "alice", [
            _ddl(at(1, 5, "12:00:00.000"), "CREATE TABLE scratch.t9 (id int);",
                 [("DDL", "CREATE TABLE", "TABLE", "scratch.t9")])], db="devdb")
        s("CM01-before-quarter", "pg-fin-01", "sven", [
            _ddl(self.quarter.start - timedelta(milliseconds=1), "DROP TABLE gl.tmp_close;",
                 [("DDL", "DROP TABLE", "TABLE", "gl.tmp_close")])], db="ledger")
        s("CM01-after-quarter", "pg-fin-01", "sven", [
            _ddl(self.quarter.end, "CREATE TABLE gl.close_snapshot (id bigint);",
                 [("DDL", "CREATE TABLE", "TABLE", "gl.close_snapshot")])], db="ledger")

    def _plant_backups(self) -> None:
        at = self.at
        self.backup_gaps = {"pg-fin-02": {at(1, 14).date()},
                            "pg-pay-01": {at(2, 27).date(), at(2, 28).date()},
                            "pg-fin-03": {at(3, 9).date()}}
        self.backup_errors = {"pg-hr-01": {at(2, 19).date()}}
        self.backup_late = {"pg-fin-03": {at(3, 9).date()}}  # starts 23:40, completes next day
        sundays = [d for d in self.days if d.weekday() == 6]
        self.weekly_skip = {"pg-ord-01": {sundays[6]}}

    def _build_noise_tickets(self) -> None:
        """Weekly Saturday 02:00-04:00 maintenance windows, and filler tickets up to the target."""
        number = 3001
        saturdays = [d for d in self.days if d.weekday() == 5]
        for c in self.clusters:
            if not c.in_scope or c.name == "pg-hr-02":
                continue
            windows = []
            for sat in saturdays:
                start = datetime.combine(sat, time(2, 0), tzinfo=UTC)
                key = f"CHG-{number}"
                number += 1
                self._change(key, c.name, approver=("priya", "tara")[number % 2],
                             approved=start - timedelta(days=1, hours=9, minutes=number % 50),
                             window=(start, start + timedelta(hours=2)),
                             reporter=DBAS[number % 3],
                             summary=f"Weekly migration window {c.name} {sat.isoformat()}")
                windows.append((start, start + timedelta(hours=2), key))
            self.windows[c.name] = windows
        filler = 0
        while len(self.tickets) < self.scale.tickets:
            filler += 1
            when = self.at(1, 1, "09:00:00.000") + timedelta(minutes=97 * filler)
            if when >= self.quarter.end:
                when = self.quarter.end - timedelta(hours=1 + filler % 500)
            if filler % 2:
                self._access(f"REQ-{5000 + filler}", f"user{filler:05d}",
                             self.clusters[filler % len(self.clusters)].name, "readonly",
                             approver="mkeller", approved=when)
            else:
                self._ticket(f"DBA-{5000 + filler}", "Task", reporter=DBAS[filler % 3],
                             approver=None, created=when - timedelta(hours=3),
                             flow=[(when, "In Progress"), (when + timedelta(hours=2), "Done")],
                             cluster=self.clusters[filler % len(self.clusters)].name,
                             summary="Routine DBA task")

    def _apply_effects(self) -> None:
        """The quarter-end catalog: the initial state plus every planted ROLE effect in order."""
        for c in self.clusters:
            roles0, members0 = self.initial[c.name]
            roles = {k: dict(v) for k, v in roles0.items()}
            members = dict(members0)
            stmts = sorted((st for sess in self.sessions if sess.cluster == c.name
                            for st in sess.stmts if st.at < self.quarter.end),
                           key=lambda st: st.at)
            for st in stmts:
                for effect in st.effects:
                    kind = effect[0]
                    if kind == "grant":
                        _, role, grantee, admin = effect
                        assert grantee in roles and role in roles, (c.name, effect)
                        members[(grantee, role)] = admin
                    elif kind == "revoke":
                        members.pop((effect[2], effect[1]), None)
                    elif kind == "drop":
                        user = effect[1]
                        roles.pop(user)
                        members = {k: v for k, v in members.items() if user not in k}
                    elif kind == "nologin":
                        roles[effect[1]]["login"] = False
                    elif kind == "attr":
                        _, user, attr, on = effect
                        roles[user]["super" if attr == "SUPERUSER" else "createrole"] = on
                    elif kind == "create":
                        _, user, login, attrs = effect
                        roles[user] = {"super": "SUPERUSER" in attrs,
                                       "createrole": "CREATEROLE" in attrs, "login": login,
                                       "valid": ""}
            self.final[c.name] = (roles, members)


def _grant(at: datetime, sql: str, roles: list[str], grantees: list[str], *,
           admin: bool = False) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "GRANT ROLE", "", ""),),
                 tuple(("grant", r, g, admin) for r in roles for g in grantees))


def _revoke(at: datetime, sql: str, roles: list[str], grantees: list[str]) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "REVOKE ROLE", "", ""),),
                 tuple(("revoke", r, g) for r in roles for g in grantees))


def _drop(at: datetime, sql: str, user: str) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "DROP ROLE", "", ""),), (("drop", user),))


def _nologin(at: datetime, sql: str, user: str) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),), (("nologin", user),))


def _alter_attr(at: datetime, sql: str, user: str, attr: str, on: bool) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),), (("attr", user, attr, on),))


def _create(at: datetime, sql: str, user: str, *, login: bool, attrs: tuple[str, ...]) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "CREATE ROLE", "", ""),),
                 (("create", user, login, attrs),))


def _role_misc(at: datetime, sql: str) -> _Stmt:
    return _Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),))


def _ddl(at: datetime, sql: str, entries: list[tuple[str, str, str, str]], *,
         same_sub: bool = False, sub_sql: tuple[str | None, ...] | None = None) -> _Stmt:
    stmt = _Stmt(at, sql, tuple((1 if same_sub else i + 1, *e) for i, e in enumerate(entries)))
    stmt.effects = (("sub_sql", sub_sql),) if sub_sql else ()
    return stmt


# ---------------------------------------------------------------------------
# ground truth: AC-01, AC-02, AC-03 from the plan (CM-01 and BK-01 as they are written)

Item = tuple[list[str], str, list[str]]


def _ts_key(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _result(key: list[str], reasons: Iterable[str]) -> Item:
    codes = sorted(set(reasons))
    return (key, "EXCEPTION" if codes else "PASS", codes)


def _evaluate_access(plan: _Plan) -> dict[str, list[Item]]:
    return {"AC-01": _ac01(plan), "AC-02": _ac02(plan), "AC-03": _ac03(plan)}


def _grants(plan: _Plan) -> Iterator[tuple[_Session, _Stmt, str, str]]:
    """(session, statement, grantee, role) of every privilege grant in the audit log."""
    for sess in plan.sessions:
        for st in sess.stmts:
            for effect in st.effects:
                if effect[0] == "grant":
                    yield sess, st, effect[2], effect[1]
                elif effect[0] == "attr" and effect[3]:
                    yield sess, st, effect[1], effect[2]
                elif effect[0] == "create":
                    for attr in effect[3]:
                        yield sess, st, effect[1], attr


def _ac01(plan: _Plan) -> list[Item]:
    items = []
    for sess, st, grantee, role in _grants(plan):
        cluster = plan.cluster(sess.cluster)
        if not (cluster.in_scope and plan.in_quarter(st.at)
                and plan.is_privileged(role, cluster.name)):
            continue
        key = _stmt_key(st.sql, sess.app)
        ticket = plan.tickets.get(key) if key else None
        explicit = ticket is not None
        grantee_id = plan.identity(grantee)
        if ticket is None:
            candidates = [t for t in plan.tickets.values()
                          if t.kind == "access" and (t.subject or "").lower() == grantee_id
                          and t.cluster == cluster.name and (t.role or "").lower() == role.lower()]
            approved = [t for t in candidates
                        if t.is_approved and t.approved_at and t.approved_at <= st.at]
            if approved:
                ticket = max(approved, key=lambda t: t.approved_at or st.at)
            elif candidates:
                assert len(candidates) == 1, "demo avoids 'most recent' ambiguity"
                ticket = candidates[0]
        reasons = []
        if ticket is None:
            reasons.append("NO_TICKET")
        else:
            if explicit and ticket.cluster != cluster.name:
                reasons.append("TICKET_CLUSTER_MISMATCH")
            approved_at = ticket.approved_at
            if not ticket.is_approved:
                reasons.append("NOT_APPROVED")
            elif approved_at is not None:
                if approved_at > st.at:
                    reasons.append("APPROVED_AFTER_GRANT")
                end = ticket.window[1] if ticket.window else approved_at + APPROVAL_VALIDITY
                if st.at > end:
                    reasons.append("APPROVAL_EXPIRED")
            approver = (ticket.approver or "").lower()
            if approver:
                if approver == grantee_id:
                    reasons.append("SELF_APPROVAL")
                if approver == ticket.reporter.lower():
                    reasons.append("APPROVER_IS_REQUESTER")
                if approver == plan.identity(sess.user):
                    reasons.append("APPROVER_RAN_GRANT")
        items.append(_result([cluster.name, grantee, role, _ts_key(st.at)], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))


def _deactivations(plan: _Plan) -> dict[str, datetime]:
    found: dict[str, datetime] = {}
    events = [(e.user.lower(), e.at) for e in plan.iam
              if e.name in ("DeleteUser", "DeleteLoginProfile")]
    events += [(h.username.lower(), h.at) for h in plan.hr]
    for who, when in events:
        if plan.in_quarter(when) and (who not in found or when < found[who]):
            found[who] = when
    return found


def _ac02(plan: _Plan) -> list[Item]:
    items = []
    deactivated = _deactivations(plan)
    for who, gone in sorted(deactivated.items()):
        for c in plan.clusters:
            if not c.in_scope:
                continue
            roles0, _ = plan.initial[c.name]
            roles_q, members_q = plan.final[c.name]
            logins = {r for r in (*roles0, *roles_q) if plan.identity(r) == who}
            events = sorted(((st.at, e) for s in plan.sessions if s.cluster == c.name
                             for st in s.stmts for e in st.effects
                             if e[0] in ("grant", "revoke", "drop", "nologin")),
                            key=lambda x: x[0])
            events = [(t, e) for t, e in events
                      if (e[2] if e[0] in ("grant", "revoke") else e[1]) in logins]
            in_catalog = {g for (m, g) in members_q if m in logins}
            for login in logins & set(roles_q):
                attrs = roles_q[login]
                if attrs["super"]:
                    in_catalog.add("SUPERUSER")
                if attrs["createrole"]:
                    in_catalog.add("CREATEROLE")
                if attrs["login"]:
                    in_catalog.add("LOGIN")
            held = set(in_catalog)
            for t, e in events:
                if e[0] == "grant" and t < gone:
                    revoked_before = any(
                        t < t2 < gone and (e2[0] in ("drop", "nologin")
                                           or (e2[0] == "revoke" and e2[1] == e[1]))
                        for t2, e2 in events)
                    if not revoked_before:
                        held.add(e[1])
                if t > gone:
                    if e[0] == "revoke":
                        held.add(e[1])
                    elif e[0] in ("drop", "nologin"):
                        held.add("LOGIN")
            for role in sorted(held):
                revoked = [t for t, e in events if gone < t < plan.quarter.end and (
                    e[0] in ("drop", "nologin") or (e[0] == "revoke" and e[1] == role))]
                reasons = []
                if not revoked or role in in_catalog:
                    reasons.append("NOT_REVOKED")
                elif min(revoked) - gone > REVOCATION_SLA:
                    reasons.append("REVOKED_LATE")
                items.append(_result([who, c.name, role], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))


def _ac03(plan: _Plan) -> list[Item]:
    items = []
    deactivated = _deactivations(plan)
    for c in plan.clusters:
        if not c.in_scope:
            continue
        roles, members = plan.final[c.name]
        held = [(m, g) for (m, g) in members if roles.get(m, {}).get("login")]
        for name, attrs in roles.items():
            if attrs["login"] and attrs["super"]:
                held.append((name, "SUPERUSER"))
            if attrs["login"] and attrs["createrole"]:
                held.append((name, "CREATEROLE"))
        for login, role in held:
            who = plan.identity(login)
            reasons = []
            if not plan.catalog_entries(role, c.name):
                reasons.append("UNKNOWN_ROLE")
            if who in deactivated:
                reasons.append("INACTIVE_HOLDER")
            ref = plan.identity_map.get(login, ("", "", ""))[2]
            if plan.is_privileged(role, c.name) and not ref and not any(
                    t.kind == "access" and t.is_approved and (t.subject or "").lower() == who
                    and t.cluster == c.name and (t.role or "").lower() == role.lower()
                    and t.approved_at is not None and t.approved_at < plan.quarter.end
                    for t in plan.tickets.values()):
                reasons.append("NO_APPROVAL_ON_RECORD")
            items.append(_result([c.name, login, role], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))


class _CmIndex:
    """CM-01 rules of docs/controls.md over the planted tickets."""

    def __init__(self, plan: _Plan) -> None:
        self.tickets = plan.tickets
        self.approved: dict[str, list[tuple[datetime, datetime] | None]] = {}
        for t in plan.tickets.values():
            if t.kind == "change" and t.is_approved and t.cluster:
                self.approved.setdefault(t.cluster, []).append(t.window)

    def reasons(self, cluster: str, when: datetime, key: str | None) -> list[str]:
        ticket = self.tickets.get(key) if key else None
        if key is not None:
            if ticket is None or ticket.kind != "change":
                return ["NO_CHANGE_TICKET"]
            reasons = []
            if ticket.cluster != cluster:
                reasons.append("TICKET_CLUSTER_MISMATCH")
            if not ticket.is_approved:
                reasons.append("NOT_APPROVED")
            if ticket.window and not ticket.window[0] <= when <= ticket.window[1]:
                reasons.append("OUTSIDE_CHANGE_WINDOW")
            return sorted(reasons)
        windows = self.approved.get(cluster)
        if not windows:
            return ["NO_CHANGE_TICKET"]
        if any(w and w[0] <= when <= w[1] for w in windows):
            return []
        return ["OUTSIDE_CHANGE_WINDOW"]


class _ItemSink:
    """Streams expected items (one JSON line each) and counts them."""

    def __init__(self, handle: io.TextIOBase | Any) -> None:
        self.handle = handle
        self.count = 0
        self.exceptions = 0

    def add(self, key: list[str], reasons: list[str]) -> None:
        self.handle.write(_item_json(_result(key, reasons)))
        self.handle.write("\n")
        self.count += 1
        self.exceptions += bool(reasons)


def _item_json(item: Item) -> str:
    return json.dumps({"key": item[0], "result": item[1], "reasons": item[2]})


def _write_expected(path: Path, quarter: Quarter, controls: dict[str, list[Item]],
                    streamed: dict[str, Path]) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{{"quarter": "{quarter.label}", "controls": {{\n')
        for n, control in enumerate(CONTROLS):
            out.write(f'"{control}": [\n')
            first = True
            lines: Iterable[str]
            if control in controls:
                lines = (_item_json(i) for i in controls[control])
            else:
                lines = _stripped_lines(streamed[control])
            for line in lines:
                if not first:
                    out.write(",\n")
                out.write(line)
                first = False
            out.write("\n]" + (",\n" if n < len(CONTROLS) - 1 else "\n"))
        out.write("}}\n")


def _stripped_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


# ---------------------------------------------------------------------------
# seeds, catalogs, HR


def _csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _tf(value: bool) -> str:
    return "t" if value else "f"


def _write_seeds(plan: _Plan, folder: Path, summary: DemoSummary) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "role_catalog.csv").write_text(_csv_text(
        ["role_name", "cluster_pattern", "is_privileged", "description", "owner",
         "allowed_holders"],
        ((r[0], r[1], str(r[2]).lower(), r[3], r[4], r[5]) for r in plan.role_catalog)))
    summary.role_catalog_rows = len(plan.role_catalog)
    (folder / "applications.csv").write_text(_csv_text(
        ["application", "cluster", "sox_in_scope", "backup_policy"],
        ((c.application, c.name, str(c.in_scope).lower(), c.policy) for c in plan.clusters)))
    (folder / "identity_map.csv").write_text(_csv_text(
        ["login_role", "identity", "identity_type", "approval_ref"],
        ((login, *v) for login, v in plan.identity_map.items())))


def _write_catalogs(plan: _Plan, folder: Path) -> None:
    for c in plan.clusters:
        roles, members = plan.final[c.name]
        sub = folder / c.name
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "memberships.csv").write_text(_csv_text(
            ["member", "granted_role", "admin_option", "rolsuper", "rolcanlogin",
             "rolcreaterole", "rolvaliduntil"],
            ((m, g, _tf(admin), _tf(roles[m]["super"]), _tf(roles[m]["login"]),
              _tf(roles[m]["createrole"]), roles[m]["valid"])
             for (m, g), admin in sorted(members.items()))))
        (sub / "roles.csv").write_text(_csv_text(
            ["rolname", "rolsuper", "rolcreaterole", "rolcanlogin", "rolvaliduntil"],
            ((name, _tf(a["super"]), _tf(a["createrole"]), _tf(a["login"]), a["valid"])
             for name, a in sorted(roles.items()))))


def _write_hr(plan: _Plan, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for h in sorted(plan.hr, key=lambda h: h.at):
        local = h.at.astimezone(timezone(timedelta(hours=h.offset_hours)))
        stamp = local.isoformat(timespec="seconds").replace("+00:00", "Z")
        rows.append((h.employee_id, h.username, stamp, h.reason))
    (folder / "terminations.csv").write_text(_csv_text(
        ["employee_id", "username", "terminated_at", "reason"], rows))


# ---------------------------------------------------------------------------
# Jira


def _jira_time(when: datetime, offset_hours: int = 0) -> str:
    local = when.astimezone(timezone(timedelta(hours=offset_hours)))
    sign = "+" if offset_hours >= 0 else "-"
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + \
        f"{sign}{abs(offset_hours):02d}00"


def _jira_user(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    return {"self": f"{JIRA}/rest/api/2/user?username={name}", "name": name, "key": name,
            "emailAddress": f"{name}@example.com",
            "displayName": PEOPLE.get(name, name.replace("user", "User ")),
            "active": True, "timeZone": "Europe/Berlin"}


_STATUS_IDS = {"Open": "1", "Pending Approval": "10100", "Awaiting Approval": "10101",
               "Approved": "10102", "Rejected": "10103", "Cancelled": "10104",
               "In Progress": "3", "Done": "10001", "Implemented": "10105", "Closed": "6"}
_TYPE_IDS = {"Access Request": "10200", "Change": "10201", "Task": "10002"}


def _jira_issue(t: _Ticket, number: int) -> dict[str, Any]:
    off = t.offset_hours
    updated = t.history[-1][0] if t.history else t.created
    resolved = next((w for w, _, to in t.history if to in ("Done", "Implemented", "Rejected",
                                                          "Cancelled", "Closed")), None)
    project = t.key.split("-")[0]
    category = ("done" if t.status in ("Done", "Implemented", "Closed", "Rejected", "Cancelled")
                else "indeterminate")
    fields: dict[str, Any] = {
        "summary": t.summary,
        "issuetype": {"self": f"{JIRA}/rest/api/2/issuetype/{_TYPE_IDS[t.itype]}",
                      "id": _TYPE_IDS[t.itype], "name": t.itype, "subtask": False},
        "project": {"self": f"{JIRA}/rest/api/2/project/{project}", "key": project,
                    "name": {"ACC": "Access Requests", "CHG": "Change Management"}.get(
                        project, "DBA Operations")},
        "status": {"self": f"{JIRA}/rest/api/2/status/{_STATUS_IDS[t.status]}",
                   "name": t.status, "id": _STATUS_IDS[t.status],
                   "statusCategory": {"key": category}},
        "priority": {"name": "Medium", "id": "3"},
        "reporter": _jira_user(t.reporter),
        "assignee": _jira_user(DBAS[number % 3]),
        "created": _jira_time(t.created, off),
        "updated": _jira_time(updated, off),
        "resolutiondate": _jira_time(resolved, off) if resolved else None,
        "labels": ["sox"] if t.kind != "other" else [],
        "customfield_10401": _jira_user(t.approver),
        "customfield_10402": _jira_user(t.subject),
        "customfield_10403": ({"self": f"{JIRA}/rest/api/2/customFieldOption/{10500 + number}",
                               "value": t.cluster, "id": str(10500 + number)}
                              if t.cluster else None),
        "customfield_10404": t.role,
        "customfield_10405": _jira_time(t.window[0], off) if t.window else None,
        "customfield_10406": _jira_time(t.window[1], off) if t.window else None,
    }
    histories = []
    for i, (when, frm, to) in enumerate(t.history):
        author = t.approver if to in ("Approved", "Rejected") and t.approver else t.reporter
        histories.append({"id": str(50000 + number * 10 + i), "author": _jira_user(author),
                          "created": _jira_time(when, off),
                          "items": [{"field": "status", "fieldtype": "jira", "from":
                                     _STATUS_IDS[frm], "fromString": frm,
                                     "to": _STATUS_IDS[to], "toString": to}]})
    return {"expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
            "id": str(20000 + number), "self": f"{JIRA}/rest/api/2/issue/{20000 + number}",
            "key": t.key, "fields": fields,
            "changelog": {"startAt": 0, "maxResults": len(histories), "total": len(histories),
                          "histories": histories}}


def _write_jira(plan: _Plan, folder: Path, page_size: int = 50) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    tickets = sorted(plan.tickets.values(), key=lambda t: (t.key.split("-")[0],
                                                           int(t.key.split("-")[1])))
    total = len(tickets)
    for page, start in enumerate(range(0, total, page_size), start=1):
        issues = [_jira_issue(t, start + i) for i, t in enumerate(tickets[start:start + page_size])]
        doc = {"expand": "names,schema", "startAt": start, "maxResults": page_size,
               "total": total, "issues": issues}
        (folder / f"search-{page:03d}.json").write_text(
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return total


# ---------------------------------------------------------------------------
# CloudTrail


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ident(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "scim":
        return {"type": "AssumedRole", "principalId": "AROA3EXAMPLEPROV0001:okta-scim",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/IdentityProvisioning/okta-scim",
                "accountId": ACCOUNT, "accessKeyId": f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": "AROA3EXAMPLEPROV0001",
                                      "arn": f"arn:aws:iam::{ACCOUNT}:role/IdentityProvisioning",
                                      "accountId": ACCOUNT, "userName": "IdentityProvisioning"},
                    "webIdFederationData": {},
                    "attributes": {"creationDate": "", "mfaAuthenticated": "false"}}}
    if kind == "admin":
        return {"type": "IAMUser", "principalId": "AIDA3EXAMPLEADMIN001",
                "arn": f"arn:aws:iam::{ACCOUNT}:user/iam-admin", "accountId": ACCOUNT,
                "accessKeyId": "AKIA3EXAMPLEADMIN001", "userName": "iam-admin"}
    return {"type": "AssumedRole", "principalId": "AROA3EXAMPLEAPPS0001:i-0a1b2c3d4e5f",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app-runtime/i-0a1b2c3d4e5f",
            "accountId": ACCOUNT, "accessKeyId": f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROA3EXAMPLEAPPS0001",
                                  "arn": f"arn:aws:iam::{ACCOUNT}:role/app-runtime",
                                  "accountId": ACCOUNT, "userName": "app-runtime"},
                "webIdFederationData": {},
                "attributes": {"creationDate": "", "mfaAuthenticated": "false"}}}


def _trail_record(rng: random.Random, when: datetime, source: str, name: str, region: str,
                  params: dict[str, Any] | None, response: dict[str, Any] | None, *,
                  read_only: bool, who: str, agent: str) -> dict[str, Any]:
    ident = _ident(rng, who)
    if "sessionContext" in ident:
        ident["sessionContext"]["attributes"]["creationDate"] = (
            (when - timedelta(minutes=rng.randint(1, 50))).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"eventVersion": "1.09", "userIdentity": ident,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source,
            "eventName": name, "awsRegion": region,
            "sourceIPAddress": f"203.0.113.{rng.randint(2, 250)}" if who != "app"
            else f"10.20.{rng.randint(0, 15)}.{rng.randint(2, 250)}",
            "userAgent": agent, "requestParameters": params, "responseElements": response,
            "requestID": _uuid(rng), "eventID": _uuid(rng), "readOnly": read_only,
            "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": ACCOUNT, "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": source.replace(
                               ".amazonaws.com", f".{region}.amazonaws.com")
                           if source != "iam.amazonaws.com" else "iam.amazonaws.com"}}


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_CLI = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#5.15 md/arch#x86_64 lang/python#3.11.9"
_SDK = "Boto3/1.34.144 md/Botocore#1.34.144 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.9"
_SCIM = "okta-scim/1.0 aws-sdk-java/2.25.60"


def _noise_record(rng: random.Random, when: datetime, n: int) -> dict[str, Any]:
    pick = n % 10
    region = "eu-west-1" if pick < 6 else "us-east-1"
    if pick in (0, 1):
        return _trail_record(rng, when, "s3.amazonaws.com", "GetBucketLocation", region,
                             {"bucketName": "acme-evidence", "location": "",
                              "Host": "acme-evidence.s3.eu-west-1.amazonaws.com"}, None,
                             read_only=True, who="app", agent=_SDK)
    if pick in (2, 3):
        return _trail_record(rng, when, "ec2.amazonaws.com", "DescribeInstances", region,
                             {"instancesSet": {}, "filterSet": {}}, None, read_only=True,
                             who="app", agent=_SDK)
    if pick == 4:
        return _trail_record(rng, when, "kms.amazonaws.com", "Decrypt", region,
                             {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, None, read_only=True,
                             who="app", agent=_SDK)
    if pick == 5:
        return _trail_record(rng, when, "ec2.amazonaws.com", "CreateTags", region,
                             {"resourcesSet": {"items": [{"resourceId": "i-0a1b2c3d4e5f"}]},
                              "tagSet": {"items": [{"key": "backup", "value": "daily"}]}},
                             {"_return": True}, read_only=False, who="app", agent=_SDK)
    if pick in (6, 7):
        return _trail_record(rng, when, "sts.amazonaws.com", "AssumeRole", region,
                             {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/app-runtime",
                              "roleSessionName": "i-0a1b2c3d4e5f", "durationSeconds": 3600},
                             {"credentials": {"accessKeyId":
                                              f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
                                              "expiration": "Jan 1, 2030, 12:00:00 AM",
                                              "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE"},
                              "assumedRoleUser": {"assumedRoleId": "AROA3EXAMPLEAPPS0001:i-0a1b",
                                                  "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/"
                                                         "app-runtime/i-0a1b"}},
                             read_only=True, who="app", agent=_SDK)
    if pick == 8:
        return _trail_record(rng, when, "iam.amazonaws.com", "GetUser", "us-east-1",
                             {"userName": rng.choice(sorted(PEOPLE))}, None, read_only=True,
                             who="admin", agent=_CLI)
    return _trail_record(rng, when, "s3.amazonaws.com", "ListBuckets", region,
                         {"Host": "s3.amazonaws.com"}, None, read_only=True, who="admin",
                         agent=_CLI)


def _iam_record(rng: random.Random, ev: _IamEvent) -> dict[str, Any]:
    params: dict[str, Any] = {"userName": ev.user}
    response: dict[str, Any] | None = None
    if ev.name in ("AddUserToGroup", "RemoveUserFromGroup"):
        params["groupName"] = "db-users"
    elif ev.name == "CreateUser":
        params["path"] = "/people/"
        response = {"user": {"path": "/people/", "userName": ev.user,
                             "userId": f"AIDA3EXAMPLE{rng.getrandbits(32):08X}",
                             "arn": f"arn:aws:iam::{ACCOUNT}:user/people/{ev.user}",
                             "createDate": ev.at.strftime("%b %-d, %Y, %-I:%M:%S %p")}}
    elif ev.name == "AttachUserPolicy":
        params["policyArn"] = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    elif ev.name == "DeleteAccessKey":
        params["accessKeyId"] = f"AKIA3EXAMPLE{rng.getrandbits(32):08X}"
    return _trail_record(rng, ev.at, "iam.amazonaws.com", ev.name, "us-east-1", params,
                         response, read_only=False, who="scim", agent=_SCIM)


def _write_cloudtrail(plan: _Plan, folder: Path) -> tuple[int, int]:
    rng = random.Random(plan.seed * 1_000_003 + 11)
    iam = list(plan.iam)
    # look-alikes that are not deactivations
    for i, (name, user) in enumerate([("CreateUser", "newhire01"), ("AddUserToGroup", "newhire01"),
                                      ("CreateUser", "newhire02"), ("RemoveUserFromGroup", "marco"),
                                      ("AttachUserPolicy", "newhire02"),
                                      ("DeleteAccessKey", "alice"),
                                      ("RemoveUserFromGroup", "bruno")]):
        iam.append(_IamEvent(plan.at(1 + i % 3, 3 + 3 * i, f"09:{10 + i:02d}:17.000"), name,
                             user))
    by_day: dict[date, list[_IamEvent]] = {}
    for ev in iam:
        by_day.setdefault(ev.at.date(), []).append(ev)
    days = plan.days
    noise_total = max(plan.scale.cloudtrail_records - len(iam), 0)
    files = records = 0
    n = 0
    for index, day in enumerate(days):
        quota = noise_total * (index + 1) // len(days) - noise_total * index // len(days)
        day_records: list[dict[str, Any]] = [_iam_record(rng, ev) for ev in by_day.get(day, [])]
        base = datetime.combine(day, time(0), tzinfo=UTC)
        for _ in range(quota):
            n += 1
            day_records.append(_noise_record(rng, base + timedelta(
                seconds=rng.randrange(86400)), n))
        blocks: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rec in day_records:
            hour = int(rec["eventTime"][11:13])
            blocks.setdefault((rec["awsRegion"], hour // 8), []).append(rec)
        for (region, block), recs in sorted(blocks.items()):
            recs.sort(key=lambda r: (r["eventTime"], r["eventID"]))
            delivered = base + timedelta(hours=block * 8 + 7, minutes=rng.randrange(5, 55))
            sub = folder / "AWSLogs" / ACCOUNT / "CloudTrail" / region / day.strftime("%Y/%m/%d")
            sub.mkdir(parents=True, exist_ok=True)
            ident = "".join(rng.choice(_ALNUM) for _ in range(16))
            name = (f"{ACCOUNT}_CloudTrail_{region}_{delivered.strftime('%Y%m%dT%H%MZ')}"
                    f"_{ident}.json.gz")
            body = json.dumps({"Records": recs}, separators=(",", ":")).encode()
            with (sub / name).open("wb") as raw, gzip.GzipFile(filename="", mode="wb",
                                                               fileobj=raw, mtime=0) as gz:
                gz.write(body)
            files += 1
            records += len(recs)
    return files, records


# ---------------------------------------------------------------------------
# pgBackRest


def _write_backups(plan: _Plan, folder: Path, sink: _ItemSink) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(plan.seed * 7919 + 3)
    days = plan.days
    natural = sum(len(days) + 7 if c.policy == "daily" else 15 for c in plan.clusters)
    extra_per_cluster_day = max(0, -(-(plan.scale.backup_records - natural)
                                     // (len(plan.clusters) * len(days))))
    total = 0
    with (folder / "pgbackrest-info.json").open("w", encoding="utf-8") as out:
        out.write("[")
        for ci, c in enumerate(plan.clusters):
            if ci:
                out.write(",")
            out.write('{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",'
                      '"max":"0000000100000A2F000000C4","min":"000000010000000000000001"}],'
                      '"backup":[')
            completed: list[date] = []
            first = True
            wal = 0x100 + ci * 0x40
            full_label = ""
            prior = ""
            refs: list[str] = []
            start_day = plan.quarter.first_day - timedelta(days=7)
            span = [start_day + timedelta(days=i) for i in range(7 + len(days))]
            for day in span:
                slots: list[tuple[int, str]] = []
                if c.policy == "weekly":
                    if day.weekday() == 6 and day not in plan.weekly_skip.get(c.name, set()):
                        slots.append((3 * 3600, "full"))
                else:
                    gap = day in plan.backup_gaps.get(c.name, set())
                    if day in plan.backup_late.get(c.name, set()):
                        slots.append((23 * 3600 + 40 * 60, "full" if day.weekday() == 6
                                      else "incr"))
                    elif not gap:
                        slots.append((3600, "full" if day.weekday() == 6 else "incr"))
                    if day >= plan.quarter.first_day:
                        slots += [(13 * 3600 + 600 * k, "incr")
                                  for k in range(min(extra_per_cluster_day, 60))]
                for offset, kind in slots:
                    if not full_label and kind != "full":
                        kind = "full"
                    begin = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
                        seconds=offset + rng.randrange(0, 900))
                    late = offset >= 23 * 3600
                    seconds = (35 * 60 + rng.randrange(0, 300)) if late else rng.randrange(
                        240, 2100)
                    end = begin + timedelta(seconds=seconds)
                    stamp = begin.strftime("%Y%m%d-%H%M%S")
                    if kind == "full":
                        label, full_label, refs = stamp + "F", stamp + "F", []
                    else:
                        label = f"{full_label}_{stamp}I"
                        refs = [*refs, prior]
                    error = day in plan.backup_errors.get(c.name, set()) and offset == 3600
                    size = 2_000_000_000 + rng.randrange(0, 500_000_000)
                    delta = size if kind == "full" else rng.randrange(5_000_000, 90_000_000)
                    backup = {
                        "archive": {"start": f"00000001{wal:016X}",
                                    "stop": f"00000001{wal + 1:016X}"},
                        "backrest": {"format": 5, "version": "2.51"},
                        "database": {"id": 1, "repo-key": 1},
                        "error": error,
                        "info": {"delta": delta, "repository": {
                            "delta": delta // 4, "size": size // 4}, "size": size},
                        "label": label,
                        "lsn": {"start": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x28:X}",
                                "stop": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x100:X}"},
                        "prior": prior or None if kind != "full" else None,
                        "reference": list(refs) if kind != "full" else None,
                        "timestamp": {"start": int(begin.timestamp()),
                                      "stop": int(end.timestamp())},
                        "type": kind,
                    }
                    wal += 2
                    prior = label
                    if not first:
                        out.write(",")
                    out.write(json.dumps(backup, separators=(",", ":")))
                    first = False
                    total += 1
                    if not error:
                        completed.append(end.date())
            out.write('],"cipher":"none","db":[{"id":1,"repo-key":1,'
                      f'"system-id":{7300000000000000000 + ci * 7919},"version":"15"}}],'
                      f'"name":{json.dumps(c.name)},'
                      '"repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],'
                      '"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}')
            if c.in_scope:
                done = set(completed)
                for day in days:
                    if c.policy == "weekly":
                        ok = any(day - timedelta(days=k) in done for k in range(7))
                    else:
                        ok = day in done
                    sink.add([c.name, day.isoformat()], [] if ok else ["NO_BACKUP"])
        out.write("]\n")
    return total


# ---------------------------------------------------------------------------
# server logs


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(when: datetime) -> int:
    return int((when - _EPOCH) / timedelta(milliseconds=1))


_HMS = [f"{h:02d}:{m:02d}:{sec:02d}" for h in range(24) for m in range(60) for sec in range(60)]
_MSU = [f".{milli:03d} UTC" for milli in range(1000)]


class _Clock:
    """Fast `2024-07-05 10:00:00.123 UTC` formatting from epoch milliseconds."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.second = -1
        self.text = ""

    def ts(self, ms: int) -> str:
        s, milli = divmod(ms, 1000)
        if s != self.second:
            day, sod = divmod(s, 86400)
            prefix = self.days.get(day)
            if prefix is None:
                prefix = self.days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d ")
            self.second, self.text = s, prefix + _HMS[sod]
        return self.text + _MSU[milli]

    def start(self, ms: int) -> str:
        return self.ts(ms - ms % 1000)[:-8] + " UTC"


def _audit_message(stmt_id: int, sub: int, cls: str, command: str, otype: str, oname: str,
                   sql: str) -> str:
    if any(ch in sql for ch in ',"\n\r'):
        sql = '"' + sql.replace('"', '""') + '"'
    return f"AUDIT: SESSION,{stmt_id},{sub},{cls},{command},{otype},{oname},{sql},<not logged>"


@dataclass(slots=True)
class _Ctx:
    """One server session (or background process) as its log lines need it."""

    pid: int
    sid: str
    start: str
    user: str | None
    db: str | None
    app: str | None
    host: str | None
    port: int | None
    backend: str = "client backend"
    line: int = 0
    tpl: Any = None


class _Writer:
    """Renders log entries in one of the three encodings, into a buffered file."""

    def __init__(self, fmt: str, prefix: str | None, clock: _Clock) -> None:
        self.fmt = fmt
        self.prefix = prefix
        self.clock = clock
        self.buf: list[str] = []
        self.lines = 0
        self.handle: Any = None

    # -- file handling -------------------------------------------------------
    def open(self, path: Path) -> None:
        self.close()
        self.handle = path.open("wb")

    def flush(self) -> None:
        if self.buf and self.handle is not None:
            self.handle.write("".join(self.buf).encode())
        self.buf.clear()

    def close(self) -> None:
        self.flush()
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def _put(self, text: str, nlines: int) -> None:
        self.buf.append(text)
        self.lines += nlines
        if len(self.buf) >= 8192:
            self.flush()

    # -- rendering -------------------------------------------------------------
    def prepare(self, ctx: _Ctx) -> None:
        """Precompute the per-session constant parts of a client-backend line."""
        if self.fmt == "csvlog":
            ctx.tpl = (f',"{ctx.user}","{ctx.db}",{ctx.pid},"{ctx.host}:{ctx.port}",'
                       f'{ctx.sid},', f',{ctx.start},',
                       f',,,,,,,,,"{ctx.app}","client backend",,0\n')
        elif self.fmt == "jsonlog":
            head = (f',"user":"{ctx.user}","dbname":"{ctx.db}",'
                    f'"pid":{ctx.pid},"remote_host":"{ctx.host}","remote_port":{ctx.port},'
                    f'"session_id":"{ctx.sid}","line_num":')
            tail = (f',"application_name":"{ctx.app}",'
                    '"backend_type":"client backend","query_id":0}\n')
            ctx.tpl = (head, f',"session_start":"{ctx.start}",', tail)
        elif self.prefix == PREFIX_SESSION:
            ctx.tpl = (f" [{ctx.pid}] {ctx.sid} ", f" {ctx.user}@{ctx.db} {ctx.app} ", None)
        else:
            ctx.tpl = (f" [{ctx.pid}] {ctx.user}@{ctx.db} ", None, None)

    def escape(self, message: str) -> tuple[str, int]:
        """A message escaped for this encoding (without outer quotes) and its physical lines."""
        if self.fmt == "csvlog":
            return message.replace('"', '""'), 1 + message.count("\n")
        if self.fmt == "jsonlog":
            return json.dumps(message)[1:-1], 1
        return message.replace("\n", "\n\t"), 1 + message.count("\n")

    def entry(self, ctx: _Ctx, ms: int, tag: str, vxid: str, message: str) -> None:
        """A client-backend LOG entry with a plain message."""
        esc, nlines = self.escape(message)
        self.fast(ctx, ms, tag, vxid, esc, nlines)

    def fast(self, ctx: _Ctx, ms: int, tag: str, vxid: str, esc: str, nlines: int) -> None:
        """A client-backend LOG entry whose message is already escaped (the hot path)."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        t0, t1, t2 = ctx.tpl
        fmt = self.fmt
        if fmt == "csvlog":
            text = f'{ts}{t0}{ctx.line},"{tag}"{t1}{vxid},0,LOG,00000,"{esc}"{t2}'
        elif fmt == "jsonlog":
            vx = f'"vxid":"{vxid}",' if vxid else ""
            text = (f'{{"timestamp":"{ts}"{t0}{ctx.line},"ps":"{tag}"{t1}{vx}"txid":0,'
                    f'"error_severity":"LOG","state_code":"00000","message":"{esc}"{t2}')
        elif t1 is None:
            text = f"{ts}{t0}LOG:  {esc}\n"
        else:
            text = f"{ts}{t0}{ctx.line}{t1}LOG:  {esc}\n"
        buf = self.buf
        buf.append(text)
        self.lines += nlines
        if len(buf) >= 8192:
            self.flush()

    def received(self, ctx: _Ctx, ms: int) -> None:
        """`connection received`: the first line of a session, before user and database."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        host, port, pid, sid = ctx.host, ctx.port, ctx.pid, ctx.sid
        msg = f"connection received: host={host} port={port}"
        if self.fmt == "csvlog":
            text = (f'{ts},,,{pid},"{host}:{port}",{sid},{ctx.line},"",{ctx.start},,0,LOG,00000,'
                    f'"{msg}",,,,,,,,,"","client backend",,0\n')
        elif self.fmt == "jsonlog":
            text = (f'{{"timestamp":"{ts}","pid":{pid},"remote_host":"{host}",'
                    f'"remote_port":{port},"session_id":"{sid}","line_num":{ctx.line},"ps":"",'
                    f'"session_start":"{ctx.start}","txid":0,"error_severity":"LOG",'
                    f'"state_code":"00000","message":"{msg}","backend_type":"client backend",'
                    f'"query_id":0}}\n')
        elif self.prefix == PREFIX_SESSION:
            text = f"{ts} [{pid}] {sid} {ctx.line} [unknown]@[unknown] [unknown] LOG:  {msg}\n"
        else:
            text = f"{ts} [{pid}] [unknown]@[unknown] LOG:  {msg}\n"
        self._put(text, 1)

    def general(self, ctx: _Ctx, ms: int, tag: str | None, severity: str, state: str,
                message: str, *, detail: str | None = None, query: str | None = None,
                query_pos: int | None = None, vxid: str | None = None) -> None:
        """Any entry: background processes, pre-authentication lines, errors with a query."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        if self.fmt == "csvlog":
            conn = f'"{ctx.host}:{ctx.port}"' if ctx.host else ""
            fields = [ts, _q(ctx.user), _q(ctx.db), str(ctx.pid), conn, ctx.sid, str(ctx.line),
                      _q(tag if tag is not None else ""), ctx.start, vxid or "", "0", severity,
                      state, _q(message), _q(detail), "", "", "", "", _q(query),
                      "" if query_pos is None else str(query_pos), "",
                      _q(ctx.app if ctx.app is not None else ""), _q(ctx.backend), "", "0"]
            text = ",".join(fields) + "\n"
            self._put(text, 1 + text.count("\n", 0, -1))
        elif self.fmt == "jsonlog":
            doc: dict[str, Any] = {"timestamp": ts}
            if ctx.user:
                doc["user"] = ctx.user
            if ctx.db:
                doc["dbname"] = ctx.db
            doc["pid"] = ctx.pid
            if ctx.host:
                doc["remote_host"] = ctx.host
                doc["remote_port"] = ctx.port
            doc["session_id"] = ctx.sid
            doc["line_num"] = ctx.line
            if tag is not None:
                doc["ps"] = tag
            doc["session_start"] = ctx.start
            if vxid:
                doc["vxid"] = vxid
            doc["txid"] = 0
            doc["error_severity"] = severity
            doc["state_code"] = state
            doc["message"] = message
            if detail:
                doc["detail"] = detail
            if query:
                doc["statement"] = query
            if query_pos is not None:
                doc["cursor_position"] = query_pos
            if ctx.app:
                doc["application_name"] = ctx.app
            doc["backend_type"] = ctx.backend
            doc["query_id"] = 0
            self._put(json.dumps(doc, separators=(",", ":")) + "\n", 1)
        else:
            text = self._stderr_prefix(ctx, ts)
            shown = message + (f" at character {query_pos}" if query_pos is not None else "")
            text += f"{severity}:  {shown}".replace("\n", "\n\t") + "\n"
            n = 1 + shown.count("\n")
            if detail:
                text += self._stderr_prefix(ctx, ts) + "DETAIL:  " + detail.replace(
                    "\n", "\n\t") + "\n"
                n += 1 + detail.count("\n")
            if query:
                text += self._stderr_prefix(ctx, ts) + "STATEMENT:  " + query.replace(
                    "\n", "\n\t") + "\n"
                n += 1 + query.count("\n")
            self._put(text, n)

    def _stderr_prefix(self, ctx: _Ctx, ts: str) -> str:
        if ctx.backend != "client backend":
            if self.prefix == PREFIX_SESSION:
                return f"{ts} [{ctx.pid}] {ctx.sid} {ctx.line} "
            return f"{ts} [{ctx.pid}] "
        user = ctx.user or "[unknown]"
        db = ctx.db or "[unknown]"
        if self.prefix == PREFIX_SESSION:
            return f"{ts} [{ctx.pid}] {ctx.sid} {ctx.line} {user}@{db} {ctx.app or '[unknown]'} "
        return f"{ts} [{ctx.pid}] {user}@{db} "


def _q(value: str | None) -> str:
    if value is None:
        return ""
    return '"' + value.replace('"', '""') + '"'


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

    def __init__(self, plan: _Plan, cluster: _Cluster, folder: Path, sink: _ItemSink,
                 cm: _CmIndex, per_day: float, clock: _Clock) -> None:
        self.plan = plan
        self.c = cluster
        self.folder = folder
        self.sink = sink
        self.cm = cm
        self.per_day = per_day
        index = plan.clusters.index(cluster)
        self.rng = random.Random(plan.seed * 100_003 + index)
        self.w = _Writer(cluster.fmt, cluster.prefix, clock)
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
        self.ckpt: _Ctx | None = None
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
                tail = _audit_message(0, 1, cls, cmd, ot, on, sql)[len("AUDIT: SESSION,0"):]
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

    def _open_session(self, start_ms: int, user: str, db: str, app: str) -> _Ctx:
        rnd = self.random
        pid = self._next_pid()
        self.backend_id = 3 + int(rnd() * 60)
        ctx = _Ctx(pid, f"{start_ms // 1000:x}.{pid:x}", self.w.clock.start(start_ms), None,
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

    def _close_session(self, ctx: _Ctx, start_ms: int, end_ms: int) -> None:
        took = end_ms - start_ms
        h, rem = divmod(took, 3_600_000)
        m, rem = divmod(rem, 60_000)
        sec, milli = divmod(rem, 1000)
        self.w.fast(ctx, end_ms, "idle", "",
                    f"disconnection: session time: {h}:{m:02d}:{sec:02d}.{milli:03d} "
                    f"user={ctx.user} database={ctx.db} host={ctx.host} port={ctx.port}", 1)

    def _session_key(self, ctx: _Ctx) -> str:
        return ctx.sid if self.c.fmt != "stderr" or self.c.prefix == PREFIX_SESSION \
            else str(ctx.pid)

    def _audit(self, ctx: _Ctx, ms: int, stmt_id: int, entries: Iterable[tuple[Any, ...]],
               sql: str, sub_sql: tuple[str | None, ...] | None = None) -> None:
        vxid = self._vxid()
        for i, (sub, cls, command, otype, oname) in enumerate(entries):
            text = sql
            if sub_sql and i < len(sub_sql) and sub_sql[i]:
                text = str(sub_sql[i])
            self.w.entry(ctx, ms, command, vxid,
                         _audit_message(stmt_id, sub, cls, command, otype, oname, text))

    # -- planted sessions ---------------------------------------------------
    def _planted(self, sess: _Session) -> int:
        first = _ms(sess.stmts[0].at)
        start = first - 2000 - self.rng.randrange(15000)
        ctx = self._open_session(start, sess.user, sess.db, sess.app)
        stmt_id = 1
        cls, cmd, ot, on, sql = self.stmt_pool["misc"][0]
        self._audit(ctx, start + 400, stmt_id, [(1, cls, cmd, ot, on)], sql)
        for st in sess.stmts:
            stmt_id += 1 + (self.rng.random() < 0.3)
            sub_sql = next((e[1] for e in st.effects if e[0] == "sub_sql"), None)
            self._audit(ctx, _ms(st.at), stmt_id, st.entries, st.sql, sub_sql)
            if any(e[1] == "DDL" for e in st.entries) and self.scoped \
                    and self.plan.in_quarter(st.at):
                key = _stmt_key(st.sql, sess.app)
                self.sink.add([self.c.name, self._session_key(ctx), str(stmt_id)],
                              self.cm.reasons(self.c.name, st.at, key))
        end = _ms(sess.stmts[-1].at) + 1500 + self.rng.randrange(30000)
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
            self.w.entry(ctx, ms, "CREATE TABLE", self._vxid(), _audit_message(
                stmt_id, 1, "DDL", "CREATE TABLE", "TABLE", f"{self.c.schema}.{t}_copy",
                f"CREATE TABLE {self.c.schema}.{t}_copy (LIKE {self.c.schema}.{t})"))
        end = ms + 5 + int(rnd() * 3000)
        self._close_session(ctx, start, end)
        return end

    def _failed_login(self, at: int) -> int:
        pid = self._next_pid()
        ctx = _Ctx(pid, f"{at // 1000:x}.{pid:x}", self.w.clock.start(at), None, None, None,
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
            boot = _ms(self.plan.quarter.start) - 41 * 86_400_000 + 7_777_123
            self.ckpt = _Ctx(pid, f"{boot // 1000:x}.{pid:x}", self.w.clock.start(boot), None,
                             None, None, None, None, backend="checkpointer")
        ctx = self.ckpt
        self.w.general(ctx, at, None, "LOG", "00000", "checkpoint starting: time")
        bufs = 200 + self.rng.randrange(5000)
        self.w.general(ctx, at + 269_000 + self.rng.randrange(2000), None, "LOG", "00000",
                       f"checkpoint complete: wrote {bufs} buffers ({bufs / 1310.72:.1f}%); "
                       f"0 WAL file(s) added, 0 removed, 1 recycled; write=269.1 s, "
                       f"sync=0.004 s, total=269.2 s; sync files=41, longest=0.002 s, "
                       f"average=0.001 s; distance=15234 kB, estimate=16012 kB")

    def _migration(self, start: int, key: str, index: int, count: int) -> int:
        mode = index % 3
        app = f"flyway-{key}" if mode == 0 else "flyway"
        ctx = self._open_session(start, "svc_migrate", self.c.db, app)
        ms = start + 500
        stmt_id = 1
        self.w.entry(ctx, ms, "SET", self._vxid(), _audit_message(
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
            when = _EPOCH + timedelta(milliseconds=ms)
            self.sink.add([self.c.name, self._session_key(ctx), str(stmt_id)],
                          self.cm.reasons(self.c.name, when, _stmt_key(sql, app)))
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
            (_ms(s.stmts[0].at) - 60_000, "planted", s)
            for s in plan.sessions if s.cluster == self.c.name]
        per_window = 1 + int(self.per_day // 300)
        for i, (start, _end, key) in enumerate(self.windows):
            scheduled.append((_ms(start) + 300_000 + self.rng.randrange(600_000), "migration",
                              (key, i, per_window)))
        scheduled.sort(key=lambda x: x[0])
        q_start, q_end = _ms(plan.quarter.start), _ms(plan.quarter.end)
        first = min([q_start, *(x[0] for x in scheduled)])
        last = max([q_end - 1, *(x[0] for x in scheduled)])
        day0 = (_EPOCH + timedelta(milliseconds=first)).date()
        week = datetime.combine(day0 - timedelta(days=day0.weekday()), time(0), tzinfo=UTC)
        ext = {"csvlog": "csv", "jsonlog": "json", "stderr": "log"}[self.c.fmt]
        session_gap = 86_400_000 * 8.0 / max(self.per_day * 0.9, 1e-9)
        next_ckpt = q_start + self.rng.randrange(3_600_000)
        ckpt_every = max(300_000, int(2 * 86_400_000 / max(self.per_day * 0.1, 1e-9)))
        files = si = 0
        while _ms(week) <= last:
            week_start, week_end = _ms(week), _ms(week + timedelta(days=7))
            noise_from, noise_to = max(week_start, q_start), min(week_end, q_end)
            has_noise = noise_from < noise_to
            has_scheduled = si < len(scheduled) and scheduled[si][0] < week_end
            if not has_noise and not has_scheduled:
                week += timedelta(days=7)
                continue
            self.w.open(folder / f"postgresql-{week.strftime('%Y-%m-%d')}_000000.{ext}")
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
                    else:
                        t = max(t, self._migration(max(t, nxt), *payload) + 1000)
                    continue
                if not noise_from <= t < noise_to:
                    if nxt is None:
                        break
                    t = nxt if t >= noise_to or nxt < noise_from else noise_from
                    continue
                if next_ckpt <= t:
                    self._checkpoint(t)
                    next_ckpt = t + ckpt_every
                    t += 1000
                    continue
                target = t + int(self.rng.expovariate(1.0) * session_gap) + 1
                if nxt is not None and nxt <= target + 60_000:
                    t = nxt
                elif target >= noise_to:
                    t = noise_to
                elif self.rng.random() < 0.01:
                    t = self._failed_login(target)
                else:
                    t = self._noise_session(target)
            self.w.close()
            week += timedelta(days=7)
        return files


def _write_logs(plan: _Plan, folder: Path, sink: _ItemSink,
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


def _write_cluster_log(plan: _Plan, index: int, folder: Path, sink: _ItemSink) -> tuple[int, int]:
    per_day = plan.scale.log_lines / (len(plan.clusters) * len(plan.days))
    writer = _ClusterLog(plan, plan.clusters[index], folder, sink, _CmIndex(plan), per_day,
                         _Clock())
    return writer.write(), writer.w.lines


def _log_worker(args: tuple[str, DemoScale, int, list[int], str, str]
                ) -> dict[int, tuple[int, int, int, int]]:
    label, scale, seed, share, folder, tmp = args
    plan = _Plan.build(Quarter.parse(label), scale, seed)
    done = {}
    for index in share:
        with (Path(tmp) / f"{index:05d}.jsonl").open("w", encoding="utf-8") as part:
            sink = _ItemSink(part)
            files, lines = _write_cluster_log(plan, index, Path(folder), sink)
        done[index] = (files, lines, sink.count, sink.exceptions)
    return done


# ---------------------------------------------------------------------------
# soxtrail.yml


def _config_text(plan: _Plan) -> str:
    lines = [
        f"# The demo estate: generated by extract/demo.py for {plan.quarter.label} "
        f"(seed {plan.seed}, {len(plan.clusters)} clusters).",
        "# Every source uses a real connector on files in their real formats.",
        "version: 1",
        "policy:",
        "  revocation_sla_hours: 24",
        "  approval_validity_days: 30",
        f"  approved_statuses: [{', '.join(APPROVED_STATUSES)}]",
        "catalogs:",
        "  role_catalog: seeds/role_catalog.csv",
        "  applications: seeds/applications.csv",
        "  identity_map: seeds/identity_map.csv",
        "sources:",
    ]
    for c in plan.clusters:
        ext = {"csvlog": "csv", "jsonlog": "json", "stderr": "log"}[c.fmt]
        lines += [f"  - name: audit-{c.name}", "    system: db_audit",
                  "    connector: pgaudit_log", f"    cluster: {c.name}",
                  f"    format: {c.fmt}", f"    paths: ['logs/{c.name}/*.{ext}']"]
        if c.prefix:
            lines.append(f"    log_line_prefix: '{c.prefix}'")
    for c in plan.clusters:
        lines += [f"  - name: catalog-{c.name}", "    system: db_catalog",
                  "    connector: postgres_catalog", f"    cluster: {c.name}",
                  f"    path: catalog/{c.name}/memberships.csv",
                  f"    roles_path: catalog/{c.name}/roles.csv"]
    lines += [
        "  - name: cloudtrail", "    system: iam", "    connector: aws_cloudtrail",
        "    path: cloudtrail",
        "  - name: hr-terminations", "    system: iam", "    connector: file",
        "    path: hr/terminations.csv", "    format: csv",
        "    columns: {identity: username, deactivated_at: terminated_at, event: reason}",
        "  - name: jira", "    system: tickets", "    connector: jira",
        "    path: 'jira/search-*.json'", "    api: v2", "    fields:",
        "      ticket_key: key", "      ticket_type: fields.issuetype.name",
        "      status: fields.status.name", "      requester: fields.reporter.name",
        "      approver: fields.customfield_10401.name", "      approved_at: changelog",
        "      subject_user: fields.customfield_10402.name",
        "      cluster: fields.customfield_10403.value", "      role: fields.customfield_10404",
        "      window_start: fields.customfield_10405",
        "      window_end: fields.customfield_10406",
        "    types: {access: [Access Request], change: [Change]}",
        f"    approved_statuses: [{', '.join(APPROVED_STATUSES)}]",
        "  - name: pgbackrest", "    system: backups", "    connector: pgbackrest_info",
        "    path: backups/pgbackrest-info.json",
    ]
    return "\n".join(lines) + "\n"
