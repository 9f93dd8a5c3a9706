"""Shared for tests/reliability: one demo estate, one database, one clean baseline run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extract.demo import generate
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.conftest import fresh_database
from tests.support.cli import soxtrail

QUARTER = "2024Q3"
SCOPE = "pg-fin-01"  # one cluster keeps every run small; the global sources still run


@pytest.fixture(scope="session")
def rel_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo estate (12 clusters; runs are scoped to pg-fin-01)."""
    out = tmp_path_factory.mktemp("rel-demo")
    generate(out, Quarter.parse(QUARTER))
    return out


@pytest.fixture(scope="session")
def rel_db() -> Iterator[Database]:
    """A bootstrapped database shared by the reliability tests (they run one after another)."""
    with fresh_database("soxtrail_rel") as db:
        yield db


@pytest.fixture(scope="session")
def baseline(rel_db: Database, rel_demo: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run of the demo, scoped to pg-fin-01: what every fault must reproduce."""
    home = tmp_path_factory.mktemp("home-baseline")
    result = soxtrail("run", "--quarter", QUARTER, "--config", str(rel_demo / "soxtrail.yml"),
                      "--clusters", SCOPE, "--json", "--quiet", home=home,
                      database_url=rel_db.dsn)
    assert result.code == 0, result.stderr
    summary = result.json()
    summary["home"] = home
    return summary


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here needs PostgreSQL and runs the pipeline."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.e2e)
