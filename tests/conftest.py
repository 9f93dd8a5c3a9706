"""Shared fixtures: a fresh PostgreSQL database per test module, a demo run lent to each module
that asks (tests/support/demo_quarter.py), a local evidence store."""

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
from tests.support.demo_quarter import DemoQuarter, DemoRun, with_dbname

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

    Under xdist the files are handed out in the order pytest_collection_modifyitems sets
    (longest first), not re-sorted by xdist by their number of tests.
    """
    global ADMIN_URL
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
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


# The test files that take longest (setup + calls, measured on the 2-core CI machine),
# longest first. Handing these out first keeps both xdist workers busy to the end: the
# many quick files fill in behind them (xdist's own order, most tests first, left the
# slowest files for last and one worker idle for minutes). Order only: a file missing
# here, or listed but faster now, costs balance, never a result.
SLOWEST_FIRST = (
    "tests/integration/test_signing_default.py",
    "tests/integration/test_diff.py",
    "tests/e2e/test_backends.py",
    "tests/integration/test_signoff.py",
    "tests/reliability/test_tamper.py",
    "tests/e2e/test_captures.py",
    "tests/integration/test_anchor.py",
    "tests/e2e/test_dbt_docs_browser.py",
)
# then the rest of these folders (whole-pipeline tests first), then everything else
_FOLDERS_FIRST = ("tests/e2e/", "tests/reliability/", "tests/integration/")


def _file_rank(path: str) -> int:
    if path in SLOWEST_FIRST:
        return SLOWEST_FIRST.index(path)
    folder = next((i for i, f in enumerate(_FOLDERS_FIRST) if path.startswith(f)),
                  len(_FOLDERS_FIRST))
    return len(SLOWEST_FIRST) + folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test files in the order of _file_rank (slowest first), each file's tests kept
    together and in their own order."""
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        first.setdefault(item.nodeid.split("::")[0], index)
    position = {id(item): index for index, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int]:
        path = item.nodeid.split("::")[0]
        return _file_rank(path), first[path], position[id(item)]

    items.sort(key=key)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked integration or e2e need PostgreSQL: start the throwaway server if planned."""
    if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
        admin_server.ensure_throwaway()


_with_dbname = with_dbname  # the name test modules import from here


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


@pytest.fixture(scope="session")
def demo_quarter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoQuarter]:
    """The demo quarter run of this process, made on first use (tests/support/demo_quarter.py)."""
    admin_server.ensure_throwaway()
    quarter = DemoQuarter(ADMIN_URL, tmp_path_factory.mktemp("demo-quarter"))
    try:
        yield quarter
    finally:
        quarter.drop()


@pytest.fixture(scope="module")
def demo_run(demo_quarter: DemoQuarter) -> Iterator[DemoRun]:
    """A completed default demo run of 2024Q3 this module may change at will: its own
    database and SOXTRAIL_HOME until the module ends (tests/support/demo_quarter.py)."""
    with demo_quarter.checkout() as run:
        yield run
