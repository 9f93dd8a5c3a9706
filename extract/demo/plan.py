"""The demo estate's plan: every choice the writers and the oracle share, seeded and small.

The planted cases live per control family (`plan_access`, `plan_changes`, `plan_backups`,
`plan_logging`);
a new capability adds its own planter module and names it in `PLANTERS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Any

from extract.demo.inventory import (
    APP_RW,
    BASE_CLUSTERS,
    BUILTIN_ROLES,
    DBAS,
    FAMILY_ROLES,
    FORMAT_CYCLE,
    ROLE_CATALOG,
)
from extract.demo.model import Cluster, Hr, IamEvent, Session, Stmt, Ticket
from extract.demo.plan_access import plant_access, plant_revocations
from extract.demo.plan_backups import plant_backups
from extract.demo.plan_changes import plant_changes, plant_maintenance_windows
from extract.demo.plan_logging import ServerLine, plant_logging
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter

# in order: later planters may rely on the tickets and sessions of earlier ones
PLANTERS = (plant_access, plant_revocations, plant_changes, plant_backups,
            plant_maintenance_windows, plant_logging)


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


class Plan:
    """Everything the writers and the evaluators share (small; the noise is not in here)."""

    def __init__(self, quarter: Quarter, scale: DemoScale, seed: int) -> None:
        self.quarter = quarter
        self.scale = scale
        self.seed = seed
        self.rng = random.Random(seed)
        self.clusters: list[Cluster] = []
        self.tickets: dict[str, Ticket] = {}
        self.sessions: list[Session] = []
        self.iam: list[IamEvent] = []
        self.hr: list[Hr] = []
        self.identity_map: dict[str, tuple[str, str, str]] = {}
        self.initial: dict[str, tuple[dict[str, dict[str, Any]], dict[tuple[str, str], bool]]] = {}
        self.final: dict[str, tuple[dict[str, dict[str, Any]], dict[tuple[str, str], bool]]] = {}
        self.role_catalog: list[tuple[str, str, bool, str, str, str]] = list(ROLE_CATALOG)
        self.windows: dict[str, list[tuple[datetime, datetime, str]]] = {}
        self.backup_gaps: dict[str, set[date]] = {}
        self.backup_errors: dict[str, set[date]] = {}
        self.backup_late: dict[str, set[date]] = {}
        self.weekly_skip: dict[str, set[date]] = {}
        # LG-01 (plan_logging): server lines, windows without sessions, log rotation
        self.server_lines: dict[str, list[ServerLine]] = {}
        self.quiet_windows: dict[str, list[tuple[datetime, datetime]]] = {}
        self.log_rotation_days: dict[str, int] = {}
        self.missing_log_days: dict[str, set[date]] = {}
        self.pgaudit_log = ""

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

    def cluster(self, name: str) -> Cluster:
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
    def build(cls, quarter: Quarter, scale: DemoScale, seed: int) -> Plan:
        """The plan for `quarter` at `scale` (same arguments, same plan)."""
        plan = cls(quarter, scale, seed)
        plan._build_clusters()
        plan._build_identities()
        plan._build_initial_catalog()
        for plant in PLANTERS:
            plant(plan)
        plan._build_filler_tickets()
        plan._apply_effects()
        return plan

    def _build_clusters(self) -> None:
        for row in BASE_CLUSTERS:
            self.clusters.append(Cluster(*row))
        extra_in = self.scale.in_scope_clusters - 8
        extra_out = self.scale.clusters - 12 - extra_in
        for i in range(max(extra_in, 0) + max(extra_out, 0)):
            in_scope = i < extra_in
            fmt, prefix = FORMAT_CYCLE[i % len(FORMAT_CYCLE)]
            name = f"pg-svc-{i + 1:03d}" if in_scope else f"pg-lab-{i - extra_in + 1:03d}"
            self.clusters.append(Cluster(
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
            for name in FAMILY_ROLES.get(c.family, ()):
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
            rw = APP_RW.get(c.family)
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

    # -- what the planters build with -----------------------------------------
    def ticket(self, key: str, itype: str, *, reporter: str, approver: str | None,
               created: datetime, flow: list[tuple[datetime, str]], subject: str | None = None,
               cluster: str | None = None, role: str | None = None,
               window: tuple[datetime, datetime] | None = None, summary: str = "",
               offset_hours: int = 0) -> Ticket:
        history: list[tuple[datetime, str, str]] = []
        status = "Open"
        for when, to in flow:
            history.append((when, status, to))
            status = to
        ticket = Ticket(key, itype, status, reporter, approver, created, history, subject,
                        cluster, role, window, summary, offset_hours)
        self.tickets[key] = ticket
        return ticket

    def access(self, key: str, subject: str, cluster: str, role: str, *, approver: str | None,
               approved: datetime | None, reporter: str | None = None,
               status: str | None = None, created: datetime | None = None,
               window: tuple[datetime, datetime] | None = None,
               extra: list[tuple[datetime, str]] | None = None,
               offset_hours: int = 0) -> Ticket:
        anchor = approved or created or self.at(1, 1)
        created = created or anchor - timedelta(hours=20, minutes=35)
        flow: list[tuple[datetime, str]] = [(created + timedelta(minutes=7), "Pending Approval")]
        if approved is not None:
            flow.append((approved, "Approved"))
            if status in (None, "Done"):
                flow.append((approved + timedelta(hours=3, minutes=12), "Done"))
        flow += extra or []
        ticket = self.ticket(key, "Access Request", reporter=reporter or subject,
                             approver=approver, created=created, flow=flow, subject=subject,
                             cluster=cluster, role=role, window=window,
                             summary=f"Grant {role} on {cluster} to {subject}",
                             offset_hours=offset_hours)
        if status is not None and status != "Done":
            ticket.status = status
        return ticket

    def change(self, key: str, cluster: str, *, approver: str | None,
               approved: datetime | None, window: tuple[datetime, datetime] | None,
               reporter: str = "sven", status: str | None = None,
               extra: list[tuple[datetime, str]] | None = None, summary: str = "") -> Ticket:
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
        ticket = self.ticket(key, "Change", reporter=reporter, approver=approver,
                             created=created, flow=flow, cluster=cluster, window=window,
                             summary=summary or f"Schema change on {cluster}")
        if status is not None:
            ticket.status = status
        return ticket

    def session(self, label: str, cluster: str, user: str, stmts: list[Stmt], *,
                app: str = "psql", db: str = "postgres") -> None:
        self.sessions.append(Session(cluster, user, db, app, stmts, label))

    def _build_filler_tickets(self) -> None:
        """Filler tickets up to the scale's target, after every planted one."""
        filler = 0
        while len(self.tickets) < self.scale.tickets:
            filler += 1
            when = self.at(1, 1, "09:00:00.000") + timedelta(minutes=97 * filler)
            if when >= self.quarter.end:
                when = self.quarter.end - timedelta(hours=1 + filler % 500)
            if filler % 2:
                self.access(f"REQ-{5000 + filler}", f"user{filler:05d}",
                            self.clusters[filler % len(self.clusters)].name, "readonly",
                            approver="mkeller", approved=when)
            else:
                self.ticket(f"DBA-{5000 + filler}", "Task", reporter=DBAS[filler % 3],
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

