"""The oracle of LG-01 (docs/controls.md): per in-scope cluster and day of the quarter, whether
the server ran with pgaudit logging role and ddl, and whether the captured logs cover the
moments it provably ran. Computed from the plan and the written backup inventory, never from
the SQL: the demo's days are UTC days (its reporting zone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from extract.demo.oracle import Item, result
from extract.demo.plan_completeness import catalog_captured_at

if TYPE_CHECKING:
    from extract.demo.plan import Plan


def logs_role_and_ddl(value: str | None) -> bool:
    """pgaudit.log logs ROLE and DDL: each named (or `all`), neither subtracted."""
    classes = {part.strip().lower() for part in (value or "").split(",")}
    return all((cls in classes or "all" in classes) and f"-{cls}" not in classes
               for cls in ("role", "ddl"))


def backup_stops(path: Path) -> dict[str, list[datetime]]:
    """Per stanza, when each successful backup of the written pgBackRest info completed."""
    stops: dict[str, list[datetime]] = {}
    for stanza in json.loads(path.read_text(encoding="utf-8")):
        stops[stanza["name"]] = [datetime.fromtimestamp(b["timestamp"]["stop"], UTC)
                                 for b in stanza["backup"] if not b["error"]]
    return stops


def evaluate_logging(plan: Plan, backups: Path) -> list[Item]:
    """LG-01's items, in cluster and day order."""
    stops = backup_stops(backups)
    items: list[Item] = []
    for c in plan.clusters:
        if not c.in_scope:
            continue
        lines = sorted(plan.server_lines.get(c.name, []))
        captured = catalog_captured_at(plan, c.name)
        # known points of the settings: (when, value); the capture's value carries back
        # over the quarter only when it is the first known point
        points = sorted([(when, value) for when, kind, value in lines if kind == "reload"]
                        + [(captured, plan.pgaudit_log)])
        carried = plan.pgaudit_log if points[0][0] == captured else None
        # the run: down from a shutdown line until the next startup line
        down: list[tuple[datetime, datetime]] = []
        for when, kind, _ in lines:
            if kind == "shutdown":
                down.append((when, when))
            elif kind == "startup" and down:
                down[-1] = (down[-1][0], when)
        missing = plan.missing_log_days.get(c.name, set())
        for day in plan.days:
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            end = start + timedelta(days=1)
            cuts = sorted({start, end, *(w for w, _ in points if start < w < end),
                           *(t for span in down for t in span if start < t < end)})
            reasons: set[str] = set()
            for a in cuts[:-1]:  # each stretch between two cuts, by its start
                if any(d0 <= a < d1 for d0, d1 in down):
                    continue  # down: nothing ran
                known = [v for w, v in points if w <= a]
                value = known[-1] if known else carried
                if value is None:
                    reasons.add("SETTINGS_UNKNOWN")
                elif not logs_role_and_ddl(value):
                    reasons.add("AUDIT_DISABLED")
            proofs = [s for s in stops.get(c.name, []) if start <= s < end]
            proofs += [captured] if start <= captured < end else []
            if any(day in missing or any(d0 < p < d1 for d0, d1 in down) for p in proofs):
                reasons.add("NO_LOG_EVIDENCE")
            if day in missing:
                reasons.add("LOG_GAP")
            items.append(result([c.name, day.isoformat()], reasons))
    return items


def logging_completeness(plan: Plan) -> dict[str, list[str]]:
    """expected.json's `completeness` for the audit-log sources with a planted missing file:
    the rotation sequence misses it (LOG_GAP)."""
    return {f"audit-{cluster}": ["LOG_GAP"] for cluster, days in plan.missing_log_days.items()
            if days}
