"""The demo's user access review behind AC-03: one returned file per role owner of the
quarter-end memberships on in-scope clusters (one workbook, the rest CSV), decided in the
quarter's last month, with planted errors, each twice or more: an undecided row and the
memberships of unknown roles (no owner: in no file) for REVIEW_MISSING, self-reviews
(REVIEWER_IS_HOLDER), `remove` decisions still listed by a catalog taken after their grace
period (REMOVE_NOT_ACTIONED), a file returned after the deadline (REVIEW_LATE)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extract.demo.plan import Plan

# the person who reviews for each role owner of the role catalog (extract/demo/inventory.py)
REVIEWERS = {
    "commerce-it": "oscar", "data-eng": "mkeller", "finance-it": "tara", "hr-it": "priya",
    "payments-it": "zoe", "platform-dba": "anders",
}
XLSX_OWNER = "finance-it"  # returned as a workbook; every other file as CSV
DEADLINE_DAY = 25  # the review is due on this day of the quarter's last month
REVIEW_DAY = 20  # when the owners decide (day of the last month)
LATE_OWNER = "commerce-it"  # returns its file after the deadline: REVIEW_LATE
LATE_DAY = 28
UNDECIDED_OWNER = "data-eng"  # leaves its first row undecided: REVIEW_MISSING
# per owner, a delegate who decides on their own membership (their first row in the file):
# REVIEWER_IS_HOLDER
SELF_REVIEWERS = {"finance-it": "kemal", "platform-dba": "sven"}
REMOVAL_GRACE_DAYS = 7  # dbt_project.yml's access_review_removal_grace_days (the demo keeps it)
# a comment a spreadsheet would read as a formula (a CSV file's): written neutralised, read
# back as typed
FORMULA_COMMENT = "@tara: no longer in payments operations"
# `remove` decisions (day of the last month, comment), all still held at quarter end: early in
# the month, REMOVE_NOT_ACTIONED; on the deadline, due after quarter end (removal_due_at),
# except where the catalog was exported weeks late (plan_completeness: pg-hr-02)
REMOVALS = {
    ("pg-pay-01", "xenia", "pay_rw"): (3, FORMULA_COMMENT),
    ("pg-fin-01", "alice", "fin_rw"): (DEADLINE_DAY, "moved to reporting"),
    ("pg-hr-02", "wei", "hr_ro"): (DEADLINE_DAY, "read access comes with hr_admin"),
}
# the platform team decides with full timestamps (their zone's offset); others with dates
TIMESTAMP_OWNER = "platform-dba"


@dataclass(frozen=True)
class ReviewRow:
    """One row of a review file: the membership, as exported, and the owner's decision."""

    cluster: str
    login_role: str
    granted_role: str
    holder_identity: str
    identity_status: str  # active | deactivated
    role_owner: str
    last_granted_at: str | None
    decision: str | None  # keep | remove | None (undecided)
    reviewer: str | None
    reviewed_at: str | None  # as written: a date or an ISO timestamp with an offset
    comment: str | None = None

    @property
    def item_key(self) -> str:
        return f"{self.cluster}|{self.login_role}|{self.granted_role}"

    @property
    def reviewed_at_utc(self) -> datetime | None:
        """When the decision was made: a date is 00:00 UTC of that day."""
        if self.reviewed_at is None:
            return None
        if len(self.reviewed_at) == 10:
            return datetime.combine(date.fromisoformat(self.reviewed_at), datetime.min.time(),
                                    tzinfo=UTC)
        return datetime.fromisoformat(self.reviewed_at).astimezone(UTC)


@dataclass(frozen=True)
class ReviewFile:
    """One returned review file: the owner's rows, CSV or XLSX."""

    owner: str
    name: str
    file_format: str  # csv | xlsx
    rows: tuple[ReviewRow, ...]


@dataclass(frozen=True)
class Review:
    """The quarter's user access review: its deadline, removal grace and returned files."""

    deadline: date
    grace: timedelta
    files: tuple[ReviewFile, ...]

    def decisions(self) -> dict[str, ReviewRow]:
        """The decided row per item key (the demo decides each item at most once)."""
        found: dict[str, ReviewRow] = {}
        for review_file in self.files:
            for row in review_file.rows:
                if row.decision is not None:
                    assert row.item_key not in found, "the demo decides each item once"
                    found[row.item_key] = row
        return found


