"""verify: re-derive each raw table from the stored objects with the loader's own code."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from extract import loader
from extract.connectors.registry import RAW_TABLES
from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import runs, spark
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.sources import RawTable
from soxtrail.kernel.store import CHUNK, LocalStore, Store

KIND = "raw"
# phases after which every snapshot object of the run has its sox_load_stats row
LOADED_PHASES = frozenset({"load", "reconcile", "render", "bundle"})
SHOWN = 3  # differing locators named in a verdict
SHOWN_CHARS = 60  # characters of a changed value shown
FETCH_ROWS = 5_000  # raw rows fetched at a time
Row = tuple[str | None, ...]  # locator, then the payload columns


@dataclass
class LoadStats:
    """One object's sox_load_stats row."""

    raw_table: str
    read: int
    loaded: int
    rejected: int
    skipped: int
    content_sha256: str | None
    loader_version: int | None


@dataclass
class Recorded:
    """What the database holds for one object: its load stats, raw rows and rejects."""

    stats: LoadStats | None = None
    contexts: Counter[tuple[str | None, ...]] = field(default_factory=Counter)
    rows: list[Row] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)


def _subject(row: dict[str, Any]) -> str:
    return f"{row['id']} {row['raw_output_s3_key']}"


# ---------------------------------------------------------------------------
# COPY text and jsonb values, compared as PostgreSQL stores them
# ---------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)
_LETTERS = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape_match(match: re.Match[str]) -> str:
    octal, hexa, char = match.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if hexa is not None:
        return chr(int(hexa, 16))
    return _LETTERS.get(char, char)


def copy_text_fields(line: str) -> Row:
    """The values of one COPY text line (no newline), as PostgreSQL's COPY FROM reads it."""
    return tuple(None if value == "\\N" else
                 _ESCAPE.sub(_unescape_match, value) if "\\" in value else value
                 for value in line.split("\t"))


def json_value(text: str) -> Any:
    """A jsonb value for comparison, equal where PostgreSQL's jsonb `=` says equal: objects
    as dicts (the last of duplicate keys, as jsonb keeps), numbers by value (1.0 = 1 = 1e0,
    as numeric compares them)."""
    return json.loads(text, parse_float=Decimal)


def same_row(derived: Row, stored: Row, jsonb: frozenset[int]) -> bool:
    """True when `stored` (from the table) is what loading `derived` writes: text equal,
    jsonb columns equal as jsonb values."""
    if derived == stored:
        return True
    if len(derived) != len(stored):
        return False
    for index, (mine, theirs) in enumerate(zip(derived, stored, strict=True)):
        if mine == theirs:
            continue
        if index not in jsonb or mine is None or theirs is None:
            return False
        try:
            if json_value(mine) != json_value(theirs):
                return False
        except ValueError:
            return False
    return True


def derived_rows(lines: list[bytes]) -> Iterator[Row]:
    """The rows of a derivation's COPY text blocks."""
    for block in lines:
        text = block.decode("utf-8")
        for line in text.split("\n")[:-1]:
            yield copy_text_fields(line)


# ---------------------------------------------------------------------------
# Reading what the database recorded
# ---------------------------------------------------------------------------


def _load_stats(conn: psycopg.Connection[Any], run_id: str) -> dict[str, LoadStats]:
    # a database not bootstrapped by this release yet (verify never bootstraps) lacks the
    # columns: its runs were loaded before they were recorded
    recorded = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = 'soxtrail'"
        " and table_name = 'sox_load_stats'"
        " and column_name in ('content_sha256', 'loader_version')")}
    columns = ", ".join(c if c in recorded else f"null as {c}"
                        for c in ("content_sha256", "loader_version"))
    rows = conn.execute(
        "select evidence_id::text, raw_table, records_read, records_loaded, records_rejected,"
        f" records_skipped, {columns}"
        " from soxtrail.sox_load_stats where run_id = %s", (run_id,)).fetchall()
    return {row[0]: LoadStats(*row[1:]) for row in rows}


