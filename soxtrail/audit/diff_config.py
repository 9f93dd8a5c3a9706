"""`soxtrail diff`, config layer: the recorded `soxtrail.yml`, the scope and the three catalogs.

The config compared is the one each run recorded (`sox_runs.config`): `${NAME}` references
as written, literal secrets already removed, so no value of a secret is ever shown. Keys
are dotted paths, a source named by its name (`sources[jira].fields.status`). The keys
that only record where and how a run ran (`RECORD_KEYS`: the folder it read, the resolved
catalog paths, the store, the signing key) are listed but are not a change of input.
The catalogs are compared row by row from the run-keyed raw tables, a row matched by its
catalog's key columns (`CATALOG_KEYS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.kernel import runs

# recorded keys that say where and how the run ran, not what it read
RECORD_KEYS = ("_base_dir", "_catalogs", "_store", "_signing")
# the key columns of each catalog's raw table: a row with the same key and other values
# is "changed"
CATALOG_KEYS: dict[str, tuple[str, ...]] = {
    "role_catalog": ("role_name", "cluster_pattern"),
    "applications": ("application", "cluster"),
    "identity_map": ("login_role",),
}
RAW_SCHEMA = "raw"
# raw-table columns that are the run's record, not the catalog's content
_RECORD_COLUMNS = ("run_id", "evidence_id", "locator")
CONFIG_COLUMNS = ("key", "change", "value_a", "value_b", "counted")
CATALOG_COLUMNS = ("catalog", "key", "change", "row_a", "row_b")


@dataclass(frozen=True)
class KeyChange:
    """One config key (dotted path) added, removed or with another value."""

    key: str
    change: str  # added | removed | changed
    a: Any
    b: Any
    counted: bool  # False for RECORD_KEYS: listed, not a change of input

    def row(self) -> dict[str, Any]:
        """The change as a flat row (CONFIG_COLUMNS), values as JSON text."""
        return {"key": self.key, "change": self.change, "value_a": _text(self.a),
                "value_b": _text(self.b), "counted": self.counted}


@dataclass(frozen=True)
class CatalogRowChange:
    """One catalog row added, removed or changed (same key, other values)."""

    catalog: str
    key: str
    change: str
    a: dict[str, Any] | None
    b: dict[str, Any] | None

    def row(self) -> dict[str, Any]:
        """The change as a flat row (CATALOG_COLUMNS)."""
        return {"catalog": self.catalog, "key": self.key, "change": self.change,
                "row_a": _text(self.a), "row_b": _text(self.b)}

    def delta(self) -> str:
        """What differs, readably: `column: a -> b` per changed column, else the row."""
        if self.a is not None and self.b is not None:
            return "; ".join(f"{k}: {self.a.get(k)} -> {self.b.get(k)}"
                             for k in sorted(set(self.a) | set(self.b))
                             if self.a.get(k) != self.b.get(k))
        return _text(self.a if self.a is not None else self.b)


@dataclass
class ConfigDiff:
    """The config layer: config keys, scope and catalog rows that differ."""

    keys: list[KeyChange] = field(default_factory=list)
    catalog_rows: list[CatalogRowChange] = field(default_factory=list)

    @property
    def counted_keys(self) -> list[KeyChange]:
        """The key changes that are a change of input (not RECORD_KEYS)."""
        return [k for k in self.keys if k.counted]

    @property
    def differs(self) -> bool:
        """A counted key or a catalog row differs."""
        return bool(self.counted_keys or self.catalog_rows)

    def changed_sources(self) -> set[str]:
        """The sources whose recorded config entry differs."""
        return {k.key.split("]", 1)[0].removeprefix("sources[")
                for k in self.keys if k.key.startswith("sources[")}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"keys": [k.row() for k in self.keys],
                "catalog_rows": [c.row() for c in self.catalog_rows]}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recorded config as dotted paths to leaf values; `sources` by name, lists whole."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if not prefix and key == "sources" and isinstance(value, list):
            for i, source in enumerate(value):
                name = source.get("name", i) if isinstance(source, dict) else i
                flat.update(flatten({k: v for k, v in source.items() if k != "name"},
                                    f"sources[{name}]") if isinstance(source, dict)
                            else {f"sources[{name}]": source})
        elif isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def _scope(run: runs.Run) -> dict[str, Any]:
    return {"scope.quarter": run.quarter,
            "scope.clusters": sorted(run.clusters) if run.clusters else "all"}


def diff_keys(run_a: runs.Run, run_b: runs.Run) -> list[KeyChange]:
    """The recorded config keys and the scope that differ, by key ("C" order)."""
    flat_a = {**flatten(run_a.config), **_scope(run_a)}
    flat_b = {**flatten(run_b.config), **_scope(run_b)}
    changes = []
    for key in sorted(set(flat_a) | set(flat_b), key=lambda k: k.encode("utf-8")):
        counted = key.split(".", 1)[0] not in RECORD_KEYS
        if key not in flat_a:
            changes.append(KeyChange(key, "added", None, flat_b[key], counted))
        elif key not in flat_b:
            changes.append(KeyChange(key, "removed", flat_a[key], None, counted))
        elif flat_a[key] != flat_b[key]:
            changes.append(KeyChange(key, "changed", flat_a[key], flat_b[key], counted))
    return changes


def _catalog_rows(conn: psycopg.Connection[Any], catalog: str,
                  run_id: str) -> dict[str, list[dict[str, Any]]]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {} where run_id = %s").format(
            sql.Identifier(RAW_SCHEMA, catalog)), (run_id,))
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        content = {k: v for k, v in row.items() if k not in _RECORD_COLUMNS}
        key = "|".join(str(content.get(c) or "") for c in CATALOG_KEYS[catalog])
        by_key.setdefault(key, []).append(content)
    return {k: sorted(v, key=lambda r: json.dumps(r, sort_keys=True, default=str))
            for k, v in by_key.items()}


def diff_catalog(catalog: str, rows_a: Mapping[str, list[dict[str, Any]]],
                 rows_b: Mapping[str, list[dict[str, Any]]]) -> list[CatalogRowChange]:
    """The rows of one catalog added, removed or changed, by key ("C" order)."""
    changes: list[CatalogRowChange] = []
    for key in sorted(set(rows_a) | set(rows_b), key=lambda k: k.encode("utf-8")):
        a, b = rows_a.get(key, []), rows_b.get(key, [])
        if a == b:
            continue
        if not a:
            changes.extend(CatalogRowChange(catalog, key, "added", None, r) for r in b)
        elif not b:
            changes.extend(CatalogRowChange(catalog, key, "removed", r, None) for r in a)
        elif len(a) == len(b) == 1:
            changes.append(CatalogRowChange(catalog, key, "changed", a[0], b[0]))
        else:  # a key listed twice: show the rows that are in one run only
            changes.extend(CatalogRowChange(catalog, key, "removed", r, None)
                           for r in a if r not in b)
            changes.extend(CatalogRowChange(catalog, key, "added", None, r)
                           for r in b if r not in a)
    return changes


def diff_config(conn: psycopg.Connection[Any], run_a: runs.Run, run_b: runs.Run) -> ConfigDiff:
    """The config layer of two runs."""
    result = ConfigDiff(keys=diff_keys(run_a, run_b))
    for catalog in CATALOG_KEYS:
        result.catalog_rows.extend(diff_catalog(catalog, _catalog_rows(conn, catalog, run_a.id),
                                                _catalog_rows(conn, catalog, run_b.id)))
    return result
