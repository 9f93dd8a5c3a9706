"""Who held which role on which cluster at a moment: a query over a run's holding periods.

The rule (catalog snapshot plus audit-log grants and revocations) lives in dbt:
`int_role_holding_periods_replayed`, kept per run in `marts.fct_access_role_holding_periods`.
This module picks the run, asks the mart which periods contain the moment and words them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from soxtrail.kernel import evidence, runs
from soxtrail.kernel.config import quarter_of
from soxtrail.kernel.controls import MARTS_SCHEMA
from soxtrail.kernel.errors import ConfigError, PipelineError

HOLDING_PERIODS = f"{MARTS_SCHEMA}.fct_access_role_holding_periods"
RECONCILED_PHASES = ("reconcile", "render", "bundle")
SOURCE = "the run's catalog snapshot and audit-log grants/revocations"

# The periods that contain the moment and in which the role was held
# (valid_from/valid_to null: open-ended), in code-point order of the key.
HELD_AT = f"""
select
    cluster,
    login_role,
    role,
    decided_by,
    event_at,
    statement_text,
    event_evidence_id::text as event_evidence_id,
    event_evidence_locator,
    catalog_evidence_id::text as catalog_evidence_id,
    catalog_evidence_locator
from {HOLDING_PERIODS}
where
    run_id = %(run_id)s
    and is_held
    and (valid_from is null or valid_from <= %(at)s)
    and (valid_to is null or %(at)s < valid_to)
    and (%(cluster)s::text is null or cluster = %(cluster)s::text)
order by cluster collate "C", login_role collate "C", role collate "C"
"""


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


def _choose_run(conn: psycopg.Connection[Any], at: datetime,
                run_id: str | None) -> tuple[runs.Run | None, str]:
    """The run to answer from (`run_id`, else chosen by the moment) and how it was chosen.

    The newest reconciled run whose quarter contains the moment; else the reconciled run
    whose quarter ended last before it, whose holdings stand as its catalog and audit log
    left them; else none.
    """
    if run_id:
        return runs.get_run(conn, run_id), SOURCE
    with conn.cursor() as cur:
        cur.execute("select id::text, quarter, config from soxtrail.sox_runs"
                    " where phase_reached = any(%s) order by started_at desc",
                    (list(RECONCILED_PHASES),))
        # each run's quarter as it bounded it: its recorded fiscal year and reporting zone
        candidates = [(candidate_id, quarter_of(config or {}, label))
                      for candidate_id, label, config in cur]
    for candidate_id, quarter in candidates:
        if quarter.start <= at < quarter.end:
            return runs.get_run(conn, candidate_id), SOURCE
    earlier = [(quarter.end, -position, candidate_id)
               for position, (candidate_id, quarter) in enumerate(candidates)
               if quarter.end <= at]
    if earlier:
        return (runs.get_run(conn, max(earlier)[2]),
                f"{SOURCE}, the last known state: no reconciled run covers the moment")
    return None, "no reconciled run: none covers or precedes the moment"


def _check_periods(conn: psycopg.Connection[Any], run_id: str) -> None:
    """Refuse a run the holding-periods mart knows nothing of (rather than list no one)."""
    found = conn.execute("select to_regclass(%s) is not null", (HOLDING_PERIODS,)).fetchone()
    if not (found and found[0]):
        raise PipelineError(f"{HOLDING_PERIODS} does not exist: reconcile a run with this "
                            "version of soxtrail first")
    rows = conn.execute(f"select exists (select 1 from {HOLDING_PERIODS} where run_id = %s)",
                        (run_id,)).fetchone()
    if not (rows and rows[0]):
        raise PipelineError(f"run {run_id} has no rows in {HOLDING_PERIODS}: it was reconciled "
                            "before that mart existed; run the quarter again")


def _catalog_taken_at(conn: psycopg.Connection[Any], run_id: str) -> datetime | None:
    return evidence.latest_executed_at(conn, run_id,
                                       ("raw.catalog_memberships", "raw.catalog_roles"))


def _holding(period: dict[str, Any], catalog_taken_at: datetime | None) -> Holding:
    """Word one held period: the event (or catalog) that decides it and its evidence."""
    decided_by = period["decided_by"]
    if decided_by == "catalog":
        basis = "in the catalog, no grant or revocation in the audit log" + (
            f" (catalog snapshot taken {catalog_taken_at.isoformat()})"
            if catalog_taken_at else "")
    elif decided_by == "later_revoke":
        basis = (f"revoked later, at {period['event_at'].isoformat()}:"
                 f" {_short(period['statement_text'])}")
    else:  # grant: the only other way a period is held
        basis = f"grant at {period['event_at'].isoformat()}: {_short(period['statement_text'])}"
    evidence_ids: list[str] = []
    locators: list[str] = []
    for prefix in ("catalog", "event"):
        evidence_id = period[f"{prefix}_evidence_id"]
        if evidence_id and evidence_id not in evidence_ids:
            evidence_ids.append(evidence_id)
            locators.append(period[f"{prefix}_evidence_locator"] or "")
    return Holding(period["cluster"], period["login_role"], period["role"], basis,
                   tuple(evidence_ids), tuple(locators))


def _short(statement: str | None) -> str:
    text = " ".join((statement or "").split())
    return text if len(text) <= 80 else text[:77] + "..."


def access_as_of(conn: psycopg.Connection[Any], at: datetime, *, cluster: str | None = None,
                 run_id: str | None = None) -> AccessList:
    """The access list at `at`, from the holding periods of the run that covers it."""
    run, source = _choose_run(conn, at, run_id)
    if run is None:
        conn.commit()
        return AccessList(at, None, None, source)
    _check_periods(conn, run.id)
    taken = _catalog_taken_at(conn, run.id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(HELD_AT, {"run_id": run.id, "at": at, "cluster": cluster})
        periods = cur.fetchall()
    conn.commit()
    return AccessList(at, run.id, run.quarter, source, [_holding(p, taken) for p in periods])