def _rejects(conn: psycopg.Connection[Any], run_id: str) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    for evidence_id, locator, reason in conn.execute(
            "select evidence_id::text, locator, reason from soxtrail.sox_rejects"
            " where run_id = %s", (run_id,)):
        result.setdefault(evidence_id, []).append((locator, reason))
    return result


def _jsonb_columns(conn: psycopg.Connection[Any], table_name: str) -> frozenset[str]:
    schema, _, name = table_name.partition(".")
    rows = conn.execute("select column_name from information_schema.columns"
                        " where table_schema = %s and table_name = %s and data_type = 'jsonb'",
                        (schema, name)).fetchall()
    return frozenset(r[0] for r in rows)


def _parquet_rows(folder: Path, table: RawTable) -> Iterator[tuple[str | None, ...]]:
    """As _table_rows, from a Spark run's Parquet files (one per object, named by its
    evidence id; the file's rows in load order), read with pyarrow, not through Spark."""
    import pyarrow.parquet as pq

    names = ["evidence_id", *table.context, "locator", *table.payload]
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        data = pq.read_table(path, columns=names)
        yield from zip(*[column.to_pylist() for column in data.columns], strict=True)


def _table_rows(conn: psycopg.Connection[Any], run_id: str, table_name: str,
                table: RawTable, warehouse: Path | None = None
                ) -> Iterator[tuple[str | None, ...]]:
    """(evidence id, context…, locator, payload…) of the run's rows as text, grouped by
    evidence id (a server-side cursor: constant memory); with `warehouse` (engine: spark),
    from the run's Parquet files."""
    schema, _, name = table_name.partition(".")
    if warehouse is not None:
        yield from _parquet_rows(spark.raw_folder(warehouse, name) / run_id, table)
        return
    columns = [sql.SQL("{}::text").format(sql.Identifier(c))
               for c in ("evidence_id", *table.context, "locator", *table.payload)]
    query = sql.SQL("select {columns} from {table} where run_id = %s order by evidence_id").format(
        columns=sql.SQL(", ").join(columns), table=sql.Identifier(schema, name))
    with conn.cursor(name="soxtrail_verify_raw") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query, (run_id,))
        yield from cur


# ---------------------------------------------------------------------------
# One object
# ---------------------------------------------------------------------------


def _locator_diff(derived: list[Row], stored: list[Row], table_name: str, table: RawTable,
                  jsonb: frozenset[int]) -> list[str]:
    """What differs between the derived rows and the table's, first differing locator
    first (in load order; rows only in the table after, by locator)."""
    mine: dict[str | None, list[Row]] = {}
    for row in derived:
        mine.setdefault(row[0], []).append(row)
    theirs: dict[str | None, list[Row]] = {}
    for row in stored:
        theirs.setdefault(row[0], []).append(row)
    order = list(mine) + sorted((k for k in theirs if k not in mine), key=lambda k: k or "")
    found: list[str] = []
    differing = 0
    for locator in order:
        left = list(mine.get(locator, []))
        right = list(theirs.get(locator, []))
        for row in list(left):
            match = next((other for other in right if same_row(row, other, jsonb)), None)
            if match is not None:
                left.remove(row)
                right.remove(match)
        if not left and not right:
            continue
        differing += 1
        if len(found) >= SHOWN:
            continue
        if left and not right:
            what = "deleted: the object has it, the table has not"
        elif right and not left:
            what = "added: in the table, not in the object"
        elif len(left) == len(right) == 1:
            names = ("locator", *table.payload)
            columns = [i for i, (a, b) in enumerate(zip(left[0], right[0], strict=False))
                       if not same_row((a,), (b,), frozenset({0}) if i in jsonb else frozenset())]
            what = f"changed in {', '.join(names[i] for i in columns)}"
            if len(columns) == 1:
                what += (f": the object gives {_shown(left[0][columns[0]])}, the table has "
                         f"{_shown(right[0][columns[0]])}")
        else:
            what = f"changed: {len(left)} row(s) of the object, {len(right)} in the table"
        found.append(f"{table_name} locator {locator!r} {what}")
    if differing > len(found):
        found.append(f"{differing} locators differ in all")
    return found


def _shown(value: str | None) -> str:
    if value is None:
        return "null"
    return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + "…"


