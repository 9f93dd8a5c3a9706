"""The snapshot's capture order: estate-wide sources first, the order kept otherwise."""

from __future__ import annotations

from soxtrail.kernel.sources import Source
from soxtrail.pipeline import capture_order


def source(name: str, connector: str) -> Source:
    return Source(name=name, system="x", connector=connector, values={})


def test_a_source_serving_the_whole_estate_starts_before_per_cluster_ones() -> None:
    sources = [source("audit-1", "pgaudit_log"), source("catalog-1", "postgres_catalog"),
               source("audit-2", "pgaudit_log"), source("catalog-2", "postgres_catalog"),
               source("audit-3", "pgaudit_log"), source("jira", "jira"),
               source("cloudtrail", "aws_cloudtrail")]
    assert [s.name for s in capture_order(sources)] == [
        "jira", "cloudtrail", "catalog-1", "catalog-2", "audit-1", "audit-2", "audit-3"]
