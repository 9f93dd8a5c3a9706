"""With SOXTRAIL_TEST_ADMIN_URL unset and nothing on the default address, the suite brings its
own PostgreSQL for the session, shares it between xdist workers and stops it at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.admin_server import (
    ADMIN_ENV,
    DEFAULT_ENV,
    THROWAWAY_ENV,
    Throwaway,
    unreachable,
)
from tests.support.debian import free_port

REPO = Path(__file__).resolve().parents[2]
# a small module that needs PostgreSQL, its tests spread over two workers (--dist load)
MODULE = "tests/integration/test_platform_schema.py"


def _closed_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def test_a_closed_port_is_reported_unreachable_with_a_reason() -> None:
    assert unreachable(_closed_url()) == "Connection refused"


@pytest.mark.e2e
def test_without_a_server_on_the_default_port_the_suite_runs_on_a_throwaway_one(
        tmp_path: Path) -> None:
    closed = _closed_url()
    env = {key: value for key, value in os.environ.items()
           if key not in (ADMIN_ENV, THROWAWAY_ENV) and not key.startswith("PYTEST_")}
    env[DEFAULT_ENV] = closed
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-n", "2", "--dist", "load", "--basetemp", str(tmp_path / "nested"), MODULE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    [line] = [text for text in proc.stdout.splitlines()
              if text.startswith("PostgreSQL for the tests:")]
    assert closed in line and f"{ADMIN_ENV} is unset" in line and "throwaway" in line
    port = re.search(r"throwaway .* at 127\.0\.0\.1:(\d+) serves this session", line)
    assert port is not None, line
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary) and "error" not in summary, summary
    # stopped at the end of the session
    assert unreachable(f"postgresql://postgres@127.0.0.1:{port.group(1)}/postgres") is not None


@pytest.mark.e2e
def test_the_embedded_pgserver_build_can_be_the_throwaway_server() -> None:
    server = Throwaway.plan("pgserver")
    try:
        server.ensure_running()
        server.ensure_running()  # a second caller finds it running
        with psycopg.connect(server.url) as conn:
            row = conn.execute("select rolsuper, rolcreaterole from pg_roles"
                               " where rolname = current_user").fetchone()
        assert row == (True, True)  # what the catalog and auditor-role tests need
    finally:
        server.stop()
    assert unreachable(server.url) is not None
    assert not server.root.exists()
