"""Connector `catalog_file` (internal): the role_catalog / applications / identity_map CSVs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from extract.connectors.formats import csv_rows, header_names, open_bytes, preview
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    ConnectorSpec,
    LoadItem,
    RawRow,
    RawTable,
    Reject,
    Source,
    iter_file,
)

SPEC = ConnectorSpec(
    name="catalog_file",
    systems=frozenset({"role_catalog"}),
    required=frozenset({"path", "catalog"}),
    raw_tables={
        "raw.role_catalog": RawTable((), (
            "role_name", "cluster_pattern", "is_privileged", "description", "owner",
            "allowed_holders")),
        "raw.applications": RawTable((), ("application", "cluster", "sox_in_scope",
                                          "backup_policy")),
        "raw.identity_map": RawTable((), ("login_role", "identity", "identity_type",
                                          "approval_ref")),
    },
)

# columns a catalog file must have; the raw table's other columns are optional (→ null)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "role_catalog": ("role_name", "cluster_pattern", "is_privileged"),
    "applications": ("application", "cluster", "sox_in_scope"),
    "identity_map": ("login_role", "identity", "identity_type"),
}


def _catalog(value: Any, where: str) -> str:
    catalog = str(value)
    if catalog not in REQUIRED_COLUMNS:
        raise ConfigError(f"{where}: catalog {catalog!r} unknown "
                          f"(expected {', '.join(REQUIRED_COLUMNS)})")
    return catalog


def git_commit(path: Path) -> dict[str, Any]:
    """The last commit touching `path` and whether the file differs from it (best effort)."""
    folder = str(path.parent)
    try:
        log = subprocess.run(["git", "-C", folder, "log", "-1", "--format=%H", "--", path.name],
                             capture_output=True, text=True, timeout=10, check=False)
        if log.returncode != 0 or not log.stdout.strip():
            return {}
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", path.name],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": log.stdout.strip(),
            "git_modified": bool(status.stdout.strip()) if status.returncode == 0 else None}


def _header_problem(catalog: str, header: list[str] | None) -> str | None:
    if header is None:
        return "unreadable header"
    missing = [c for c in REQUIRED_COLUMNS[catalog] if c not in header]
    if missing:
        return f"header lacks required column(s) {', '.join(missing)}"
    if len(set(header)) != len(header):
        return "header has duplicate column names"
    return None


def snapshot(source: Source, ctx: Any) -> None:
    """Capture the catalog CSV as-is, with the git commit it was read at."""
    catalog = _catalog(source.get("catalog"), f"source {source.name}")
    path = source.path("path")
    if not path.is_file():
        raise SourceError(f"source {source.name}: {catalog} file not found: {path}")
    with open_bytes(path) as handle:
        first = next(csv_rows(handle), None)
    header = header_names(first[1]) if first is not None and first[1] is not None else None
    problem = _header_problem(catalog, header)
    if problem:
        raise ConfigError(f"{path}: {problem} (expected "
                          f"{','.join(SPEC.raw_tables['raw.' + catalog].payload)})")
    params = {"catalog": catalog, "path": str(path), "file": path.name, **git_commit(path)}
    ctx.capture(
        source,
        query_name=f"{source.name}/{catalog}",
        query_text=str(path),
        params=params,
        ext="csv",
        raw_table=f"raw.{catalog}",
        chunks=iter_file(path),
        count_rows=partial(count_rows, params),
    )


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of data rows (CSV records after the header)."""
    with open_bytes(path) as handle:
        return max(sum(1 for _ in csv_rows(handle)) - 1, 0)


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """Rows in the raw table's column order (missing optional columns → None)."""
    catalog = _catalog(params.get("catalog"), "catalog_file")
    columns = SPEC.raw_tables[f"raw.{catalog}"].payload
    name = path.name  # the object as stored (the loader keeps its store name)
    with open_bytes(path) as handle:
        rows = csv_rows(handle)
        first = next(rows, None)
        if first is None:
            return
        header = header_names(first[1]) if first[1] is not None else None
        problem = _header_problem(catalog, header)
        positions = ([header.index(c) if c in header else None for c in columns]
                     if header is not None and problem is None else [])
        for line, fields, row_problem, raw in rows:
            locator = f"{name}:{line}"
            if problem is not None or header is None:
                yield Reject(locator, problem or "no header", preview(raw))
            elif fields is None:
                yield Reject(locator, row_problem or "unreadable row", preview(raw))
            elif len(fields) != len(header):
                yield Reject(locator, f"expected {len(header)} fields (header), found "
                                      f"{len(fields)}", preview(raw))
            else:
                yield RawRow(locator, tuple(
                    None if i is None or fields[i] == "" else fields[i] for i in positions))
