"""Quarter over quarter (`soxtrail trend`): per control, the population and exceptions of each
quarter's report run, the exceptions that recur (same recurrence key) and for how many
quarters in a row, and the new and resolved ones.

A quarter's report run is its official run (the newest reviewer sign-off, `soxtrail signoff`),
else its newest completed quarter run, marked a draft. An exception's identity across quarters
is the recurrence key the exceptions register computes (`marts.fct_exceptions_register.
recur_key`: the control's `identity.recur_by` columns), so the trend and the register's
new / recurring / resolved never disagree on what "the same exception" is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from soxtrail.kernel import attestations, controls
from soxtrail.kernel.errors import ConfigError

_RANGE = re.compile(r"^\s*(\d{4})Q([1-4])\s*\.\.\s*(\d{4})Q([1-4])\s*$", re.IGNORECASE)
MAX_QUARTERS = 40
REGISTER_MODEL = "fct_exceptions_register"
SUMMARY_MODEL = "fct_control_summary"
COUNTS = ("population", "exceptions", "new", "recurring", "resolved")


def quarter_range(text: str) -> list[str]:
    """`2024Q1..2024Q4` → ['2024Q1', '2024Q2', '2024Q3', '2024Q4'] (fiscal labels)."""
    match = _RANGE.match(text or "")
    if not match:
        raise ConfigError(f"--quarters {text!r}: expected FIRST..LAST, e.g. 2024Q1..2024Q4")
    first = int(match.group(1)) * 4 + int(match.group(2)) - 1
    last = int(match.group(3)) * 4 + int(match.group(4)) - 1
    if last < first:
        raise ConfigError(f"--quarters {text!r}: the last quarter comes before the first")
    if last - first + 1 > MAX_QUARTERS:
        raise ConfigError(f"--quarters {text!r}: at most {MAX_QUARTERS} quarters")
    return [f"{n // 4}Q{n % 4 + 1}" for n in range(first, last + 1)]


@dataclass(frozen=True)
class ReportRun:
    """The run that reports a quarter: official (signed off by a reviewer) or a draft."""

    quarter: str
    run_id: str
    official: bool


@dataclass
class ControlQuarter:
    """One control in one quarter's report run."""

    quarter: str
    population: int
    exceptions: int
    keys: set[str] = field(default_factory=set)  # the exceptions' recurrence keys
    new: int = 0
    recurring: int = 0
    resolved: int = 0


@dataclass
class ControlTrend:
    """One control across the quarters (None: the quarter has no report run)."""

    control_id: str
    title: str
    quarters: dict[str, ControlQuarter | None]
    # recurrence key → quarters in a row it is an exception, up to the last quarter with a run
    streaks: dict[str, int] = field(default_factory=dict)

    def recurring_exceptions(self) -> list[tuple[str, int]]:
        """(recurrence key, quarters in a row) of the exceptions that recur, longest first."""
        return sorted(((k, n) for k, n in self.streaks.items() if n > 1),
                      key=lambda kn: (-kn[1], kn[0]))


@dataclass
class Trend:
    """The whole table: the quarters, their report runs, and each control's trend."""

    quarters: list[str]
    runs: dict[str, ReportRun | None]
    controls: list[ControlTrend]

    def as_json(self) -> dict[str, Any]:
        """JSON-able (keys and lists sorted: the same runs give the same bytes)."""
        return {
            "quarters": self.quarters,
            "runs": {q: (None if r is None else {"run_id": r.run_id,
                                                  "signoff": "official" if r.official
                                                  else "draft"})
                     for q, r in self.runs.items()},
            "identity": "exceptions are the same across quarters when their recurrence keys "
                        "(marts.fct_exceptions_register.recur_key) are equal",
            "controls": [{
                "control_id": c.control_id, "title": c.title,
                "quarters": {q: (None if v is None else {
                    "population": v.population, "exceptions": v.exceptions,
                    "exception_identities": len(v.keys), "new": v.new,
                    "recurring": v.recurring, "resolved": v.resolved})
                    for q, v in c.quarters.items()},
                "recurring_exceptions": [{"recur_key": k, "quarters_in_a_row": n}
                                         for k, n in c.recurring_exceptions()],
            } for c in self.controls],
        }


def report_runs(conn: psycopg.Connection[Any], quarters: list[str]) -> dict[str, ReportRun | None]:
    """Each quarter's official run, else its newest completed quarter run (a draft)."""
    official = {q: str(o["run_id"]) for q, o in attestations.official_runs(conn).items()}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select distinct on (quarter) quarter, id::text as run_id"
                    " from soxtrail.sox_runs where status = 'completed'"
                    " and coalesce(config ->> '_kind', 'quarter') = 'quarter'"
                    " and quarter = any(%s) order by quarter, finished_at desc", (quarters,))
        newest = {str(r["quarter"]): str(r["run_id"]) for r in cur.fetchall()}
    chosen: dict[str, ReportRun | None] = {}
    for quarter in quarters:
        if quarter in official:
            chosen[quarter] = ReportRun(quarter, official[quarter], True)
        elif quarter in newest:
            chosen[quarter] = ReportRun(quarter, newest[quarter], False)
        else:
            chosen[quarter] = None
    return chosen


def _counts(conn: psycopg.Connection[Any], run_id: str) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        f"select control_id, population, exceptions from {controls.MARTS_SCHEMA}.{SUMMARY_MODEL}"
        " where run_id = %s", (run_id,)).fetchall()
    return {str(c): (int(p or 0), int(e or 0)) for c, p, e in rows}


def _exception_keys(conn: psycopg.Connection[Any], run_id: str) -> dict[str, set[str]]:
    rows = conn.execute(
        f"select control_id, recur_key from {controls.MARTS_SCHEMA}.{REGISTER_MODEL}"
        " where run_id = %s and recurrence <> 'resolved'", (run_id,)).fetchall()
    keys: dict[str, set[str]] = {}
    for control_id, key in rows:
        keys.setdefault(str(control_id), set()).add(str(key))
    return keys


def trend(conn: psycopg.Connection[Any], quarters: list[str]) -> Trend:
    """The trend over `quarters` (consecutive labels, `quarter_range`)."""
    chosen = report_runs(conn, quarters)
    per_run = {q: (_counts(conn, r.run_id), _exception_keys(conn, r.run_id))
               for q, r in chosen.items() if r is not None}
    conn.commit()
    result = []
    for control in controls.registry():
        if control.kind != "control":
            continue
        by_quarter: dict[str, ControlQuarter | None] = {}
        previous: set[str] | None = None  # the previous quarter's keys (None: no run)
        streaks: dict[str, int] = {}
        for quarter in quarters:
            if quarter not in per_run:
                by_quarter[quarter] = None
                previous, streaks = None, {}
                continue
            counts, keys = per_run[quarter]
            population, exceptions = counts.get(control.id, (0, 0))
            current = keys.get(control.id, set())
            row = ControlQuarter(quarter, population, exceptions, set(current))
            if previous is not None:
                row.new = len(current - previous)
                row.recurring = len(current & previous)
                row.resolved = len(previous - current)
            else:
                row.new = len(current)
            streaks = {k: streaks.get(k, 0) + 1 for k in current}
            by_quarter[quarter] = row
            previous = current
        result.append(ControlTrend(control.id, control.title, by_quarter, streaks))
    return Trend(quarters, chosen, result)
