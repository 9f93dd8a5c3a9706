"""Connector `jira` against the fake Jira (v2 startAt and v3 nextPageToken paging)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extract.connectors import jira
from extract.connectors.registry import SPECS
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import COMPLETENESS_QUERY, RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore
from tests.support.fake_services import FakeServices
from tests.support.rows import doc as raw_doc

CANARY = "canary-jira-5b1d0e77"
USER = "svc-sox@example.com"
RETRY = {"attempts": 4, "budget_seconds": 5, "backoff_seconds": 0.01,
         "backoff_max_seconds": 0.02, "connect_timeout_seconds": 1, "read_timeout_seconds": 1}
V2 = "/rest/api/2/search"
V3 = "/rest/api/3/search/jql"


def issue(n: int, *, approved: bool = True) -> dict[str, Any]:
    histories = [{"id": f"{n}00", "created": "2024-07-04T16:20:00.000+0000",
                  "author": {"name": "carol"},
                  "items": [{"field": "status", "fromString": "Open",
                             "toString": "Approved" if approved else "Rejected"}]}]
    return {
        "id": str(10000 + n), "key": f"DBA-{n}",
        "fields": {
            "summary": f"grant pg_read_all_data on pg-fin-01 ({n})",
            "status": {"name": "Approved"}, "issuetype": {"name": "Access Request"},
            "reporter": {"name": "alice"}, "assignee": {"name": "bob"},
            "created": "2024-07-03T09:00:00.000+0000", "updated": "2024-07-04T16:20:00.000+0000",
            "resolutiondate": None,
            "customfield_10401": {"name": "carol"}, "customfield_10402": "pg-fin-01",
            "customfield_99999": "not mapped, not requested",
        },
        "changelog": {"histories": histories},
    }


@pytest.fixture()
def services() -> Iterator[FakeServices]:
    with FakeServices(user=USER, token=CANARY) as fake:
        fake.add_jira_issues([issue(n) for n in range(1, 6)])
        yield fake


@pytest.fixture()
def run(tmp_path: Path, local_store: LocalStore) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=local_store, spool_dir=tmp_path / "spool")


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_TOKEN", CANARY)


def make_source(tmp_path: Path, **entry: Any) -> Source:
    entry = {"name": "jira-prod", "system": "tickets", "connector": "jira", **entry}
    return parse_config({"sources": [entry]}, path=None, base_dir=tmp_path, specs=SPECS).sources[0]


def online(tmp_path: Path, services: FakeServices, **extra: Any) -> Source:
    entry = {
        "url": services.url,
        "jql": 'project = DBA AND updated >= "{quarter_start}" AND created < "{quarter_end}"',
        "auth": {"type": "basic", "user": USER, "token": "${JIRA_TOKEN}"},
        "page_size": 2,
        "fields": {"approver": "fields.customfield_10401.name",
                   "cluster": "fields.customfield_10402", "approved_at": "changelog"},
        "types": {"access": ["Access Request"], "change": ["Change"]},
        "approved_statuses": ["Approved"],
        "retry": RETRY,
    }
    entry.update(extra)
    return make_source(tmp_path, **entry)


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


def loaded(run: SnapshotRun, local_store: LocalStore) -> list[RawRow | Reject]:
    items: list[Any] = []
    for record in pages_of(run):
        path = local_store.fetch(record.raw_output_s3_key, Path("unused"))
        rows = list(jira.load(record.query_params, path))
        assert jira.count_rows(record.query_params, path) == record.result_row_count == len(rows)
        items.extend(rows)
    return items


def assert_no_canary(run: SnapshotRun, local_store: LocalStore) -> None:
    for record in run.records:
        assert CANARY not in record.query_text
        assert CANARY not in json.dumps(record.query_params)
        assert CANARY not in record.raw_output_s3_key
    for key in local_store.list(""):
        assert CANARY not in key


def test_v2_pages_by_start_at_one_capture_per_page(tmp_path: Path, services: FakeServices,
                                                   run: SnapshotRun,
                                                   local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services), run)
    requests = services.requests_to(V2)
    assert [r.param("startAt") for r in requests] == ["0", "2", "4"]
    assert [r.param("maxResults") for r in requests] == ["2", "2", "2"]
    assert [r.result_row_count for r in pages_of(run)] == [2, 2, 1]
    first = pages_of(run)[0]
    assert first.source_system == "tickets"
    assert first.query_text.startswith(f"GET {services.url}{V2}?jql=project+%3D+DBA")
    assert "startAt=0&maxResults=2" in first.query_text
    sent = first.query_params.pop("request")
    assert first.query_params == {
        "api": "v2", "jql": 'project = DBA AND updated >= "2024-07-01" AND created < "2024-10-01"',
        "page": 0, "start_at": 0, "attempt": 1, "source": "jira-prod", "connector": "jira",
        "raw_table": "raw.tickets"}
    # each page's evidence row says the request as the fake Jira received it: JQL, fields,
    # expand, paging, and nothing else
    for record, received in zip(pages_of(run), requests, strict=True):
        request = sent if record is first else record.query_params["request"]
        assert request["method"] == received.method == "GET"
        assert request["url"] == f"{services.url}{V2}"
        assert request["query"] == {name: values[0] for name, values in received.query.items()}
    assert sent["query"]["jql"] == first.query_params["jql"]
    assert sent["query"]["fields"].split(",") == [
        *jira.STANDARD_JIRA_FIELDS, "customfield_10401", "customfield_10402"]
    assert sent["query"]["expand"] == "changelog"
    assert first.raw_output_s3_key.endswith("/raw/tickets/jira-prod/jira-search-00000.json")
    rows = loaded(run, local_store)
    assert [raw_doc(r)["key"] for r in rows if isinstance(r, RawRow)] == [
        f"DBA-{n}" for n in range(1, 6)]
    assert [r.locator for r in rows][:3] == ["jira-search-00000.json#0",
                                             "jira-search-00000.json#1",
                                             "jira-search-00001.json#0"]
    assert_no_canary(run, local_store)


def test_the_stored_page_is_the_response_byte_for_byte(tmp_path: Path, services: FakeServices,
                                                       run: SnapshotRun,
                                                       local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services), run)
    stored = local_store.fetch(pages_of(run)[0].raw_output_s3_key, Path("unused")).read_bytes()
    document = json.loads(stored)
    assert stored == json.dumps(document).encode()  # the fake's exact serialisation
    assert document["startAt"] == 0 and document["total"] == 5


def test_v2_follows_the_servers_page_size_when_it_caps_max_results(
        tmp_path: Path, run: SnapshotRun) -> None:
    with FakeServices(user=USER, token=CANARY, jira_max_results=2) as services:
        services.add_jira_issues([issue(n) for n in range(1, 6)])
        jira.snapshot(online(tmp_path, services, page_size=100), run)
        assert [r.param("startAt") for r in services.requests_to(V2)] == ["0", "2", "4"]
    assert sum(r.result_row_count for r in pages_of(run)) == 5


def test_v3_pages_by_next_page_token_until_is_last(tmp_path: Path, services: FakeServices,
                                                   run: SnapshotRun,
                                                   local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services, api="v3"), run)
    requests = services.requests_to(V3)
    assert len(requests) == 3
    assert requests[0].param("nextPageToken") is None
    assert requests[1].param("nextPageToken") and requests[2].param("nextPageToken")
    assert requests[1].param("nextPageToken") != requests[2].param("nextPageToken")
    assert [r.query_params["api"] for r in pages_of(run)] == ["v3"] * 3
    assert [r.query_params["request"]["query"] for r in pages_of(run)] == [
        {name: values[0] for name, values in received.query.items()} for received in requests]
    [count] = services.requests_to("/rest/api/3/search/approximate-count")
    first = pages_of(run)[0].query_params
    assert first["count_request"] == {
        "method": count.method, "url": f"{services.url}{count.path}", "query": {},
        "body": json.loads(count.body)}
    assert first["count_request"]["body"]["jql"] == first["request"]["query"]["jql"]
    rows = loaded(run, local_store)
    assert len(rows) == 5 and all(isinstance(r, RawRow) for r in rows)


def test_changelog_is_expanded_when_approval_time_comes_from_it(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services), run)
    assert services.requests_to(V2)[0].param("expand") == "changelog"
    doc = raw_doc(loaded(run, local_store)[0])
    assert doc["changelog"]["histories"][0]["items"][0]["toString"] == "Approved"


def test_no_changelog_without_a_changelog_mapping(tmp_path: Path, services: FakeServices,
                                                  run: SnapshotRun,
                                                  local_store: LocalStore) -> None:
    source = online(tmp_path, services,
                    fields={"approved_at": "fields.resolutiondate", "approver": "fields.x.name"})
    jira.snapshot(source, run)
    assert services.requests_to(V2)[0].param("expand") is None
    doc = raw_doc(loaded(run, local_store)[0])
    assert "changelog" not in doc


def test_mapped_custom_fields_are_requested_and_captured(tmp_path: Path, services: FakeServices,
                                                         run: SnapshotRun,
                                                         local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services), run)
    requested = services.requests_to(V2)[0].param("fields") or ""
    assert {"customfield_10401", "customfield_10402", "status", "issuetype"} <= set(
        requested.split(","))
    doc = raw_doc(loaded(run, local_store)[0])
    assert doc["fields"]["customfield_10401"] == {"name": "carol"}
    assert doc["fields"]["customfield_10402"] == "pg-fin-01"
    assert "customfield_99999" not in doc["fields"]


def test_settings_carry_fields_types_statuses_and_zone(tmp_path: Path,
                                                       services: FakeServices) -> None:
    rows = jira.settings(online(tmp_path, services, timezone="Europe/Berlin"))
    assert ("field", "approver", "fields.customfield_10401.name") in rows
    assert ("field", "approved_at", "changelog") in rows
    assert ("field", "ticket_key", "key") in rows
    assert ("type", "Access Request", "access") in rows and ("type", "Change", "change") in rows
    assert ("approved_status", "Approved", "true") in rows
    assert ("timezone", "", "Europe/Berlin") in rows
    assert not any(CANARY in str(v) for row in rows for v in row)


@pytest.mark.parametrize("fault", ["429", "500", "truncate", "garble"])
def test_a_transient_fault_then_success_captures_every_issue_once(
        tmp_path: Path, services: FakeServices, run: SnapshotRun, local_store: LocalStore,
        fault: str) -> None:
    services.inject(V2, fault, after=1)  # the second page fails once
    jira.snapshot(online(tmp_path, services), run)
    assert [r.fault for r in services.requests_to(V2)] == [None, fault, None, None]
    keys = [raw_doc(r)["key"] for r in loaded(run, local_store) if isinstance(r, RawRow)]
    assert keys == [f"DBA-{n}" for n in range(1, 6)]


def test_a_source_that_goes_down_fails_naming_it_and_captures_nothing(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.inject(V2, "down", after=1)
    with pytest.raises(SourceError) as failure:
        jira.snapshot(online(tmp_path, services), run)
    message = str(failure.value)
    assert message.startswith("source 'jira-prod': GET ") and "startAt=2" in message
    assert "connection failed" in message and CANARY not in message
    # the search is held until it is whole: a search cut short leaves no page behind
    assert run.records == [] and list(local_store.list("")) == []
    assert_no_canary(run, local_store)


def test_a_wrong_token_fails_at_once_and_captures_nothing(tmp_path: Path,
                                                          services: FakeServices,
                                                          run: SnapshotRun,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_TOKEN", CANARY + "-expired")
    with pytest.raises(SourceError, match="HTTP 401") as failure:
        jira.snapshot(online(tmp_path, services), run)
    assert CANARY not in str(failure.value)
    assert len(services.requests) == 1 and run.records == []


def test_a_literal_token_never_reaches_the_evidence(tmp_path: Path, services: FakeServices,
                                                    run: SnapshotRun,
                                                    local_store: LocalStore) -> None:
    source = online(tmp_path, services, auth={"type": "bearer", "token": CANARY})
    services.inject(V2, "500", times=100, after=1)
    with pytest.raises(SourceError) as failure:
        jira.snapshot(source, run)
    assert CANARY not in str(failure.value)
    assert services.requests[0].headers["Authorization"] == f"Bearer {CANARY}"
    assert_no_canary(run, local_store)


def test_saved_pages_are_captured_as_is_and_loaded(tmp_path: Path, run: SnapshotRun,
                                                   local_store: LocalStore) -> None:
    pages = tmp_path / "exports"
    pages.mkdir()
    first = json.dumps({"startAt": 0, "maxResults": 2, "total": 3,
                        "issues": [issue(1), issue(2)]}, indent=2).encode()
    (pages / "page-1.json").write_bytes(first)
    (pages / "page-2.json").write_bytes(json.dumps({"issues": [issue(3)], "isLast": True}).encode())
    (pages / "page-3.json").write_bytes(b'{"issues": [')
    jira.snapshot(make_source(tmp_path, path="exports/page-*.json"), run)
    assert [r.query_params["api"] for r in pages_of(run)] == ["file"] * 3
    # what each saved page itself records of its search, and the file read
    assert pages_of(run)[0].query_text == (
        f"read saved Jira search page {pages / 'page-1.json'} (startAt 0, maxResults 2, "
        "total 3; 2 issues; the page records no JQL)")
    assert [(r.query_params["file"], r.query_params["saved_page"]) for r in pages_of(run)] == [
        ("page-1.json", {"startAt": 0, "maxResults": 2, "total": 3, "issues": 2}),
        ("page-2.json", {"isLast": True, "issues": 1}),
        ("page-3.json", {"readable": False})]
    stored = local_store.fetch(pages_of(run)[0].raw_output_s3_key, Path("unused"))
    assert stored.read_bytes() == first
    items = loaded(run, local_store)
    assert [raw_doc(i)["key"] for i in items if isinstance(i, RawRow)] == ["DBA-1", "DBA-2",
                                                                             "DBA-3"]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(rejects) == 1 and rejects[0].reason.startswith("not valid JSON")
    assert rejects[0].raw_text == '{"issues": ['


def test_load_rejects_records_that_are_not_issues(tmp_path: Path) -> None:
    page = tmp_path / "odd.json"
    page.write_text(json.dumps({"issues": [{"key": "DBA-1"}, "DBA-2"]}))
    items = list(jira.load({}, page))
    assert isinstance(items[0], RawRow) and items[0].locator == "odd.json#0"
    assert isinstance(items[1], Reject) and items[1].locator == "odd.json#1"
    page.write_text(json.dumps({"errorMessages": ["bad jql"]}))
    assert [type(i) for i in jira.load({}, page)] == [Reject]


# ---------------------------------------------------------------------------
# completeness


def test_a_whole_search_states_the_servers_total_and_no_finding(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services), run)
    assert len(services.requests_to(V2)) == 3  # no retry
    doc = statement(run, local_store)
    assert (doc["basis"], doc["claimed"], doc["captured"], doc["approximate"]) == (
        "server_total", 5, 5, False)
    assert doc["findings"] == [] and doc["facts"]["retried"] is False
    assert doc["facts"]["attempts"][0]["totals_seen"] == [5]


def test_a_page_that_drops_an_issue_is_a_count_mismatch_after_one_retry(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.hidden_keys.add("DBA-3")  # counted in `total`, never returned
    jira.snapshot(online(tmp_path, services), run)
    starts = [r.param("startAt") for r in services.requests_to(V2)]
    assert starts == ["0", "2", "3", "0", "2", "3"]  # the whole search ran twice
    assert {r.query_params["attempt"] for r in pages_of(run)} == {2}
    doc = statement(run, local_store)
    assert codes(doc) == ["COUNT_MISMATCH"]
    [finding] = doc["findings"]
    assert finding["exception"] is True
    assert "after one retry" in finding["detail"] and "its total is 5" in finding["detail"]
    assert "DBA-4" in finding["detail"]  # the key the shifted offsets fetched twice
    assert doc["facts"]["population_attempt"] == 2
    assert [a["distinct"] for a in doc["facts"]["attempts"]] == [4, 4]
    keys = [raw_doc(r)["key"] for r in loaded(run, local_store) if isinstance(r, RawRow)]
    assert "DBA-3" not in keys


def test_a_search_that_shifts_under_paging_and_settles_on_retry_has_no_finding(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    # an issue is created between the first and the second page request
    services.on_request(V2, 1, lambda: services.jira_issues.insert(0, issue(0)))
    jira.snapshot(online(tmp_path, services), run)
    assert len(services.requests_to(V2)) == 3 + 3
    doc = statement(run, local_store)
    assert doc["findings"] == [] and (doc["claimed"], doc["captured"]) == (6, 6)
    first, second = doc["facts"]["attempts"]
    assert first["totals_seen"] == [5, 6] and first["duplicates"] == ["DBA-2"]
    assert second["totals_seen"] == [6] and second["duplicates"] == []
    assert doc["facts"]["keys_only_in_retry"] == ["DBA-0"]
    keys = [raw_doc(r)["key"] for r in loaded(run, local_store) if isinstance(r, RawRow)]
    assert sorted(keys) == sorted(f"DBA-{n}" for n in range(6))


def test_v3_compares_with_the_approximate_count_and_says_it_is_approximate(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    jira.snapshot(online(tmp_path, services, api="v3"), run)
    [count] = services.requests_to("/rest/api/3/search/approximate-count")
    assert count.method == "POST" and json.loads(count.body)["jql"].startswith("project = DBA")
    assert count.headers["Authorization"].startswith("Basic ")
    doc = statement(run, local_store)
    assert (doc["basis"], doc["approximate"], doc["claimed"], doc["captured"]) == (
        "approximate_total", True, 5, 5)
    assert doc["findings"] == []
    assert pages_of(run)[0].query_params["approximate_count"] == 5


def test_v3_short_of_the_approximate_count_after_a_retry_is_a_count_mismatch(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.hidden_keys.add("DBA-3")
    jira.snapshot(online(tmp_path, services, api="v3"), run)
    assert len(services.requests_to("/rest/api/3/search/approximate-count")) == 2
    doc = statement(run, local_store)
    assert codes(doc) == ["COUNT_MISMATCH"] and doc["approximate"] is True
    assert "approximate count is 5, 4 items were captured" in doc["findings"][0]["detail"]


def _saved(folder: Path, name: str, start: int, total: int, keys: list[int]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps({"startAt": start, "maxResults": 2, "total": total,
                                           "issues": [issue(n) for n in keys]}))


def test_whole_saved_pages_have_a_whole_sequence(tmp_path: Path, run: SnapshotRun,
                                                 local_store: LocalStore) -> None:
    folder = tmp_path / "exports"
    _saved(folder, "p1.json", 0, 5, [1, 2])
    _saved(folder, "p2.json", 2, 5, [3, 4])
    _saved(folder, "p3.json", 4, 5, [5])
    jira.snapshot(make_source(tmp_path, path="exports/p*.json"), run)
    doc = statement(run, local_store)
    assert (doc["basis"], doc["claimed"], doc["captured"], doc["findings"]) == (
        "page_sequence", 5, 5, [])


def test_saved_pages_with_a_gap_are_a_missing_page_naming_it(
        tmp_path: Path, run: SnapshotRun, local_store: LocalStore) -> None:
    folder = tmp_path / "exports"
    _saved(folder, "p1.json", 0, 7, [1, 2])
    _saved(folder, "p2.json", 2, 7, [3])      # lost one issue: the next page starts at 4
    _saved(folder, "p4.json", 6, 7, [7])      # p3 (startAt 4) is missing altogether
    jira.snapshot(make_source(tmp_path, path="exports/p*.json"), run)
    doc = statement(run, local_store)
    assert codes(doc) == ["MISSING_PAGE"]
    [gap] = [f["detail"] for f in doc["findings"]]
    assert gap == ("search positions 3-5 (3 issues) in no saved page: p2.json (startAt 2) "
                   "holds 1, p4.json starts at 6")
    assert (doc["claimed"], doc["captured"]) == (7, 4)


def test_saved_pages_that_stop_short_of_the_total_are_a_missing_page(
        tmp_path: Path, run: SnapshotRun, local_store: LocalStore) -> None:
    folder = tmp_path / "exports"
    _saved(folder, "p1.json", 0, 5, [1, 2])
    _saved(folder, "p2.json", 2, 5, [3, 4])
    jira.snapshot(make_source(tmp_path, path="exports/p*.json"), run)
    doc = statement(run, local_store)
    assert [f["detail"] for f in doc["findings"]] == [
        "search position 4 (1 issue) in no saved page: the pages hold positions up to 3 of "
        "a total of 5 (the last, p2.json, starts at 2 and holds 2)"]


def test_saved_v3_pages_state_no_total_and_need_a_last_page(
        tmp_path: Path, run: SnapshotRun, local_store: LocalStore) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "p1.json").write_text(json.dumps({"issues": [issue(1)], "nextPageToken": "x",
                                                "isLast": False}))
    jira.snapshot(make_source(tmp_path, path="exports/p*.json"), run)
    doc = statement(run, local_store)
    assert codes(doc) == ["MISSING_PAGE", "NO_TOTAL_AVAILABLE"]
    assert [f["exception"] for f in doc["findings"]] == [False, True]
    assert doc["basis"] == "no_total" and doc["claimed"] is None
