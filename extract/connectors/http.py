"""A small retrying HTTP client for the REST connectors (Jira, ServiceNow, Okta).

GET for pages; `post_json` for the one read-only query sent as POST (Jira Cloud's
approximate count).

* Every request has a connect and a read timeout.
* 429, 5xx, connection errors, read timeouts and truncated bodies (fewer bytes
  than `Content-Length`, or JSON that does not parse) are retried (by tenacity) with
  exponential back-off and full jitter, honouring `Retry-After` (seconds or an
  HTTP date) and Okta's `X-Rate-Limit-Reset` (epoch seconds).
* Retries are bounded twice: an attempt count and a total time budget per
  request. When either runs out, :class:`~soxtrail.kernel.errors.SourceError` names the
  source, the URL (secrets redacted) and the last error.
* Other 4xx answers fail at once (a bad token or a bad query does not get better).
* Secrets never leave this module: the Authorization header is built here, the
  token is registered with :func:`soxtrail.kernel.secrets.remember`, and every URL or
  message that leaves is passed through :mod:`soxtrail.kernel.secrets` redaction.

The response body is returned byte for byte as received (after transfer and
content decoding), for the connectors to hand to ``ctx.capture``.

:func:`run_with_retries` is the same loop without HTTP, reused by the
``aws_backup`` connector around boto3 calls. The JSON page helpers the REST connectors
share (`page_size`, `json_records`, `PageCounter`, …) are in :mod:`extract.connectors.pages`.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
import requests.auth
import tenacity
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState

from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import Source

log = logging.getLogger("soxtrail.http")


class _RedactingFilter(logging.Filter):
    """Redact secrets from records of loggers we do not own (urllib3 logs full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logger's problem, not ours
            return True
        clean = secrets.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_RedactingFilter())

T = TypeVar("T")

# 501 Not Implemented and 505 HTTP Version Not Supported will not get better
NOT_RETRIED_5XX = frozenset({501, 505})
MAX_ERROR_BODY = 300
AUTH_SCHEMES = ("basic", "bearer", "ssws")
RETRY_KEYS = frozenset({
    "attempts", "budget_seconds", "backoff_seconds", "backoff_max_seconds",
    "connect_timeout_seconds", "read_timeout_seconds",
})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: attempts, time budget, back-off and timeouts."""

    attempts: int = 6
    budget_seconds: float = 300.0
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("retry.attempts: expected at least 1")
        for name in RETRY_KEYS - {"attempts"}:
            if getattr(self, name) < 0:
                raise ConfigError(f"retry.{name}: expected a non-negative number")

    @classmethod
    def from_source(cls, source: Source) -> RetryPolicy:
        """The source's optional `retry:` mapping over the defaults."""
        given = source.get("retry") or {}
        where = f"source {source.name!r}: retry"
        if not isinstance(given, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(sorted(RETRY_KEYS))}")
        unknown = set(given) - RETRY_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(allowed: {', '.join(sorted(RETRY_KEYS))})")
        values: dict[str, Any] = {}
        for key, value in given.items():
            try:
                values[key] = int(value) if key == "attempts" else float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}") from exc
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"source {source.name!r}: {exc}") from exc

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)], `retry` counted from 0."""
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * (2 ** min(retry, 32)))
        return rng.uniform(0.0, ceiling)


class Retryable(Exception):
    """A failed attempt worth repeating; `wait` is the delay the server asked for, if any."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class Permanent(Exception):
    """A failed attempt not worth repeating (4xx other than 429, bad configuration)."""