def _reject_diff(derived: list[tuple[str, str, str | None]],
                 stored: list[tuple[str, str]]) -> list[str]:
    mine = Counter((locator, reason) for locator, reason, _ in derived)
    theirs = Counter(stored)
    if mine == theirs:
        return []
    missing = sorted((mine - theirs).elements())
    extra = sorted((theirs - mine).elements())
    parts = []
    if missing:
        parts.append(f"reject at locator {missing[0][0]!r} ({missing[0][1]}) not in sox_rejects")
    if extra:
        parts.append(f"sox_rejects has a reject at locator {extra[0][0]!r} the object "
                     "does not give")
    return parts


def _count_problems(stats: LoadStats, recorded: Recorded) -> list[str]:
    """read = loaded + rejected + skipped, against the table and sox_rejects."""
    problems = []
    if stats.read != stats.loaded + stats.rejected + stats.skipped:
        problems.append(f"load stats: read {stats.read} != loaded {stats.loaded} + rejected "
                        f"{stats.rejected} + skipped {stats.skipped}")
    if len(recorded.rows) != stats.loaded:
        problems.append(f"{stats.raw_table} has {len(recorded.rows)} rows, load stats say "
                        f"{stats.loaded} loaded")
    if len(recorded.rejects) != stats.rejected:
        problems.append(f"sox_rejects has {len(recorded.rejects)} rejects, load stats say "
                        f"{stats.rejected}")
    return problems


def _loaded_by(version: int | None) -> str:
    return ("loaded before loader versions were recorded" if version is None
            else f"loaded by loader version {version}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_object(row: dict[str, Any], recorded: Recorded, *, table: RawTable, store: Store,
                 scratch: Path, loaded: bool, jsonb: frozenset[int]) -> Verdict:
    """Re-derive one object's raw rows, rejects and counts; compare with what is recorded."""
    subject = _subject(row)
    params = dict(row["query_params"] or {})
    table_name = params["raw_table"]
    stats = recorded.stats
    if stats is None:
        if recorded.rows or recorded.rejects:
            return Verdict("MISMATCH", KIND, subject,
                           f"{len(recorded.rows)} rows in {table_name} and "
                           f"{len(recorded.rejects)} rejects but no sox_load_stats row")
        if loaded:
            return Verdict("MISSING", KIND, subject, "no sox_load_stats row: the object was "
                                                     "not loaded, or its rows were removed")
        return Verdict("NOTE", KIND, subject, "not loaded yet (the run stopped before load)")
    problems = _count_problems(stats, recorded)
    if stats.raw_table != table_name:
        problems.append(f"load stats name {stats.raw_table}, the evidence {table_name}")
    counted = (f"read {stats.read} = {len(recorded.rows)} loaded + {len(recorded.rejects)} "
               f"rejected + {stats.skipped} skipped")
    if stats.loader_version != loader.LOADER_VERSION:  # one NOTE for the run says so
        if problems:
            return Verdict("MISMATCH", KIND, subject, "; ".join(problems))
        return Verdict("OK", KIND, subject, f"{table_name}: {counted} (counts only: "
                                            f"{_loaded_by(stats.loader_version)})")
    derivation = _derive(row, store=store, scratch=scratch)
    if isinstance(derivation, Verdict):  # not re-derived: the counts still decide
        if problems and not derivation.failed:
            return Verdict("MISMATCH", KIND, subject, "; ".join(problems))
        return derivation
    expected_context = tuple(None if v is None else str(v) for v in derivation.context)
    for context in recorded.contexts:
        if context != expected_context:
            problems.append(f"{table_name} has {recorded.contexts[context]} rows with "
                            f"{context!r} before the locator, the object's evidence says "
                            f"{expected_context!r}")
    problems = _locator_diff(list(derived_rows(derivation.lines)), recorded.rows, table_name,
                             table, jsonb) + problems
    problems += _reject_diff(derivation.rejects, recorded.rejects)
    counts = derivation.counts
    if (counts.read, counts.loaded, counts.rejected, counts.skipped) != (
            stats.read, stats.loaded, stats.rejected, stats.skipped):
        problems.append(f"the object gives read {counts.read}, loaded {counts.loaded}, rejected "
                        f"{counts.rejected}, skipped {counts.skipped}; load stats say read "
                        f"{stats.read}, loaded {stats.loaded}, rejected {stats.rejected}, "
                        f"skipped {stats.skipped}")
    if derivation.content_sha256 != stats.content_sha256:
        problems.append(f"content sha256: the object gives {derivation.content_sha256}, "
                        f"load stats say {stats.content_sha256}")
    if problems:
        return Verdict("MISMATCH", KIND, subject, "; ".join(problems))
    return Verdict("OK", KIND, subject, f"{table_name} re-derived: {counted}; content sha256 "
                                        f"{derivation.content_sha256[:16]}…")


