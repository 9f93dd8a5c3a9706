"""Every dbt unit test of the project (the `unit_tests:` of models/**/_*.yml) passes on Spark
too: one dbt invocation in one local Spark session (dbt-spark's session method, as engine:
spark runs the models). tests/integration/test_dbt_controls.py runs the same tests on
PostgreSQL in its `dbt build`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extract import loader
from soxtrail.kernel.database import Database
from soxtrail.reconcile import dbt, engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
# the vars test_dbt_controls.py builds with (each unit test overrides what it needs)
QUARTER_VARS = {
    "run_id": str(uuid.uuid4()),
    "quarter": "2024Q3",
    "quarter_start": "2024-07-01T00:00:00Z",
    "quarter_end": "2024-10-01T00:00:00Z",
    "clusters": [],
}


def project_unit_tests() -> set[str]:
    """The unique ids dbt gives the project's unit tests, read from the models' YAML."""
    ids = set()
    for path in sorted(MODELS_DIR.rglob("_*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for test in document.get("unit_tests") or []:
            ids.add(f"unit_test.soxtrail.{test['model']}.{test['name']}")
    return ids


@pytest.fixture(scope="module")
def spark_unit_tests(pg_database: Database, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[dbt.DbtResult]:
    """`dbt test --select test_type:unit` on Spark local[2], over empty raw tables and the
    copies of a fresh database's (empty) evidence tables."""
    warehouse = tmp_path_factory.mktemp("warehouse")
    with pytest.MonkeyPatch.context() as patch:
        for name in (engine.MARTS_ENV, engine.WORK_ENV):  # spark_session sets them
            patch.delenv(name, raising=False)
        with pg_database.connect() as conn:
            engine.spark_session({"warehouse": str(warehouse), "master": "local[2]"},
                                 loader.spark_raw_tables(), conn)
        yield dbt.invoke(pg_database, ["test", "--select", "test_type:unit"],
                         workdir=tmp_path_factory.mktemp("dbt"), vars=QUARTER_VARS,
                         engine="spark")


def test_every_unit_test_runs_and_passes_on_spark(spark_unit_tests: dbt.DbtResult) -> None:
    statuses: dict[str, Any] = {
        item.node.unique_id: item for item in spark_unit_tests.results
        if item.node.unique_id.startswith("unit_test.")}
    failed = [f"{unique_id}: {item.status}: {(item.message or '').strip()}"
              for unique_id, item in sorted(statuses.items()) if str(item.status) != "pass"]
    assert not failed, "\n".join(failed)
    expected = project_unit_tests()
    assert expected, f"no unit_tests: in {MODELS_DIR}/**/_*.yml"
    assert set(statuses) == expected, (
        f"not run: {sorted(expected - set(statuses))}; "
        f"not in the YAML: {sorted(set(statuses) - expected)}")
    assert len(statuses) == len(expected)
    assert spark_unit_tests.success, dbt.failures(spark_unit_tests)
