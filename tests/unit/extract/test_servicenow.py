"""Connector `servicenow` against the fake Table API (offset paging, approvals)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extract.connectors import servicenow
from extract.connectors.registry import SPECS
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import COMPLETENESS_QUERY, RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore
from tests.support.fake_services import FakeServices

CANARY = "canary-snow-91c2ab04"
USER = "svc_sox"
RETRY = {"attempts": 4, "budget_seconds": 5, "backoff_seconds": 0.01,
         "backoff_max_seconds": 0.02, "connect_timeout_seconds": 1, "read_timeout_seconds": 1}
TABLE = "/api/now/table/change_request"
APPROVALS = "/api/now/table/sysapproval_approver"


def change(n: int, created: str = "2024-08-01 10:00:00") -> dict[str, Any]:
    return {
        "number": f"CHG00300{n:02d}", "sys_id": f"chg{n:04d}", "sys_class_name": "change_request",
        "state": "3", "approval": "approved", "short_description": f"alter table t{n}",
        "requested_by": {"value": f"user{n}", "display_value": f"User {n}"},
        "cmdb_ci": {"value": "ci-pg-fin-01", "display_value": "pg-fin-01",
                    "table": "cmdb_ci"},
        "start_date": "2024-08-02 08:00:00", "end_date": "2024-08-02 10:00:00",
        "sys_created_on": created, "sys_updated_on": created,
    }


def approval(n: int, ticket: str, state: str = "approved") -> dict[str, Any]:
    return {"sys_id": f"apv{n:04d}", "state": state, "sys_updated_on": "2024-08-01 11:00:00",
            "approver": {"value": "carol", "display_value": "Carol"},
            "sysapproval": {"value": ticket, "display_value": ticket, "table": "task"}}


@pytest.fixture()
def services() -> Iterator[FakeServices]:
    with FakeServices(user=USER, token=CANARY) as fake:
        fake.add_servicenow_records("change_request", [change(n) for n in range(1, 6)])
        fake.add_servicenow_records("change_request", [change(99, "2024-06-30 23:59:59")])
        yield fake


@pytest.fixture()
def run(tmp_path: Path, local_store: LocalStore) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=local_store, spool_dir=tmp_path / "spool")


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOW_PASSWORD", CANARY)


def source(tmp_path: Path, services: FakeServices, **extra: Any) -> Source:
    entry = {
        "name": "snow-prod", "system": "tickets", "connector": "servicenow",
        "url": services.url, "table": "change_request",
        "query": "sys_created_on>={quarter_start}^sys_created_on<{quarter_end}",
        "auth": {"type": "basic", "user": USER, "token": "${SNOW_PASSWORD}"},
        "page_size": 2, "retry": RETRY,
    }
    entry.update(extra)
    return parse_config({"sources": [entry]}, path=None, base_dir=tmp_path, specs=SPECS).sources[0]


def pages_of(run: SnapshotRun) -> list[Any]:
    """The page captures (every record but the completeness statement, which comes last)."""
    assert run.records[-1].query_name == COMPLETENESS_QUERY
    return [r for r in run.records if r.query_name != COMPLETENESS_QUERY]


def statement(run: SnapshotRun, local_store: LocalStore) -> dict[str, Any]:
    """The source's completeness statement as stored."""
    [record] = [r for r in run.records if r.query_name == COMPLETENESS_QUERY]
    assert record.query_params["raw_table"] == "raw.source_completeness"
    stored = json.loads(local_store.fetch(record.raw_output_s3_key, Path("unused")).read_bytes())
    assert record.query_params["completeness"]["findings"] == sorted(
        {f["code"] for f in stored["findings"]})
    return stored


def codes(doc: dict[str, Any]) -> list[str]:
    return sorted(f["code"] for f in doc["findings"])


def loaded(run: SnapshotRun, local_store: LocalStore) -> list[Any]:
    items: list[Any] = []
    for record in pages_of(run):
        path = local_store.fetch(record.raw_output_s3_key, Path("unused"))
        rows = list(servicenow.load(record.query_params, path))
        assert servicenow.count_rows(record.query_params, path) == record.result_row_count
        assert record.result_row_count == len(rows)
        items.extend(rows)
    return items