def _derive(row: dict[str, Any], *, store: Store, scratch: Path) -> loader.Derivation | Verdict:
    """The loader's derivation of the stored object, or why there is none."""
    subject = _subject(row)
    key = row["raw_output_s3_key"]
    try:
        if not store.exists(key):
            return Verdict("NOTE", KIND, subject, "not re-derived: the object is not in the "
                                                  "store (see its object check)")
        path = store.fetch(key, scratch / uuid.uuid4().hex / Path(key).name)
    except SoxtrailError as exc:
        return Verdict("NOTE", KIND, subject, f"not re-derived: {exc}")
    try:
        if _sha256(path) != row["result_hash"]:
            return Verdict("NOTE", KIND, subject, "not re-derived: the stored object does not "
                                                  "match its evidence hash (see its object "
                                                  "check)")
        try:
            return loader.derive_object(run_id=str(row["run_id"]), evidence_id=str(row["id"]),
                                        params=dict(row["query_params"]), path=path)
        except Exception as exc:  # a loader that cannot read its own object is a finding
            return Verdict("FAIL", KIND, subject,
                           f"cannot re-derive: {exc.__class__.__name__}: {exc}")
    finally:
        if not isinstance(store, LocalStore):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def run_warehouse(run: runs.Run) -> Path | None:
    """The Spark warehouse a run loaded into (engine: spark, as the run recorded it)."""
    if run.config.get("engine") != "spark":
        return None
    settings = run.config.get("spark") or {}
    return Path(settings["warehouse"]) if settings.get("warehouse") else None


def _groups(rows: Iterator[tuple[str | None, ...]]
            ) -> Iterator[tuple[str, list[tuple[str | None, ...]]]]:
    """Consecutive rows of the same evidence id (the first value), as (id, rows)."""
    current: str | None = None
    group: list[tuple[str | None, ...]] = []
    for values in rows:
        if values[0] != current:
            if group:
                yield str(current), group
            current, group = values[0], []
        group.append(values)
    if group:
        yield str(current), group


