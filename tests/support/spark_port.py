"""Run dbt models on both engines over one PostgreSQL run's raw rows and compare them.

For porting and for the engine-equivalence test: the raw rows of a completed PostgreSQL
run are written as Parquet (all text, as the Spark loader writes them), registered in a
local Spark session, and any model (ephemeral ones too) is compiled for each engine and
its compiled SQL run on each; the rows are compared as canonical lines (form 2).

    python -m tests.support.spark_port --dsn postgresql://…/db --run RUN \\
        --work /tmp/port --models stg_iam__deactivations,int_role_grants_parsed

prints, per model, the row counts on both engines and the first differing lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from extract.loader import spark_raw_tables
from soxtrail.kernel import canonical
from soxtrail.kernel import spark as engine_spark
from soxtrail.kernel.database import Database
from soxtrail.reconcile import dbt, engine
from soxtrail.reconcile.engine import stages as model_stages


def run_vars(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """The dbt vars a run's reconcile recorded."""
    row = conn.execute("select query_params from soxtrail.sox_evidence where run_id = %s and"
                       " source_system = 'reconcile' limit 1", (run_id,)).fetchone()
    if row is None:
        raise SystemExit(f"run {run_id} has no reconcile evidence")
    return dict(row[0]["vars"])


def export_raw(conn: psycopg.Connection[Any], run_id: str, warehouse: Path) -> dict[str, int]:
    """Every raw table's rows of the run as one Parquet file per raw object (all text)."""
    counts = {}
    for table, columns in spark_raw_tables():
        select = ", ".join(f"{c}::text" for c in columns)
        rows = conn.execute(f"select {select} from raw.{table} where run_id = %s"  # type: ignore[arg-type]
                            f" order by 2, 3", (run_id,)).fetchall()
        by_object: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_object.setdefault(row[1] if "evidence_id" in columns else "settings",
                                 []).append(row)
        for evidence_id, object_rows in by_object.items():
            engine_spark.write_text_table(
                engine_spark.raw_object_path(warehouse, table, run_id, evidence_id), columns,
                [[r[i] for r in object_rows] for i in range(len(columns))])
        counts[table] = len(rows)
    return counts


def export_settings(conn: psycopg.Connection[Any], run_id: str, warehouse: Path) -> int:
    """The run's raw.source_settings rows as the Spark load's settings file."""
    columns = dict(spark_raw_tables())["source_settings"]
    rows = conn.execute(f"select {', '.join(c + '::text' for c in columns)}"  # type: ignore[arg-type]
                        " from raw.source_settings where run_id = %s order by 2, 3",
                        (run_id,)).fetchall()
    engine_spark.write_text_table(
        engine_spark.raw_object_path(warehouse, "source_settings", run_id, "settings"),
        columns, [[r[i] for r in rows] for i in range(len(columns))])
    return len(rows)


def raw_tables() -> list[tuple[str, tuple[str, ...]]]:
    """(table without schema, columns) of every raw table."""
    return spark_raw_tables()


def compile_models(engine: str, db: Database, models: list[str], variables: dict[str, Any],
                   work: Path, stages: dict[str, list[dict[str, str]]] | None = None
                   ) -> dict[str, str]:
    """Each model's compiled SQL (ephemeral CTEs injected) for one engine; with `stages`,
    also each model's intermediate tables (reconcile.engine.stages: on Spark), to build
    (spark.build_stages) before its SQL runs."""
    selected = [f"+{m}" for m in models] if stages is not None else models
    result = dbt.invoke(db, ["compile", "--select", *selected], workdir=work, vars=variables,
                        engine=engine)
    nodes = {item.node.unique_id: item.node for item in result.results
             if getattr(item, "node", None) is not None}
    out = {}
    for node in nodes.values():
        if node.name in models:
            out[node.name] = node.compiled_code
            if stages is not None:
                stages[node.name] = model_stages(node, nodes)
    return out


