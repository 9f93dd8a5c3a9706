"""Canonical results: the versioned, typed text of a control's rows that its evidence
row hashes (form 1: row_to_json; form 2: engine-neutral JSON per row; docs/architecture.md)."""


from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from soxtrail.kernel.database import PLANNER_SQL
from soxtrail.kernel.errors import PipelineError

CANONICAL_VERSION = 2  # the form new runs record
CANONICAL_BATCH = 5000


@dataclass(frozen=True)
class Canonical:
    """A canonical result: its hash and row count."""

    sha256: str
    row_count: int


def strip_sql(text: str) -> str:
    """Compiled SQL without surrounding blanks and trailing semicolons (to nest it)."""
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def _v1_sql(relation: str) -> str:
    # version 1: PostgreSQL's row_to_json text of each row (kept: recorded runs re-verify)
    return f"select row_to_json(canonical_row)::text from {relation} as canonical_row "


def _v2_sql(relation: str) -> str:
    return f"select canonical_row.* from {relation} as canonical_row "


def key_column(key: str) -> str:
    """A column name that orders a canonical result (item_key, a mart's own key), checked
    to be a plain identifier before it goes into SQL."""
    if not key.replace("_", "").isalnum():
        raise ValueError(f"not a key column: {key!r}")
    return key


def _relation_query(relation: str, version: int, where: str = "", key: str = "item_key") -> str:
    if version not in (1, 2):
        raise PipelineError(f"unknown canonical form version {version}")
    select = _v1_sql(relation) if version == 1 else _v2_sql(relation)
    return select + where + f'order by canonical_row.{key_column(key)} collate "C"'


def mart_result(conn: psycopg.Connection[Any], schema: str, model: str, run_id: str, *,
                version: int = CANONICAL_VERSION,
                sink: Callable[[bytes], Any] | None = None, key: str = "item_key") -> Canonical:
    """The canonical result of the run's rows of a built mart (bytes also to `sink`), in
    the order of its `key` column (unique in a run: a control's item_key)."""
    relation = sql.Identifier(schema, model).as_string(conn)
    query = _relation_query(relation, version, "where canonical_row.run_id = %s ", key)
    return _canonical(conn, query, (run_id,), version, sink)


def sql_result(conn: psycopg.Connection[Any], compiled: str, *,
               version: int = CANONICAL_VERSION,
               sink: Callable[[bytes], Any] | None = None) -> Canonical:
    """The canonical result of a control's compiled SQL, run as it is."""
    return _canonical(conn, _relation_query(f"(\n{strip_sql(compiled)}\n)", version), (),
                      version, sink)


def _canonical(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...],
               version: int, sink: Callable[[bytes], Any] | None) -> Canonical:
    """Stream the lines (joined by `\\n`) through SHA-256 and `sink`, server-side, in UTC."""
    conn.execute("set time zone 'UTC'")
    conn.execute("set datestyle = 'ISO, MDY'")
    for statement in PLANNER_SQL:  # the plan reconcile used (results never depend on it)
        conn.execute(statement)
    digest = hashlib.sha256()
    rows = 0
    with conn.cursor(name="soxtrail_canonical") as cur:
        cur.itersize = CANONICAL_BATCH
        if version == 2:  # their text is (uuid) or becomes (timestamptz) the canonical form
            cur.adapters.register_loader("uuid", TextLoader)
            cur.adapters.register_loader("timestamptz", TextLoader)
        # no parameters → no placeholder parsing, so a `%` in compiled SQL is literal
        cur.execute(query, params or None)  # type: ignore[arg-type]
        encode: Callable[[Sequence[Sequence[Any]]], list[str]] = (
            _first if version == 1
            else batch_encoder(described_columns(conn, cur.description or ())))
        while batch := cur.fetchmany(CANONICAL_BATCH):
            text = "\n".join(encode(batch))
            chunk = (text if rows == 0 else "\n" + text).encode("utf-8")
            digest.update(chunk)
            if sink is not None:
                sink(chunk)
            rows += len(batch)
    return Canonical(digest.hexdigest(), rows)


def _first(rows: Sequence[Sequence[Any]]) -> list[str]:
    return [row[0] for row in rows]  # version 1: the database wrote each line


def described_columns(conn: psycopg.Connection[Any],
                      description: Sequence[Any]) -> list[tuple[str, str]]:
    """(name, type) of each result column; arrays as `_<element type>`, as udt names."""
    columns = []
    for column in description:
        info = conn.adapters.types.get(column.type_code)
        if info is None:
            kind = f"oid {column.type_code}"
        elif info.oid == column.type_code:
            kind = info.name
        else:
            kind = "_" + info.name
        columns.append((column.name, kind))
    return columns


