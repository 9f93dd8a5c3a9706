"""A local fake of the REST sources (Jira, ServiceNow, Okta, AWS Backup) with fault injection.

One real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, a free port) speaks:

* Jira v2 ``GET /rest/api/2/search`` — ``startAt``/``maxResults``/``total``, ``fields``
  honoured (only the requested fields come back), ``expand=changelog``;
* Jira v3 ``GET /rest/api/3/search/jql`` — ``nextPageToken``/``isLast``, and
  ``POST /rest/api/3/search/approximate-count`` (``{"jql": …}`` → ``{"count": N}``);
* ServiceNow Table API ``GET /api/now/table/<table>`` — ``sysparm_query`` (``=``, ``!=``,
  ``<``, ``<=``, ``>``, ``>=``, ``IN``, ``ORDERBY``/``ORDERBYDESC``, joined by ``^``),
  ``sysparm_limit``/``sysparm_offset``, ``X-Total-Count``, reference fields as
  ``{link, value}`` or display strings with ``sysparm_display_value=true``;
* Okta System Log ``GET /api/v1/logs`` — ``since``/``until``/``limit``/``filter``
  (``eventType eq "…" or …``), ``Link: <…>; rel="next"`` paging, ``X-Rate-Limit-*``;
* AWS Backup ``GET /backup-jobs/`` — the ListBackupJobs REST-JSON wire format
  (moto does not implement ListBackupJobs), epoch-second timestamps, ``nextToken``.

Authentication is checked: Jira and ServiceNow accept ``Basic <user:token>`` or
``Bearer <token>``, Okta ``SSWS <token>`` or ``Bearer <token>``, AWS any SigV4
header; anything else is a 401 (403 for AWS).

Usage::

    with FakeServices(token="t0k3n") as services:
        services.add_jira_issues([{"id": "1", "key": "DBA-1", "fields": {...}}])
        services.inject("/rest/api/2/search", "429", times=2, retry_after="0")
        ...  # point a connector at services.url
        assert len(services.requests_to("/rest/api/2/search")) == 3

Faults (``inject(path_prefix, fault, times=1, after=0, ...)``, matched on the path
without query string, each fires `times` times once `after` matching requests passed):

=========== ==============================================================
``429``     429 with ``Retry-After: <retry_after>`` (seconds or HTTP date) and/or
            ``X-Rate-Limit-Reset: now + <rate_limit_reset_in>`` (epoch seconds)
``500``     a 500 (``status=`` picks another 5xx)
``truncate`` the real response with its full Content-Length, cut in half, connection closed
``garble``  the first half of the real body with a matching Content-Length (bad JSON)
``hang``    waits ``seconds`` (default 2) before answering: longer than a client timeout
``reset``   closes the connection without a response
``down``    stops listening (connection refused from then on) until :meth:`up`
=========== ==============================================================

Completeness knobs: ``hidden_keys`` (Jira ``key`` / ServiceNow ``number`` values counted
in ``total``, ``X-Total-Count`` and the approximate count but never returned: a page that
silently drops an item, on every attempt); ``on_request(path_prefix, after, action)``
(``action()`` runs once, just before the request that follows `after` matching ones is
answered: e.g. an issue inserted between page requests, a search that shifts under paging);
``server_time`` (the ``Date`` header every response carries, for sources whose coverage
is read from the server's clock); ``okta_retention_days`` / ``backup_retention_days``
(records older than that before ``server_time`` are no longer returned, as Okta's System
Log and AWS Backup's job list forget them).

``requests`` is the log of every request received (method, path, query, headers,
the fault applied). The headers include the Authorization header: it stays in the
test process.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

FAULTS = ("429", "500", "truncate", "garble", "hang", "reset", "down")
_CONDITION = re.compile(r"^(?P<field>[a-z0-9_.]+?)(?P<op>IN|>=|<=|!=|=|>|<)(?P<value>.*)$")
_OKTA_FILTER = re.compile(r'^eventType eq "([^"]+)"$')


@dataclass
class Fault:
    """One injected fault (see the module docstring)."""

    path_prefix: str
    kind: str
    times: int = 1
    after: int = 0
    retry_after: str | None = None
    rate_limit_reset_in: float | None = None
    seconds: float = 2.0
    status: int = 500
    seen: int = 0
    fired: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    fault: str | None = None
    body: bytes = b""

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # handlers may be hanging on purpose
    allow_reuse_address = True
    services: FakeServices


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if not token:
        return 0
    padded = token + "=" * (-len(token) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().split(":", 1)[1])


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class FakeServices:
    """The fake Jira / ServiceNow / Okta / AWS Backup server; start with `with` or start()."""

    def __init__(self, *, user: str = "svc-sox@example.com", token: str = "fake-token-1234",
                 jira_max_results: int = 50, servicenow_max_limit: int = 10_000,
                 servicenow_total_count: bool = True, okta_max_limit: int = 1000) -> None:
        self.user = user
        self.token = token
        self.jira_max_results = jira_max_results
        self.servicenow_max_limit = servicenow_max_limit
        self.servicenow_total_count = servicenow_total_count
        self.okta_max_limit = okta_max_limit
        self.okta_rate_limit_remaining = 599
        self.okta_link_base: str | None = None  # set to make next links point elsewhere
        self.jira_issues: list[dict[str, Any]] = []
        self.servicenow_records: dict[str, list[dict[str, Any]]] = {}
        self.okta_events: list[dict[str, Any]] = []
        self.backup_jobs: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.hidden_keys: set[str] = set()
        self.server_time: datetime | None = None
        # Okta keeps System Log events ~90 days, AWS Backup lists jobs ~30 days: with these
        # set, older records (by `server_time`, else now) are no longer returned
        self.okta_retention_days: int | None = None
        self.backup_retention_days: int | None = None
        self._actions: list[list[Any]] = []  # [path_prefix, after, action, seen]
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._listen_lock = threading.Lock()
        self._server: _Server | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServices:
        """Start listening (on a free port the first time, on the same port after down())."""
        with self._listen_lock:
            if self._server is not None:
                return self
            server = _Server(("127.0.0.1", self.port), _Handler)
            server.services = self
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.02}, daemon=True)
            self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until up()."""
        with self._listen_lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # kept-alive connections die with the server
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    def stop(self) -> None:
        """Stop the server for good."""
        self.down()

    def __enter__(self) -> FakeServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data ------------------------------------------------------------

    def add_jira_issues(self, issues: list[dict[str, Any]]) -> None:
        """Issues as Jira returns them: {id, key, fields{...}, changelog?{histories}}."""
        self.jira_issues.extend(issues)

    def add_servicenow_records(self, table: str, records: list[dict[str, Any]]) -> None:
        """Records of a table; reference fields as {"value", "display_value", "table"?}."""
        self.servicenow_records.setdefault(table, []).extend(records)

    def add_okta_events(self, events: list[dict[str, Any]]) -> None:
        """System Log events {uuid, published, eventType, actor, target, outcome}."""
        self.okta_events.extend(events)

    def add_backup_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Backup jobs; CreationDate/CompletionDate as ISO strings, datetimes or epochs."""
        self.backup_jobs.extend(jobs)

    # -- faults and the request log ----------------------------------------

    def inject(self, path_prefix: str, fault: str, times: int = 1, *, after: int = 0,
               retry_after: str | None = None, rate_limit_reset_in: float | None = None,
               seconds: float = 2.0, status: int = 500) -> Fault:
        """Make the next `times` requests under `path_prefix` (after `after` good ones) fail."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        if fault == "429" and retry_after is None and rate_limit_reset_in is None:
            retry_after = "0"
        entry = Fault(path_prefix, fault, times, after, retry_after, rate_limit_reset_in,
                      seconds, status)
        with self._lock:
            self.faults.append(entry)
        return entry

    def on_request(self, path_prefix: str, after: int, action: Any) -> None:
        """Run `action()` once, before answering the request that follows `after` matching
        ones (e.g. ``after=1``: between the first and the second page)."""
        with self._lock:
            self._actions.append([path_prefix, after, action, 0])

    def _run_actions(self, path: str) -> None:
        due = []
        with self._lock:
            for entry in self._actions:
                if path.startswith(entry[0]):
                    if entry[3] == entry[1]:
                        due.append(entry[2])
                    entry[3] += 1
        for action in due:
            action()

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._lock:
            self.faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        """Requests whose path starts with `path_prefix`."""
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if not path.startswith(fault.path_prefix) or fault.fired >= fault.times:
                    continue
                if fault.seen < fault.after:
                    fault.seen += 1
                    continue
                fault.fired += 1
                return fault
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- auth --------------------------------------------------------------

    def _authorized(self, header: str, schemes: tuple[str, ...]) -> bool:
        scheme, _, credential = header.partition(" ")
        scheme = scheme.lower()
        if scheme not in schemes:
            return False
        if scheme == "basic":
            try:
                user, _, token = base64.b64decode(credential).decode().partition(":")
            except ValueError:
                return False
            return user == self.user and token == self.token
        return credential == self.token

    # -- routes: each returns (status, headers, body) ------------------------

    def route(self, path: str, query: dict[str, list[str]],
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Answer one request (no faults applied)."""
        auth = headers.get("Authorization", "")
        if path.startswith("/backup-jobs"):
            if not auth.startswith("AWS4-HMAC-SHA256 "):
                return _json(403, {"message": "Missing Authentication Token"},
                             {"x-amzn-ErrorType": "MissingAuthenticationTokenException"})
            return self._backup_jobs(query)
        okta = path.startswith("/api/v1/")
        if not self._authorized(auth, ("ssws", "bearer") if okta else ("basic", "bearer")):
            if okta:
                return _json(401, {"errorCode": "E0000011", "errorSummary": "Invalid token "
                                   "provided", "errorLink": "E0000011", "errorCauses": []})
            return _json(401, {"errorMessages": ["You are not authenticated."], "errors": {}})
        if path == "/rest/api/2/search":
            return self._jira(query, v3=False)
        if path == "/rest/api/3/search/jql":
            return self._jira(query, v3=True)
        if path == "/rest/api/3/search/approximate-count":
            return _json(405, {"errorMessages": ["Method Not Allowed: use POST"]})
        if path.startswith("/api/now/table/"):
            return self._servicenow(path.rsplit("/", 1)[-1], query)
        if path == "/api/v1/logs":
            return self._okta(query)
        return _json(404, {"error": f"no route {path}"})

    def _jira(self, query: dict[str, list[str]], *, v3: bool) -> tuple[int, dict[str, str], bytes]:
        first = {k: v[0] for k, v in query.items()}
        size = max(1, min(int(first.get("maxResults", "50")), self.jira_max_results))
        start = _offset(first.get("nextPageToken")) if v3 else int(first.get("startAt", "0"))
        wanted = [f for f in first.get("fields", "*navigable").split(",") if f]
        expand = "changelog" in first.get("expand", "").split(",")
        page = [self._jira_issue(i, wanted, expand, v3)
                for i in self.jira_issues[start:start + size]
                if i["key"] not in self.hidden_keys]
        if v3:
            body: dict[str, Any] = {"issues": page}
            if start + size < len(self.jira_issues):
                body["nextPageToken"] = _token(start + size)
                body["isLast"] = False
            else:
                body["isLast"] = True
            return _json(200, body)
        return _json(200, {"expand": "schema,names", "startAt": start, "maxResults": size,
                           "total": len(self.jira_issues), "issues": page})

    def _jira_issue(self, issue: dict[str, Any], wanted: list[str], expand: bool,
                    v3: bool) -> dict[str, Any]:
        fields = issue.get("fields", {})
        if not any(w.startswith("*") for w in wanted):
            fields = {k: v for k, v in fields.items() if k in wanted}
        out = {"expand": "operations,changelog", "id": issue["id"],
               "self": f"{self.url}/rest/api/{3 if v3 else 2}/issue/{issue['id']}",
               "key": issue["key"], "fields": fields}
        if expand:
            histories = issue.get("changelog", {}).get("histories", [])
            out["changelog"] = {"startAt": 0, "maxResults": len(histories),
                                "total": len(histories), "histories": histories}
        return out

    def _servicenow(self, table: str,
                    query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        first = {k: v[0] for k, v in query.items()}
        records = list(self.servicenow_records.get(table, []))
        try:
            records = _snow_filter(records, first.get("sysparm_query", ""))
        except ValueError as exc:
            return _json(400, {"error": {"message": str(exc), "detail": ""},
                               "status": "failure"})
        limit = max(1, min(int(first.get("sysparm_limit", "10000")), self.servicenow_max_limit))
        offset = int(first.get("sysparm_offset", "0"))
        display = first.get("sysparm_display_value", "false").lower()
        page = [self._snow_render(r, display) for r in records[offset:offset + limit]
                if r.get("number") not in self.hidden_keys]
        headers = {"X-Total-Count": str(len(records))} if self.servicenow_total_count else {}
        return _json(200, {"result": page}, headers)

    def _snow_render(self, record: dict[str, Any], display: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, dict) and "value" in value:
                link = (f"{self.url}/api/now/table/{value.get('table', 'sys_user')}/"
                        f"{value['value']}")
                if display == "true":
                    out[key] = value.get("display_value", value["value"])
                elif display == "all":
                    out[key] = {"display_value": value.get("display_value", value["value"]),
                                "link": link, "value": value["value"]}
                else:
                    out[key] = {"link": link, "value": value["value"]}
            else:
                out[key] = value
        return out

    def _kept_since(self, days: int | None) -> datetime | None:
        """The oldest moment a source keeping `days` days of records still returns."""
        if days is None:
            return None
        return (self.server_time or datetime.now(UTC)) - timedelta(days=days)

    def _okta(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        first = {k: v[0] for k, v in query.items()}
        events = sorted(self.okta_events, key=lambda e: (e["published"], e["uuid"]))
        wanted: set[str] | None = None
        if first.get("filter"):
            wanted = set()
            for part in first["filter"].split(" or "):
                match = _OKTA_FILTER.match(part.strip())
                if not match:
                    return _json(400, {"errorCode": "E0000031",
                                       "errorSummary": "Invalid search criteria.",
                                       "errorCauses": []})
                wanted.add(match.group(1))
        since, until = first.get("since", ""), first.get("until", "9999")
        kept = self._kept_since(self.okta_retention_days)
        events = [e for e in events if since <= e["published"] < until
                  and (kept is None or utc(e["published"]) >= kept)
                  and (wanted is None or e["eventType"] in wanted)]
        if first.get("sortOrder", "ASCENDING") == "DESCENDING":
            events.reverse()
        limit = max(1, min(int(first.get("limit", "100")), self.okta_max_limit))
        start = _offset(first.get("after"))
        page = events[start:start + limit]
        base = {k: v for k, v in first.items() if k != "after"}
        link_base = self.okta_link_base or self.url
        links = [f'<{link_base}/api/v1/logs?{urlencode(first)}>; rel="self"']
        if start + limit < len(events):
            nxt = urlencode({**base, "after": _token(start + limit)})
            links.append(f'<{link_base}/api/v1/logs?{nxt}>; rel="next"')
        now = int(time.time())
        headers = {"Link": links, "X-Rate-Limit-Limit": "600",
                   "X-Rate-Limit-Remaining": str(self.okta_rate_limit_remaining),
                   "X-Rate-Limit-Reset": str(now + 60)}
        return _json(200, page, headers)

    def _backup_jobs(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        first = {k: v[0] for k, v in query.items()}
        after = _epoch(first["createdAfter"]) if "createdAfter" in first else float("-inf")
        before = _epoch(first["createdBefore"]) if "createdBefore" in first else float("inf")
        kept = self._kept_since(self.backup_retention_days)
        jobs = [j for j in self.backup_jobs if after <= _epoch(j["CreationDate"]) < before
                and (kept is None or _epoch(j["CreationDate"]) >= kept.timestamp())
                and first.get("backupVaultName") in (None, j.get("BackupVaultName"))]
        size = max(1, min(int(first.get("maxResults", "1000")), 1000))
        start = _offset(first.get("nextToken"))
        page = []
        for job in jobs[start:start + size]:
            wire = dict(job)
            for key in ("CreationDate", "CompletionDate", "StartBy", "ExpectedCompletionDate"):
                if key in wire:
                    wire[key] = _epoch(wire[key])
            page.append(wire)
        body: dict[str, Any] = {"BackupJobs": page}
        if start + size < len(jobs):
            body["NextToken"] = _token(start + size)
        return _json(200, body)


    def route_post(self, path: str, body: bytes,
                   headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Answer one POST: Jira Cloud's approximate count (the only one the sources send)."""
        if not self._authorized(headers.get("Authorization", ""), ("basic", "bearer")):
            return _json(401, {"errorMessages": ["You are not authenticated."], "errors": {}})
        if path != "/rest/api/3/search/approximate-count":
            return _json(404, {"error": f"no route POST {path}"})
        try:
            request = json.loads(body)
        except ValueError:
            return _json(400, {"errorMessages": ["Invalid request payload."]})
        if not isinstance(request, dict) or not isinstance(request.get("jql"), str):
            return _json(400, {"errorMessages": ["jql: required"]})
        return _json(200, {"count": len(self.jira_issues)})


def _json(status: int, body: Any,
          headers: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], bytes]:
    return status, {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}, \
        json.dumps(body).encode("utf-8")


