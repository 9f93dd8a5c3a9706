"""engine: spark — the demo quarter on local Spark (pyspark's bundled Spark, dbt-spark's
session method, local[2]), its ground truth exact, the same rows as PostgreSQL, verified.

One end-to-end run of the small demo (`SOXTRAIL_ENGINE=spark soxtrail run`, its own
process and Spark session), then:

* every control reproduces expected.json, read straight from the Spark marts' Parquet;
* every raw object is one Parquet file whose rows the load stats count;
* `soxtrail verify` (another process, its own Spark session and catalog) passes, with the
  stored Spark SQL re-run on Spark;
* the same snapshot objects loaded into PostgreSQL and reconciled there give every mart
  row the same (item key, result, reasons, evidence ids, every column): the canonical
  lines are equal, engine by engine;
* a rewritten raw Parquet file fails verify's raw check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extract.demo import generate
from soxtrail.audit import verify, verify_raw
from soxtrail.kernel import runs, spark
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import LocalStore
from soxtrail.reconcile.engine import mart_columns, mart_models
from tests.support import engines
from tests.support.cli import soxtrail

# in `make test`: the one end-to-end Spark run (about 5 minutes of one worker on two cores,
# docs/performance.md "engine: spark")
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

QUARTER = "2024Q3"
SPARK_ENV = {"SOXTRAIL_ENGINE": "spark", "SOXTRAIL_SPARK_MASTER": "local[2]"}


@pytest.fixture(scope="module")
def spark_run(pg_database: Database, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    """`soxtrail run --quarter 2024Q3` on the demo estate with SOXTRAIL_ENGINE=spark."""
    root = tmp_path_factory.mktemp("spark-run")
    demo, home = root / "demo", root / "home"
    generate(demo, Quarter.parse(QUARTER))
    result = soxtrail("run", "--quarter", QUARTER, "--config", str(demo / "soxtrail.yml"),
                      "--json", "--quiet", home=home, database_url=pg_database.dsn,
                      env=SPARK_ENV, timeout=1800)
    assert result.code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    summary.update(home=home, demo=demo, warehouse=home / "warehouse")
    return summary


def _spark_mart(warehouse: Path, model: str, run_id: str) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    data = ds.dataset(spark.marts_root(warehouse) / model, format="parquet",
                      partitioning="hive")
    return data.to_table(filter=ds.field("run_id") == run_id).to_pylist()


def test_the_run_records_its_engine_and_warehouse(spark_run: dict[str, Any],
                                                  pg_database: Database) -> None:
    assert spark_run["status"] == "completed"
    with pg_database.connect() as conn:
        config = conn.execute("select config from soxtrail.sox_runs where id = %s",
                              (spark_run["run_id"],)).fetchone()[0]
    assert config["engine"] == "spark"
    assert Path(config["spark"]["warehouse"]) == spark_run["warehouse"]


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_spark_reproduces_the_planted_ground_truth(control_id: str,
                                                   spark_run: dict[str, Any]) -> None:
    """Read from the Spark mart's own Parquet files, not from PostgreSQL's copy."""
    truth = json.loads((spark_run["demo"] / "expected.json").read_text())["controls"]
    want = {"|".join(item["key"]): (item["result"], sorted(item["reasons"]))
            for item in truth[control_id]}
    rows = _spark_mart(spark_run["warehouse"], CONTROLS[control_id], spark_run["run_id"])
    got = {row["item_key"]: (row["result"], sorted(row["exception_reasons"])) for row in rows}
    assert got == want


def test_each_raw_object_is_one_parquet_file_with_the_rows_loaded(
        spark_run: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        stats = conn.execute("select evidence_id::text, raw_table, records_loaded"
                             " from soxtrail.sox_load_stats where run_id = %s",
                             (spark_run["run_id"],)).fetchall()
    assert stats
    for evidence_id, table, loaded in stats:
        path = spark.raw_object_path(spark_run["warehouse"], table.removeprefix("raw."),
                                     spark_run["run_id"], evidence_id)
        assert pq.read_metadata(path).num_rows == loaded, path


def test_verify_passes_on_the_spark_run(spark_run: dict[str, Any],
                                        pg_database: Database) -> None:
    result = soxtrail("verify", spark_run["run_id"], home=spark_run["home"],
                      database_url=pg_database.dsn, env=SPARK_ENV, timeout=1800)
    assert result.code == 0, result.stdout[-4000:] + result.stderr[-2000:]
    controls = [line for line in result.stdout.splitlines()
                if line.startswith("OK") and " control " in line]
    assert len(controls) >= len(CONTROLS)


def test_both_engines_give_every_mart_row_alike(spark_run: dict[str, Any],
                                                pg_database: Database, tmp_path: Path) -> None:
    """The Spark run's own snapshot objects, loaded into PostgreSQL and reconciled there:
    every mart's rows (item key, result, reasons, evidence ids: every column) are equal."""
    run_id = spark_run["run_id"]
    store = LocalStore(spark_run["home"] / "store")
    with pg_database.connect() as conn:
        assert engines.load_into_postgres(conn, run_id, store, tmp_path,
                                          spark_run["warehouse"]) > 0
    engines.build_on_postgres(pg_database, run_id, tmp_path / "dbt")
    compared = 0
    with pg_database.connect() as conn:
        for model in mart_models():
            columns = mart_columns(conn, model)
            on_postgres = engines.postgres_lines(conn, model, run_id)
            on_spark = engines.spark_lines(spark_run["warehouse"], model, run_id, columns)
            assert on_postgres == on_spark, (model, _differences(on_postgres, on_spark))
            compared += len(on_postgres)
    assert compared > 1000