# Version 2, the engine-neutral form (docs/architecture.md "Canonical results"): one JSON
# object per row, keys in the select's column order, each value encoded by its SQL type.
# Encoded a batch at a time, column by column (one list comprehension per column).
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_UTC = timezone.utc
NULL = "null"


def _uuid(value: Any) -> str:
    return f'"{value}"'  # lowercase, hyphenated: nothing to escape


def _boolean(value: Any) -> str:
    return "true" if value else "false"


def _integer(value: Any) -> str:
    return str(int(value))


def _numeric(value: Decimal) -> str:
    if value.is_finite():
        return format(value, "f")  # the decimal text, scale kept: 1.50 stays 1.50
    return _json_string(str(value))  # NaN, Infinity, -Infinity


def _float(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # the shortest text that reads back as the same double
    return '"NaN"' if math.isnan(value) else ('"Infinity"' if value > 0 else '"-Infinity"')


def _date(value: Any) -> str:
    return f'"{value.isoformat()}"'


def _timestamp(value: datetime) -> str:
    return f'"{value.isoformat(timespec="microseconds")}"'


def _timestamptz(value: datetime | str) -> str:
    if value.__class__ is str:
        return _timestamptz_text(str(value))
    assert isinstance(value, datetime)
    text = value.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):  # already UTC (the session's zone): skip the conversion
        return f'"{text[:-6]}Z"'
    utc = value.astimezone(_UTC).replace(tzinfo=None)
    return f'"{utc.isoformat(timespec="microseconds")}Z"'


def _timestamptz_text(text: str) -> str:
    # PostgreSQL's ISO text of a timestamptz in a UTC session, `YYYY-MM-DD HH:MM:SS[.f]+00`
    # (the hashing cursor loads it as text: formatting a datetime costs 2 µs a value)
    if len(text) < 22 or text[4] != "-" or text[10] != " " or text[19] not in ".+" \
            or not text.endswith("+00"):
        raise PipelineError(f"canonical form 2: timestamp {text!r} has no canonical encoding"
                            " (years 1-9999 only)")
    fraction = text[20:-3]
    return f'"{text[:10]}T{text[11:19]}.{fraction}{"000000"[len(fraction):]}Z"'


_ENCODERS: dict[str, Callable[[Any], str]] = {
    "text": _json_string, "varchar": _json_string, "bpchar": _json_string,
    "name": _json_string, "char": _json_string, "uuid": _uuid,
    "bool": _boolean, "int2": _integer, "int4": _integer, "int8": _integer,
    "numeric": _numeric, "float4": _float, "float8": _float,
    "date": _date, "timestamp": _timestamp, "timestamptz": _timestamptz,
}


def _array(element: Callable[[Any], str]) -> Callable[[Any], str]:
    def encode(value: list[Any]) -> str:
        return "[" + ",".join(NULL if item is None
                              else encode(item) if isinstance(item, list)
                              else element(item) for item in value) + "]"
    return encode


def _string_array(general: Callable[[Any], str]) -> Callable[[Any], str]:
    def encode(value: list[Any]) -> str:
        try:  # the common case: a flat array of strings
            return "[" + ",".join([NULL if item is None else _json_string(item)
                                   for item in value]) + "]"
        except TypeError:  # a nested (multi-dimensional) array, or uuid objects
            return general(value)
    return encode


def value_encoder(kind: str, column: str = "?") -> Callable[[Any], str]:
    """The version 2 encoder of a non-null value of SQL type `kind` (`_<type>`: an array)."""
    element = _ENCODERS.get(kind.removeprefix("_"))
    if element is None:
        raise PipelineError(f"canonical form 2: column {column!r} has type {kind}, which has "
                            "no canonical encoding (docs/architecture.md, Canonical results)")
    if not kind.startswith("_"):
        return element
    if element in (_json_string, _uuid):  # uuid text needs no escape: the same line
        return _string_array(_array(element))
    return _array(element)


def batch_encoder(columns: Sequence[tuple[str, str]]
                  ) -> Callable[[Sequence[Sequence[Any]]], list[str]]:
    """Version 2: rows (values in `columns` order, as (name, type)) → their canonical lines."""
    line = "{" + ",".join(_json_string(name).replace("%", "%%") + ":%s"
                          for name, _ in columns) + "}"
    encoders = [value_encoder(kind, name) for name, kind in columns]

    def encode(rows: Sequence[Sequence[Any]]) -> list[str]:
        if not rows:
            return []
        values = [[NULL if value is None else encoder(value) for value in column]
                  for encoder, column in zip(encoders, zip(*rows, strict=True), strict=True)]
        return [line % row for row in zip(*values, strict=True)]
    return encode


def encode_lines(columns: Sequence[tuple[str, str]],
                 rows: Iterable[Sequence[Any]]) -> list[str]:
    """Version 2: the canonical lines of `rows` (values in `columns` order)."""
    return batch_encoder(columns)(list(rows))