def _snow_value(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("value", ""))
    return "" if value is None else str(value)


def _snow_filter(records: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Apply a (small subset of an) encoded query; unknown syntax is a ValueError."""
    orders: list[tuple[str, bool]] = []
    for part in filter(None, query.split("^")):
        if part.startswith("ORDERBYDESC"):
            orders.append((part[len("ORDERBYDESC"):], True))
            continue
        if part.startswith("ORDERBY"):
            orders.append((part[len("ORDERBY"):], False))
            continue
        if part.startswith(("OR", "NQ")):
            raise ValueError(f"fake ServiceNow does not support {part!r}")
        match = _CONDITION.match(part)
        if not match:
            raise ValueError(f"fake ServiceNow cannot parse condition {part!r}")
        name, op, value = match.group("field"), match.group("op"), match.group("value")
        records = [r for r in records if _snow_match(_snow_value(r.get(name)), op, value)]
    for name, descending in reversed(orders):
        records.sort(key=partial(_snow_sort_key, name), reverse=descending)
    return records


def _snow_sort_key(name: str, record: dict[str, Any]) -> str:
    return _snow_value(record.get(name))


def _snow_match(actual: str, op: str, value: str) -> bool:
    if op == "IN":
        return actual in value.split(",")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    if op == ">=":
        return actual >= value
    if op == "<=":
        return actual <= value
    if op == ">":
        return actual > value
    return actual < value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is FakeServices.requests."""

    def setup(self) -> None:
        super().setup()
        with self.server.services._lock:
            self.server.services._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.services._lock:
            self.server.services._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header: the fake's `server_time` when set, else now."""
        when = self.server.services.server_time
        if timestamp is None and when is not None:
            return formatdate(when.timestamp(), usegmt=True)
        return super().date_time_string(timestamp)

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        services = self.server.services
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {k: v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        fault = services._next_fault(parts.path)
        services._record(RecordedRequest(self.command, parts.path, query, headers,
                                         fault.kind if fault else None, body_in))
        services._run_actions(parts.path)
        if fault is not None and fault.kind == "down":
            services.down()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        if fault is not None and fault.kind in ("429", "500"):
            self._fault_status(fault)
            return
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
        if self.command == "POST":
            status, out_headers, body = services.route_post(parts.path, body_in, headers)
        else:
            status, out_headers, body = services.route(parts.path, query, headers)
        if fault is not None and fault.kind == "truncate":
            self._send(status, out_headers, body[: len(body) // 2], length=len(body))
            self.close_connection = True
            return
        if fault is not None and fault.kind == "garble":
            body = body[: len(body) // 2]
        self._send(status, out_headers, body)

    def _fault_status(self, fault: Fault) -> None:
        status = 429 if fault.kind == "429" else fault.status
        headers: dict[str, Any] = {}
        if fault.kind == "429":
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            if fault.rate_limit_reset_in is not None:
                now = int(time.time())
                headers["X-Rate-Limit-Reset"] = str(int(now + fault.rate_limit_reset_in))
                headers["X-Rate-Limit-Remaining"] = "0"
                headers["X-Rate-Limit-Limit"] = "600"
        message = "Too Many Requests" if status == 429 else "Internal Server Error"
        _, json_headers, body = _json(status, {"message": f"fake fault: {message}"}, headers)
        self._send(status, json_headers, body)

    def _send(self, status: int, headers: dict[str, Any], body: bytes,
              length: int | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                for item in value if isinstance(value, list) else [value]:
                    self.send_header(name, item)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def http_date(offset_seconds: float) -> str:
    """An HTTP date `offset_seconds` from now (for `Retry-After: <date>`)."""
    return formatdate(time.time() + offset_seconds, usegmt=True)


def utc(text: str) -> datetime:
    """`2024-07-05T10:00:00Z` → an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture()
def fake_services() -> Iterator[FakeServices]:
    """A started FakeServices, stopped after the test.

    Use it from a conftest with ``pytest_plugins = ["tests.support.fake_services"]``
    (root conftest only), or wrap ``FakeServices`` in a local fixture.
    """
    with FakeServices() as services:
        yield services


__all__ = ["FAULTS", "FakeServices", "Fault", "RecordedRequest", "fake_services", "http_date",
           "utc"]
