"""`soxtrail explain`: one population item's whole decision on one screen.

For one mart row of a run: the row (every column, with the control's question and the
YAML description of each column), the raw source line(s) its locators name, read from the
evidence store as stored bytes, every evidence row it rests on (the item's, the supporting
ones, the control's own, and the population searched for an absence claim), the candidates
the rule considered, each test attribute with its value, the result and reasons, and the
CTEs of the control's compiled SQL (as its evidence row stores it) that decided them.

Read-only: it runs SELECTs on a connection the caller opened read-only and reads objects
from the store. Columns another release adds (`searched_population`, `candidates`, the
`*_locator` match columns) are shown when present and simply absent otherwise.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import textwrap
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

import msgspec
import psycopg
import yaml
from psycopg import sql
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from soxtrail.kernel import controls, runs
from soxtrail.kernel.errors import ConfigError, PipelineError, SoxtrailError
from soxtrail.kernel.store import Store

JSON_FORMAT = "soxtrail-explain/1"  # `--json`: keys are only ever added under this name
SEARCHED_MART = "fct_searched_populations"
SEARCHED_SHOWN = 5  # searched evidence rows printed in full; the JSON lists every id
# the columns every control mart shares; the rest are the item's own (figures and tests)
BASE_COLUMNS = ("run_id", "control_id", "item_key", "result", "exception_reasons",
                "evidence_id", "evidence_locator", "supporting_evidence_ids",
                "control_evidence_id", "searched_population", "searched_count", "candidates",
                "candidate_count")
# where a JSON object's records are, by the sources' own names (else its first array)
RECORD_KEYS = ("issues", "result", "Records", "records", "BackupJobs", "backup", "items",
               "values", "data", "events")
CANDIDATE_KEYS = ("key", "from", "to", "at", "chosen", "why")  # the contract's, in its order
MAX_RECORD_LINES = 200  # a CSV record with quoted newlines is followed this far at most
MAX_ITEM_BYTES = 20_000  # a JSON item longer than this is shown shortened
_LOCATOR = re.compile(r"^(?P<file>.*?)(?::(?P<line>\d+)|#(?P<index>\d+(?:\.\d+)*))"
                      r"(?P<rest>(?:[^\d.].*)?)$", re.S)


class ExplainError(ConfigError):
    """An unknown run, control or item, or an ambiguous item key (exit 2)."""


@dataclass
class EvidenceRef:
    """One evidence row the item rests on, and why."""

    role: str  # item | supporting | control | <column name> | searched
    id: str
    source_system: str | None = None
    source_name: str | None = None
    query_name: str | None = None
    executed_at: datetime | None = None
    row_count: int | None = None
    sha256: str | None = None
    store_key: str | None = None
    found: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, stable keys."""
        return {"role": self.role, "id": self.id, "found": self.found,
                "source_system": self.source_system, "source_name": self.source_name,
                "query_name": self.query_name, "executed_at": _jsonable(self.executed_at),
                "row_count": self.row_count, "sha256": self.sha256,
                "store_key": self.store_key}


@dataclass
class SourceLine:
    """The stored bytes one locator of the row names."""

    column: str
    locator: str
    evidence_id: str | None = None
    columns: list[str] = field(default_factory=list)  # every column naming it
    store_key: str | None = None
    kind: str = ""  # line | json_item | unresolved
    position: str = ""  # `line 17` / `item 12` / `item 0.3`
    text: str | None = None  # decoded for display; undecodable bytes escaped
    exact: bool = True  # False when a JSON item had to be re-serialized
    raw_row: dict[str, Any] | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, stable keys."""
        return {"column": self.column, "columns": [self.column, *self.columns],
                "locator": self.locator, "evidence_id": self.evidence_id,
                "store_key": self.store_key, "kind": self.kind, "position": self.position,
                "text": self.text, "exact_bytes": self.exact,
                "raw_row": _jsonable(self.raw_row), "note": self.note}


@dataclass
class Attribute:
    """One test attribute (a boolean column) of the row."""

    name: str
    value: bool | None
    description: str

    @property
    def verdict(self) -> str:
        """yes / no / not tested."""
        return {True: "yes", False: "NO", None: "not tested"}[self.value]


@dataclass
class Cte:
    """A CTE of the compiled SQL and which deciding names its own text mentions."""

    name: str
    parent: str | None
    mentions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, stable keys."""
        return {"name": self.name, "parent": self.parent, "mentions": self.mentions}


