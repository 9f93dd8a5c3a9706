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

pytest_plugins = ["tests.support.fake_services"]

# The server the suite creates its databases on: the CI server by default; set
# SOXTRAIL_TEST_ADMIN_URL to another server's maintenance database to move it.
ADMIN_URL = os.environ.get("SOXTRAIL_TEST_ADMIN_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_dbname(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@contextmanager
def fresh_database(prefix: str = "soxtrail_t") -> Iterator[Database]:
    """A new, bootstrapped database on the test server, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
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
