"""The retrying HTTP client against a real local server (tests/support/fake_services.py)."""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Iterator

import pytest

from extract.connectors import http
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import Source
from tests.support.fake_services import FakeServices, http_date

CANARY = "canary-7f3a9c1e-do-not-leak"
SEARCH = "/rest/api/2/search"
FAST = http.RetryPolicy(attempts=4, budget_seconds=5.0, backoff_seconds=0.01,
                        backoff_max_seconds=0.02, connect_timeout_seconds=1.0,
                        read_timeout_seconds=1.0)


class FakeClock:
    """A clock that only moves when the client sleeps: waits are recorded, not spent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def services() -> Iterator[FakeServices]:
    with FakeServices(user="auditor@example.com", token=CANARY) as fake:
        fake.add_jira_issues([{"id": str(i), "key": f"DBA-{i}", "fields": {"summary": f"s{i}"}}
                              for i in range(3)])
        yield fake


def client(policy: http.RetryPolicy = FAST, clock: FakeClock | None = None,
           auth: http.Auth | None = None) -> http.HttpClient:
    auth = auth or http.Auth("bearer", CANARY)
    if clock is None:
        return http.HttpClient("jira-prod", auth=auth, policy=policy, rng=random.Random(7))
    return http.HttpClient("jira-prod", auth=auth, policy=policy, sleep=clock.sleep,
                           clock=clock, rng=random.Random(7))


def test_a_response_is_returned_byte_for_byte_with_its_json(services: FakeServices) -> None:
    with client() as api:
        response = api.get(services.url + SEARCH, {"jql": "project = DBA", "maxResults": 2})
    assert response.data["total"] == 3 and len(response.data["issues"]) == 2
    assert response.body == json.dumps(response.data).encode()
    assert services.requests[0].headers["Authorization"] == f"Bearer {CANARY}"


def test_429_then_success_is_retried(services: FakeServices) -> None:
    services.inject(SEARCH, "429", times=2, retry_after="0")
    with client() as api:
        response = api.get(services.url + SEARCH)
    assert response.attempts == 3
    assert [r.fault for r in services.requests_to(SEARCH)] == ["429", "429", None]


def test_retry_after_seconds_is_honoured(services: FakeServices) -> None:
    services.inject(SEARCH, "429", retry_after="30")
    clock = FakeClock()
    with client(http.RetryPolicy(attempts=3, budget_seconds=100, backoff_seconds=0.01),
                clock) as api:
        api.get(services.url + SEARCH)
    assert len(clock.sleeps) == 1 and 30 <= clock.sleeps[0] < 30.1


def test_retry_after_http_date_is_honoured(services: FakeServices) -> None:
    services.inject(SEARCH, "429", retry_after=http_date(45))
    clock = FakeClock()
    with client(http.RetryPolicy(attempts=3, budget_seconds=100, backoff_seconds=0.01),
                clock) as api:
        api.get(services.url + SEARCH)
    assert len(clock.sleeps) == 1 and 43.5 <= clock.sleeps[0] <= 46


def test_okta_rate_limit_reset_is_honoured(services: FakeServices) -> None:
    services.inject(SEARCH, "429", rate_limit_reset_in=20)
    clock = FakeClock()
    with client(http.RetryPolicy(attempts=3, budget_seconds=100, backoff_seconds=0.01),
                clock) as api:
        api.get(services.url + SEARCH)
    assert len(clock.sleeps) == 1 and 18.5 <= clock.sleeps[0] <= 21.5


def test_an_exhausted_rate_limit_window_holds_the_next_request(services: FakeServices) -> None:
    services.okta_rate_limit_remaining = 0
    services.add_okta_events([])
    clock = FakeClock()
    api = http.HttpClient("okta", auth=http.Auth("ssws", CANARY), sleep=clock.sleep, clock=clock,
                          policy=http.RetryPolicy(budget_seconds=100))
    with api:
        api.get(services.url + "/api/v1/logs")
        assert clock.sleeps == []
        api.get(services.url + "/api/v1/logs")
    assert len(clock.sleeps) == 1 and 58.5 <= clock.sleeps[0] <= 61


def test_a_wait_beyond_the_time_budget_fails_at_once(services: FakeServices) -> None:
    services.inject(SEARCH, "429", times=10, retry_after="3600")
    clock = FakeClock()
    with client(http.RetryPolicy(attempts=5, budget_seconds=60), clock) as api:
        with pytest.raises(SourceError) as failure:
            api.get(services.url + SEARCH)
    assert clock.sleeps == []
    assert len(services.requests) == 1
    message = str(failure.value)
    assert "'jira-prod'" in message and "60s retry budget" in message and "3600s" in message


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_then_success_is_retried(services: FakeServices, status: int) -> None:
    services.inject(SEARCH, "500", status=status)
    with client() as api:
        assert api.get(services.url + SEARCH).attempts == 2


def test_a_truncated_body_is_retried(services: FakeServices) -> None:
    services.inject(SEARCH, "truncate")
    with client() as api:
        response = api.get(services.url + SEARCH)
    assert response.attempts == 2 and response.data["total"] == 3


def test_json_that_does_not_parse_is_retried(services: FakeServices) -> None:
    services.inject(SEARCH, "garble")
    with client() as api:
        response = api.get(services.url + SEARCH)
    assert response.attempts == 2 and len(response.data["issues"]) == 3


def test_a_dropped_connection_is_retried(services: FakeServices) -> None:
    services.inject(SEARCH, "reset")
    with client() as api:
        assert api.get(services.url + SEARCH).attempts == 2


def test_a_hang_longer_than_the_read_timeout_is_retried(services: FakeServices) -> None:
    services.inject(SEARCH, "hang", seconds=1.5)
    policy = http.RetryPolicy(attempts=3, budget_seconds=5, backoff_seconds=0.01,
                              read_timeout_seconds=0.2)
    started = time.monotonic()
    with client(policy) as api:
        response = api.get(services.url + SEARCH)
    assert response.attempts == 2
    assert time.monotonic() - started < 1.0


def test_the_time_budget_bounds_a_source_that_keeps_hanging(services: FakeServices) -> None:
    services.inject(SEARCH, "hang", times=50, seconds=2)
    policy = http.RetryPolicy(attempts=50, budget_seconds=0.5, backoff_seconds=0.01,
                              read_timeout_seconds=0.2)
    started = time.monotonic()
    with client(policy) as api, pytest.raises(SourceError, match="timed out"):
        api.get(services.url + SEARCH)
    assert time.monotonic() - started < 1.2
    assert len(services.requests) < 5


def test_attempts_are_bounded_and_the_error_names_source_url_and_last_error(
        services: FakeServices) -> None:
    services.inject(SEARCH, "500", times=100)
    with client() as api, pytest.raises(SourceError) as failure:
        api.get(services.url + SEARCH, {"jql": "project = DBA"})
    assert len(services.requests) == FAST.attempts
    message = str(failure.value)
    assert message.startswith("source 'jira-prod': GET http://127.0.0.1:")
    assert "jql=project+%3D+DBA" in message
    assert "after 4 attempt(s)" in message and "HTTP 500" in message


def test_a_source_that_is_down_fails_with_a_connection_error(services: FakeServices) -> None:
    services.down()
    with client() as api, pytest.raises(SourceError) as failure:
        api.get(services.url + SEARCH)
    assert "'jira-prod'" in str(failure.value) and "connection failed" in str(failure.value)
    assert "after 4 attempt(s)" in str(failure.value)


def test_a_source_can_come_back_after_being_down(services: FakeServices) -> None:
    services.down()
    services.up()
    with client() as api:
        assert api.get(services.url + SEARCH).attempts == 1


def test_401_fails_at_once_without_leaking_the_token(services: FakeServices) -> None:
    wrong = http.Auth("basic", CANARY + "-wrong", user="auditor@example.com")
    with client(auth=wrong) as api, pytest.raises(SourceError) as failure:
        api.get(services.url + SEARCH)
    assert len(services.requests) == 1
    assert "HTTP 401" in str(failure.value) and "authentication failed" in str(failure.value)
    assert CANARY not in str(failure.value)
    assert CANARY not in repr(wrong)


def test_basic_auth_sends_user_and_token(services: FakeServices) -> None:
    with client(auth=http.Auth("basic", CANARY, user="auditor@example.com")) as api:
        api.get(services.url + SEARCH)
    header = services.requests[0].headers["Authorization"]
    assert header == "Basic " + base64.b64encode(f"auditor@example.com:{CANARY}".encode()).decode()


def test_okta_tokens_are_sent_as_ssws(services: FakeServices) -> None:
    services.add_okta_events([])
    with http.HttpClient("okta", auth=http.Auth("ssws", CANARY), policy=FAST) as api:
        api.get(services.url + "/api/v1/logs")
    assert services.requests[0].headers["Authorization"] == f"SSWS {CANARY}"


def test_tokens_in_urls_and_logs_are_redacted(services: FakeServices,
                                              caplog: pytest.LogCaptureFixture) -> None:
    services.inject(SEARCH, "500", times=100)
    caplog.set_level(logging.DEBUG)
    with client() as api, pytest.raises(SourceError) as failure:
        api.get(services.url + SEARCH, {"token": CANARY, "jql": "x"})
    assert CANARY not in str(failure.value) and "token=***" in str(failure.value)
    assert "retry 1/3" in caplog.text
    assert CANARY not in caplog.text
    assert CANARY not in http.HttpClient.describe(services.url + SEARCH, {"token": CANARY})


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = http.RetryPolicy(backoff_seconds=0.5, backoff_max_seconds=4)
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # jitter covers the range, not a constant


def test_server_wait_reads_retry_after_and_rate_limit_reset() -> None:
    date = "Mon, 01 Jul 2024 10:00:00 GMT"
    assert http.server_wait({"Retry-After": "12"}) == 12
    assert http.server_wait({"Retry-After": "Mon, 01 Jul 2024 10:00:30 GMT", "Date": date}) == 30
    assert http.server_wait({"X-Rate-Limit-Reset": "1719828045", "Date": date}) == 45
    assert http.server_wait({"X-Rate-Limit-Reset": "1719828000", "Date": date}) == 0
    assert http.server_wait({"Retry-After": "soon"}) is None
    assert http.server_wait({}) is None


def test_retry_settings_come_from_the_source_and_are_validated() -> None:
    source = Source("jira-prod", "tickets", "jira",
                    {"retry": {"attempts": 2, "budget_seconds": 1.5}})
    policy = http.RetryPolicy.from_source(source)
    assert policy.attempts == 2 and policy.budget_seconds == 1.5
    with pytest.raises(ConfigError, match="retry: unknown key"):
        http.RetryPolicy.from_source(Source("s", "tickets", "jira", {"retry": {"tries": 2}}))
    with pytest.raises(ConfigError, match="attempts"):
        http.RetryPolicy.from_source(Source("s", "tickets", "jira", {"retry": {"attempts": 0}}))


def test_auth_config_is_validated_without_echoing_the_token() -> None:
    with pytest.raises(ConfigError, match=r"auth\.type") as failure:
        http.auth_from(Source("s", "tickets", "jira",
                              {"auth": {"type": "digest", "token": CANARY}}))
    assert CANARY not in str(failure.value)
    with pytest.raises(ConfigError, match=r"auth\.user"):
        http.auth_from(Source("s", "tickets", "jira", {"auth": {"type": "basic", "token": "x"}}))
    assert http.auth_from(Source("s", "tickets", "jira", {})) is None
