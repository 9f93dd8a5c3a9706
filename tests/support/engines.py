"""The same run's marts on both engines, for the engine-equivalence test.

A Spark run (engine: spark) leaves its raw rows as Parquet files and its marts as Parquet
folders. To build the same run's marts on PostgreSQL, its snapshot objects are loaded
into PostgreSQL's raw tables with the loader's own code (object_blocks: the lines the
Spark load wrote), and dbt builds the marts there for the same run id and vars. The two
engines' rows are then read side by side: Spark's from its Parquet folders (pyarrow, no
JVM in the test process), PostgreSQL's from its marts tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from extract import loader
from soxtrail.kernel import canonical, controls, spark
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import Store
from soxtrail.reconcile import dbt
from soxtrail.reconcile.engine import mart_columns, mart_key


def load_into_postgres(conn: psycopg.Connection[Any], run_id: str, store: Store,
                       scratch: Path, warehouse: Path) -> int:
    """COPY every snapshot object of the run into PostgreSQL's raw tables (no load stats:
    the Spark load recorded them), and the run's source settings (written from its config,
    as the Spark load's Parquet file of them); the rows loaded."""
    import pyarrow.parquet as pq

    settings = pq.read_table(spark.raw_object_path(warehouse, "source_settings", run_id,
                                                   "settings")).to_pylist()
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into raw.source_settings ({', '.join(loader.SOURCE_SETTINGS_COLUMNS)})"
            f" values ({', '.join(['%s'] * len(loader.SOURCE_SETTINGS_COLUMNS))})",
            [tuple(row[c] for c in loader.SOURCE_SETTINGS_COLUMNS) for row in settings])
    rows = 0
    objects = conn.execute(
        "select evidence.id::text, evidence.query_params, evidence.raw_output_s3_key"
        " from soxtrail.sox_evidence as evidence where evidence.run_id = %s"
        " and evidence.query_params ? 'raw_table' order by evidence.id", (run_id,)).fetchall()
    for evidence_id, params, key in objects:
        if params["raw_table"] in loader.KEPT_IN_POSTGRES:
            continue  # already there: the Spark load writes these to both
        local = store.fetch(key, scratch / evidence_id / Path(key).name)
        counts = loader.LoadCounts()
        blocks, _ = loader.object_blocks(run_id=run_id, evidence_id=evidence_id, params=params,
                                         path=local, counts=counts, rejects=[])
        with conn.cursor() as cur:
            with cur.copy(loader.copy_sql(params["raw_table"])) as copy:  # type: ignore[arg-type]
                for block in blocks:
                    copy.write(block)
        rows += counts.loaded
    conn.commit()
    return rows


def build_on_postgres(db: Database, run_id: str, workdir: Path) -> None:
    """dbt builds the run's marts on PostgreSQL with the vars the Spark run recorded."""
    with db.connect() as conn:
        row = conn.execute("select query_params from soxtrail.sox_evidence where run_id = %s"
                           " and source_system = 'reconcile' limit 1", (run_id,)).fetchone()
    assert row is not None
    variables = dict(row[0]["vars"])
    result = dbt.invoke(db, ["run", "--select", "path:models/marts"], workdir=workdir,
                        vars=variables)
    assert result.success, dbt.failures(result)


def spark_lines(warehouse: Path, model: str, run_id: str, columns: list[str]) -> list[str]:
    """The canonical lines of the run's rows of a Spark mart, read from its Parquet folder."""
    import pyarrow.dataset as ds

    folder = spark.marts_root(warehouse) / model
    data = ds.dataset(folder, format="parquet", partitioning="hive")
    table = data.to_table(filter=ds.field("run_id") == run_id)
    if "run_id" in table.schema.names:  # the partition column, as a dictionary of strings
        table = table.set_column(table.schema.get_field_index("run_id"), "run_id",
                                 table.column("run_id").cast("string"))
    table = table.select(columns).sort_by([(mart_key(columns), "ascending")])
    return spark.arrow_lines(table)


def postgres_lines(conn: psycopg.Connection[Any], model: str, run_id: str) -> list[str]:
    """The canonical lines of the run's rows of a PostgreSQL mart."""
    out: list[bytes] = []
    canonical.mart_result(conn, controls.MARTS_SCHEMA, model, run_id, sink=out.append,
                          key=mart_key(mart_columns(conn, model)))
    conn.commit()
    text = b"".join(out).decode("utf-8")
    return text.split("\n") if text else []