def docs(run: SnapshotRun, local_store: LocalStore) -> list[dict[str, Any]]:
    return [item.values[0] for item in loaded(run, local_store) if isinstance(item, RawRow)]


def assert_no_canary(run: SnapshotRun, local_store: LocalStore) -> None:
    for record in run.records:
        assert CANARY not in record.query_text + json.dumps(record.query_params)
        assert CANARY not in record.raw_output_s3_key
    assert not any(CANARY in key for key in local_store.list(""))


def test_offset_paging_until_the_total_count(tmp_path: Path, services: FakeServices,
                                             run: SnapshotRun, local_store: LocalStore) -> None:
    servicenow.snapshot(source(tmp_path, services), run)
    requests = services.requests_to(TABLE)
    assert [r.param("sysparm_offset") for r in requests] == ["0", "2", "4"]
    assert {r.param("sysparm_limit") for r in requests} == {"2"}
    query = requests[0].param("sysparm_query")
    assert query == "sys_created_on>=2024-07-01^sys_created_on<2024-10-01^ORDERBYsys_id"
    assert [d["number"] for d in docs(run, local_store)] == [
        f"CHG00300{n:02d}" for n in range(1, 6)]
    record = pages_of(run)[0]
    assert record.query_text.startswith(f"GET {services.url}{TABLE}?sysparm_query=")
    # each page's evidence row says the request as the fake instance received it
    for page, received in zip(pages_of(run), requests, strict=True):
        assert page.query_params["request"] == {
            "method": received.method, "url": f"{services.url}{received.path}",
            "query": {name: values[0] for name, values in received.query.items()}}
    assert record.query_params.pop("request")["query"] == {
        "sysparm_query": query, "sysparm_limit": "2", "sysparm_offset": "0"}
    assert record.query_params == {"table": "change_request", "query": query, "page": 0,
                                   "offset": 0, "x_total_count": 5, "attempt": 1,
                                   "source": "snow-prod",
                                   "connector": "servicenow", "raw_table": "raw.tickets"}
    assert_no_canary(run, local_store)


def test_without_a_total_count_paging_stops_at_a_short_page(tmp_path: Path,
                                                            run: SnapshotRun) -> None:
    with FakeServices(user=USER, token=CANARY, servicenow_total_count=False) as services:
        services.add_servicenow_records("change_request", [change(n) for n in range(1, 5)])
        servicenow.snapshot(source(tmp_path, services), run)
        offsets = [r.param("sysparm_offset") for r in services.requests_to(TABLE)]
    assert offsets == ["0", "2", "4"]  # the last page is empty: 4 records, limit 2
    assert [r.result_row_count for r in pages_of(run)] == [2, 2, 0]


def test_an_instance_cap_below_the_page_size_does_not_end_paging(tmp_path: Path,
                                                                  run: SnapshotRun) -> None:
    with FakeServices(user=USER, token=CANARY, servicenow_max_limit=2) as services:
        services.add_servicenow_records("change_request", [change(n) for n in range(1, 6)])
        servicenow.snapshot(source(tmp_path, services, page_size=100), run)
    assert [r.result_row_count for r in pages_of(run)] == [2, 2, 1]


def test_records_keep_reference_fields_as_received(tmp_path: Path, services: FakeServices,
                                                   run: SnapshotRun,
                                                   local_store: LocalStore) -> None:
    servicenow.snapshot(source(tmp_path, services), run)
    doc = docs(run, local_store)[0]
    assert doc["requested_by"] == {"link": f"{services.url}/api/now/table/sys_user/user1",
                                   "value": "user1"}
    assert doc["sys_updated_on"] == "2024-08-01 10:00:00"


def test_display_values_are_requested_when_configured(tmp_path: Path, services: FakeServices,
                                                      run: SnapshotRun,
                                                      local_store: LocalStore) -> None:
    servicenow.snapshot(source(tmp_path, services, display_value=True), run)
    assert services.requests_to(TABLE)[0].param("sysparm_display_value") == "true"
    doc = docs(run, local_store)[0]
    assert doc["requested_by"] == "User 1" and doc["cmdb_ci"] == "pg-fin-01"


