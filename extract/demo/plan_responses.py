"""The demo's management responses: a few planted exceptions answered, one waived (approver
other than the owner, expiry years ahead), one waiver already expired, the rest unanswered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from extract.demo.oracle import Item
from soxtrail.kernel.quarter import Quarter


@dataclass(frozen=True)
class Response:
    """One response of the demo's responses file (extract/connectors/responses.py fields)."""

    control: str
    item: str
    root_cause: str
    remediation: str
    owner: str
    due: date
    status: str
    compensating_control: str | None = None
    approver: str | None = None
    expires: date | None = None


def _exceptions(items: list[Item]) -> list[str]:
    return sorted("|".join(key) for key, result, _ in items if result == "EXCEPTION")


def plan_responses(quarter: Quarter, controls: dict[str, list[Item]]) -> list[Response]:
    """Responses to the first exceptions (by key) of AC-01, AC-02, AC-03 and LG-01."""
    end = quarter.end_day
    due = end + timedelta(days=30)
    ac01 = _exceptions(controls.get("AC-01", []))
    ac02 = _exceptions(controls.get("AC-02", []))
    ac03 = _exceptions(controls.get("AC-03", []))
    lg01 = _exceptions(controls.get("LG-01", []))
    planned: list[Response] = []
    for n, item in enumerate(ac01[:2]):
        planned.append(Response("AC-01", item, "grant made before the access ticket was approved",
                                f"SEC-{901 + n}", "dana", due, "open"))
    if ac02:  # a waiver: accepted by someone other than its owner, until years ahead
        planned.append(Response(
            "AC-02", ac02[0], "contractor offboarding runs through a weekly batch",
            "SEC-910", "erin", due, "accepted-risk",
            compensating_control="weekly review of contractor logins", approver="frank",
            expires=date(end.year + 10, 12, 31)))
    if ac03:  # a waiver that expired during the quarter: reported as expired
        planned.append(Response(
            "AC-03", ac03[0], "legacy reporting role kept for the migration", "SEC-920",
            "grace", due, "accepted-risk", compensating_control="quarterly role review",
            approver="heidi", expires=quarter.first_day + timedelta(days=20)))
    if lg01:
        planned.append(Response("LG-01", lg01[0], "log shipping paused during maintenance",
                                "OPS-930", "ivan", due, "remediated"))
    return planned
