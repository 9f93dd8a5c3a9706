"""Shared fixtures: a fresh PostgreSQL database per test module, a local evidence store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from soxtrail.kernel.database import Database, bootstrap
from soxtrail.kernel.store import LocalStore
from tests.support import admin_server
from tests.support.admin_server import ADMIN_ENV, THROWAWAY_ENV, Throwaway

pytest_plugins = ["tests.support.fake_services"]

# The server the suite creates its databases on: the CI server by default; set
# SOXTRAIL_TEST_ADMIN_URL to another server's maintenance database to move it. When
# neither is set and nothing answers on 127.0.0.1:5432, pytest_configure points it at a
# throwaway server for the session (tests/support/admin_server.py).
ADMIN_URL = os.environ.get(ADMIN_ENV, admin_server.default_url())

_THROWAWAY = pytest.StashKey[Throwaway]()
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists
def pytest_configure(config: pytest.Config) -> None:
    """No SOXTRAIL_TEST_ADMIN_URL and nothing on the default address: plan a throwaway server.

    Only the controller (or the single process without xdist) decides; the workers inherit
    the URL and the server's folder through the environment.
    """
    global ADMIN_URL
    if hasattr(config, "workerinput") or os.environ.get(ADMIN_ENV):
        return
    why = admin_server.unreachable(admin_server.default_url())
    if why is None:
        return
    server = Throwaway.plan()
    config.stash[_THROWAWAY] = server
    config.stash[_SAVED_ENV] = {key: os.environ.get(key) for key in (ADMIN_ENV, THROWAWAY_ENV)}
    os.environ[ADMIN_ENV] = ADMIN_URL = server.url
    os.environ[THROWAWAY_ENV] = str(server.root)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    line = (f"PostgreSQL for the tests: {ADMIN_ENV} is unset and nothing answers at"
            f" {admin_server.default_url()} ({why}), so a throwaway {server.description}"
            f" at 127.0.0.1:{server.port} serves this session (started on first use,"
            " stopped at the end)")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the throwaway server this process planned (after every xdist worker is done)."""
    server = config.stash.get(_THROWAWAY, None)
    if server is None:
        return
    server.stop()
    for key, value in config.stash[_SAVED_ENV].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked integration or e2e need PostgreSQL: start the throwaway server if planned."""
    if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
        admin_server.ensure_throwaway()


def _with_dbname(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@contextmanager
def fresh_database(prefix: str = "soxtrail_t") -> Iterator[Database]:
    """A new, bootstrapped database on the test server, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_server.ensure_throwaway()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')  # type: ignore[arg-type]
    db = Database(dsn=_with_dbname(ADMIN_URL, name), embedded=False)
    bootstrap(db)
    try:
        yield db
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pg_database() -> Iterator[Database]:
    """A new, bootstrapped database on the test server for one test module."""
    with fresh_database() as db:
        yield db


@pytest.fixture()
def local_store(tmp_path: Path) -> LocalStore:
    """An empty local evidence store in a temp folder."""
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server over HTTP, with fake credentials in the environment."""
    from tests.support.s3 import moto_s3_server

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        with moto_s3_server() as endpoint:
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
