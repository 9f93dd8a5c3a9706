"""A completeness statement round-trips through its stored bytes and its loader."""

from __future__ import annotations

import json
from pathlib import Path

from extract.connectors import completeness
from extract.connectors.registry import RAW_TABLES, object_module
from soxtrail.kernel.sources import COMPLETENESS_TABLE, Completeness, Finding, RawRow, Reject


def _statement() -> Completeness:
    return Completeness(
        basis="server_total", captured=128, claimed=129,
        findings=[Finding("COUNT_MISMATCH", "the search said 129, 128 were captured")],
        covered=[("2024-07-01T00:00:00Z", "2024-10-01T00:00:00Z")], facts={"missing": ["X-9"]})


def test_the_statement_is_stored_as_canonical_json_and_loads_as_one_row(tmp_path: Path) -> None:
    data = completeness.encode(_statement())
    assert data == completeness.encode(_statement())  # deterministic bytes
    path = tmp_path / "completeness.json"
    path.write_bytes(data)
    assert completeness.count_rows({}, path) == 1
    [row] = list(completeness.load({}, path))
    assert isinstance(row, RawRow)
    doc = row.values[0]
    assert doc == json.loads(data)
    assert doc["claimed"] == 129 and doc["captured"] == 128
    assert doc["findings"] == [{"code": "COUNT_MISMATCH", "exception": True,
                                "detail": "the search said 129, 128 were captured"}]
    assert doc["covered"] == [{"from": "2024-07-01T00:00:00Z", "to": "2024-10-01T00:00:00Z"}]


def test_a_statement_that_is_not_a_json_object_is_rejected_with_a_reason(tmp_path: Path) -> None:
    for text, reason in (("{not json", "not JSON"), ("[1, 2]", "not a JSON object")):
        path = tmp_path / "bad.json"
        path.write_text(text)
        [reject] = list(completeness.load({}, path))
        assert isinstance(reject, Reject) and reason in reject.reason


def test_the_loader_picks_the_statement_module_whatever_the_connector() -> None:
    assert object_module({"raw_table": COMPLETENESS_TABLE, "connector": "jira"}) is completeness
    assert object_module({"raw_table": "raw.tickets", "connector": "jira"}).__name__ \
        == "extract.connectors.jira"
    assert COMPLETENESS_TABLE in RAW_TABLES
