"""Where the reconcile runs: PostgreSQL (the default) or Spark (`engine: spark`).

On Spark the raw tables and the marts are Parquet folders under the warehouse
(soxtrail.kernel.spark), dbt-spark builds the marts there (insert_overwrite, partitioned by
run_id), and each control's canonical result is computed from the Spark rows. The evidence
tables stay in PostgreSQL, and so does the report's copy of each mart: the run's mart rows
are published into PostgreSQL's `marts` tables (built with the PostgreSQL shape of the same
models), and the published rows must hash to the same canonical result
as the Spark rows, or the reconcile fails. The workbook, the bundle and the auditor tools
read the published rows; `verify` re-runs the stored Spark SQL on Spark.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from soxtrail.kernel import canonical, controls, spark
from soxtrail.kernel.config import Config
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import PipelineError
from soxtrail.reconcile import dbt

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


MARTS_ENV = "SOXTRAIL_SPARK_MARTS"  # where dbt-spark writes the marts (their location_root)
WORK_ENV = "SOXTRAIL_SPARK_WORK"  # where it writes the intermediate tables (this process's)


def warehouse(settings: dict[str, Any]) -> Path:
    """The warehouse folder of a config's (or a recorded run's) `spark:` settings."""
    return Path(settings.get("warehouse") or home() / "warehouse")


def recorded_settings(config: Config) -> dict[str, Any]:
    """What a run records of its Spark settings (the warehouse made explicit)."""
    return {**config.spark, "warehouse": str(warehouse(config.spark))}


def spark_session(settings: dict[str, Any], raw_tables: list[tuple[str, tuple[str, ...]]],
                  conn: psycopg.Connection[Any]) -> SparkSession:
    """This process's Spark session with the raw tables, the marts and this process's copy
    of the evidence table registered."""
    folder = warehouse(settings)
    os.environ[MARTS_ENV] = str(spark.marts_root(folder))  # dbt_project.yml: location_root
    os.environ[WORK_ENV] = str(spark.work_root(folder))
    session = spark.session(folder, master=settings.get("master"),
                            conf={str(k): str(v) for k, v in (settings.get("conf") or {}).items()})
    spark.register_raw(session, folder, raw_tables)
    spark.register_marts(session, folder)
    mirror_evidence(conn, session, folder)
    return session


def stages(node: Any, nodes: dict[str, Any]) -> list[dict[str, str]]:
    """The intermediate tables a model built on Spark reads, directly or through another,
    each before the ones that read it: `{"model", "relation", "sql"}` with the compiled SQL
    dbt built it from. `nodes`: the invocation's nodes by unique id. On PostgreSQL (and for
    models that read none) an empty list: there the intermediate models are ephemeral and a
    mart's SQL stands alone."""
    ordered: list[dict[str, str]] = []
    seen: set[str] = set()

    def visit(current: Any) -> None:
        for upstream_id in sorted(current.depends_on.nodes):
            upstream = nodes.get(upstream_id)
            if upstream is None or upstream_id in seen \
                    or upstream.config.materialized != "table":
                continue
            seen.add(upstream_id)
            visit(upstream)
            if not upstream.compiled_code:
                raise PipelineError(f"dbt gave no compiled SQL for {upstream.name}")
            ordered.append({"model": upstream.name, "relation": upstream.relation_name,
                            "sql": upstream.compiled_code})

    visit(node)
    return ordered


# the soxtrail tables some models read (what a run snapshotted; the runs before it), as
# this process's copies in Spark
MIRRORED = ("sox_evidence", "sox_runs")


def _arrow_type(udt: str) -> Any:
    import pyarrow as pa

    if udt.startswith("_"):
        return pa.list_(_arrow_type(udt[1:]))
    return {"timestamptz": pa.timestamp("us", tz="UTC"), "int4": pa.int32(),
            "int8": pa.int64(), "bool": pa.bool_()}.get(udt, pa.string())


