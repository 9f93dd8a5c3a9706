"""Who held which role on which cluster at a moment: catalog snapshots plus audit-log events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from soxtrail.kernel import runs
from soxtrail.kernel.errors import ConfigError, PipelineError
from soxtrail.kernel.quarter import Quarter

# The dbt models whose rules parse grants, revocations and the catalog; their compiled
# form is read from the control evidence of the run (query_text), so the access list
# applies exactly the SQL the run applied.
GRANTS_CTE = "__dbt__cte__int_role_grants_parsed"
REVOCATIONS_CTE = "__dbt__cte__int_role_revocations_parsed"
MEMBERSHIPS_CTE = "__dbt__cte__stg_db_catalog__memberships"
ROLES_CTE = "__dbt__cte__stg_db_catalog__roles"
SNAPSHOTS_SCHEMA = "snapshots"
LOGIN = "LOGIN"  # the pseudo-role of a login role that can log in (as in AC-02)
REPLAY_PHASES = ("reconcile", "render", "bundle")


@dataclass(frozen=True)
class Holding:
    """One (cluster, login role, role) held at the moment, and what it rests on."""

    cluster: str
    login_role: str
    role: str
    basis: str
    evidence_ids: tuple[str, ...]
    locators: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"cluster": self.cluster, "login_role": self.login_role, "role": self.role,
                "basis": self.basis, "evidence_ids": list(self.evidence_ids),
                "locators": list(self.locators)}


@dataclass
class AccessList:
    """The access list at one moment, from one run's catalog and audit log."""

    at: datetime
    run_id: str | None
    quarter: str | None
    source: str
    holdings: list[Holding] = field(default_factory=list)

    def header(self) -> str:
        """Where the list comes from."""
        return (f"access as of {self.at.isoformat().replace('+00:00', 'Z')}"
                f" from {self.source}" + (f" (run {self.run_id}, {self.quarter})"
                                          if self.run_id else ""))


@dataclass(frozen=True)
class Event:
    """A grant or a revocation from the audit log."""

    at: datetime
    kind: str  # grant | revoke
    cluster: str
    login_role: str
    role: str  # '*' for DROP ROLE / NOLOGIN / VALID UNTIL: every role of the login role
    evidence_id: str
    locator: str
    statement: str


def parse_moment(text: str) -> datetime:
    """An ISO timestamp (UTC when zone-less) or a date (its last instant, UTC)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1), time(), UTC) - \
                timedelta(microseconds=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError as exc:
        raise ConfigError(f"{text!r}: expected a date (2024-09-30) or an ISO timestamp "
                          "(2024-09-30T12:00:00Z)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ---------------------------------------------------------------- compiled SQL surgery


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[eE]?'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def _tokens(text: str) -> list[tuple[str, str, int, int]]:
    found = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind in ("space", "comment"):
            continue
        if kind == "tag":
            kind = "dollar"
        found.append((kind, match.group(), match.start(), match.end()))
    return found


def split_ctes(compiled: str) -> tuple[list[tuple[str, str]], str]:
    """The top-level CTEs (name, full `name as (...)` text) and the main statement."""
    tokens = _tokens(compiled)
    if not tokens or tokens[0][1].lower() != "with":
        return [], compiled
    ctes: list[tuple[str, str]] = []
    i = 1
    while i < len(tokens):
        start = tokens[i][2]
        name = tokens[i][1].strip('"')
        i += 1
        while i < len(tokens) and tokens[i][0] != "open":
            i += 1  # `as`, `materialized`, a column list is not used by dbt models
        depth = 0
        while i < len(tokens):
            kind = tokens[i][0]
            depth += kind == "open"
            depth -= kind == "close"
            i += 1
            if depth == 0:
                break
        ctes.append((name, compiled[start:tokens[i - 1][3]]))
        if i < len(tokens) and tokens[i][0] == "comma":
            i += 1
            continue
        break
    main = compiled[tokens[i][2]:] if i < len(tokens) else ""
    return ctes, main


def query_from_ctes(compiled: str, select: str) -> str:
    """`compiled`'s CTEs followed by `select` (which may use any of them)."""
    ctes, _ = split_ctes(compiled)
    if not ctes:
        raise PipelineError("the stored compiled SQL has no CTEs to reuse")
    return "with " + ",\n".join(text for _, text in ctes) + "\n" + select


# ---------------------------------------------------------------- the data


