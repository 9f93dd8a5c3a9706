"""The records of the demo estate's plan: clusters, tickets, sessions and their statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

APPROVED_STATUSES = ("Approved", "Done", "Closed", "Implemented")


@dataclass(frozen=True)
class Cluster:
    """One PostgreSQL cluster of the estate and how it logs."""

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


@dataclass
class Ticket:
    """A Jira issue: access request, change or task, with its status history."""

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
    offset_hours: int = 0  # the Jira server's UTC offset used to print this times

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
class Stmt:
    """One audited statement: its pgaudit entries and its effects on the catalog."""

    at: datetime
    sql: str
    entries: tuple[tuple[int, str, str, str, str], ...]  # substmt, class, command, type, name
    effects: tuple[tuple[Any, ...], ...] = ()


@dataclass
class Session:
    """A planted session: statements run by one user on one cluster."""

    cluster: str
    user: str
    db: str
    app: str
    stmts: list[Stmt]
    label: str = ""  # the planted case id, for tests and the report


@dataclass
class IamEvent:
    """A CloudTrail IAM event about a user."""

    at: datetime
    name: str  # CloudTrail eventName
    user: str


@dataclass
class Hr:
    """A row of the HR terminations export."""

    username: str  # as HR spells it
    at: datetime
    offset_hours: float
    reason: str
    employee_id: str


def grant(at: datetime, sql: str, roles: list[str], grantees: list[str], *,
          admin: bool = False) -> Stmt:
    """GRANT role[, ...] TO user[, ...]."""
    return Stmt(at, sql, ((1, "ROLE", "GRANT ROLE", "", ""),),
                tuple(("grant", r, g, admin) for r in roles for g in grantees))


def revoke(at: datetime, sql: str, roles: list[str], grantees: list[str]) -> Stmt:
    """REVOKE role[, ...] FROM user[, ...]."""
    return Stmt(at, sql, ((1, "ROLE", "REVOKE ROLE", "", ""),),
                tuple(("revoke", r, g) for r in roles for g in grantees))


def drop(at: datetime, sql: str, user: str) -> Stmt:
    """DROP ROLE / DROP USER."""
    return Stmt(at, sql, ((1, "ROLE", "DROP ROLE", "", ""),), (("drop", user),))


def nologin(at: datetime, sql: str, user: str) -> Stmt:
    """ALTER ROLE … NOLOGIN."""
    return Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),), (("nologin", user),))


def alter_attr(at: datetime, sql: str, user: str, attr: str, on: bool) -> Stmt:
    """ALTER ROLE … [NO]SUPERUSER / [NO]CREATEROLE."""
    return Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),), (("attr", user, attr, on),))


def create(at: datetime, sql: str, user: str, *, login: bool, attrs: tuple[str, ...]) -> Stmt:
    """CREATE ROLE with attributes."""
    return Stmt(at, sql, ((1, "ROLE", "CREATE ROLE", "", ""),),
                (("create", user, login, attrs),))


def role_misc(at: datetime, sql: str) -> Stmt:
    """An ALTER ROLE that changes no privilege (e.g. SET)."""
    return Stmt(at, sql, ((1, "ROLE", "ALTER ROLE", "", ""),))


def ddl(at: datetime, sql: str, entries: list[tuple[str, str, str, str]], *,
        same_sub: bool = False, sub_sql: tuple[str | None, ...] | None = None) -> Stmt:
    """A DDL statement and its pgaudit entries (one substatement each unless `same_sub`)."""
    stmt = Stmt(at, sql, tuple((1 if same_sub else i + 1, *e) for i, e in enumerate(entries)))
    stmt.effects = (("sub_sql", sub_sql),) if sub_sql else ()
    return stmt
