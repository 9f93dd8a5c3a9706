"""Ticket field defaults live in the connectors' SPECs and every run records them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extract.connectors import file, jira, servicenow
from extract.connectors.registry import CONNECTORS
from soxtrail.kernel.sources import Source

PROJECT_DIR = Path(__file__).resolve().parents[3]
TICKET_STAGING = PROJECT_DIR / "models" / "staging" / "tickets" / "stg_tickets__tickets.sql"
TICKET_CONNECTORS = sorted(name for name, module in CONNECTORS.items()
                           if "tickets" in module.SPEC.systems)


BASE_VALUES: dict[str, dict[str, Any]] = {
    "jira": {"url": "https://jira.example.com", "jql": "project = DBA"},
    "servicenow": {"url": "https://example.service-now.com", "table": "change_request"},
    "file": {"path": "t.jsonl", "format": "jsonl", "columns": {"ticket_key": "id"}},
}


def _source(connector: str, **values: Any) -> Source:
    base = BASE_VALUES[connector]
    return Source(name=f"{connector}-tickets", system="tickets", connector=connector,
                  values={**base, **values})


def _fields(rows: Any) -> dict[str, str]:
    return {key: value for setting, key, value in rows if setting == "field"}


def test_the_ticket_connectors_are_jira_servicenow_and_file() -> None:
    assert TICKET_CONNECTORS == ["file", "jira", "servicenow"]


@pytest.mark.parametrize("connector", TICKET_CONNECTORS)
def test_every_default_field_path_is_recorded(connector: str) -> None:
    module = CONNECTORS[connector]
    recorded = _fields(module.settings(_source(connector)))
    defaults = dict(module.SPEC.ticket_fields)
    if connector == "file":
        defaults["ticket_key"] = "id"  # mapped by `columns:`
    assert recorded == defaults


@pytest.mark.parametrize("connector", ["jira", "servicenow"])
def test_a_configured_path_wins_over_the_default(connector: str) -> None:
    module = CONNECTORS[connector]
    recorded = _fields(module.settings(_source(connector, fields={"requester": "custom.who"})))
    assert recorded["requester"] == "custom.who"
    assert recorded["ticket_key"] == module.SPEC.ticket_fields["ticket_key"]


def test_jira_defaults_read_the_issue_and_its_reporter() -> None:
    assert jira.SPEC.ticket_fields == {
        "ticket_key": "key", "ticket_type": "fields.issuetype.name",
        "status": "fields.status.name", "requester": "fields.reporter.name"}


def test_servicenow_defaults_read_state_requester_and_change_window() -> None:
    assert servicenow.SPEC.ticket_fields == {
        "ticket_key": "number", "ticket_type": "sys_class_name", "status": "state",
        "requester": "requested_by", "window_start": "start_date", "window_end": "end_date"}


def test_a_tickets_file_reads_an_unmapped_field_from_the_column_of_its_name() -> None:
    recorded = _fields(file.settings(_source("file", columns={"ticket_key": "id",
                                                              "status": "state"})))
    assert recorded["status"] == "state" and recorded["approver"] == "approver"
    assert set(recorded) == set(file.SPEC.ticket_fields)


def test_the_ticket_staging_has_no_default_paths_of_its_own() -> None:
    sql = TICKET_STAGING.read_text(encoding="utf-8")
    for connector in ("jira", "servicenow"):
        for path in CONNECTORS[connector].SPEC.ticket_fields.values():
            assert f"'{path}'" not in sql, f"{connector} default {path!r} in {TICKET_STAGING}"
    assert "coalesce(field_paths" not in sql
