"""The demo estate's entry point: `generate()` plans the estate, writes it and its ground truth."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from extract.demo.oracle import ItemSink, write_expected
from extract.demo.oracle_access import access_review, evaluate_access
from extract.demo.oracle_logging import evaluate_logging, logging_completeness
from extract.demo.oracle_register import expected_register
from extract.demo.plan import DemoScale, Plan
from extract.demo.plan_completeness import completeness_clusters, completeness_findings
from extract.demo.plan_responses import plan_responses
from extract.demo.writers.backups import write_backups
from extract.demo.writers.catalogs import write_catalogs, write_seeds
from extract.demo.writers.config import config_text
from extract.demo.writers.iam import write_cloudtrail, write_hr
from extract.demo.writers.pgaudit import write_logs
from extract.demo.writers.responses import write_responses
from extract.demo.writers.review import write_review
from extract.demo.writers.server_settings import write_server_settings
from extract.demo.writers.signers import write_signers
from extract.demo.writers.tickets import write_jira
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.quarter import Quarter


@dataclass
class DemoSummary:
    """What `generate()` wrote."""

    out: Path
    quarter: str
    clusters: int
    in_scope_clusters: int
    log_files: int = 0
    log_lines: int = 0
    cloudtrail_files: int = 0
    cloudtrail_records: int = 0
    tickets: int = 0
    backups: int = 0
    role_catalog_rows: int = 0
    review_rows: int = 0
    population: dict[str, int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)


def default_scale(clusters: int = 12) -> DemoScale:
    """The default estate for `clusters` clusters (two thirds of the extra ones in scope)."""
    return DemoScale(clusters=clusters, in_scope_clusters=8 + (max(clusters, 12) - 12) * 2 // 3)


def generate(out: Path, quarter: Quarter, *, clusters: int = 12, seed: int = 7,
             scale: DemoScale | None = None) -> DemoSummary:
    """Write the demo estate for `quarter` under `out` (same arguments → identical bytes)."""
    scale = scale or default_scale(clusters)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "catalog", "cloudtrail", "hr", "jira", "backups", "seeds", "responses",
                "reviews", "keys"):
        shutil.rmtree(out / sub, ignore_errors=True)
    plan = Plan.build(quarter, scale, seed)
    summary = DemoSummary(out=out, quarter=quarter.label, clusters=len(plan.clusters),
                          in_scope_clusters=sum(c.in_scope for c in plan.clusters))
    summary.role_catalog_rows = write_seeds(plan, out / "seeds")
    write_catalogs(plan, out / "catalog")
    write_server_settings(plan, out / "catalog")  # LG-01's known point
    write_hr(plan, out / "hr")
    completeness: dict[str, list[str]] = {}  # source → finding codes (expected.json)
    summary.tickets = write_jira(plan, out / "jira", completeness)
    trail = write_cloudtrail(plan, out / "cloudtrail")
    summary.cloudtrail_files, summary.cloudtrail_records = trail.files, trail.records
    cm01_tmp = out / ".expected-cm01.jsonl"
    with cm01_tmp.open("w", encoding="utf-8") as cm01:
        sink = ItemSink(cm01)
        summary.log_files, summary.log_lines = write_logs(plan, out / "logs", sink)
    bk01_tmp = out / ".expected-bk01.jsonl"
    with bk01_tmp.open("w", encoding="utf-8") as bk01:
        bk_sink = ItemSink(bk01)
        summary.backups = write_backups(plan, out / "backups", bk_sink)
    completeness["pgbackrest"] = []  # every stanza lists backups from before the quarter
    completeness.update(completeness_findings(plan))  # one catalog exported late
    completeness.update(logging_completeness(plan))  # one log file missing (LG-01)
    controls = evaluate_access(plan)
    controls["LG-01"] = evaluate_logging(plan, out / "backups" / "pgbackrest-info.json")
    counts = {c: (len(items), sum(1 for i in items if i[1] != "PASS"))
              for c, items in controls.items()}
    counts["CM-01"] = (sink.count, sink.exceptions)
    counts["BK-01"] = (bk_sink.count, bk_sink.exceptions)
    # management's responses to a few exceptions: one waiver, one expired waiver
    responses = plan_responses(quarter, controls)
    write_responses(responses, out / "responses" / f"{quarter.label}.yml")
    # the owners' returned user access review (AC-03), with its planted errors
    summary.review_rows = write_review(access_review(plan), out / "reviews" / quarter.label)
    write_signers(out)  # who signs the run off: a preparer and a reviewer, with demo keys
    register = expected_register(responses, sum(n for _, n in counts.values()),
                                 judged_on=quarter.end_day)
    write_expected(out / "expected.json", quarter, controls, {"CM-01": cm01_tmp,
                                                              "BK-01": bk01_tmp},
                   completeness={**completeness,
                                 "cloudtrail": sorted({code for code, _ in trail.planted})},
                   completeness_clusters=completeness_clusters(), register=register)
    cm01_tmp.unlink()
    bk01_tmp.unlink()
    (out / "soxtrail.yml").write_text(config_text(plan), encoding="utf-8")
    summary.population = {c: counts[c][0] for c in CONTROLS}
    summary.exceptions = {c: counts[c][1] for c in CONTROLS}
    return summary