def test_approvals_of_the_captured_tickets_are_fetched_and_marked(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.add_servicenow_records("sysapproval_approver", [
        approval(1, "chg0001"), approval(2, "chg0002", "rejected"), approval(3, "chg0002"),
        approval(4, "chg0099"),  # a ticket outside the quarter: not captured
    ])
    servicenow.snapshot(source(tmp_path, services, approvals=True), run)
    approval_records = [r for r in pages_of(run) if r.query_params.get("approvals")]
    assert approval_records and all(r.query_params["table"] == "sysapproval_approver"
                                    for r in approval_records)
    query = services.requests_to(APPROVALS)[0].param("sysparm_query")
    assert query == "sysapprovalINchg0001,chg0002,chg0003,chg0004,chg0005^ORDERBYsys_id"
    all_docs = docs(run, local_store)
    tickets = [d for d in all_docs if "_table" not in d]
    approvals = [d for d in all_docs if d.get("_table") == "sysapproval_approver"]
    assert len(tickets) == 5
    assert [a["record"]["sys_id"] for a in approvals] == ["apv0001", "apv0002", "apv0003"]
    assert approvals[0]["record"]["sysapproval"]["value"] == "chg0001"
    assert approvals[1]["record"]["state"] == "rejected"


def test_approvals_are_fetched_in_batches_of_ticket_ids(tmp_path: Path,
                                                        run: SnapshotRun) -> None:
    with FakeServices(user=USER, token=CANARY) as services:
        services.add_servicenow_records("change_request", [change(n) for n in range(150)])
        services.add_servicenow_records("sysapproval_approver",
                                        [approval(n, f"chg{n:04d}") for n in range(150)])
        servicenow.snapshot(source(tmp_path, services, page_size=1000, approvals=True), run)
        batches = [r.param("sysparm_query") for r in services.requests_to(APPROVALS)]
    assert len(batches) == 2
    assert batches[0] is not None and batches[0].count(",") == 99
    approvals = [r for r in pages_of(run) if r.query_params.get("approvals")]
    assert [r.query_params["batch"] for r in approvals] == [0, 1]
    assert sum(r.result_row_count for r in approvals) == 150


def test_settings_default_to_utc_and_types_by_table(tmp_path: Path,
                                                    services: FakeServices) -> None:
    rows = servicenow.settings(source(tmp_path, services, approved_statuses=["approved"],
                                      fields={"approver": "approvals"}))
    assert ("timezone", "", "UTC") in rows
    assert ("type", "change_request", "change") in rows
    assert ("field", "ticket_key", "number") in rows and ("field", "approver", "approvals") in rows
    assert ("approved_status", "approved", "true") in rows
    zoned = servicenow.settings(source(tmp_path, services, timezone="Europe/London",
                                       types={"access": ["sc_req_item"]}))
    assert ("timezone", "", "Europe/London") in zoned
    assert [r for r in zoned if r[0] == "type"] == [("type", "sc_req_item", "access")]


@pytest.mark.parametrize("fault", ["429", "500", "truncate"])
def test_a_transient_fault_then_success_captures_every_record_once(
        tmp_path: Path, services: FakeServices, run: SnapshotRun, local_store: LocalStore,
        fault: str) -> None:
    services.inject(TABLE, fault, after=1)
    servicenow.snapshot(source(tmp_path, services), run)
    assert [r.fault for r in services.requests_to(TABLE)] == [None, fault, None, None]
    assert [d["sys_id"] for d in docs(run, local_store)] == [f"chg{n:04d}" for n in range(1, 6)]


def test_a_source_that_stays_down_fails_naming_it(tmp_path: Path, services: FakeServices,
                                                  run: SnapshotRun,
                                                  local_store: LocalStore) -> None:
    services.inject(TABLE, "down", after=2)
    with pytest.raises(SourceError) as failure:
        servicenow.snapshot(source(tmp_path, services, approvals=True), run)
    message = str(failure.value)
    assert message.startswith("source 'snow-prod': GET ") and "sysparm_offset=4" in message
    assert CANARY not in message
    # the query is held until it is whole: a fetch cut short leaves no page behind
    assert run.records == [] and list(local_store.list("")) == []
    assert_no_canary(run, local_store)


def test_a_wrong_password_fails_without_leaking_it(tmp_path: Path, services: FakeServices,
                                                   run: SnapshotRun,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOW_PASSWORD", "x" + CANARY)
    with pytest.raises(SourceError, match="HTTP 401") as failure:
        servicenow.snapshot(source(tmp_path, services), run)
    assert CANARY not in str(failure.value) and run.records == []


def test_a_bad_query_is_reported_with_the_instances_message(tmp_path: Path,
                                                            services: FakeServices,
                                                            run: SnapshotRun) -> None:
    with pytest.raises(SourceError, match=r"HTTP 400.*cannot parse"):
        servicenow.snapshot(source(tmp_path, services, query="nonsense"), run)
    assert len(services.requests) == 1


def test_load_rejects_a_page_that_is_not_a_table_api_result(tmp_path: Path) -> None:
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"error": {"message": "boom"}, "status": "failure"}))
    items = list(servicenow.load({}, page))
    assert len(items) == 1 and isinstance(items[0], Reject)
    assert servicenow.count_rows({}, page) == 1


