"""The oracle of CM-01: the verdict of a DDL statement, applied as the logs are written."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extract.demo.plan import Plan


class CmIndex:
    """CM-01 rules of docs/controls.md over the planted tickets."""

    def __init__(self, plan: Plan) -> None:
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
        # no key: an approved change window on the cluster that contains the statement
        # links its ticket; with none, no ticket is linked (OUTSIDE_CHANGE_WINDOW is for a
        # linked ticket's window the statement missed)
        windows = self.approved.get(cluster, [])
        if any(w and w[0] <= when <= w[1] for w in windows):
            return []
        return ["NO_CHANGE_TICKET"]