def test_the_bundle_shows_each_intermediate_tables_sql_before_the_controls(
        spark_run: dict[str, Any]) -> None:
    """What verify builds first (query_params.stages) is in the auditor's SQL file of the
    control, in build order, and not in its header's vars line."""
    files = sorted((spark_run["home"] / "store").rglob(
        "bundle/queries/controls/fct_control_ac02__timely_revocation_*.sql"))
    assert len(files) == 1, files
    text = files[0].read_text(encoding="utf-8")
    header, _, body = text.partition("\n\n")
    assert "stages" not in header and "-- vars:" in header
    events = body.index("-- work.int_role_events_unioned, built first from:")
    holdings = body.index("-- work.int_role_holdings_reconstructed, built first from:")
    assert events < holdings < body.index("from work.int_role_holdings_reconstructed")


def _differences(on_postgres: list[str], on_spark: list[str]) -> list[Any]:
    """Up to three rows that differ, as (their first column values, {column: (postgres,
    spark)}), or the rows only one engine has."""
    out: list[Any] = []
    for left, right in zip(on_postgres, on_spark, strict=False):
        a, b = json.loads(left), json.loads(right)
        if a != b:
            out.append(([a.get(k) for k in list(a)[:3]],
                        {k: (a.get(k), b.get(k)) for k in {*a, *b} if a.get(k) != b.get(k)}))
        if len(out) == 3:
            break
    return out or [len(on_postgres), len(on_spark)]


def test_a_rewritten_parquet_raw_object_fails_verify(spark_run: dict[str, Any],
                                                     pg_database: Database) -> None:
    """verify's raw check (the one `soxtrail verify` runs, in process here: a whole verify on
    Spark re-runs every control, which the test above already did): one ticket document
    rewritten in its Parquet file is a MISMATCH naming that object, and only that one."""
    folder = spark.raw_folder(spark_run["warehouse"], "tickets") / spark_run["run_id"]
    path = sorted(folder.glob("*.parquet"))[0]
    table = pq.read_table(path)
    docs = table.column("doc").to_pylist()
    docs[0] = docs[0].replace("Approved", "Rejected", 1) if "Approved" in docs[0] \
        else docs[0] + " "
    pq.write_table(table.set_column(table.schema.get_field_index("doc"), "doc",
                                    pa.array(docs, type=pa.string())), path)
    store = LocalStore(spark_run["home"] / "store")
    with pg_database.connect() as conn:
        run = runs.get_run(conn, spark_run["run_id"])
        rows = verify.evidence_rows(conn, run.id)
        verdicts = verify_raw.check_raw_tables(conn, run, rows, store)
    failed = [v for v in verdicts if v.failed]
    assert [v.status for v in failed] == ["MISMATCH"], [v.line() for v in failed]
    assert path.stem in failed[0].line()
    assert sum(1 for v in verdicts if v.status == "OK") == len(verdicts) - 1