def review_deadline(plan: Plan) -> date:
    """The review's deadline: the demo config's `access_review_deadline`."""
    return plan.at(3, DEADLINE_DAY).date()


def quarter_end_holdings(plan: Plan) -> list[tuple[str, str, str]]:
    """Every (cluster, login role, granted role) held by a role that can log in on an
    in-scope cluster at quarter end, SUPERUSER and CREATEROLE as pseudo-roles: AC-03's
    population, from the plan's quarter-end catalog."""
    held: list[tuple[str, str, str]] = []
    for c in plan.clusters:
        if not c.in_scope:
            continue
        roles, members = plan.final[c.name]
        held += [(c.name, m, g) for (m, g) in members if roles.get(m, {}).get("login")]
        for name, attrs in roles.items():
            if attrs["login"] and attrs["super"]:
                held.append((c.name, name, "SUPERUSER"))
            if attrs["login"] and attrs["createrole"]:
                held.append((c.name, name, "CREATEROLE"))
    return held


def _last_grants(plan: Plan) -> dict[tuple[str, str, str], datetime]:
    """When each (cluster, grantee, role) was last granted in the quarter's audit log."""
    found: dict[tuple[str, str, str], datetime] = {}
    for sess in plan.sessions:
        for st in sess.stmts:
            for effect in st.effects:
                if effect[0] == "grant" and plan.in_quarter(st.at):
                    key = (sess.cluster, effect[2], effect[1])
                    found[key] = max(found.get(key, st.at), st.at)
    return found


def _decided_at(plan: Plan, owner: str, day: int) -> str:
    """A decision time as the owner writes it: a date, or (TIMESTAMP_OWNER) a timestamp at
    UTC+02:00."""
    when = plan.at(3, day, "00:00:00.000").date()
    if owner == TIMESTAMP_OWNER:
        return f"{when.isoformat()}T16:30:00+02:00"
    return when.isoformat()


def plan_review(plan: Plan, deactivated: Collection[str]) -> Review:
    """The returned review of the plan's quarter; `deactivated`: the identities deactivated
    in the quarter (the file's identity status)."""
    grants = _last_grants(plan)
    by_owner: dict[str, list[ReviewRow]] = {}
    for cluster, login, role in sorted(quarter_end_holdings(plan)):
        entries = plan.catalog_entries(role, cluster)
        if not entries:
            continue  # an unknown role has no owner to review it: REVIEW_MISSING
        owner = entries[0][4]
        who = plan.identity(login)
        rows = by_owner.setdefault(owner, [])
        day = LATE_DAY if owner == LATE_OWNER else REVIEW_DAY
        decision: str | None = "keep"
        reviewer: str | None = REVIEWERS[owner]
        comment = None
        if (cluster, login, role) in REMOVALS:
            decision = "remove"
            day, comment = REMOVALS[(cluster, login, role)]
        elif owner == UNDECIDED_OWNER and not rows:
            decision = reviewer = None
        elif who == SELF_REVIEWERS.get(owner) and not any(r.reviewer == who for r in rows):
            reviewer = who
        granted = grants.get((cluster, login, role))
        rows.append(ReviewRow(
            cluster=cluster, login_role=login, granted_role=role, holder_identity=who,
            identity_status="deactivated" if who in deactivated else "active",
            role_owner=owner,
            last_granted_at=granted.strftime("%Y-%m-%dT%H:%M:%SZ") if granted else None,
            decision=decision, reviewer=reviewer,
            reviewed_at=_decided_at(plan, owner, day) if decision else None, comment=comment))
    label = plan.quarter.label
    files = tuple(
        ReviewFile(owner, f"access-review_{label}_{owner}.{fmt}", fmt, tuple(rows))
        for owner, rows in sorted(by_owner.items())
        for fmt in ["xlsx" if owner == XLSX_OWNER else "csv"])
    planted = {r.item_key: r for f in files for r in f.rows}
    for owner, delegate in SELF_REVIEWERS.items():
        assert any(r.role_owner == owner and r.reviewer == delegate for r in planted.values()), \
            f"self-review planted in {owner}'s file"
    for removal in REMOVALS:
        assert "|".join(removal) in planted, f"removal planted on a held membership: {removal}"
    return Review(deadline=review_deadline(plan), grace=timedelta(days=REMOVAL_GRACE_DAYS),
                  files=files)