def check_raw_tables(conn: psycopg.Connection[Any], run: runs.Run, rows: list[dict[str, Any]],
                     store: Store, *, bundled: bool = False,
                     partial: bool = False) -> list[Verdict]:
    """Re-derive every snapshot object's raw rows, rejects and counts from the store with
    the loader's own code; compare with the raw tables, sox_rejects and sox_load_stats.

    One verdict per object, naming the first differing locators; EXTRA for raw rows or
    load stats of the run under an evidence id that is not one of its objects. A raw
    table is read once, ordered by evidence id: one object's rows in memory at a time.
    `partial`: `rows` are some of the run's objects (those another run includes): only
    their tables are read, and the run's other objects are not strays.
    """
    objects = {str(r["id"]): r for r in rows
               if r["source_system"] != "reconcile" and "raw_table" in (r["query_params"] or {})}
    # loaded: the run's row says so, or it has a bundle (its last phase; a row set back
    # must not excuse missing raw rows)
    loaded = run.phase_reached in LOADED_PHASES or bundled
    stats = _load_stats(conn, run.id)
    rejects = _rejects(conn, run.id)
    conn.commit()
    verdicts: list[Verdict] = []
    tables = sorted({str(r["query_params"]["raw_table"]) for r in objects.values()}
                    | ({s.raw_table for s in stats.values()} if not partial else set()))
    warehouse = run_warehouse(run)
    with tempfile.TemporaryDirectory(prefix="soxtrail-verify-raw-") as scratch:
        for table_name in tables:
            verdicts += _check_table(conn, run.id, table_name, objects, stats, rejects,
                                     store=store, scratch=Path(scratch), loaded=loaded,
                                     partial=partial, warehouse=warehouse)
    if partial:
        return verdicts
    other = Counter(s.loader_version for e, s in stats.items()
                    if e in objects and s.loader_version != loader.LOADER_VERSION)
    for version, count in sorted(other.items(), key=lambda item: item[0] or 0):
        verdicts.append(Verdict(
            "NOTE", KIND, run.id,
            f"{count} objects {_loaded_by(version)}: this release (loader version "
            f"{loader.LOADER_VERSION}) cannot re-derive their raw rows, only check their "
            "counts against the tables; verify the run with the release that produced it"))
    for evidence_id in sorted(set(stats) - set(objects)):
        verdicts.append(Verdict("EXTRA", KIND, f"sox_load_stats evidence {evidence_id}",
                                "a load-stats row of the run for an evidence id that is not "
                                "one of its snapshot objects"))
    for evidence_id in sorted(set(rejects) - set(objects)):
        verdicts.append(Verdict("EXTRA", KIND, f"sox_rejects evidence {evidence_id}",
                                f"{len(rejects[evidence_id])} rejects of the run for an evidence "
                                "id that is not one of its snapshot objects"))
    return verdicts


def _check_table(conn: psycopg.Connection[Any], run_id: str, table_name: str,
                 objects: dict[str, dict[str, Any]], stats: dict[str, LoadStats],
                 rejects: dict[str, list[tuple[str, str]]], *, store: Store, scratch: Path,
                 loaded: bool, partial: bool = False,
                 warehouse: Path | None = None) -> list[Verdict]:
    """The verdicts of the objects loading into one raw table, and of its strays (the
    table's rows in PostgreSQL, or with `warehouse` in the run's Parquet files)."""
    table = RAW_TABLES.get(table_name)
    if table is None:
        return [Verdict("FAIL", KIND, table_name, "not a raw table of this release")]
    members = {evidence_id: row for evidence_id, row in objects.items()
               if row["query_params"]["raw_table"] == table_name}
    # a jsonb column holds PostgreSQL's normal form of the JSON text; Parquet holds the text
    names = _jsonb_columns(conn, table_name) if warehouse is None else frozenset()
    conn.commit()
    jsonb = frozenset(i + 1 for i, c in enumerate(table.payload) if c in names)
    width = 1 + len(table.context)
    verdicts: list[Verdict] = []
    done: set[str] = set()

    def check(evidence_id: str, group: list[tuple[str | None, ...]]) -> Verdict:
        recorded = Recorded(stats.get(evidence_id), rejects=rejects.get(evidence_id, []),
                            contexts=Counter(tuple(values[1:width]) for values in group),
                            rows=[tuple(values[width:]) for values in group])
        done.add(evidence_id)
        return check_object(members[evidence_id], recorded, table=table, store=store,
                            scratch=scratch, loaded=loaded, jsonb=jsonb)

    try:
        for evidence_id, group in _groups(_table_rows(conn, run_id, table_name, table,
                                                      warehouse)):
            if evidence_id in members:
                verdicts.append(check(evidence_id, group))
            elif not partial:
                verdicts.append(Verdict("EXTRA", KIND, f"{table_name} evidence {evidence_id}",
                                        f"{len(group)} rows of the run under an evidence id "
                                        "that is not one of its snapshot objects loading "
                                        f"into {table_name}"))
        conn.commit()
    except (psycopg.Error, OSError, ValueError) as exc:  # the objects not reached yet stay
        # unchecked: this fails (an unreadable Parquet file: OSError / pyarrow's ValueError)
        conn.rollback()
        verdicts.append(Verdict("FAIL", KIND, table_name, " ".join(str(exc).split())[:300]))
        return verdicts
    for evidence_id in members:
        if evidence_id not in done:
            verdicts.append(check(evidence_id, []))
    return verdicts
