"""Connector `responses` (internal): management's responses to exceptions, a version-controlled
YAML file per quarter (`responses: responses/{quarter}.yml` in soxtrail.yml)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from extract.connectors.catalog_file import git_commit
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import (
    ConnectorSpec,
    LoadItem,
    RawRow,
    RawTable,
    Reject,
    Source,
    iter_file,
)

RAW_TABLE = "raw.responses"
SYSTEM = "responses"
# the file's field per raw column, in the raw table's order
FIELDS: dict[str, str] = {
    "control": "control_id",
    "item": "item_key",
    "root_cause": "root_cause",
    "remediation": "remediation",
    "owner": "owner",
    "due": "due_date",
    "status": "status",
    "compensating_control": "compensating_control",
    "approver": "approver",
    "expires": "expires_on",
}
REQUIRED = ("control", "item", "owner", "due", "status")
STATUSES = ("open", "remediated", "accepted-risk")
WAIVER = "accepted-risk"

SPEC = ConnectorSpec(
    name="responses",
    systems=frozenset({SYSTEM}),
    required=frozenset({"path"}),
    raw_tables={RAW_TABLE: RawTable((), tuple(FIELDS.values()))},
)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _date_problem(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return f"{name}: {value!r} is not a date (YYYY-MM-DD)"
    return None


def response_problem(entry: Mapping[str, Any]) -> str | None:
    """Why a response entry is refused (field: reason), or None: the one rule set that the
    load and `soxtrail respond` apply."""
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        return f"{unknown[0]}: unknown field (allowed: {', '.join(FIELDS)})"
    values = {k: _text(entry.get(k)) for k in FIELDS}
    for name in REQUIRED:
        if values[name] is None:
            return f"{name}: required"
    if values["status"] not in STATUSES:
        return f"status: {values['status']!r} is not one of {', '.join(STATUSES)}"
    for name in ("due", "expires"):
        problem = _date_problem(name, values[name])
        if problem:
            return problem
    if values["status"] == WAIVER:
        if values["approver"] is None:
            return "approver: a waiver (accepted-risk) needs an approver"
        if values["approver"].strip().lower() == str(values["owner"]).strip().lower():
            return "approver: a waiver's approver must differ from its owner"
        if values["expires"] is None:
            return "expires: a waiver (accepted-risk) needs an expiry date"
    elif values["approver"] is not None or values["expires"] is not None:
        return "status: approver and expires belong to a waiver (status accepted-risk)"
    return None


def _entries(path: Path) -> tuple[list[tuple[int, Any]], str | None]:
    """The `responses:` list's items with the line each starts on (1-based), or a problem
    with the whole file."""
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        return [], f"not a YAML document: {exc}"
    if data is None:
        return [], None
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        return [], "expected a mapping with a `responses:` list"
    items = data.get("responses") or []
    if set(data) - {"responses"} or not isinstance(items, list):
        return [], "expected a mapping with only a `responses:` list"
    nodes = next((value for key, value in root.value if key.value == "responses"), None)
    lines = ([node.start_mark.line + 1 for node in nodes.value]
             if isinstance(nodes, yaml.SequenceNode) else [])
    return list(zip(lines, items, strict=True)), None


def file_path(source: Source, quarter: str) -> Path:
    """The quarter's responses file (the configured path with `{quarter}` filled in)."""
    path = Path(str(source.get("path")).replace("{quarter}", quarter))
    return path if path.is_absolute() else source.base_dir / path


def snapshot(source: Source, ctx: Any) -> None:
    """Capture the quarter's responses file as-is (an empty object when there is none yet)."""
    path = file_path(source, ctx.quarter.label)
    exists = path.is_file()
    if exists:
        _, problem = _entries(path)
        if problem:
            raise ConfigError(f"{path}: {problem}")
    params = {"path": str(path), "file": path.name, "file_exists": exists,
              **(git_commit(path) if exists else {})}
    ctx.capture(
        source,
        query_name=f"{source.name}/{ctx.quarter.label}",
        query_text=str(path),
        params=params,
        ext="yml",
        raw_table=RAW_TABLE,
        chunks=iter_file(path) if exists else iter(()),
        count_rows=partial(count_rows, params),
    )


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of responses (items of the `responses:` list)."""
    return len(_entries(path)[0])


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One row per valid response; a refused one names its line and field."""
    name = path.name  # the object as stored (the loader keeps its store name)
    entries, problem = _entries(path)
    seen: dict[tuple[str, str], int] = {}
    for line, entry in entries:
        locator = f"{name}:{line}"
        raw = yaml.safe_dump(entry, sort_keys=False, default_flow_style=True).strip()
        reason = (problem or response_problem(entry) if isinstance(entry, dict)
                  else "expected a mapping of response fields")
        if reason is None:
            key = (str(_text(entry.get("control"))), str(_text(entry.get("item"))))
            if key in seen:
                reason = f"item: a second response to {key[0]} {key[1]} (first on line {seen[key]})"
            else:
                seen[key] = line
        if reason is not None:
            yield Reject(locator, reason, raw[:10_000])
        else:
            yield RawRow(locator, tuple(_text(entry.get(k)) for k in FIELDS))


def write_response(path: Path, entry: Mapping[str, Any]) -> bool:
    """Add or replace (same control and item) one response in the responses file, after
    checking it with the load's own rules; True when it replaced one. The file is rewritten
    as YAML (comments are not kept)."""
    clean = {k: _text(entry.get(k)) for k in FIELDS if _text(entry.get(k)) is not None}
    problem = response_problem(clean)
    if problem:
        raise ConfigError(f"response refused: {problem}")
    entries: list[Any] = []
    if path.is_file():
        found, problem = _entries(path)
        if problem:
            raise ConfigError(f"{path}: {problem}")
        entries = [item for _, item in found]
    key = (clean["control"], clean["item"])
    replaced = False
    for index, item in enumerate(entries):
        if isinstance(item, dict) and (_text(item.get("control")), _text(item.get("item"))) == key:
            entries[index] = clean
            replaced = True
    if not replaced:
        entries.append(clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"responses": entries}, sort_keys=False, allow_unicode=True, width=100)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return replaced