@dataclass
class Searched:
    """The population an absence claim searched (`marts.fct_searched_populations`)."""

    population_key: str
    description: str | None
    count: int
    evidence_ids: list[str]
    shown: list[EvidenceRef]
    list_all: str
    available: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, stable keys."""
        return {"population_key": self.population_key, "description": self.description,
                "count": self.count, "evidence_ids": self.evidence_ids,
                "shown": [e.as_dict() for e in self.shown], "list_all": self.list_all,
                "available": self.available}


@dataclass
class Explanation:
    """One row's whole decision."""

    run_id: str
    quarter: str
    control: controls.Control
    row: dict[str, Any]
    columns: list[str]
    descriptions: dict[str, str]
    attributes: list[Attribute]
    source_lines: list[SourceLine]
    evidence: list[EvidenceRef]
    searched: Searched | None
    candidates: list[dict[str, Any]] | None
    ctes: list[Cte]
    deciding: list[str]
    query_name: str | None

    @property
    def item_key(self) -> str:
        """The row's item key."""
        return str(self.row["item_key"])

    @property
    def result(self) -> str:
        """PASS / EXCEPTION (or the completeness mart's own results)."""
        return str(self.row.get("result"))

    @property
    def reasons(self) -> list[str]:
        """The exception reason codes, in the mart's order."""
        return [str(r) for r in self.row.get("exception_reasons") or []]

    def figures(self) -> list[str]:
        """The item's own columns that are not tests and not shared by every mart."""
        tests = {a.name for a in self.attributes}
        return [c for c in self.columns if c not in BASE_COLUMNS and c not in tests]

    def as_dict(self) -> dict[str, Any]:
        """The stable machine-readable document (`--json`)."""
        return {
            "format": JSON_FORMAT, "run_id": self.run_id, "quarter": self.quarter,
            "control": {"id": self.control.id, "model": self.control.model,
                        "title": self.control.title, "question": self.control.question},
            "item_key": self.item_key, "result": self.result, "reasons": self.reasons,
            "row": {c: _jsonable(self.row[c]) for c in self.columns},
            "columns": [{"name": c, "description": self.descriptions.get(c, "")}
                        for c in self.columns],
            "attributes": [{"name": a.name, "value": a.value, "test": a.description}
                           for a in self.attributes],
            "source_lines": [s.as_dict() for s in self.source_lines],
            "evidence": [e.as_dict() for e in self.evidence],
            "searched": self.searched.as_dict() if self.searched else None,
            "candidates": _jsonable(self.candidates),
            "sql": {"evidence_id": _jsonable(self.row.get("control_evidence_id")),
                    "query_name": self.query_name,
                    "ctes": [c.as_dict() for c in self.ctes],
                    "deciding": self.deciding,
                    "relevant": [c.name for c in self.ctes if c.mentions]},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- the column descriptions (the marts' YAML, doc blocks resolved) ------------------------

_DOC_BLOCK = re.compile(r"{%\s*docs\s+(\w+)\s*%}(.*?){%\s*enddocs\s*%}", re.S)
_DOC_CALL = re.compile(r"{{\s*doc\(\s*['\"](\w+)['\"]\s*\)\s*}}")


@functools.cache
def _doc_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for path in sorted((controls.PROJECT_DIR / "models").rglob("*.md")):
        for name, text in _DOC_BLOCK.findall(path.read_text(encoding="utf-8")):
            blocks[name] = " ".join(text.split())
    return blocks


@functools.cache
def column_descriptions(model: str) -> dict[str, str]:
    """A mart's column descriptions as its YAML declares them (doc blocks resolved)."""
    for path in sorted(controls.CONTROL_MODELS_DIR.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for node in doc.get("models") or []:
            if node.get("name") == model:
                return {str(c["name"]): _DOC_CALL.sub(
                    lambda m: _doc_blocks().get(m.group(1), m.group(0)),
                    " ".join(str(c.get("description") or "").split()))
                    for c in node.get("columns") or []}
    return {}


# --- the compiled SQL's CTEs --------------------------------------------------------------

_TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|\w+|[(),]|\S""", re.S)


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)
            if not m.group(0).startswith(("--", "/*"))]


def cte_spans(text: str) -> list[tuple[str, str | None, int, int]]:
    """Every CTE of a SQL text, in order: (name, enclosing CTE or None, body start, end)."""
    tokens = _tokens(text)
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, (tok, _, _) in enumerate(tokens):
        if tok == "(":
            stack.append(i)
        elif tok == ")" and stack:
            match[stack.pop()] = i
    spans: list[tuple[str, int, int]] = []

    def word(i: int) -> str:
        return tokens[i][0].lower() if i < len(tokens) else ""

    for i, (tok, _, _) in enumerate(tokens):
        if tok.lower() != "with":
            continue
        j = i + 1 + (word(i + 1) == "recursive")
        while j < len(tokens):
            name = tokens[j][0]
            if not (re.fullmatch(r"\w+", name) or name.startswith('"')):
                break
            k = j + 1
            if word(k) == "(" and k in match:  # a column list
                k = match[k] + 1
            if word(k) != "as":
                break
            k += 1
            if word(k) == "not":
                k += 1
            if word(k) == "materialized":
                k += 1
            if word(k) != "(" or k not in match:
                break
            end = match[k]
            spans.append((name.strip('"'), tokens[k][2], tokens[end][1]))
            if word(end + 1) != ",":
                break
            j = end + 2
    result = []
    for name, start, end in spans:
        parents = [(s, n) for n, s, e in spans if s < start and end <= e]
        result.append((name, max(parents)[1] if parents else None, start, end))
    return result


def relevant_ctes(text: str, names: Sequence[str]) -> list[Cte]:
    """The CTEs in order, each with the `names` its own text mentions (not its nested CTEs':
    a wrapper CTE is relevant only through what it says itself)."""
    spans = cte_spans(text)
    found = []
    for name, parent, start, end in spans:
        own = text[start:end]
        for _, child_parent, c_start, c_end in reversed(spans):
            if child_parent == name:
                own = own[:c_start - start] + own[c_end - start:]
        own = " ".join(t for t, _, _ in _tokens(own))
        mentions = [n for n in names if re.search(
            (r"'" + re.escape(n) + r"'") if n.isupper() else (r"\b" + re.escape(n) + r"\b"),
            own)]
        found.append(Cte(name, parent, mentions))
    return found


# --- reading the stored bytes a locator names --------------------------------------------

def parse_locator(locator: str) -> tuple[str, str | None, str | None, str]:
    """(file, line, index, rest): `<file>:<line>` or `<file>#<index>[.<index>]` (+ a key)."""
    m = _LOCATOR.match(locator)
    if m is None:
        return locator, None, None, ""
    return m.group("file"), m.group("line"), m.group("index"), m.group("rest").strip()


def _display(data: bytes) -> str:
    """Bytes decoded as UTF-8 for display; undecodable bytes escaped (`\\xff`)."""
    return data.decode("utf-8", errors="backslashreplace")


def _open(store: Store, key: str) -> IO[bytes]:
    handle = store.open(key)
    head = handle.read(2)
    handle.close()
    handle = store.open(key)
    if head == b"\x1f\x8b":
        return gzip.open(handle)  # type: ignore[return-value]
    return handle


def read_line(store: Store, key: str, line: int) -> bytes | None:
    """The record starting at line `line` (1-based) of a stored object, as stored (a CSV
    record whose quoted field spans lines is followed to its end)."""
    with _open(store, key) as handle:
        for number, data in enumerate(handle, start=1):
            if number < line:
                continue
            record = data
            name = key.lower().removesuffix(".gz")
            for _ in range(MAX_RECORD_LINES):
                if name.endswith(".csv"):  # a quoted field goes on
                    more_follows = record.count(b'"') % 2 == 1
                elif name.endswith((".log", ".txt")):  # a stderr log's continuation lines
                    more_follows = _peek(handle).startswith(b"\t")
                else:
                    more_follows = False
                more = handle.readline() if more_follows else b""
                if not more:
                    break
                record += more
            return record.rstrip(b"\r\n")
    return None


def _peek(handle: IO[bytes]) -> bytes:
    """The next line without consuming it (a buffered or gzip handle)."""
    peek = getattr(handle, "peek", None)
    return bytes(peek(1)[:1]) if peek is not None else b""


def _records(raw: bytes) -> list[msgspec.Raw]:
    """The records of a JSON value: a top array, else the list under a known key (else the
    first array) of the top object."""
    if raw.lstrip()[:1] == b"[":
        return msgspec.json.decode(raw, type=list[msgspec.Raw])
    members = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    arrays = [k for k, v in members.items() if bytes(v).lstrip()[:1] == b"["]
    if not arrays:
        raise ValueError("no array in the object")
    key = next((k for k in RECORD_KEYS if k in arrays), arrays[0])
    return msgspec.json.decode(members[key], type=list[msgspec.Raw])


def read_json_item(store: Store, key: str, index: str) -> tuple[bytes, bool]:
    """The JSON item at `index` (`12`, or `0.3` for a record inside a record) of a stored
    object: its own bytes as stored (True), or re-serialized when the object is not strict
    JSON msgspec can split (False)."""
    with _open(store, key) as handle:
        data = handle.read()
    parts = [int(p) for p in index.split(".")]
    try:
        item: bytes = data
        for part in parts:
            item = bytes(_records(item)[part])
        return item, True
    except (msgspec.DecodeError, ValueError, IndexError, UnicodeDecodeError):
        pass
    value: Any = json.loads(data.decode("utf-8", errors="replace"))
    for part in parts:
        if isinstance(value, dict):
            value = value[next((k for k in RECORD_KEYS if isinstance(value.get(k), list)),
                               next(k for k, v in value.items() if isinstance(v, list)))]
        value = value[part]
    return json.dumps(value, ensure_ascii=False, indent=1).encode(), False


# --- gathering ----------------------------------------------------------------------------

def _dicts(conn: psycopg.Connection[Any], query: sql.Composable | str,
           params: Sequence[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall()


def _try_dicts(conn: psycopg.Connection[Any], query: sql.Composable,
               params: Sequence[Any]) -> list[dict[str, Any]] | None:
    """The rows, or None when the relation or a column does not exist (rolled back)."""
    try:
        rows = _dicts(conn, query, params)
        conn.commit()
        return rows
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        conn.rollback()
        return None


def _marts() -> dict[str, str]:
    return {**controls.CONTROLS, **controls.COMPLETENESS}


def find_row(conn: psycopg.Connection[Any], run_id: str, item_key: str,
             control_id: str | None) -> tuple[controls.Control, dict[str, Any], list[str]]:
    """The mart row of the run with that item key (in the one control given, else in the
    only control mart that has it)."""
    marts = _marts()
    if control_id is not None:
        wanted = control_id.upper()
        if wanted not in marts:
            raise ExplainError(f"--control {control_id}: no such control "
                               f"(known: {', '.join(marts)})")
        marts = {wanted: marts[wanted]}
    found: list[tuple[controls.Control, dict[str, Any], list[str]]] = []
    by_id = {c.id: c for c in controls.registry()}
    for cid, model in marts.items():
        query = sql.SQL("select * from {} where run_id = %s and item_key = %s").format(
            sql.Identifier(controls.MARTS_SCHEMA, model))
        with conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(query, (run_id, item_key))
            except psycopg.errors.UndefinedTable:
                conn.rollback()
                continue
            rows = cur.fetchall()
            columns = [d.name for d in cur.description or ()]
        conn.commit()
        found.extend((by_id[cid], row, columns) for row in rows)
    if not found:
        where = f"control {control_id.upper()}" if control_id else "any control mart"
        raise ExplainError(f"run {run_id}: no item {item_key!r} in {where} "
                           f"(item keys are as the workbook's first column shows them)")
    if len(found) > 1:
        raise ExplainError(f"item {item_key!r} is in more than one control of run {run_id}: "
                           f"{', '.join(c.id for c, _, _ in found)}; give --control")
    return found[0]


def _evidence_rows(conn: psycopg.Connection[Any], ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = _dicts(conn, "select id, source_system, query_name, query_text, query_params,"
                        " executed_at, result_row_count, result_hash, raw_output_s3_key"
                        " from soxtrail.sox_evidence where id = any(%s::uuid[])", (list(ids),))
    conn.commit()
    return {str(r["id"]): r for r in rows}


def _ref(role: str, evidence_id: str, rows: Mapping[str, dict[str, Any]]) -> EvidenceRef:
    row = rows.get(evidence_id)
    if row is None:
        return EvidenceRef(role, evidence_id)
    params = row["query_params"] or {}
    return EvidenceRef(role, evidence_id, row["source_system"],
                       params.get("source") if isinstance(params, dict) else None,
                       row["query_name"], row["executed_at"], row["result_row_count"],
                       row["result_hash"], row["raw_output_s3_key"], True)


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _evidence_roles(row: Mapping[str, Any], columns: Sequence[str]) -> list[tuple[str, str]]:
    """(role, evidence id) of every evidence id the row names, the item's first."""
    pairs = [("item", i) for i in _ids(row.get("evidence_id"))]
    pairs += [("supporting", i) for i in _ids(row.get("supporting_evidence_ids"))]
    for column in columns:
        if column in ("evidence_id", "supporting_evidence_ids", "control_evidence_id"):
            continue
        if column.endswith(("_evidence_id", "_evidence_ids")):
            pairs += [(column, i) for i in _ids(row.get(column))]
    pairs += [("control", i) for i in _ids(row.get("control_evidence_id"))]
    unique: dict[str, str] = {}
    for role, evidence_id in pairs:
        unique.setdefault(evidence_id, role)
    return [(role, evidence_id) for evidence_id, role in unique.items()]


def _locators(row: Mapping[str, Any], columns: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(column, locator) of every `*_locator` column, the item's own first."""
    for column in sorted(columns, key=lambda c: c != "evidence_locator"):
        if column.endswith("_locator"):
            for value in _ids(row.get(column)):
                for part in (value.split("\n") if "\n" in value else [value]):
                    if part.strip():
                        yield column, part.strip()


def _raw_row(conn: psycopg.Connection[Any], table: str | None, evidence_id: str,
             locator: str, position: str) -> dict[str, Any] | None:
    if not table or "." not in table:
        return None
    ident = sql.Identifier(*table.split(".", 1))
    rows = _try_dicts(conn, sql.SQL("select * from {} where evidence_id = %s and locator = %s"
                                    " limit 1").format(ident), (evidence_id, locator))
    if not rows and position:
        rows = _try_dicts(conn, sql.SQL("select * from {} where evidence_id = %s"
                                        " and locator like %s limit 1").format(ident),
                          (evidence_id, "%" + position))
    if not rows:
        return None
    return {k: v for k, v in rows[0].items() if k not in ("run_id", "evidence_id")}


def _object_for(column: str, file: str, row: Mapping[str, Any], candidates: Sequence[str],
                rows: Mapping[str, dict[str, Any]]) -> str | None:
    """The evidence id a locator belongs to: the item's for `evidence_locator`, a
    `<prefix>_evidence_id` column's for `<prefix>_locator`, else the cited object whose
    stored name is the locator's file name (or ends with it)."""
    if column == "evidence_locator":
        return next(iter(_ids(row.get("evidence_id"))), None)
    own = _ids(row.get(column[: -len("_locator")] + "_evidence_id"))
    if own:
        return own[0]
    names = {i: str(rows[i]["raw_output_s3_key"]).rsplit("/", 1)[-1] for i in candidates
             if i in rows}
    for test in (lambda n: n == file, lambda n: n.endswith(file) or file.endswith(n)):
        hits = [i for i, n in names.items() if test(n)]
        if len(hits) == 1:
            return hits[0]
    return None


def read_source(conn: psycopg.Connection[Any], store: Store, column: str, locator: str,
                evidence_id: str | None, rows: Mapping[str, dict[str, Any]]) -> SourceLine:
    """The stored bytes and the raw table row one locator names."""
    file, line, index, rest = parse_locator(locator)
    found = SourceLine(column, locator, evidence_id)
    if rest:
        found.note = f"key {rest}"
    evidence = rows.get(evidence_id or "")
    if evidence is None:
        found.kind = "unresolved"
        found.note = (f"no evidence row of the item names an object {file!r}"
                      if evidence_id is None else f"evidence {evidence_id} not found")
        return found
    key = str(evidence["raw_output_s3_key"])
    found.store_key = key
    params = evidence["query_params"] if isinstance(evidence["query_params"], dict) else {}
    stored = key.rsplit("/", 1)[-1]
    if file and file != stored:
        found.note = "; ".join(filter(None, [
            found.note, f"the locator names {file!r}, the object is stored as {stored!r}"]))
    try:
        if line is not None:
            found.kind, found.position = "line", f"line {line}"
            data = read_line(store, key, int(line))
            found.text = None if data is None else _display(data)
            if data is None:
                found.note = f"the object has fewer than {line} lines"
        elif index is not None:
            found.kind, found.position = "json_item", f"item {index}"
            item, found.exact = read_json_item(store, key, index)
            if len(item) > MAX_ITEM_BYTES:
                item = item[:MAX_ITEM_BYTES] + f" … [{len(item)} bytes]".encode()
            found.text = _display(item)
        else:
            found.kind, found.note = "unresolved", f"locator {locator!r} names no line or item"
    except (SoxtrailError, OSError, ValueError, IndexError, KeyError, StopIteration) as exc:
        found.note = "; ".join(filter(None, [found.note, f"cannot read {key}: {exc}"]))
    position = f":{line}" if line is not None else (f"#{index}" if index is not None else "")
    found.raw_row = _raw_row(conn, params.get("raw_table"), str(evidence["id"]),
                             locator.split(" ")[0] if rest else locator, position)
    return found


def _searched(conn: psycopg.Connection[Any], run_id: str, key: str) -> Searched:
    list_all = (f"psql -c \"select evidence_id, source_name, query_name from "
                f"{controls.MARTS_SCHEMA}.{SEARCHED_MART} where run_id = '{run_id}' and "
                f"population_key = '{key}' order by source_name, query_name\"")
    rows = _try_dicts(conn, sql.SQL(
        "select population_key, description, evidence_id, source_name, query_name from {}"
        " where run_id = %s and population_key = %s"
        " order by source_name, query_name, evidence_id").format(
            sql.Identifier(controls.MARTS_SCHEMA, SEARCHED_MART)), (run_id, key))
    if rows is None:
        return Searched(key, None, 0, [], [], list_all, available=False)
    ids = [str(r["evidence_id"]) for r in rows if r["evidence_id"] is not None]
    shown_rows = _evidence_rows(conn, ids[:SEARCHED_SHOWN])
    shown = [_ref("searched", i, shown_rows) for i in ids[:SEARCHED_SHOWN]]
    for ref, r in zip(shown, rows, strict=False):
        ref.source_name = ref.source_name or r["source_name"]
    description = next((r["description"] for r in rows if r["description"]), None)
    return Searched(key, description, len(ids), ids, shown, list_all)


def _deciding(row: Mapping[str, Any], attributes: Sequence[Attribute]) -> list[str]:
    """The names that decided the result: the reason codes and the failed tests (for a
    passing row, the tests that held)."""
    reasons = [str(r) for r in row.get("exception_reasons") or []]
    failed = [a.name for a in attributes if a.value is False]
    if not reasons and not failed:
        failed = [a.name for a in attributes if a.value]
    return reasons + failed


def explain(conn: psycopg.Connection[Any], run_id: str, item_key: str, *,
            control_id: str | None = None, store: Store | None = None) -> Explanation:
    """One row's whole decision (read-only)."""
    try:
        run = runs.get_quarter_run(conn, run_id, "explain")
    except PipelineError as exc:
        raise ExplainError(str(exc)) from None
    conn.commit()
    if store is None:
        from soxtrail.audit.verify import run_store

        store = run_store(run)
    control, row, columns = find_row(conn, run.id, item_key, control_id)
    descriptions = column_descriptions(control.model)
    attributes = [Attribute(c, row[c], descriptions.get(c, "")) for c in columns
                  if c not in BASE_COLUMNS and (isinstance(row[c], bool) or (
                      row[c] is None and c.startswith(("is_", "has_"))))]
    roles = _evidence_roles(row, columns)
    rows = _evidence_rows(conn, [i for _, i in roles])
    evidence = [_ref(role, i, rows) for role, i in roles]
    cited = [i for role, i in roles if role != "control"]
    lines: dict[tuple[str | None, str], SourceLine] = {}
    for column, locator in _locators(row, columns):
        file = parse_locator(locator)[0]
        owner = _object_for(column, file, row, cited, rows)
        if (owner, locator) in lines:  # two columns naming the same bytes: shown once
            lines[owner, locator].columns.append(column)
        else:
            lines[owner, locator] = read_source(conn, store, column, locator, owner, rows)
    searched = None
    if row.get("searched_population"):
        searched = _searched(conn, run.id, str(row["searched_population"]))
    candidates = row.get("candidates")
    if isinstance(candidates, str):  # the mart may keep it as JSON text
        try:
            candidates = json.loads(candidates)
        except ValueError:
            candidates = None
    deciding = _deciding(row, attributes)
    control_row = next((rows[i] for role, i in roles if role == "control" and i in rows), None)
    ctes = relevant_ctes(str(control_row["query_text"]), deciding) if control_row else []
    return Explanation(
        run_id=run.id, quarter=run.quarter, control=control, row=row, columns=columns,
        descriptions=descriptions, attributes=attributes, source_lines=list(lines.values()),
        evidence=evidence, searched=searched,
        candidates=candidates if isinstance(candidates, list) else None, ctes=ctes,
        deciding=deciding, query_name=control_row["query_name"] if control_row else None)


# --- the terminal ---------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "{}"
    if isinstance(value, dict):
        return json.dumps(_jsonable(value), sort_keys=True)
    return str(value)


def _short(evidence_id: str | None) -> str:
    return (evidence_id or "?")[:8]


def print_explanation(console: Console, exp: Explanation) -> None:
    """The decision, readable in a 100-column terminal."""
    width = max(60, min(console.width, 100))
    prefix = f"{exp.quarter}/{exp.run_id}/"

    def key(store_key: str | None) -> str:
        return (store_key or "?").removeprefix(prefix)

    def say(text: str = "", style: str | None = None, indent: str = "") -> None:
        lines = textwrap.wrap(text, width, initial_indent=indent,
                              subsequent_indent=indent + "  ", break_on_hyphens=False,
                              break_long_words=False) if text else [""]
        for line in lines:
            console.print(line, markup=False, style=style, highlight=False)

    c = exp.control
    style = "bold red" if exp.result == "EXCEPTION" else "bold green"
    say(f"{c.id} {c.title} — run {exp.run_id} ({exp.quarter})", "bold")
    say(c.question, indent="  ")
    say(f"item    {exp.item_key}", "bold")
    say(f"result  {exp.result}" + (f"   reasons: {', '.join(exp.reasons)}" if exp.reasons
                                   else ""), style)

    say()
    say(f"The population item (marts.{c.model})", "bold underline")
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("column", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold", ratio=3)
    table.add_column("what it is", overflow="fold", style="dim", ratio=2)
    for name in exp.figures():
        table.add_row(name, _cell(exp.row[name]), exp.descriptions.get(name, ""))
    for name in ("searched_population", "searched_count", "candidate_count"):
        if name in exp.columns:
            table.add_row(name, _cell(exp.row[name]), exp.descriptions.get(name, ""))
    console.print(table, width=width)

    if exp.attributes:
        say()
        say("The tests", "bold underline")
        tests = Table(show_header=True, box=None, pad_edge=False)
        tests.add_column("attribute", style="cyan", no_wrap=True)
        tests.add_column("value", no_wrap=True)
        tests.add_column("what it tests", overflow="fold")
        for a in exp.attributes:
            tests.add_row(a.name, a.verdict, a.description,
                          style="red" if a.value is False else None)
        console.print(tests, width=width)
    say(f"→ {exp.result}" + (f": {', '.join(exp.reasons)}" if exp.reasons else
                             " (every test held)"), style)

    say()
    say("The source lines, as stored", "bold underline")
    say(f"(store keys below are under {prefix} of the run's evidence store)", "dim",
        indent="  ")
    if not exp.source_lines:
        say("(the row names no locator)", indent="  ")
    for s in exp.source_lines:
        say(f"{', '.join([s.column, *s.columns])} {s.locator}", "cyan")
        say(f"evidence {s.evidence_id or '?'}  {s.position}", indent="  ")
        if s.store_key:
            say(f"object   {key(s.store_key)}", indent="  ")
        if s.note:
            say(f"note     {s.note}", "yellow", indent="  ")
        if s.text is not None:
            label = "bytes as stored" if s.exact else "re-serialized (not strict JSON)"
            console.print(f"  ┌ {label}", markup=False, highlight=False)
            for text_line in s.text.splitlines() or [""]:
                console.print(f"  │ {text_line}", markup=False, highlight=False)
            console.print("  └", markup=False, highlight=False)
        if s.raw_row and s.kind == "line":  # a JSON item's raw row is the item itself
            shown = {k: v for k, v in s.raw_row.items() if v not in (None, "") and k != "doc"}
            say("raw table row: " + ", ".join(f"{k}={_cell(v)}" for k, v in shown.items())
                + (" (doc: the line, as jsonb)" if "doc" in s.raw_row else ""),
                "dim", indent="  ")

    say()
    say("The evidence it rests on", "bold underline")
    for e in exp.evidence:
        _print_ref(say, e, key)
    if exp.searched is not None:
        searched = exp.searched
        say()
        say(f"The population searched for the absence claim: {searched.population_key}",
            "bold underline")
        if not searched.available:
            say(f"marts.{SEARCHED_MART} is not in this database (an older run)", "yellow",
                indent="  ")
        else:
            if searched.description:
                say(searched.description, indent="  ")
            say(f"{searched.count} evidence objects searched (the row's searched_count: "
                f"{_cell(exp.row.get('searched_count'))}); the first {len(searched.shown)}:",
                indent="  ")
            for e in searched.shown:
                _print_ref(say, e, key)
            say(f"all of them (or --json): {searched.list_all}", "dim", indent="  ")

    if exp.candidates:
        say()
        say(f"The candidates considered ({len(exp.candidates)})", "bold underline")
        keys: list[str] = [k for k in CANDIDATE_KEYS if any(k in c for c in exp.candidates)]
        for cand in exp.candidates:
            keys += [k for k in cand if k not in keys]
        cands = Table(show_header=True, box=None, pad_edge=False)
        for k in keys:
            cands.add_column(k, overflow="fold")
        for cand in exp.candidates:
            cands.add_row(*(_cell(cand.get(k)) for k in keys),
                          style="bold" if cand.get("chosen") else None)
        console.print(cands, width=width)

    say()
    control_evidence = _cell(exp.row.get("control_evidence_id"))
    say(f"The compiled SQL (control evidence {control_evidence[:8]}…)", "bold underline")
    if exp.query_name:
        say(exp.query_name, indent="  ")
    say("CTEs in order: " + " → ".join(x.name for x in exp.ctes if x.parent is None),
        indent="  ")
    relevant = [x for x in exp.ctes if x.mentions]
    if relevant:
        say(f"where {', '.join(exp.deciding)} are decided:", indent="  ")
        for x in relevant:
            where = f" (in {x.parent})" if x.parent else ""
            say(f"{x.name}{where}: {', '.join(x.mentions)}", indent="    ")
    say(f"the full SQL: soxtrail evidence {control_evidence}", "dim", indent="  ")


def _print_ref(say: Any, e: EvidenceRef, key: Any) -> None:
    if not e.found:
        say(f"{e.role:<11} {e.id}  NOT FOUND in sox_evidence", "red", indent="  ")
        return
    say(f"{e.role:<11} {e.id}  {e.source_system}"
        + (f"/{e.source_name}" if e.source_name else ""), "cyan", indent="  ")
    pad = " " * 14
    say(f"query    {e.query_name}", indent=pad)
    executed = e.executed_at.isoformat(sep=" ") if e.executed_at else "—"
    say(f"executed {executed}   rows {e.row_count}", indent=pad)
    say(f"sha256   {e.sha256}", indent=pad)
    say(f"store    {key(e.store_key)}", indent=pad)