def _covering_run(conn: psycopg.Connection[Any], at: datetime,
                  run_id: str | None) -> runs.Run | None:
    if run_id:
        return runs.get_run(conn, run_id)
    with conn.cursor() as cur:
        cur.execute("select id::text, quarter from soxtrail.sox_runs where phase_reached = any(%s)"
                    " order by started_at desc", (list(REPLAY_PHASES),))
        candidates = cur.fetchall()
    for candidate_id, label in candidates:
        quarter = Quarter.parse(label)
        if quarter.start <= at < quarter.end:
            return runs.get_run(conn, candidate_id)
    return None


def _compiled_with(conn: psycopg.Connection[Any], run_id: str, needed: list[str]) -> str:
    rows = conn.execute("select query_text from soxtrail.sox_evidence where run_id = %s"
                        " and source_system = 'reconcile' order by query_name",
                        (run_id,)).fetchall()
    for (text,) in rows:
        names = {name for name, _ in split_ctes(text)[0]}
        if all(n in names for n in needed):
            return str(text)
    raise PipelineError(f"run {run_id}: no control evidence holds the compiled SQL of "
                        f"{', '.join(needed)}")


def _events(conn: psycopg.Connection[Any], compiled: str) -> list[Event]:
    query = query_from_ctes(compiled, f"""
select 'grant' as kind, g.granted_at as at, g.cluster, g.grantee as login_role,
       g.granted_role as role, g.evidence_id::text as evidence_id, g.evidence_locator,
       g.statement_text
from {GRANTS_CTE} as g
union all
select 'revoke', r.revoked_at, r.cluster, r.login_role, r.revoked_role,
       r.evidence_id::text, r.evidence_locator, r.statement_text
from {REVOCATIONS_CTE} as r""")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)  # type: ignore[arg-type]
        rows = cur.fetchall()
    return sorted((Event(r["at"], r["kind"], r["cluster"], r["login_role"], r["role"],
                         r["evidence_id"], r["evidence_locator"], r["statement_text"])
                   for r in rows if r["at"] is not None),
                  key=lambda e: (e.at, e.kind == "grant", e.cluster, e.login_role, e.role))


def _catalog(conn: psycopg.Connection[Any], compiled: str) -> list[dict[str, Any]]:
    query = query_from_ctes(compiled, f"""
select m.cluster, m.member_role as login_role, m.granted_role as role,
       m.evidence_id::text as evidence_id, m.evidence_locator
from {MEMBERSHIPS_CTE} as m
where m.can_member_login
union all
select r.cluster, r.role_name, attribute.role, r.evidence_id::text, r.evidence_locator
from {ROLES_CTE} as r
cross join lateral unnest(array[
    case when r.is_superuser then 'SUPERUSER' end,
    case when r.can_create_role then 'CREATEROLE' end,
    'LOGIN'
]) as attribute (role)
where r.can_login and attribute.role is not null""")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)  # type: ignore[arg-type]
        return cur.fetchall()


def replay(at: datetime, catalog: list[dict[str, Any]], events: list[Event],
           catalog_taken_at: datetime | None) -> list[Holding]:
    """Decide each (cluster, login role, role) at `at` (role LOGIN: the role can log in).

    The last audit event at or before `at` decides (granted: held; revoked: not held).
    With none, the first event after `at` decides (a revocation means it was held, a
    grant that it was not).  With no event at all, the catalog snapshot decides.
    """
    keys: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in catalog:
        keys.setdefault((row["cluster"], row["login_role"], row["role"]), {"catalog": row})
    for event in events:
        # DROP ROLE / NOLOGIN / VALID UNTIL ('*') take away LOGIN with every other role
        role = LOGIN if event.role == "*" else event.role
        keys.setdefault((event.cluster, event.login_role, role), {})
    by_login: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        by_login.setdefault((event.cluster, event.login_role), []).append(event)
    taken = (f" (catalog snapshot taken {catalog_taken_at.isoformat()})"
             if catalog_taken_at else "")
    holdings = []
    for (cluster, login_role, role), info in sorted(keys.items()):
        relevant = [e for e in by_login.get((cluster, login_role), [])
                    if e.role == role or (e.kind == "revoke" and e.role == "*")]
        before = [e for e in relevant if e.at <= at]
        after = [e for e in relevant if e.at > at]
        deciding: Event | None = None
        if before:
            deciding = before[-1]
            held = deciding.kind == "grant"
            basis = f"{deciding.kind} at {deciding.at.isoformat()}: {_short(deciding.statement)}"
        elif after:
            deciding = after[0]
            held = deciding.kind == "revoke"
            basis = (f"{'revoked' if held else 'granted'} later, at {deciding.at.isoformat()}:"
                     f" {_short(deciding.statement)}")
        else:
            held = "catalog" in info
            basis = "in the catalog, no grant or revocation in the audit log" + taken
        if not held:
            continue
        evidence: list[str] = []
        locators: list[str] = []
        for source in (info.get("catalog"), deciding):
            if source is None:
                continue
            ev = source["evidence_id"] if isinstance(source, dict) else source.evidence_id
            loc = source["evidence_locator"] if isinstance(source, dict) else source.locator
            if ev and ev not in evidence:
                evidence.append(ev)
                locators.append(loc or "")
        holdings.append(Holding(cluster, login_role, role, basis, tuple(evidence),
                                tuple(locators)))
    return holdings