def mirror_evidence(conn: psycopg.Connection[Any], session: SparkSession,
                    folder: Path) -> None:
    """Register `soxtrail.sox_evidence` and `soxtrail.sox_runs` in the Spark session: this
    process's copies of those tables (Parquet files of their rows as they are now; the
    tables themselves stay in PostgreSQL), read by the models that list what a run
    snapshotted and by the register (the runs before this one). Ids, JSON and other text
    as text; the copies are this process's own (under the warehouse's `_evidence/`,
    removed when it exits)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=_evidence_root(folder)))
    atexit.register(shutil.rmtree, copy, True)
    session.sql("create database if not exists soxtrail")
    for table_name in MIRRORED:
        columns = conn.execute(
            "select column_name, udt_name from information_schema.columns where table_schema"
            " = 'soxtrail' and table_name = %s order by ordinal_position",
            (table_name,)).fetchall()
        if not columns:
            conn.commit()
            raise PipelineError(f"soxtrail.{table_name} does not exist in this database")
        types = [_arrow_type(udt) for _, udt in columns]
        select = sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(name)) if kind == pa.string()
            else sql.Identifier(name) for (name, _), kind in zip(columns, types, strict=True))
        rows = conn.execute(sql.SQL("select {} from {} order by 1").format(
            select, sql.Identifier("soxtrail", table_name))).fetchall()
        conn.commit()
        table = pa.Table.from_arrays(
            [pa.array([row[i] for row in rows], type=kind) for i, kind in enumerate(types)],
            names=[name for name, _ in columns])
        (copy / table_name).mkdir()
        pq.write_table(table, copy / table_name / f"{table_name}.parquet")
        session.sql(f"drop table if exists soxtrail.{table_name}")
        session.sql(f"create table soxtrail.{table_name} using parquet location "
                    f"'{spark.quote_path(copy / table_name)}'")


def _evidence_root(folder: Path) -> Path:
    root = folder / "_evidence"
    root.mkdir(parents=True, exist_ok=True)
    return root


def mart_models() -> list[str]:
    """Every mart (models/marts: the evidenced ones and those built without evidence, such
    as the role holding periods), in the order they are published."""
    return sorted(path.stem for path in controls.CONTROL_MODELS_DIR.rglob("*.sql"))


def _pg_tables(conn: psycopg.Connection[Any], models: list[str]) -> set[str]:
    rows = conn.execute("select table_name from information_schema.tables"
                        " where table_schema = %s and table_name = any(%s)",
                        (controls.MARTS_SCHEMA, models)).fetchall()
    conn.commit()
    return {r[0] for r in rows}


def ensure_pg_marts(db: Database, conn: psycopg.Connection[Any], workdir: Path,
                    variables: dict[str, Any], models: list[str]) -> None:
    """Create PostgreSQL's marts tables that do not exist yet, with the PostgreSQL shape of
    the same models: dbt builds them on PostgreSQL, whose raw tables hold no row of a Spark
    run (whatever rows that gives the run, e.g. a summary of empty populations, the
    published rows replace). (`dbt run --empty` would be the direct way, but its
    subqueries collide with the aliases the models give their sources.)"""
    missing = [m for m in models if m not in _pg_tables(conn, models)]
    if not missing:
        return
    result = dbt.invoke(db, ["run", "--select", *missing], workdir=workdir, vars=variables)
    failed = dbt.failures(result)
    if failed or not result.success:
        raise PipelineError("creating the PostgreSQL marts for the published rows failed: "
                            + ("; ".join(failed[:3]) or "see dbt log"))


def mart_columns(conn: psycopg.Connection[Any], model: str) -> list[str]:
    """A mart's columns in the model's select order (PostgreSQL's table, built from the same
    SQL; a Spark table puts its partition column run_id last)."""
    rows = conn.execute("select column_name from information_schema.columns where"
                        " table_schema = %s and table_name = %s order by ordinal_position",
                        (controls.MARTS_SCHEMA, model)).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def spark_mart_query(conn: psycopg.Connection[Any], model: str, run_id: str) -> str:
    """The run's rows of a Spark mart, its columns in the model's order."""
    return spark.mart_query(model, run_id, mart_columns(conn, model))


def mart_key(columns: list[str]) -> str:
    """The column that orders a mart's canonical result: a control's item_key, else the
    mart's own key (the role holding periods' period_key)."""
    keys = [c for c in columns if c == "item_key"] or [c for c in columns if c.endswith("_key")]
    if not keys:
        raise PipelineError(f"a mart with no key column: {', '.join(columns)}")
    return keys[0]


def publish_mart(conn: psycopg.Connection[Any], session: SparkSession, model: str,
                 run_id: str) -> canonical.Canonical:
    """Replace the run's rows of a PostgreSQL mart with the Spark mart's; their canonical
    result (on PostgreSQL, in the order of mart_key) is returned for the caller to
    compare."""
    table = spark.fetch_arrow(session, spark_mart_query(conn, model, run_id))
    names = table.schema.names
    relation = sql.Identifier(controls.MARTS_SCHEMA, model)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("delete from {} where run_id = %s").format(relation), (run_id,))
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        with cur.copy(sql.SQL("copy {} ({}) from stdin").format(relation, columns)) as copy:
            for row in zip(*[c.to_pylist() for c in table.columns], strict=True):
                copy.write_row(row)
    return canonical.mart_result(conn, controls.MARTS_SCHEMA, model, run_id,
                                 key=mart_key(names))
