"""The planted completeness cases of the capture itself: a late catalog, an unscoped cluster."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extract.demo.plan import Plan

# this cluster's catalog was exported weeks after quarter end (SNAPSHOT_NOT_AT_QUARTER_END;
# its roles are still the quarter-end ones, so AC-03 is unchanged)
LATE_CATALOG_CLUSTER = "pg-hr-02"
LATE_CATALOG_AFTER = timedelta(days=27, hours=9, minutes=15)
# every other catalog: exported half an hour before quarter end (well within 72 h)
ON_TIME_CATALOG_BEFORE = timedelta(minutes=30)
# backed up by pgBackRest, listed by no application in applications.csv (UNSCOPED_CLUSTER):
# no control judges it, the Completeness sheet says it exists
UNSCOPED_CLUSTER = "pg-legacy-01"


def catalog_captured_at(plan: Plan, cluster: str) -> datetime:
    """When the demo's catalog export of `cluster` was taken (UTC)."""
    end = plan.quarter.end_utc
    if cluster == LATE_CATALOG_CLUSTER:
        return end + LATE_CATALOG_AFTER
    return end - ON_TIME_CATALOG_BEFORE


def completeness_findings(plan: Plan) -> dict[str, list[str]]:
    """expected.json's `completeness` for the catalog sources: source name → codes."""
    return {f"catalog-{c.name}": (["SNAPSHOT_NOT_AT_QUARTER_END"]
                                  if c.name == LATE_CATALOG_CLUSTER else [])
            for c in plan.clusters}


def completeness_clusters() -> dict[str, list[str]]:
    """expected.json's `completeness_clusters`: cluster → codes of its cluster row."""
    return {UNSCOPED_CLUSTER: ["UNSCOPED_CLUSTER"]}