def _short(statement: str | None) -> str:
    text = " ".join((statement or "").split())
    return text if len(text) <= 80 else text[:77] + "..."


def _snapshot_table(conn: psycopg.Connection[Any]) -> str | None:
    """A dbt snapshot of role memberships in schema `snapshots`, if the project built one."""
    row = conn.execute(
        "select table_name from information_schema.columns where table_schema = %s"
        " group by table_name having bool_or(column_name = 'dbt_valid_from')"
        " and bool_or(column_name = 'granted_role') order by table_name limit 1",
        (SNAPSHOTS_SCHEMA,)).fetchone()
    return str(row[0]) if row else None


def _from_snapshot(conn: psycopg.Connection[Any], table: str, at: datetime) -> list[Holding]:
    columns = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = %s"
        " and table_name = %s", (SNAPSHOTS_SCHEMA, table)).fetchall()}
    member = next((c for c in ("login_role", "member_role", "member") if c in columns), None)
    if member is None or "cluster" not in columns:
        raise PipelineError(f"{SNAPSHOTS_SCHEMA}.{table}: no cluster / member column")
    evidence = sql.Identifier("evidence_id") if "evidence_id" in columns else sql.NULL
    query = sql.SQL(
        "select cluster, {member} as login_role, granted_role as role, {evidence}::text,"
        " dbt_valid_from from {table} where dbt_valid_from <= %(at)s"
        " and (dbt_valid_to is null or dbt_valid_to > %(at)s)").format(
        member=sql.Identifier(member), evidence=evidence,
        table=sql.Identifier(SNAPSHOTS_SCHEMA, table))
    rows = conn.execute(query, {"at": at}).fetchall()
    return [Holding(c, m, r, f"snapshot row valid from {v.isoformat()}",
                    (e,) if e else (), ()) for c, m, r, e, v in sorted(rows)]


def access_as_of(conn: psycopg.Connection[Any], at: datetime, *, cluster: str | None = None,
                 run_id: str | None = None) -> AccessList:
    """The access list at `at`: the covering run's catalog and audit log, else the snapshots."""
    run = _covering_run(conn, at, run_id)
    if run is None:
        table = _snapshot_table(conn)
        if table is None:
            raise PipelineError(f"no reconciled run covers {at.isoformat()} and there is no "
                                f"role-membership snapshot in schema {SNAPSHOTS_SCHEMA}")
        result = AccessList(at, None, None, f"dbt snapshot {SNAPSHOTS_SCHEMA}.{table}",
                            _from_snapshot(conn, table, at))
    else:
        compiled = _compiled_with(conn, run.id, [GRANTS_CTE, REVOCATIONS_CTE, MEMBERSHIPS_CTE,
                                                 ROLES_CTE])
        catalog = _catalog(conn, compiled)
        taken = conn.execute(
            "select max(executed_at) from soxtrail.sox_evidence where run_id = %s"
            " and query_params->>'raw_table' in ('raw.catalog_memberships', 'raw.catalog_roles')",
            (run.id,)).fetchone()
        result = AccessList(at, run.id, run.quarter,
                            "the run's catalog snapshot and audit-log grants/revocations",
                            replay(at, catalog, _events(conn, compiled),
                                   taken[0] if taken else None))
    conn.commit()
    if cluster:
        result.holdings = [h for h in result.holdings if h.cluster == cluster]
    return result

