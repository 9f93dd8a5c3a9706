"""The ticket source of the demo estate: Jira v2 search pages with changelogs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extract.demo.inventory import DBAS, PEOPLE
from extract.demo.model import Ticket
from extract.demo.plan_changes import JIRA_LOST_ISSUE

if TYPE_CHECKING:
    from extract.demo.plan import Plan

JIRA = "https://jira.example.com"


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


def _jira_issue(t: Ticket, number: int) -> dict[str, Any]:
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


def write_jira(plan: Plan, folder: Path, completeness: dict[str, list[str]],
               page_size: int = 50) -> int:
    """Jira search pages of `page_size` issues; returns the number of issues the search
    counts (its `total`).

    Planted: the page holding `JIRA_LOST_ISSUE` lost it (the export dropped it, the
    `startAt`/`total` of every page are the search's): the next page starts one position
    after the last one it holds, so the `jira` source's completeness is a MISSING_PAGE,
    recorded in `completeness` (source name → finding codes, for expected.json).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tickets = sorted(plan.tickets.values(), key=lambda t: (t.key.split("-")[0],
                                                           int(t.key.split("-")[1])))
    total = len(tickets)
    lost = {JIRA_LOST_ISSUE} & {t.key for t in tickets}
    completeness["jira"] = ["MISSING_PAGE"] if lost else []
    for page, start in enumerate(range(0, total, page_size), start=1):
        issues = [_jira_issue(t, start + i) for i, t in enumerate(tickets[start:start + page_size])
                  if t.key not in lost]
        doc = {"expand": "names,schema", "startAt": start, "maxResults": page_size,
               "total": total, "issues": issues}
        (folder / f"search-{page:03d}.json").write_text(
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return total
