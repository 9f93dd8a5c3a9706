"""Fault injection for tests/reliability: an S3 proxy, kill/pause points, a CLI in the background.

* :class:`S3FaultProxy` — a real HTTP server in front of an S3 endpoint (moto in server
  mode) that forwards every request, except those it is told to fail: ``slowdown`` (503
  SlowDown, S3's throttling answer), ``500`` (InternalError) or ``reset`` (the connection
  closed without an answer). ``down()`` makes every request a 503 until ``up()``. boto3
  then really retries over HTTP with the store's own retry config.
* :class:`Faults` and :class:`FaultObserver` — SIGKILL or a pause at a named point of a
  phase (``<phase>:<point>``), installed by the test launcher ``python -m
  tests.support.faulty_cli`` (:data:`FAULTY_CLI`) from :data:`KILL_ENV` / :data:`PAUSE_ENV`.
* :func:`start_cli` — ``python -m soxtrail`` as a child process (for SIGKILL and for two
  runs at once), :func:`wait_for` and :func:`events` to follow a run's ``log.jsonl``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from soxtrail import pipeline
from tests.support.cli import SOXTRAIL, importable

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-connection", "content-length"})

_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass
class S3Fault:
    """Fail `times` requests (matching `method` / `key_contains`) once `after` matching passed."""

    kind: str
    times: int
    method: str | None = None
    key_contains: str | None = None
    after: int = 0
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.key_contains is None or self.key_contains in path))


class S3FaultProxy:
    """An HTTP proxy in front of an S3 endpoint that injects throttling and errors."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[S3Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status sent)
        self.is_down = False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._next_fault(self.command, self.path)
                if fault == "reset":
                    proxy._note(self.command, self.path, 0)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault is not None:
                    status, code, message = _ERRORS[fault]
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                           f"<Message>{message}</Message><RequestId>fault</RequestId></Error>"
                           ).encode()
                    proxy._note(self.command, self.path, status)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(xml)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None,
                                     headers={**headers, "Content-Length": str(len(body))})
                    answer = upstream.getresponse()
                    data = answer.read()
                    proxy._note(self.command, self.path, answer.status)
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, kind: str, times: int = 1, *, method: str | None = None,
               key_contains: str | None = None, after: int = 0) -> S3Fault:
        """Fail the next `times` matching requests with `kind` (slowdown, 500, reset)."""
        if kind not in (*_ERRORS, "reset"):
            raise ValueError(f"unknown S3 fault {kind!r}")
        fault = S3Fault(kind, times, method, key_contains, after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def down(self) -> None:
        """Every request a 503 SlowDown from now on (a store that stays down)."""
        self.is_down = True

    def up(self) -> None:
        self.is_down = False

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def statuses(self) -> list[int]:
        with self._lock:
            return [status for _, _, status in self.log]

    def _note(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((method, path, status))

    def _next_fault(self, method: str, path: str) -> str | None:
        if self.is_down:
            return "slowdown"
        with self._lock:
            for fault in self.faults:
                if fault.fired >= fault.times or not fault.matches(method, path):
                    continue
                if fault.seen < fault.after:
                    fault.seen += 1
                    continue
                fault.fired += 1
                return fault.kind
        return None


# ---------------------------------------------------------------- kill and pause points

# `<phase>:<point>`: the faulty CLI sends itself SIGKILL there
KILL_ENV = "SOXTRAIL_TEST_KILL_AT"
# `<phase>:<point>=<marker file>`: it writes the marker there and waits until it is removed
PAUSE_ENV = "SOXTRAIL_TEST_PAUSE_AT"
# the real CLI with the faults above installed (run from the repo root: tests is a package)
FAULTY_CLI = ("-m", "tests.support.faulty_cli")
PAUSE_LIMIT = 120.0


@dataclass(frozen=True)
class Faults:
    """Where to kill the process and where to pause it (`<phase>:<point>`; None: nowhere)."""

    kill_at: str | None = None
    pause_at: str | None = None
    marker: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Faults:
        """The faults a test asked for in the launcher's environment."""
        where, _, marker = environ.get(PAUSE_ENV, "").partition("=")
        return cls(kill_at=environ.get(KILL_ENV) or None, pause_at=where if marker else None,
                   marker=Path(marker) if marker else None)

    def reached(self, phase: str, point: str) -> None:
        """Kill or pause here if the test asked for this point."""
        here = f"{phase}:{point}"
        if self.kill_at == here:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.marker is not None and self.pause_at == here:
            self.marker.write_text(str(os.getpid()), encoding="utf-8")
            deadline = time.monotonic() + PAUSE_LIMIT
            while self.marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


class FaultObserver(pipeline.Observer):
    """Applies the faults at the pipeline's checkpoints and at `put<N>`, its Nth store write."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.phase = ""
        self.writes: dict[str, int] = {}
        self._lock = threading.Lock()  # the snapshot writes from several threads

    def opened(self, p: pipeline.Pipeline) -> None:
        """Count the writes to the run's store (the store object keeps its class)."""

        def counted(method: Callable[..., Any]) -> Callable[..., Any]:
            def write(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                self._written()
                return result
            return write

        for name in ("put_file", "put_bytes"):
            setattr(p.store, name, counted(getattr(p.store, name)))

    def checkpoint(self, p: pipeline.Pipeline, phase: str, point: str) -> None:
        """Note the phase that runs; kill or pause if the test asked for this point."""
        if point == "start":
            self.phase = phase
        self.faults.reached(phase, point)

    def _written(self) -> None:
        with self._lock:
            phase = self.phase
            self.writes[phase] = number = self.writes.get(phase, 0) + 1
        self.faults.reached(phase, f"put{number}")


# ---------------------------------------------------------------- the CLI in the background


def cli_env(home: Path, database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `soxtrail` child process (like tests.support.cli.soxtrail: no
    `CI` unless `extra` sets it)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SOXTRAIL_DATABASE_URL", "SOXTRAIL_STORE", "CI", KILL_ENV, PAUSE_ENV)}
    env.update(SOXTRAIL_HOME=str(home), SOXTRAIL_DATABASE_URL=database_url)
    env.update(extra or {})
    return env


def start_cli(*args: str, home: Path, database_url: str, env: dict[str, str] | None = None,
              launcher: Sequence[str] = SOXTRAIL) -> subprocess.Popen[str]:
    """`python -m soxtrail ARGS` (or `python LAUNCHER ARGS`) started, not waited for."""
    return subprocess.Popen([sys.executable, *launcher, *args],
                            env=importable(cli_env(home, database_url, env), launcher),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


def events(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's structured events (`log.jsonl`), every line parsed."""
    path = home / "runs" / run_id / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has `name=value` (Linux /proc)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