def spark_lines(spark: Any, sql_text: str) -> list[str]:
    """Canonical lines of a query run on Spark."""
    table = engine_spark.fetch_arrow(spark, canonical.strip_sql(sql_text))
    return engine_spark.arrow_lines(table)


def pg_lines(conn: psycopg.Connection[Any], sql_text: str) -> list[str]:
    """Canonical lines of a query run on PostgreSQL (in no order)."""
    conn.execute("set time zone 'UTC'")
    with conn.cursor() as cur:
        cur.adapters.register_loader("uuid", TextLoader)
        cur.adapters.register_loader("timestamptz", TextLoader)
        cur.adapters.register_loader("jsonb", TextLoader)
        cur.execute(canonical.strip_sql(sql_text))  # type: ignore[arg-type]
        columns = [(name, "text" if kind == "jsonb" else kind)
                   for name, kind in canonical.described_columns(conn, cur.description or ())]
        return canonical.encode_lines(columns, cur.fetchall())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--reexport", action="store_true", help="export the raw rows again")
    parser.add_argument("--show", type=int, default=5, help="differing lines to print")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="folder of each model's PostgreSQL lines before the port: compared"
                             " with (written when missing)")
    parser.add_argument("--pg-only", action="store_true", help="PostgreSQL side only")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    work: Path = args.work
    warehouse = work / "warehouse"
    db = Database(args.dsn, embedded=False)
    with psycopg.connect(args.dsn) as conn:
        variables = run_vars(conn, args.run)
        if args.reexport or not (warehouse / "raw").exists():
            shutil.rmtree(warehouse / "raw", ignore_errors=True)
            print("exported", export_raw(conn, args.run, warehouse), flush=True)
        spark = None
        if not args.pg_only:
            spark = engine_spark.session(warehouse)
            engine_spark.register_raw(spark, warehouse, raw_tables())
            engine.mirror_evidence(conn, spark, warehouse)
        pg_sql = compile_models("postgres", db, models, variables, work / "dbt_pg")
        sp_stages: dict[str, list[dict[str, str]]] = {}
        sp_sql = {} if args.pg_only else compile_models("spark", db, models, variables,
                                                        work / "dbt_spark", sp_stages)
        failed = 0
        for model in models:
            (work / "sql").mkdir(exist_ok=True)
            (work / "sql" / f"{model}.pg.sql").write_text(pg_sql.get(model, ""))
            (work / "sql" / f"{model}.spark.sql").write_text(sp_sql.get(model, ""))
            try:
                left = pg_lines(conn, pg_sql[model])
            except Exception as exc:
                conn.rollback()
                print(f"{model}: PostgreSQL failed: {exc}")
                failed += 1
                continue
            if args.baseline is not None:
                saved = args.baseline / f"{model}.pg"
                if not saved.exists():
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    saved.write_text("\n".join(sorted(left)), encoding="utf-8")
                    print(f"{model}: baseline written ({len(left)} rows)")
                elif "\n".join(sorted(left)) != saved.read_text(encoding="utf-8"):
                    print(f"{model}: POSTGRESQL CHANGED against the baseline {saved}")
                    failed += 1
                    continue
            if spark is None:
                continue
            started = time.monotonic()
            try:
                engine_spark.build_stages(spark, sp_stages.get(model, []))
                right = spark_lines(spark, sp_sql[model])
            except Exception as exc:
                print(f"{model}: Spark failed: {str(exc)[:1500]}")
                failed += 1
                continue
            a, b = Counter(left), Counter(right)
            if a == b:
                print(f"{model}: SAME ({len(left)} rows, Spark {time.monotonic() - started:.1f} s)")
                continue
            failed += 1
            only_pg = sorted((a - b).elements())
            only_spark = sorted((b - a).elements())
            print(f"{model}: DIFFERENT: postgres {len(left)} rows, spark {len(right)} rows;"
                  f" {len(only_pg)} only on postgres, {len(only_spark)} only on spark")
            for line in only_pg[:args.show]:
                print("  pg   ", line[:600])
            for line in only_spark[:args.show]:
                print("  spark", line[:600])
    print(json.dumps({"models": len(models), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
