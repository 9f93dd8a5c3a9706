"""The demo estate: a deterministic quarter of every source in its real format, with ground truth.

`generate()` writes PostgreSQL server logs with pgaudit entries (csvlog, jsonlog and stderr),
catalog exports, CloudTrail files, an HR terminations export, Jira search pages, a pgBackRest
`info` document, the seeds, management's responses, the role owners' returned user access review
(CSV and XLSX), a `soxtrail.yml` using the real connectors, and `expected.json`:
every population item of every control of docs/controls.md with its result, computed from the
generator's own model of what it planted (never by running the SQL).

The package, in the order `generate()` uses it:

* `plan` builds the estate's plan (`model` holds its records, `inventory` the fixed clusters,
  people and role catalog); the planted cases live per control family in `plan_access`
  (AC-01, AC-02, AC-03), `plan_changes` (CM-01), `plan_backups` (BK-01) and `plan_logging`
  (LG-01); after the plan is built, `plan_responses` and `plan_review` (AC-03's user access
  review, from the quarter-end catalog) plan the people's steps;
* `writers/` write every source family in its real format from the plan;
* `oracle` writes `expected.json`; the verdicts live per control family in `oracle_access`,
  `oracle_changes`, `oracle_backups` and `oracle_logging`, an independent second implementation
  of the rules that exists to check the SQL;
* `estate.generate()` runs them in order.
"""

from __future__ import annotations

from extract.demo.estate import DemoSummary, default_scale, generate
from extract.demo.inventory import PREFIX_PLAIN, PREFIX_SESSION
from extract.demo.plan import DemoScale

__all__ = ["PREFIX_PLAIN", "PREFIX_SESSION", "DemoScale", "DemoSummary", "default_scale",
           "generate"]
