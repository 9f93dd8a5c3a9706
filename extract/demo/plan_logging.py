"""The planted LG-01 cases: a pgaudit-off window, a clean down period and a missing log day.

* `pg-fin-01`: the DBA set `pgaudit.log` to the demo's value a few days before the quarter (a
  reload line: a known point), switched it to `none` one August evening and back the next
  morning (reload lines): AUDIT_DISABLED on both days;
* `pg-hr-01`: a clean shutdown and restart one September night (`database system is shut
  down` … `database system was shut down at`): a down period, not an exception; and another
  one a week later during which that night's backup completed: NO_LOG_EVIDENCE (a log is
  missing: the backup shows the server ran);
* `pg-pay-02`: rotates its log daily, and two days' files are missing although those days'
  backups completed: LOG_GAP (the completeness statement's missing files) and NO_LOG_EVIDENCE;
* `pg-pay-01`: a reload line on the quarter's second day sets `pgaudit.log` (to the value its
  capture shows): no capture's value can be carried back across it, so the first two days
  are SETTINGS_UNKNOWN.

Every cluster's catalog export includes a settings capture (writers/server_settings.py)
with the demo's `pgaudit.log`: the known point whose value is carried back over the quarter.
No other planted session, migration window or log line of these clusters falls in these
windows or on that day (checked here).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extract.demo.plan import Plan

# the demo's pgaudit.log (role and ddl: what LG-01 requires), as the settings capture says it
PGAUDIT_LOG = "ddl, role"
AUDIT_OFF_CLUSTER = "pg-fin-01"
DOWN_CLUSTER = "pg-hr-01"
MISSING_DAY_CLUSTER = "pg-pay-02"
UNKNOWN_SETTINGS_CLUSTER = "pg-pay-01"
# (when, kind, value): kind `reload` (value: the new pgaudit.log), `shutdown` or `startup`
ServerLine = tuple[datetime, str, str | None]


def plant_logging(plan: Plan) -> None:
    """LG-01: the server lines, quiet windows, log rotation and the missing log day."""
    at = plan.at
    off_from, off_to = at(2, 6, "21:40:00.000"), at(2, 7, "08:15:00.000")
    down_from, down_to = at(3, 11, "02:30:00.000"), at(3, 11, "05:10:00.000")
    # a night's backup completes 01:04-01:50 (writers/backups.py): inside this one
    busy_from, busy_to = at(3, 18, "00:30:00.000"), at(3, 18, "03:30:00.000")
    plan.server_lines = {
        AUDIT_OFF_CLUSTER: [(plan.before(3, "11:20:00.000"), "reload", PGAUDIT_LOG),
                            (off_from, "reload", "none"),
                            (off_to, "reload", PGAUDIT_LOG)],
        DOWN_CLUSTER: [(down_from, "shutdown", None), (down_to, "startup", None),
                       (busy_from, "shutdown", None), (busy_to, "startup", None)],
        UNKNOWN_SETTINGS_CLUSTER: [(at(1, 2, "09:00:00.000"), "reload", PGAUDIT_LOG)],
    }
    # no sessions while the server is down or pgaudit logs nothing
    plan.quiet_windows = {AUDIT_OFF_CLUSTER: [(off_from, off_to)],
                          DOWN_CLUSTER: [(down_from, down_to), (busy_from, busy_to)]}
    plan.log_rotation_days = {MISSING_DAY_CLUSTER: 1}
    missing = {at(2, 21).date(), at(3, 4).date()}
    plan.missing_log_days = {MISSING_DAY_CLUSTER: missing}
    plan.pgaudit_log = PGAUDIT_LOG
    _check_clear(plan, AUDIT_OFF_CLUSTER, off_from, off_to)
    _check_clear(plan, DOWN_CLUSTER, down_from, down_to)
    _check_clear(plan, DOWN_CLUSTER, busy_from, busy_to)
    _check_backup(plan, DOWN_CLUSTER, busy_from.date())
    for day in sorted(missing):
        start = datetime.combine(day, datetime.min.time(), tzinfo=off_from.tzinfo)
        _check_clear(plan, MISSING_DAY_CLUSTER, start, start + timedelta(days=1))
        _check_backup(plan, MISSING_DAY_CLUSTER, day)


def _check_clear(plan: Plan, cluster: str, start: datetime, end: datetime) -> None:
    """No planted session or migration window of `cluster` within an hour of [start, end)."""
    margin = timedelta(hours=1)
    busy = [(s.stmts[0].at, s.stmts[-1].at) for s in plan.sessions if s.cluster == cluster]
    busy += [(w_start, w_end) for w_start, w_end, _ in plan.windows.get(cluster, [])]
    clash = [b for b in busy if b[0] < end + margin and start - margin < b[1]]
    if clash:
        raise AssertionError(f"LG-01 plant on {cluster} {start}..{end} meets planted "
                             f"activity {clash}")


def _check_backup(plan: Plan, cluster: str, day: date) -> None:
    """The day's backup runs (a daily cluster, no planted backup gap, failure or delay)."""
    if plan.cluster(cluster).policy != "daily" or day in plan.backup_gaps.get(cluster, set()) \
            or day in plan.backup_errors.get(cluster, set()) \
            or day in plan.backup_late.get(cluster, set()):
        raise AssertionError(f"LG-01: {cluster} has no nightly backup on {day}")