def run_with_retries(
    source_name: str,
    what: str,
    attempt: Callable[[float], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call `attempt(remaining_seconds)` until it returns, retrying on :class:`Retryable`.

    tenacity runs the loop; the policy sets its attempts, its back-off (or the server's
    longer wait) and its time budget, kept on `clock`. Raises SourceError naming the source,
    `what` (already redacted by the caller) and the last error once attempts run out or the
    next wait would end beyond the budget, and at once on :class:`Permanent`.
    """
    rng = rng or random.Random()
    started = clock()
    prefix = f"source {source_name!r}: {what} failed"
    if policy.budget_seconds <= 0:
        raise SourceError(f"{prefix} after 0 attempt(s) in 0.0s: no attempt made")

    def failure(state: RetryCallState) -> Retryable:  # tenacity retries nothing else
        return cast(Retryable, state.outcome and state.outcome.exception())

    def wait(state: RetryCallState) -> float:
        backoff, hint = policy.backoff(state.attempt_number - 1, rng), failure(state).wait
        return backoff if hint is None else max(backoff, hint)

    def stop(state: RetryCallState) -> bool:  # stop_before_delay, on our clock
        return (state.attempt_number >= policy.attempts
                or clock() - started + state.upcoming_sleep >= policy.budget_seconds)

    def log_retry(state: RetryCallState) -> None:
        log.warning("source %r: %s: %s; retry %d/%d in %.2fs", source_name, what,
                    secrets.redact(str(failure(state))), state.attempt_number,
                    policy.attempts - 1, state.upcoming_sleep)

    def give_up(state: RetryCallState) -> NoReturn:
        number, hint, why = state.attempt_number, failure(state).wait, ""
        if number < policy.attempts:  # stopped by the budget, not by the attempt count
            asked = f" (server asked to wait {hint:.0f}s)" if hint else ""
            why = f"; giving up within the {policy.budget_seconds:g}s retry budget{asked}"
        raise SourceError(f"{prefix} after {number} attempt(s) in {clock() - started:.1f}s"
                          f"{why}: {secrets.redact(str(failure(state)))}")

    retrying = tenacity.Retrying(
        stop=stop, wait=wait, sleep=sleep, retry=tenacity.retry_if_exception_type(Retryable),
        before_sleep=log_retry, retry_error_callback=give_up)
    try:
        return retrying(lambda: attempt(policy.budget_seconds - (clock() - started)))
    except Permanent as exc:
        raise SourceError(f"{prefix}: {secrets.redact(str(exc))}") from None


@dataclass(frozen=True)
class Auth:
    """Credentials for one source; the token never appears in a repr."""

    scheme: str
    token: str = field(repr=False)
    user: str | None = None

    def __post_init__(self) -> None:
        if self.scheme not in AUTH_SCHEMES:
            raise ConfigError(f"type: expected one of {', '.join(AUTH_SCHEMES)}, "
                              f"got {self.scheme!r}")
        if not self.token:
            raise ConfigError("token: empty")
        if self.scheme == "basic" and not self.user:
            raise ConfigError("user: required for basic auth")
        secrets.remember(self.token)
        if self.scheme == "basic":
            secrets.remember(self._basic())

    def _basic(self) -> str:
        return base64.b64encode(f"{self.user}:{self.token}".encode()).decode("ascii")

    def header(self) -> str:
        """The Authorization header value."""
        if self.scheme == "basic":
            return f"Basic {self._basic()}"
        if self.scheme == "bearer":
            return f"Bearer {self.token}"
        return f"SSWS {self.token}"


def auth_from(source: Source, key: str = "auth") -> Auth | None:
    """Parse an `auth:` mapping (`type: basic|bearer`, `user`, `token`); None when absent."""
    given = source.get(key)
    if given is None:
        return None
    where = f"source {source.name!r}: {key}"
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}: expected a mapping with type, user, token")
    unknown = set(given) - {"type", "user", "token"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                          "(allowed: type, user, token)")
    token = given.get("token")
    if token is not None:
        secrets.remember(str(token))
    scheme = str(given.get("type") or ("basic" if given.get("user") else "bearer")).lower()
    try:
        return Auth(scheme=scheme, token=str(token or ""),
                    user=None if given.get("user") is None else str(given["user"]))
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


class _HeaderAuth(requests.auth.AuthBase):
    """Sets the source's Authorization header on every request (none when no auth)."""

    def __init__(self, auth: Auth | None) -> None:
        self._header = auth.header() if auth is not None else None

    def __repr__(self) -> str:
        return "_HeaderAuth(***)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._header is not None:
            request.headers["Authorization"] = self._header
        return request


@dataclass(frozen=True)
class HttpResponse:
    """One successful response: the body exactly as received, and its JSON when asked for."""

    url: str
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes
    data: Any = None
    attempts: int = 1


def _number(value: str | None) -> float | None:
    try:
        return float(value or "")
    except (TypeError, ValueError):
        return None


def _http_time(value: str | None) -> float | None:
    """An HTTP date as epoch seconds (a date without a zone is UTC); None when it is not one."""
    try:
        when = parsedate_to_datetime(value or "")
    except (TypeError, ValueError, IndexError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def server_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` or `X-Rate-Limit-Reset`, else None.

    Dates are read against the server's own clock (its `Date` header), so skew does not matter.
    """
    server_now = _http_time(headers.get("Date"))
    if server_now is None:
        server_now = time.time() if now is None else now
    retry_after = (headers.get("Retry-After") or "").strip()
    seconds = _number(retry_after)
    if seconds is None and (when := _http_time(retry_after)) is not None:
        seconds = when - server_now
    if seconds is None and (reset := _number(headers.get("X-Rate-Limit-Reset"))) is not None:
        seconds = reset - server_now
    return None if seconds is None else max(0.0, seconds)


def _snippet(body: bytes) -> str:
    text = body[:MAX_ERROR_BODY].decode("utf-8", errors="replace").replace("\n", " ").strip()
    return text + ("…" if len(body) > MAX_ERROR_BODY else "")


class HttpClient:
    """GET with timeouts, retries, back-off and redaction, for one source."""

    def __init__(
        self,
        source_name: str,
        *,
        auth: Auth | None = None,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.source_name = source_name
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = requests.Session()
        # proxies and CA bundles from the environment still apply; .netrc does not, because
        # the session always has its own auth (requests only reads .netrc without one)
        self._session.auth = _HeaderAuth(auth)
        self._session.headers.update({"Accept": "application/json",
                                      "User-Agent": "soxtrail (+evidence snapshot)"})
        if headers:
            self._session.headers.update(headers)
        self._not_before = 0.0

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    @staticmethod
    def full_url(url: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL as it will be requested, query string included (not redacted)."""
        prepared = requests.Request("GET", url, params=dict(params or {})).prepare()
        return str(prepared.url)

    @staticmethod
    def describe(url: str, params: Mapping[str, Any] | None = None) -> str:
        """`GET <url with query string>`, secrets redacted: the evidence row's query_text."""
        return f"GET {secrets.redact_url(HttpClient.full_url(url, params))}"

    @staticmethod
    def sent(url: str, params: Mapping[str, Any] | None = None,
             method: str = "GET") -> dict[str, Any]:
        """The request as the source received it, for the evidence row's `request` key:
        `{method, url, query}`, `url` without its query string, `query` each parameter of
        the query string as sent (decoded; a list when repeated), secrets redacted."""
        parts = urlsplit(HttpClient.full_url(url, params))
        query: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in query:
                held = query[name]
                query[name] = [*held, value] if isinstance(held, list) else [held, value]
            else:
                query[name] = value
        return {"method": method,
                "url": secrets.redact_url(urlunsplit((*parts[:3], "", ""))),
                "query": secrets.redact_value(query)}

    def get(self, url: str, params: Mapping[str, Any] | None = None, *,
            expect_json: bool = True) -> HttpResponse:
        """GET `url`, retrying per the policy; the body must parse as JSON when `expect_json`."""
        return self._request("GET", url, params, None, expect_json)

    def post_json(self, url: str, body: Mapping[str, Any]) -> HttpResponse:
        """POST a JSON body to a read-only query endpoint (e.g. Jira's approximate count),
        retrying per the policy like a GET; the answer must be JSON."""
        return self._request("POST", url, None, body, True)

    def _request(self, method: str, url: str, params: Mapping[str, Any] | None,
                 body: Mapping[str, Any] | None, expect_json: bool) -> HttpResponse:
        target = self.full_url(url, params)
        what = f"{method} {secrets.redact_url(target)}"
        data = None if body is None else json.dumps(dict(body)).encode("utf-8")
        count = 0

        def attempt(remaining: float) -> HttpResponse:
            nonlocal count
            count += 1
            return self._attempt(target, remaining, expect_json, count, method=method,
                                 data=data)

        pause = self._not_before - self._clock()
        if pause > 0:
            if pause > self.policy.budget_seconds:
                raise SourceError(f"source {self.source_name!r}: {what}: rate limit resets in "
                                  f"{pause:.0f}s, beyond the {self.policy.budget_seconds:g}s "
                                  "retry budget")
            self._sleep(pause)
        return run_with_retries(self.source_name, what, attempt, self.policy,
                                sleep=self._sleep, clock=self._clock, rng=self._rng)

    def _attempt(self, url: str, remaining: float, expect_json: bool, count: int, *,
                 method: str = "GET", data: bytes | None = None) -> HttpResponse:
        policy = self.policy
        timeout = (max(0.001, min(policy.connect_timeout_seconds, remaining)),
                   max(0.001, min(policy.read_timeout_seconds, remaining)))
        try:
            if data is None:
                response = self._session.request(method, url, timeout=timeout, stream=True)
            else:
                response = self._session.request(
                    method, url, data=data, timeout=timeout, stream=True,
                    headers={"Content-Type": "application/json"})
        except requests.exceptions.Timeout as exc:
            raise Retryable(f"timed out ({type(exc).__name__})") from None
        except requests.exceptions.ConnectionError as exc:
            raise Retryable(f"connection failed: {_root_cause(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise Permanent(f"request failed: {_root_cause(exc)}") from None
        with response:
            try:
                body = response.content
            except requests.exceptions.Timeout:
                raise Retryable("timed out reading the response body") from None
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ConnectionError,
                    requests.exceptions.ContentDecodingError) as exc:
                raise Retryable(f"truncated response (HTTP {response.status_code}): "
                                f"{_root_cause(exc)}") from None
        status = response.status_code
        headers = response.headers
        self._note_rate_limit(headers)
        if status == 429 or (status >= 500 and status not in NOT_RETRIED_5XX):
            raise Retryable(f"HTTP {status}: {_snippet(body)}", wait=server_wait(headers))
        if status == 401:
            raise Permanent(f"HTTP 401 (authentication failed: check the source's credentials): "
                            f"{_snippet(body)}")
        if status >= 400:
            raise Permanent(f"HTTP {status}: {_snippet(body)}")
        if status >= 300:
            raise Permanent(f"HTTP {status}: unexpected redirect to "
                            f"{secrets.redact_url(headers.get('Location', '?'))}")
        declared = headers.get("Content-Length")
        encoded = headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if declared and declared.isdigit() and not encoded and int(declared) != len(body):
            raise Retryable(f"truncated response: {len(body)} of {declared} bytes")
        data = None
        if expect_json:
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise Retryable(f"response of {len(body)} bytes is not valid JSON "
                                f"(truncated?): {exc}") from None
        return HttpResponse(url=url, status=status, headers=headers, body=body, data=data,
                            attempts=count)

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        """Okta: with no requests left in the window, hold the next one until the reset."""
        if headers.get("X-Rate-Limit-Remaining", "").strip() == "0":
            wait = server_wait({k: v for k, v in headers.items() if k.lower() != "retry-after"})
            if wait:
                self._not_before = self._clock() + wait


def _root_cause(exc: BaseException) -> str:
    """The innermost error's message (requests nests urllib3's), secrets redacted."""
    seen: set[int] = set()
    inner: BaseException = exc
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    text = str(inner) or type(inner).__name__
    return secrets.redact(f"{type(inner).__name__}: {text}")
