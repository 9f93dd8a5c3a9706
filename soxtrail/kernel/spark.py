"""The Spark engine (`engine: spark`): its session, where its tables live, how they are named.

Raw tables and marts live in the engine as plain Parquet files under the run's warehouse
folder (no Delta or Iceberg: their jars come from Maven); the evidence tables stay in
PostgreSQL. The catalog is Spark's in-memory one, so each process (each pytest-xdist
worker, `verify`, a run) has its own and never shares a Derby metastore folder: every
process registers the tables from their folders (`register_tables`), which are the truth.

    <warehouse>/raw/<table>/<run_id>/<evidence_id>.parquet     one file per raw object
    <warehouse>/marts/<model>/run_id=<run_id>/part-*.parquet   dbt's insert_overwrite
    <warehouse>/_work/<pid>-…/<model>/part-*.parquet            this process's intermediate
                                                               tables (removed at exit)

pyspark is an optional extra (`pip install soxtrail[spark]`); it is imported here only
when a Spark session is asked for.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soxtrail.kernel.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_ENV = "SOXTRAIL_SPARK_MASTER"
DEFAULT_MASTER = "local[*]"  # every core of this machine; a cluster URL in production
RAW_SCHEMA = "raw"
MARTS_SCHEMA = "marts"
WORK_SCHEMA = "work"  # the intermediate models' tables (dbt_project.yml), this process's own
# what every soxtrail Spark session runs with: UTC like the PostgreSQL sessions, ANSI off
# as dbt-spark sets it (its casts return null instead of failing), dynamic partition
# overwrite for the marts' insert_overwrite, few shuffle partitions (the marts are small)
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.legacy.allowNonEmptyLocationInCTAS": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.catalogImplementation": "in-memory",
    # the marts' plans hold many sorts and windows in one task: small memory pages keep
    # them from exhausting the task's memory ("Unable to acquire memory")
    "spark.buffer.pageSize": "2m",
    # local mode: the driver is the executor (a cluster sets its own in `spark: conf:`)
    "spark.driver.memory": "4g",
    # inferring filters from the constraints of every join and window of a mart's plan
    # takes the optimizer minutes (int_role_holdings_reconstructed: never finished)
    "spark.sql.constraintPropagation.enabled": "false",
    # timestamps in the marts' files as Parquet's standard UTC instants (Spark's default,
    # INT96, reads back in other readers as a time without zone)
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def require_pyspark() -> None:
    """Fail with how to install what engine: spark needs (the extra, and Java)."""
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError("engine: spark needs the spark extra (pyspark, dbt-spark, pyarrow): "
                          "pip install 'soxtrail[spark]' (make quarter ENGINE=spark installs "
                          "it)") from exc
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and Path(java_home, "bin", "java").exists())):
        raise ConfigError("engine: spark needs Java 17 (Debian: openjdk-17-jre-headless; "
                          "make spark-deps installs it) on PATH or in JAVA_HOME")


_STOP_AT_EXIT: list[Any] = []


def session(warehouse: Path, *, master: str | None = None,
            conf: dict[str, str] | None = None) -> SparkSession:
    """This process's Spark session (created once; dbt-spark's session method reuses it)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    warehouse.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.master(
        master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER).appName("soxtrail")
    settings = {**SESSION_CONF, "spark.sql.warehouse.dir": str(warehouse / "managed"),
                **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not _STOP_AT_EXIT:  # the JVM goes with this process, a failed run's too
        atexit.register(spark.stop)
        _STOP_AT_EXIT.append(spark)
    spark.sparkContext.setLogLevel("ERROR")
    for schema in (RAW_SCHEMA, MARTS_SCHEMA, WORK_SCHEMA):
        spark.sql(f"create database if not exists {schema}")
    return spark


def raw_folder(warehouse: Path, table: str) -> Path:
    """The folder of a raw table's Parquet files (`table` without its schema)."""
    return warehouse / RAW_SCHEMA / table


def raw_object_path(warehouse: Path, table: str, run_id: str, evidence_id: str) -> Path:
    """The Parquet file of one raw object."""
    return raw_folder(warehouse, table) / run_id / f"{evidence_id}.parquet"


def write_text_table(target: Path, columns: Iterable[str],
                     values: list[list[str | None]]) -> None:
    """Write a raw table's Parquet file (every column text, `values` column by column),
    whole or not at all: written beside it as a dot file (Spark skips those), then renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial"
    pq.write_table(pa.Table.from_arrays([pa.array(v, type=pa.string()) for v in values],
                                        names=list(columns)), partial)
    os.replace(partial, target)


def marts_root(warehouse: Path) -> Path:
    """The folder dbt writes the marts under (`location_root`)."""
    return warehouse / MARTS_SCHEMA


def work_root(warehouse: Path | None = None) -> Path:
    """This process's folder for the intermediate tables (`location_root` of the work
    schema): made once (under the warehouse's `_work/`, or the system's temporary folder
    when no warehouse is given), removed when the process exits. They are working copies,
    read by no other process: `verify` builds its own from the stored SQL (`build_stages`)."""
    if not _WORK_ROOT:
        parent = warehouse / "_work" if warehouse is not None else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent))
        atexit.register(shutil.rmtree, folder, True)
        _WORK_ROOT.append(folder)
    return _WORK_ROOT[0]


_WORK_ROOT: list[Path] = []
# relation -> SHA-256 of the SQL it was built from in this process by build_stages
_BUILT_STAGES: dict[str, str] = {}


def build_stages(spark: SparkSession, stages: Iterable[dict[str, str]]) -> int:
    """Build, in order, the intermediate tables a control's stored SQL reads: each stage's
    stored SQL (`{"relation": "work.<model>", "sql": …}`) into a Parquet table of this
    process's work folder. A relation already built here from the same SQL is kept; one
    built by dbt, or from other SQL, is replaced. The number built."""
    from soxtrail.kernel import canonical

    built = 0
    for stage in stages:
        relation, query = str(stage["relation"]), str(stage["sql"])
        schema, _, name = relation.replace("`", "").partition(".")
        if schema != WORK_SCHEMA or not name.replace("_", "").isalnum():
            raise ValueError(f"not an intermediate table of the work schema: {relation!r}")
        digest = hashlib.sha256(query.encode("utf-8")).hexdigest()
        if _BUILT_STAGES.get(relation) == digest:
            continue
        folder = work_root() / "stages" / name
        shutil.rmtree(folder, ignore_errors=True)
        spark.sql(f"drop table if exists {WORK_SCHEMA}.{name}")
        spark.sql(f"create table {WORK_SCHEMA}.{name} using parquet"
                  f" location '{quote_path(folder)}' as\n{canonical.strip_sql(query)}")
        _BUILT_STAGES[relation] = digest
        built += 1
    return built


def quote_path(path: Path) -> str:
    """A path as the text of a Spark SQL string literal."""
    return str(path).replace("\\", "\\\\").replace("'", "\\'")


def register_raw(spark: SparkSession, warehouse: Path,
                 tables: Iterable[tuple[str, tuple[str, ...]]]) -> None:
    """Register each raw table (name without schema, its columns: all text) over its folder.

    A table with no file yet is registered over its empty folder with its columns, so the
    models compile and read no rows."""
    for table, columns in tables:
        folder = raw_folder(warehouse, table)
        folder.mkdir(parents=True, exist_ok=True)
        spark.sql(f"drop table if exists {RAW_SCHEMA}.{table}")
        spark.sql(
            f"create table {RAW_SCHEMA}.{table} ({', '.join(f'`{c}` string' for c in columns)})"
            f" using parquet options (recursiveFileLookup 'true')"
            f" location '{quote_path(folder)}'")
        spark.catalog.refreshTable(f"{RAW_SCHEMA}.{table}")


def register_marts(spark: SparkSession, warehouse: Path) -> list[str]:
    """Register every mart folder dbt wrote (partitioned by run_id); their names."""
    root = marts_root(warehouse)
    names = []
    for folder in sorted(root.glob("*")) if root.exists() else []:
        if not folder.is_dir() or not any(folder.glob("run_id=*")):
            continue
        name = folder.name
        spark.sql(f"drop table if exists {MARTS_SCHEMA}.{name}")
        spark.sql(f"create table {MARTS_SCHEMA}.{name} using parquet"
                  f" location '{quote_path(folder)}'")
        spark.sql(f"alter table {MARTS_SCHEMA}.{name} recover partitions")
        names.append(name)
    return names


def fetch_arrow(spark: SparkSession, query: str) -> Any:
    """The rows of a query as a pyarrow Table (timestamps as UTC instants)."""
    return spark.sql(query).toArrow()


def arrow_kind(arrow_type: Any) -> str:
    """The canonical form's SQL type name of an Arrow column type (`_<type>`: an array)."""
    import pyarrow as pa
    import pyarrow.types as t

    if t.is_list(arrow_type) or t.is_large_list(arrow_type):
        return "_" + arrow_kind(arrow_type.value_type)
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "text"
    if t.is_boolean(arrow_type):
        return "bool"
    if arrow_type in (pa.int8(), pa.int16(), pa.int32()):
        return "int4"
    if t.is_int64(arrow_type):
        return "int8"
    if t.is_decimal(arrow_type):
        return "numeric"
    if t.is_float32(arrow_type):
        return "float4"
    if t.is_float64(arrow_type):
        return "float8"
    if t.is_date(arrow_type):
        return "date"
    if t.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    return str(arrow_type)  # no canonical encoding: value_encoder says so


