"""Connector `okta_system_log` against the fake Okta System Log (Link-header paging)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extract.connectors import okta_system_log
from extract.connectors.registry import SPECS
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import COMPLETENESS_QUERY, RawRow, Source
from soxtrail.kernel.store import LocalStore
from tests.support.fake_services import FakeServices, utc
from tests.support.rows import doc as raw_doc

CANARY = "canary-okta-00c0ffee"
LOGS = "/api/v1/logs"
RETRY = {"attempts": 4, "budget_seconds": 5, "backoff_seconds": 0.01,
         "backoff_max_seconds": 0.02, "connect_timeout_seconds": 1, "read_timeout_seconds": 1}


def event(n: int, event_type: str = "user.lifecycle.deactivate",
          published: str | None = None) -> dict[str, Any]:
    return {
        "uuid": f"evt-{n:04d}", "published": published or f"2024-08-{n:02d}T10:00:00.000Z",
        "eventType": event_type, "displayMessage": "Deactivate Okta user",
        "actor": {"id": "00u-admin", "type": "User", "alternateId": "admin@example.com",
                  "displayName": "Admin"},
        "target": [{"id": f"00u-{n}", "type": "User", "alternateId": f"user{n}@example.com",
                    "displayName": f"User {n}"}],
        "outcome": {"result": "SUCCESS"},
    }


@pytest.fixture()
def services() -> Iterator[FakeServices]:
    with FakeServices(token=CANARY) as fake:
        fake.add_okta_events([event(n) for n in range(1, 6)])
        fake.add_okta_events([
            event(90, "user.session.start", "2024-08-15T00:00:00.000Z"),  # filtered out
            event(91, published="2024-06-30T23:59:59.000Z"),              # before the quarter
            event(92, published="2024-10-01T00:00:00.000Z"),              # after it
        ])
        yield fake


@pytest.fixture()
def run(tmp_path: Path, local_store: LocalStore) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=local_store, spool_dir=tmp_path / "spool")


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKTA_API_TOKEN", CANARY)


def source(tmp_path: Path, services: FakeServices, **extra: Any) -> Source:
    entry = {"name": "okta", "system": "iam", "connector": "okta_system_log",
             "url": services.url, "token": "${OKTA_API_TOKEN}", "page_size": 2, "retry": RETRY,
             **extra}
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
        rows = list(okta_system_log.load(record.query_params, path))
        assert okta_system_log.count_rows(record.query_params, path) == record.result_row_count
        assert record.result_row_count == len(rows)
        items.extend(rows)
    return items


def assert_no_canary(run: SnapshotRun, local_store: LocalStore) -> None:
    for record in run.records:
        assert CANARY not in record.query_text + json.dumps(record.query_params)
        assert CANARY not in record.raw_output_s3_key
    assert not any(CANARY in key for key in local_store.list(""))


def test_pages_follow_the_link_header_for_the_quarter(tmp_path: Path, services: FakeServices,
                                                      run: SnapshotRun,
                                                      local_store: LocalStore) -> None:
    okta_system_log.snapshot(source(tmp_path, services), run)
    requests = services.requests_to(LOGS)
    assert len(requests) == 3
    assert requests[0].param("since") == "2024-07-01T00:00:00.000Z"
    assert requests[0].param("until") == "2024-10-01T00:00:00.000Z"
    assert requests[0].param("after") is None
    assert requests[1].param("after") and requests[2].param("after")
    assert all(r.headers["Authorization"] == f"SSWS {CANARY}" for r in requests)
    items = loaded(run, local_store)
    assert all(isinstance(i, RawRow) for i in items)
    assert [raw_doc(i)["uuid"] for i in items] == [f"evt-{n:04d}" for n in range(1, 6)]
    assert items[0].locator == "okta-logs-00000.json#0"
    assert [r.result_row_count for r in pages_of(run)] == [2, 2, 1]
    assert pages_of(run)[0].source_system == "iam"
    assert pages_of(run)[0].query_params["raw_table"] == "raw.iam_events"
    assert pages_of(run)[1].query_text.startswith(f"GET {services.url}{LOGS}?")
    assert "after=" in pages_of(run)[1].query_text
    # each page's evidence row says the request as the fake Okta received it (a following
    # page's query is the `next` link's)
    for page, received in zip(pages_of(run), requests, strict=True):
        assert page.query_params["request"] == {
            "method": received.method, "url": f"{services.url}{received.path}",
            "query": {name: values[0] for name, values in received.query.items()}}
    assert pages_of(run)[0].query_params["request"]["query"]["since"] == \
        pages_of(run)[0].query_params["since"]
    assert_no_canary(run, local_store)


def test_default_event_types_become_an_eventtype_filter(tmp_path: Path, services: FakeServices,
                                                        run: SnapshotRun) -> None:
    okta_system_log.snapshot(source(tmp_path, services), run)
    sent = services.requests_to(LOGS)[0].param("filter") or ""
    assert 'eventType eq "user.lifecycle.deactivate"' in sent
    assert 'eventType eq "group.user_membership.remove"' in sent and " or " in sent
    assert pages_of(run)[0].query_params["filter"] == sent


def test_an_empty_event_type_list_asks_for_every_event(tmp_path: Path, services: FakeServices,
                                                       run: SnapshotRun,
                                                       local_store: LocalStore) -> None:
    okta_system_log.snapshot(source(tmp_path, services, event_types=[], page_size=100), run)
    assert services.requests_to(LOGS)[0].param("filter") is None
    assert len(loaded(run, local_store)) == 6  # the session event too, not the out-of-quarter


def test_429_with_rate_limit_reset_then_success(tmp_path: Path, services: FakeServices,
                                                run: SnapshotRun,
                                                local_store: LocalStore) -> None:
    services.inject(LOGS, "429", after=1, rate_limit_reset_in=0)
    okta_system_log.snapshot(source(tmp_path, services), run)
    assert [r.fault for r in services.requests_to(LOGS)] == [None, "429", None, None]
    assert len(loaded(run, local_store)) == 5


@pytest.mark.parametrize("fault", ["500", "truncate", "garble", "reset"])
def test_a_transient_fault_then_success_captures_every_event_once(
        tmp_path: Path, services: FakeServices, run: SnapshotRun, local_store: LocalStore,
        fault: str) -> None:
    services.inject(LOGS, fault, after=2)
    okta_system_log.snapshot(source(tmp_path, services), run)
    assert [raw_doc(i)["uuid"] for i in loaded(run, local_store)] == [
        f"evt-{n:04d}" for n in range(1, 6)]


def test_a_source_that_stays_down_fails_naming_it(tmp_path: Path, services: FakeServices,
                                                  run: SnapshotRun,
                                                  local_store: LocalStore) -> None:
    services.inject(LOGS, "down", after=1)
    with pytest.raises(SourceError) as failure:
        okta_system_log.snapshot(source(tmp_path, services), run)
    message = str(failure.value)
    assert message.startswith("source 'okta': GET ") and "after=" in message
    assert "connection failed" in message and CANARY not in message
    assert [r.query_params["page"] for r in run.records] == [0]
    assert len(list(local_store.list(""))) == 1


def test_a_next_link_to_another_host_is_not_followed(tmp_path: Path, services: FakeServices,
                                                     run: SnapshotRun) -> None:
    services.okta_link_base = "http://127.0.0.2:9"
    with pytest.raises(SourceError, match="another host") as failure:
        okta_system_log.snapshot(source(tmp_path, services), run)
    assert CANARY not in str(failure.value)
    assert len(services.requests) == 1 and len(run.records) == 1


def test_a_revoked_token_fails_at_once_without_leaking_it(tmp_path: Path,
                                                          services: FakeServices,
                                                          run: SnapshotRun) -> None:
    entry_token = CANARY + "-revoked"
    with pytest.raises(SourceError, match=r"HTTP 401.*E0000011") as failure:
        okta_system_log.snapshot(source(tmp_path, services, token=entry_token), run)
    assert CANARY not in str(failure.value) and run.records == []


def test_the_next_link_is_read_from_several_link_headers() -> None:
    headers = {"Link": '<https://x.okta.com/api/v1/logs?limit=2>; rel="self", '
                       '<https://x.okta.com/api/v1/logs?limit=2&after=abc>; rel="next"'}
    assert okta_system_log.next_link(headers) == "https://x.okta.com/api/v1/logs?limit=2&after=abc"
    assert okta_system_log.next_link({"Link": '<https://x>; rel="self"'}) is None
    assert okta_system_log.next_link({}) is None


# ---------------------------------------------------------------------------
# completeness: no total, and a log that forgets after about 90 days


def test_the_system_log_states_no_total_which_is_not_an_exception(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.server_time = utc("2024-10-02T00:00:00Z")
    okta_system_log.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert (doc["basis"], doc["claimed"], doc["captured"]) == ("no_total", None, 5)
    assert ("NO_TOTAL_AVAILABLE", False) in [(f["code"], f["exception"])
                                             for f in doc["findings"]]


def test_a_capture_90_days_after_the_quarter_start_misses_its_first_days(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.server_time = utc("2024-10-05T00:00:00Z")  # the log reaches back to 2024-07-07
    okta_system_log.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["covered"] == [{"from": "2024-07-07T00:00:00Z", "to": "2024-10-01T00:00:00Z"}]
    gaps = [f for f in doc["findings"] if f["code"] == "COVERAGE_GAP"]
    assert len(gaps) == 1 and gaps[0]["exception"] is True
    assert gaps[0]["detail"].startswith("2024-07-01T00:00:00Z to 2024-07-07T00:00:00Z: not "
                                        "covered by the capture of 2024-10-05T00:00:00Z")
    assert doc["facts"]["taken_at"] == "2024-10-05T00:00:00Z"


def test_a_mid_quarter_capture_covers_the_quarter_up_to_its_time(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.server_time = utc("2024-08-15T12:00:00Z")
    okta_system_log.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["covered"] == [{"from": "2024-07-01T00:00:00Z", "to": "2024-08-15T12:00:00Z"}]
    assert [f["detail"] for f in doc["findings"] if f["code"] == "COVERAGE_GAP"] == [
        "2024-08-15T12:00:00Z to 2024-10-01T00:00:00Z: after the capture of "
        "2024-08-15T12:00:00Z"]


def test_an_event_older_than_the_documented_window_extends_the_coverage(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.add_okta_events([event(93, published="2024-07-01T00:00:00.000Z")])
    services.server_time = utc("2024-10-05T00:00:00Z")
    okta_system_log.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["covered"] == [{"from": "2024-07-01T00:00:00Z", "to": "2024-10-01T00:00:00Z"}]
    assert codes(doc) == ["NO_TOTAL_AVAILABLE"]


def test_a_capture_long_after_the_quarter_covers_none_of_it(
        tmp_path: Path, services: FakeServices, run: SnapshotRun,
        local_store: LocalStore) -> None:
    services.okta_events.clear()
    services.server_time = utc("2025-03-01T00:00:00Z")
    okta_system_log.snapshot(source(tmp_path, services), run)
    doc = statement(run, local_store)
    assert doc["covered"] == [] and doc["captured"] == 0
    assert codes(doc) == ["COVERAGE_GAP", "NO_TOTAL_AVAILABLE"]
