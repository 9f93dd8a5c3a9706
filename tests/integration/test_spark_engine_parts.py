"""engine: spark, its parts on real Spark (pyspark's bundled Spark, local[1]) over the demo
run's own snapshot objects — fast enough for `make test`:

* the loader writes each object as one Parquet file holding exactly the rows the
  PostgreSQL load put in the raw table (the same parse, read back from its COPY lines),
  and the load stats it records are the PostgreSQL load's;
* verify's raw check re-derives every Parquet object from the store (OK), and names a
  rewritten one (MISMATCH);
* (`make test-spark`, marker `spark`: the porting harness's way, model by model) staging
  and intermediate models and AC-02 compiled for Spark give, on those Parquet raw tables,
  the same canonical rows as compiled for PostgreSQL on its raw tables.

The whole demo quarter on Spark (every mart, `soxtrail verify`, the engine-equivalence of
every mart row) is tests/e2e/test_spark_engine.py, in `make test` too.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extract import loader
from soxtrail.audit import verify, verify_raw
from soxtrail.kernel import runs, spark
from soxtrail.reconcile import engine
from tests.support import spark_port
from tests.support.demo_quarter import DemoRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# light models (no deep chain of parsed audit logs) over the raw tables of each kind and
# the evidence table's copy (not stg_completeness__statements: its `findings` column is
# PostgreSQL's jsonb, printed in its normal form, and the JSON text as loaded on Spark)
MODELS = ("stg_catalogs__roles", "stg_db_catalog__memberships", "stg_iam__deactivations",
          "stg_tickets__tickets", "stg_backups__backups", "int_clusters_scoped",
          "stg_soxtrail__run_sources")
# and the mart over the longest chain: on Spark it reads the intermediate tables (the work
# schema), built here from their compiled SQL as verify builds them (spark.build_stages)
STAGED = ("fct_control_ac02__timely_revocation",)


@pytest.fixture(scope="module")
def warehouse(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    """The demo run's objects written again as the Spark engine's load writes them (the
    run's own load stats are the PostgreSQL load's: what the Spark load would record is
    kept here to compare)."""
    folder = tmp_path_factory.mktemp("warehouse")
    scratch = tmp_path_factory.mktemp("objects")
    written: dict[str, loader.ParquetObject] = {}
    with demo_run.db.connect() as conn:
        objects = conn.execute(
            "select id::text, query_params, raw_output_s3_key from soxtrail.sox_evidence"
            " where run_id = %s and query_params ? 'raw_table' order by id",
            (demo_run.run_id,)).fetchall()
        for evidence_id, params, key in objects:
            local = demo_run.store.fetch(key, scratch / evidence_id / Path(key).name)
            written[evidence_id] = loader.write_parquet(
                warehouse=folder, run_id=demo_run.run_id, evidence_id=evidence_id,
                params=params, path=local)
        spark_port.export_settings(conn, demo_run.run_id, folder)
    return {"folder": folder, "objects": objects, "written": written}


def _jsonb_columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    schema, name = table.split(".")
    return {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = %s and"
        " table_name = %s and data_type = 'jsonb'", (schema, name))}


def test_each_object_is_one_parquet_file_with_the_raw_tables_rows(
        demo_run: DemoRun, warehouse: dict[str, Any]) -> None:
    """Text columns equal as text; jsonb columns (PostgreSQL's normal form of the JSON)
    equal as JSON values."""
    checked = 0
    with demo_run.db.connect() as conn:
        for evidence_id, params, _ in warehouse["objects"]:
            table = params["raw_table"]
            columns = loader.RAW_TABLES[table].columns
            jsonb = _jsonb_columns(conn, table)
            path = spark.raw_object_path(warehouse["folder"], table.removeprefix("raw."),
                                         demo_run.run_id, evidence_id)

            def key(row: dict[str, Any] | tuple[Any, ...], cols: tuple[str, ...] = columns,
                    js: set[str] = jsonb) -> str:
                values = row if isinstance(row, tuple) else tuple(row[c] for c in cols)
                return json.dumps([json.loads(v) if c in js and v is not None else v
                                   for c, v in zip(cols, values, strict=True)], sort_keys=True)

            written = [key(r) for r in pq.read_table(path).to_pylist()]
            stored = [key(tuple(r)) for r in conn.execute(
                f"select {', '.join(c + '::text' for c in columns)} from {table}"  # type: ignore[arg-type]
                " where evidence_id = %s", (evidence_id,))]
            assert Counter(written) == Counter(stored), path
            checked += len(written)
    assert checked > 1000


def test_the_spark_load_would_record_the_same_counts_and_content_hash(
        demo_run: DemoRun, warehouse: dict[str, Any]) -> None:
    with demo_run.db.connect() as conn:
        recorded = {str(r[0]): tuple(r[1:]) for r in conn.execute(
            "select evidence_id, records_read, records_loaded, records_rejected,"
            " records_skipped, content_sha256 from soxtrail.sox_load_stats where run_id = %s",
            (demo_run.run_id,))}
    assert warehouse["written"]
    for evidence_id, written in warehouse["written"].items():
        c = written.counts
        assert (c.read, c.loaded, c.rejected, c.skipped, written.content_sha256) == \
            recorded[evidence_id], evidence_id


def test_verify_rederives_the_parquet_objects_and_names_a_rewritten_one(
        demo_run: DemoRun, warehouse: dict[str, Any]) -> None:
    with demo_run.db.connect() as conn:
        run = runs.get_run(conn, demo_run.run_id)
        run.config["engine"] = "spark"  # as a Spark run records it, over this warehouse
        run.config["spark"] = {"warehouse": str(warehouse["folder"])}
        rows = verify.evidence_rows(conn, run.id)
        clean = verify_raw.check_raw_tables(conn, run, rows, demo_run.store)
        assert clean and all(v.status == "OK" for v in clean), [
            v.line() for v in clean if v.failed]
        folder = spark.raw_folder(warehouse["folder"], "tickets") / run.id
        path = sorted(folder.glob("*.parquet"))[0]
        table = pq.read_table(path)
        docs = table.column("doc").to_pylist()
        docs[0] = docs[0] + " "
        pq.write_table(table.set_column(table.schema.get_field_index("doc"), "doc",
                                        pa.array(docs, type=pa.string())), path)
        tampered = verify_raw.check_raw_tables(conn, run, rows, demo_run.store)
    failed = [v for v in tampered if v.failed]
    assert [v.status for v in failed] == ["MISMATCH"], [v.line() for v in failed]
    assert path.stem in failed[0].line()


@pytest.mark.spark  # the whole quarter's equivalence is in make test (tests/e2e)
def test_models_give_the_same_rows_on_spark_as_on_postgresql(
        demo_run: DemoRun, warehouse: dict[str, Any], tmp_path: Path) -> None:
    folder = warehouse["folder"]
    session = spark.session(folder, master="local[1]")
    spark.register_raw(session, folder, loader.spark_raw_tables())
    with demo_run.db.connect() as conn:
        engine.mirror_evidence(conn, session, folder)
        variables = spark_port.run_vars(conn, demo_run.run_id)
        pg_sql = spark_port.compile_models("postgres", demo_run.db, list(MODELS), variables,
                                           tmp_path / "pg")
        stages: dict[str, list[dict[str, str]]] = {}
        spark_sql = spark_port.compile_models("spark", demo_run.db, [*MODELS, *STAGED],
                                              variables, tmp_path / "spark", stages)
        pg_sql.update(spark_port.compile_models("postgres", demo_run.db, list(STAGED),
                                                variables, tmp_path / "pg-staged"))
        assert {"int_role_events_unioned", "int_role_holdings_reconstructed"} <= {
            stage["model"] for stage in stages[STAGED[0]]}
        assert not any(stages[model] for model in MODELS if model.startswith("stg_"))
        rows = 0
        for model in (*MODELS, *STAGED):
            on_postgres = spark_port.pg_lines(conn, pg_sql[model])
            conn.rollback()
            spark.build_stages(session, stages[model])
            on_spark = spark_port.spark_lines(session, spark_sql[model])
            assert Counter(on_postgres) == Counter(on_spark), model
            rows += len(on_postgres)
    assert rows > 500