def arrow_lines(table: Any) -> list[str]:
    """The canonical lines (form 2) of an Arrow table's rows, in its order."""
    from soxtrail.kernel import canonical

    columns = [(field.name, arrow_kind(field.type)) for field in table.schema]
    rows = list(zip(*[column.to_pylist() for column in table.columns], strict=True)) \
        if table.num_columns else []
    return canonical.encode_lines(columns, rows)


def canonical_result(spark: SparkSession, query: str,
                     sink: Callable[[bytes], Any] | None = None, key: str = "item_key") -> Any:
    """The canonical result (form 2) of a query's rows on Spark, ordered by its `key`
    column (item_key) as on PostgreSQL (binary order: PostgreSQL's "C" collation): the
    same bytes, the same hash."""
    from soxtrail.kernel import canonical

    order = canonical.key_column(key)
    table = fetch_arrow(spark, f"select canonical_row.* from (\n{canonical.strip_sql(query)}\n)"
                               f" as canonical_row order by canonical_row.{order}")
    lines = arrow_lines(table)
    digest = hashlib.sha256()
    for start in range(0, len(lines), canonical.CANONICAL_BATCH):
        text = "\n".join(lines[start:start + canonical.CANONICAL_BATCH])
        chunk = (text if start == 0 else "\n" + text).encode("utf-8")
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return canonical.Canonical(digest.hexdigest(), len(lines))


def mart_query(model: str, run_id: str, columns: list[str] | None = None) -> str:
    """The run's rows of a mart built on Spark (`columns`, in that order, or all)."""
    if not run_id.replace("-", "").isalnum():
        raise ValueError(f"not a run id: {run_id!r}")
    listed = ", ".join(f"`{c}`" for c in columns) if columns else "*"
    return f"select {listed} from {MARTS_SCHEMA}.{model} where run_id = '{run_id}'"
