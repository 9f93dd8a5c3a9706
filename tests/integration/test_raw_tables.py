"""The raw tables as the connectors declare them: the DDL and the dbt sources say the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from extract.connectors.registry import RAW_TABLES
from extract.loader import SOURCE_SETTINGS_COLUMNS
from soxtrail.kernel.database import Database

PROJECT_DIR = Path(__file__).resolve().parents[2]
PLATFORM_SQL = PROJECT_DIR / "soxtrail" / "kernel" / "sql" / "platform.sql"
MODELS_DIR = PROJECT_DIR / "models"


def declared_tables() -> dict[str, tuple[str, ...]]:
    """Every raw table with its columns in order: the connectors' `raw_tables`, and
    `raw.source_settings` (loaded from the connectors' settings, not from an object)."""
    tables = {name: shape.columns for name, shape in RAW_TABLES.items()}
    tables["raw.source_settings"] = SOURCE_SETTINGS_COLUMNS
    return tables


def database_tables(db: Database) -> dict[str, tuple[str, ...]]:
    """The tables of schema `raw` in a database, with their columns in order."""
    tables: dict[str, list[str]] = {}
    with db.connect() as conn:
        rows = conn.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'raw' order by table_name, ordinal_position").fetchall()
    for table, column in rows:
        tables.setdefault(f"raw.{table}", []).append(column)
    return {table: tuple(columns) for table, columns in tables.items()}


def source_tables(models_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The dbt sources in schema `raw` of every YAML file under models/: table → columns."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(models_dir.rglob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for source in document.get("sources") or []:
            if source.get("schema", source["name"]) != "raw":
                continue
            for table in source.get("tables") or []:
                name = f"raw.{table.get('identifier', table['name'])}"
                assert name not in tables, f"{path}: {name} is declared twice in the dbt sources"
                tables[name] = list(table.get("columns") or [])
    return tables


def platform_sql_tables(text: str) -> set[str]:
    """Every `raw.<table>` that platform.sql names (tables, indexes, append-only triggers)."""
    return {f"raw.{name}" for name in re.findall(r"\braw\.(\w+)", text)}


def _differences(expected: dict[str, tuple[str, ...]],
                 actual: dict[str, tuple[str, ...]]) -> list[str]:
    problems = [f"{table}: declared by no connector" for table in sorted(actual.keys()
                                                                          - expected.keys())]
    problems += [f"{table}: missing" for table in sorted(expected.keys() - actual.keys())]
    problems += [f"{table}: columns {list(actual[table])}, declared {list(expected[table])}"
                 for table in sorted(expected.keys() & actual.keys())
                 if actual[table] != expected[table]]
    return problems


@pytest.mark.integration
def test_a_bootstrapped_database_has_exactly_the_declared_raw_tables(
        pg_database: Database) -> None:
    assert _differences(declared_tables(), database_tables(pg_database)) == []


@pytest.mark.integration
def test_every_declared_raw_table_is_append_only(pg_database: Database) -> None:
    with pg_database.connect() as conn:
        rows = conn.execute(
            "select c.relname, t.tgname from pg_trigger t"
            " join pg_class c on c.oid = t.tgrelid"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'raw' and not t.tgisinternal").fetchall()
    triggers = {(f"raw.{table}", trigger) for table, trigger in rows}
    missing = [(table, trigger) for table in declared_tables()
               for trigger in ("append_only", "append_only_truncate")
               if (table, trigger) not in triggers]
    assert missing == []


def test_the_dbt_sources_declare_exactly_the_declared_raw_tables() -> None:
    sources = source_tables(MODELS_DIR)
    columns = {table: tuple(column["name"] for column in listed)
               for table, listed in sources.items()}
    assert _differences(declared_tables(), columns) == []


def test_every_raw_source_column_has_a_description() -> None:
    undescribed = [f"{table}.{column['name']}"
                   for table, listed in source_tables(MODELS_DIR).items()
                   for column in listed if not str(column.get("description") or "").strip()]
    assert undescribed == []


def test_platform_sql_names_only_declared_raw_tables() -> None:
    named = platform_sql_tables(PLATFORM_SQL.read_text(encoding="utf-8"))
    assert sorted(named - declared_tables().keys()) == []
    assert sorted(declared_tables().keys() - named) == []
