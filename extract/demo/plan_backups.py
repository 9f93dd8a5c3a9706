"""The planted backup cases (BK-01): missing, failed, late and skipped backups."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extract.demo.plan import Plan


def plant_backups(plan: Plan) -> None:
    """BK-01: the days whose backups are missing, failed, late or skipped."""
    at = plan.at
    plan.backup_gaps = {"pg-fin-02": {at(1, 14).date()},
                        "pg-pay-01": {at(2, 27).date(), at(2, 28).date()},
                        "pg-fin-03": {at(3, 9).date()}}
    plan.backup_errors = {"pg-hr-01": {at(2, 19).date()}}
    plan.backup_late = {"pg-fin-03": {at(3, 9).date()}}  # starts 23:40, completes next day
    sundays = [d for d in plan.days if d.weekday() == 6]
    plan.weekly_skip = {"pg-ord-01": {sundays[6]}}
