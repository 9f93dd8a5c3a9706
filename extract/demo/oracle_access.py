"""The oracle of the access controls: AC-01, AC-02 and AC-03 computed from the plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from extract.demo.model import Session, Stmt
from extract.demo.oracle import Item, result, stmt_key
from extract.demo.plan_completeness import catalog_captured_at
from extract.demo.plan_review import Review, plan_review, quarter_end_holdings

if TYPE_CHECKING:
    from extract.demo.plan import Plan

REVOCATION_SLA = timedelta(hours=24)
APPROVAL_VALIDITY = timedelta(days=30)


def _ts_key(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate_access(plan: Plan) -> dict[str, list[Item]]:
    """The items of the access controls, computed from the plan."""
    return {"AC-01": _ac01(plan), "AC-02": _ac02(plan), "AC-03": _ac03(plan)}


def _grants(plan: Plan) -> Iterator[tuple[Session, Stmt, str, str]]:
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


def _ac01(plan: Plan) -> list[Item]:
    items = []
    for sess, st, grantee, role in _grants(plan):
        cluster = plan.cluster(sess.cluster)
        if not (cluster.in_scope and plan.in_quarter(st.at)
                and plan.is_privileged(role, cluster.name)):
            continue
        key = stmt_key(st.sql, sess.app)
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
        items.append(result([cluster.name, grantee, role, _ts_key(st.at)], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))


def _deactivations(plan: Plan) -> dict[str, datetime]:
    found: dict[str, datetime] = {}
    events = [(e.user.lower(), e.at) for e in plan.iam
              if e.name in ("DeleteUser", "DeleteLoginProfile")]
    events += [(h.username.lower(), h.at) for h in plan.hr]
    for who, when in events:
        if plan.in_quarter(when) and (who not in found or when < found[who]):
            found[who] = when
    return found


def _ac02(plan: Plan) -> list[Item]:
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
                items.append(result([who, c.name, role], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))


def access_review(plan: Plan) -> Review:
    """The demo's returned user access review (plan_review), its identity statuses from
    the quarter's deactivations."""
    return plan_review(plan, set(_deactivations(plan)))


def _review_reasons(plan: Plan, review: Review, key: str, who: str, cluster: str) -> list[str]:
    """AC-03's review attributes of one item (docs/controls.md)."""
    row = review.decisions().get(key)
    if row is None:
        return ["REVIEW_MISSING"]
    reasons = []
    decided = row.reviewed_at_utc
    assert decided is not None and row.reviewer is not None
    if row.reviewer.lower() == who.lower():
        reasons.append("REVIEWER_IS_HOLDER")
    # the catalog lists every population item: a removal is not actioned when the catalog
    # was taken after the decision plus the grace period
    if row.decision == "remove" and catalog_captured_at(plan, cluster) > decided + review.grace:
        reasons.append("REMOVE_NOT_ACTIONED")
    late_from = datetime.combine(review.deadline + timedelta(days=1), time(0),
                                 tzinfo=plan.quarter.zone)
    if decided >= late_from:
        reasons.append("REVIEW_LATE")
    return reasons


def _ac03(plan: Plan) -> list[Item]:
    items = []
    deactivated = _deactivations(plan)
    review = access_review(plan)
    for cluster, login, role in quarter_end_holdings(plan):
        who = plan.identity(login)
        reasons = _review_reasons(plan, review, f"{cluster}|{login}|{role}", who, cluster)
        if not plan.catalog_entries(role, cluster):
            reasons.append("UNKNOWN_ROLE")
        if who in deactivated:
            reasons.append("INACTIVE_HOLDER")
        ref = plan.identity_map.get(login, ("", "", ""))[2]
        if plan.is_privileged(role, cluster) and not ref and not any(
                t.kind == "access" and t.is_approved and (t.subject or "").lower() == who
                and t.cluster == cluster and (t.role or "").lower() == role.lower()
                and t.approved_at is not None and t.approved_at < plan.quarter.end
                for t in plan.tickets.values()):
            reasons.append("NO_APPROVAL_ON_RECORD")
        items.append(result([cluster, login, role], reasons))
    return sorted(items, key=lambda i: "|".join(i[0]))