# ---------------------------------------------------------------------------
# completeness


def test_the_total_count_header_is_captured_with_each_page_and_matches(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    servicenow.snapshot(source(tmp_path, services), run)
    assert [r.query_params["x_total_count"] for r in pages_of(run)] == [5, 5, 5]
    doc = statement(run, local_store)
    assert (doc["basis"], doc["claimed"], doc["captured"], doc["findings"]) == (
        "server_total", 5, 5, [])
    assert len(services.requests_to(TABLE)) == 3


def test_a_page_that_drops_a_record_is_a_count_mismatch_after_one_retry(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.hidden_keys.add("CHG0030003")  # in X-Total-Count, never returned
    servicenow.snapshot(source(tmp_path, services), run)
    offsets = [r.param("sysparm_offset") for r in services.requests_to(TABLE)]
    assert offsets == ["0", "2", "3", "0", "2", "3"]
    doc = statement(run, local_store)
    assert codes(doc) == ["COUNT_MISMATCH"]
    assert "after one retry" in doc["findings"][0]["detail"]
    assert "its total is 5, 5 items were captured" in doc["findings"][0]["detail"]
    assert doc["claimed"] == 5 and doc["facts"]["population_attempt"] == 2
    assert {r.query_params["attempt"] for r in pages_of(run)} == {2}


def test_a_query_that_shifts_under_paging_and_settles_on_retry_has_no_finding(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.on_request(TABLE, 1, lambda: services.servicenow_records["change_request"].append(
        change(0)))  # sys_id chg0000 sorts first: the offsets shift by one
    servicenow.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["findings"] == [] and (doc["claimed"], doc["captured"]) == (6, 6)
    assert doc["facts"]["retried"] is True
    assert doc["facts"]["attempts"][0]["duplicates"] == ["chg0002"]
    assert len(docs(run, local_store)) == 6


def test_an_approval_batch_short_of_its_count_is_a_count_mismatch(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.add_servicenow_records("sysapproval_approver", [
        {**approval(1, "chg0001"), "number": "APV1"}, {**approval(2, "chg0002"), "number": "APV2"}])
    services.hidden_keys.add("APV2")
    servicenow.snapshot(source(tmp_path, services, approvals=True), run)
    # per attempt: a page of 1 of 2, then an empty one at offset 1
    assert [r.param("sysparm_offset") for r in services.requests_to(APPROVALS)] == [
        "0", "1", "0", "1"]
    doc = statement(run, local_store)
    assert codes(doc) == ["COUNT_MISMATCH"]
    assert "approval batch 0: X-Total-Count 2, 1 records captured" in doc["findings"][0]["detail"]
    assert doc["facts"]["attempts"][1]["approvals"] == {"claimed": 2, "captured": 1}


def test_without_the_total_count_header_no_total_is_available(tmp_path: Path,
                                                               run: SnapshotRun,
                                                               local_store: LocalStore) -> None:
    with FakeServices(user=USER, token=CANARY, servicenow_total_count=False) as services:
        services.add_servicenow_records("change_request", [change(n) for n in range(1, 5)])
        servicenow.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["basis"] == "no_total" and doc["claimed"] is None and doc["captured"] == 4
    assert [(f["code"], f["exception"]) for f in doc["findings"]] == [
        ("NO_TOTAL_AVAILABLE", False)]
    assert "x_total_count" not in pages_of(run)[0].query_params
