"""Phase 2: COPY each snapshot object of a run into its raw table; rejects keep the reason."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from extract.connectors.formats import jsonb_problem
from extract.connectors.registry import RAW_TABLES, connector_module, object_module
from soxtrail.kernel import evidence, secrets
from soxtrail.kernel.errors import PipelineError
from soxtrail.kernel.sources import (
    CopyRows,
    JsonDoc,
    RawRow,
    Reject,
    Skipped,
    Source,
    copy_fields,
    copy_lines_columns,
)
from soxtrail.kernel.store import Store

MAX_REJECT_TEXT = 10_000
# The version of what the loader writes for the same object bytes: bump it whenever the raw
# rows, rejects or counts of an object change (a connector's `load`, a reject rule, the COPY
# encoding). Recorded per object in sox_load_stats; verify re-derives the raw rows of a run
# loaded by this version only (docs/reliability.md, "Raw tables are re-derived").
# 2: pgaudit_log loads the server lines LG-01 reads; 3: every locator starts with the name
# of the object as stored (`catalog_memberships.csv:7`, not the export's `memberships.csv:7`;
# a completeness statement `<object>:1`, an inclusion list `<object>:<line>`)
LOADER_VERSION = 3
# raw.source_settings, the one raw table not loaded from an evidence object: a row per
# (setting, key, value) of a connector's `settings(source)`
SOURCE_SETTINGS_COLUMNS = ("run_id", "source_name", "connector", "setting", "key", "value")


@dataclass
class LoadCounts:
    """Counts for one object (or summed over a run)."""

    read: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped: int = 0

    def add(self, other: LoadCounts) -> None:
        self.read += other.read
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.skipped += other.skipped


@dataclass
class LoadReport:
    """What a load phase did: per raw table counts and the reject reasons seen."""

    tables: dict[str, LoadCounts] = field(default_factory=dict)
    objects_loaded: int = 0
    objects_already_loaded: int = 0

    @property
    def total(self) -> LoadCounts:
        total = LoadCounts()
        for counts in self.tables.values():
            total.add(counts)
        return total


def _has_nul(values: tuple[Any, ...]) -> bool:
    return any(isinstance(v, str) and "\x00" in v for v in values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _payload(values: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None, str | None]:
    """The row's COPY values, or why jsonb would refuse it (NUL, lone surrogate, NaN) + its text.

    One such value would fail the COPY of the whole object: the record is rejected instead.
    """
    out = []
    for value in values:
        if type(value) is JsonDoc:  # its source text, already checked by the connector
            value = value.text
        elif isinstance(value, (dict, list)):
            try:
                text = json.dumps(value, ensure_ascii=False, allow_nan=False)
            except ValueError:
                return values, "NaN or Infinity (jsonb cannot store it)", \
                    json.dumps(value)[:MAX_REJECT_TEXT]
            if "\\u0000" in text or _SURROGATE.search(text):
                problem = jsonb_problem(value)
                if problem:
                    return values, problem, json.dumps(value)[:MAX_REJECT_TEXT]
            value = text
        out.append(value)
    return tuple(out), None, None


def _context(params: dict[str, Any], evidence_id: str) -> tuple[Any, ...]:
    """The object's context column values (source, cluster or connector) for its table."""
    table = RAW_TABLES.get(params["raw_table"])
    if table is None:
        raise PipelineError(f"evidence {evidence_id}: unknown raw table {params['raw_table']!r}")
    return tuple(params.get(col) if col != "source_name" else params.get("source")
                 for col in table.context)


def _rows(params: dict[str, Any], path: Path, *, run_id: str, evidence_id: str,
          counts: LoadCounts, rejects: list[tuple[str, str, str | None]],
          head: str | None = None) -> Iterator[tuple[Any, ...] | str | CopyRows]:
    """The COPY rows of one object; counts and rejects are filled in as they pass.

    Given `head` (the COPY text of the run, evidence and context columns, ending in a
    tab), a connector offering `load_copy_text` hands rows already in COPY text form:
    str (locator and payload, for the caller to prefix with `head`) or CopyRows (whole
    lines), passed through as they are.
    """
    table_name = params["raw_table"]
    context = _context(params, evidence_id)
    width = len(RAW_TABLES[table_name].payload)
    module = object_module(params)
    fast = getattr(module, "load_copy_text", None) if head is not None else None
    items = fast(params, path, head) if fast is not None else module.load(params, path)
    for item in items:
        if type(item) is CopyRows:
            counts.read += item.count
            counts.loaded += item.count
            yield item
            continue
        if type(item) is str:
            counts.read += 1
            counts.loaded += 1
            yield item
            continue
        if isinstance(item, RawRow):
            counts.read += 1
            values = item.values
            if len(values) == 1 and type(values[0]) is JsonDoc:
                values = (values[0].text,)
            try:  # the common case: every value a str or None (one C-level pass)
                probe = "".join([v for v in values if v is not None])
            except TypeError:
                pass
            else:
                if len(values) != width:
                    raise PipelineError(f"{params['connector']} produced {len(values)} "
                                        f"values for {table_name} (expected {width})")
                if "\x00" in probe or "\x00" in item.locator:
                    counts.rejected += 1
                    rejects.append((item.locator.replace("\x00", ""), "NUL byte in value",
                                    None))
                    continue
                yield (run_id, evidence_id, *context, item.locator, *values)
                counts.loaded += 1
                continue
            values, problem, text = _payload(values)
            if len(values) != width:
                raise PipelineError(f"{params['connector']} produced {len(values)} "
                                    f"values for {table_name} (expected {width})")
            if problem is None and (_has_nul(values) or "\x00" in item.locator):
                problem = "NUL byte in value"
            if problem is not None:
                counts.rejected += 1
                rejects.append((item.locator.replace("\x00", ""), problem, text))
                continue
            yield (run_id, evidence_id, *context, item.locator, *values)
            counts.loaded += 1
        elif isinstance(item, Reject):
            counts.read += 1
            counts.rejected += 1
            text = item.raw_text
            if text is not None:
                text = text.replace("\x00", "\\x00")
                if len(text) > MAX_REJECT_TEXT:
                    text = text[:MAX_REJECT_TEXT] + f"… [{len(text)} chars, truncated]"
            rejects.append((item.locator, item.reason, text))
        elif isinstance(item, Skipped):
            counts.read += item.count
            counts.skipped += item.count


def copy_sql(table_name: str) -> str:
    """The COPY statement loading a raw table's columns."""
    return f"copy {table_name} ({', '.join(RAW_TABLES[table_name].columns)}) from stdin"


def _finish_object(cur: psycopg.Cursor[Any], *, run_id: str, evidence_id: str,
                   params: dict[str, Any], counts: LoadCounts,
                   rejects: list[tuple[str, str, str | None]], content_sha256: str) -> None:
    """The object's rejects and its load-stats row (same transaction as its rows)."""
    table_name = params["raw_table"]
    if rejects:
        with cur.copy("copy soxtrail.sox_rejects (run_id, evidence_id, source_name, raw_table, "
                      "locator, reason, raw_text) from stdin") as copy:
            for locator, reason, text in rejects:
                copy.write_row((run_id, evidence_id, params.get("source", ""), table_name,
                                locator, reason, text))
    cur.execute(
        "insert into soxtrail.sox_load_stats (run_id, evidence_id, raw_table, records_read,"
        " records_loaded, records_rejected, records_skipped, content_sha256, loader_version)"
        " values (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (run_id, evidence_id, table_name, counts.read, counts.loaded, counts.rejected,
         counts.skipped, content_sha256, LOADER_VERSION),
    )


# ---------------------------------------------------------------------------
# The content hash: defined once, computed as the rows pass at load time and again by
# verify from the stored object (derive_object).
# ---------------------------------------------------------------------------


def _head_text(run_id: str, evidence_id: str, params: dict[str, Any]) -> str:
    """The COPY text of the columns before the locator (run, evidence, context), with the
    tab that ends it: the same on every row of the object."""
    return _copy_line((run_id, evidence_id, *_context(params, evidence_id)))[:-1] + "\t"


class ContentHash:
    """An object's content hash: SHA-256 over its raw rows as the loader writes them, in
    the order it writes them, each a COPY text line (UTF-8, ending in a newline) of the
    locator and payload columns. The run, evidence and context columns before the locator
    are left out: the same on every row, they are checked apart. With `keep`, the lines
    hashed are kept (`kept`: blocks of whole lines) for verify to compare with the table.
    """

    def __init__(self, head: str, *, keep: bool = False) -> None:
        self._head = head.encode("utf-8")
        self._next = b"\n" + self._head
        self._width = head.count("\t")
        self._digest = hashlib.sha256()
        self.kept: list[bytes] | None = [] if keep else None

    def update(self, block: bytes) -> None:
        """Hash a block of whole COPY lines, each starting with the head."""
        if not block:
            return
        if not block.startswith(self._head):
            raise PipelineError("a COPY block does not start with its object's columns")
        # a newline inside a value is escaped: every newline ends a line
        tail = block[len(self._head):].replace(self._next, b"\n")
        self._digest.update(tail)
        if self.kept is not None:
            self.kept.append(tail)

    def update_row(self, row: tuple[Any, ...]) -> None:
        """Hash one row given as values (copy_object's path): the same line encode_blocks
        writes for text values; another value as its str()."""
        tail = [v if v is None or type(v) is str else str(v) for v in row[self._width:]]
        line = (copy_fields(tail) + "\n").encode("utf-8")
        self._digest.update(line)
        if self.kept is not None:
            self.kept.append(line)

    def hexdigest(self) -> str:
        """The hash as 64 hex digits."""
        return self._digest.hexdigest()


def copy_object(conn: psycopg.Connection[Any], *, run_id: str, evidence_id: str,
                params: dict[str, Any], path: Path) -> LoadCounts:
    """COPY one object into its raw table inside the caller's transaction."""
    counts = LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    content = ContentHash(_head_text(run_id, evidence_id, params))
    rows = _rows(params, path, run_id=run_id, evidence_id=evidence_id, counts=counts,
                 rejects=rejects)
    with conn.cursor() as cur:
        with cur.copy(copy_sql(params["raw_table"])) as copy:  # type: ignore[arg-type]
            for row in rows:
                assert type(row) is tuple  # no `head`: no pre-encoded rows
                copy.write_row(row)
                content.update_row(row)
        _finish_object(cur, run_id=run_id, evidence_id=evidence_id, params=params,
                       counts=counts, rejects=rejects, content_sha256=content.hexdigest())
    return counts


# ---------------------------------------------------------------------------
# Parallel load: worker processes parse objects (the CPU-bound part, in Python)
# and COPY each into PostgreSQL over their own connection, one transaction per
# object with its rejects and load-stats row, exactly as copy_object does.  Two
# workers are two COPY streams; nothing passes through the calling process.
# ---------------------------------------------------------------------------

LOAD_WORKERS_ENV = "SOXTRAIL_LOAD_WORKERS"
LOAD_AHEAD = 4  # objects handed out per worker at a time
ENCODE_BUFFER = 1 << 20


class _NotText(Exception):
    """A value the text encoder does not handle: psycopg's adapters load the object."""


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row in COPY text format (what psycopg's write_row sends for str and None)."""
    try:
        return copy_fields(row) + "\n"
    except TypeError:
        raise _NotText from None


def encode_blocks(*, run_id: str, evidence_id: str, params: dict[str, Any], path: Path,
                  counts: LoadCounts, rejects: list[tuple[str, str, str | None]]
                  ) -> Iterator[bytes]:
    """The object's rows as COPY text (UTF-8), in blocks of about ENCODE_BUFFER characters
    (constant memory); counts and rejects are filled in as they pass. Raises _NotText at
    a value that is not text (the object is then loaded with copy_object)."""
    head = _head_text(run_id, evidence_id, params)
    rows = _rows(params, path, run_id=run_id, evidence_id=evidence_id, counts=counts,
                 rejects=rejects, head=head)
    block: list[str] = []
    size = 0
    for row in rows:
        if type(row) is CopyRows:
            if block:
                yield "".join(block).encode("utf-8")
                block, size = [], 0
            yield row.data
            continue
        line = head + row + "\n" if type(row) is str else _copy_line(row)  # type: ignore[arg-type]
        block.append(line)
        size += len(line)
        if size >= ENCODE_BUFFER:
            yield "".join(block).encode("utf-8")
            block, size = [], 0
    if block:
        yield "".join(block).encode("utf-8")


def copy_object_text(conn: psycopg.Connection[Any], *, run_id: str, evidence_id: str,
                     params: dict[str, Any], path: Path) -> LoadCounts:
    """As copy_object (inside the caller's transaction), with the rows encoded here as COPY
    text in blocks; an object holding a value that is not text goes through copy_object."""
    counts = LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    content = ContentHash(_head_text(run_id, evidence_id, params))
    try:
        with conn.cursor() as cur:
            with cur.copy(copy_sql(params["raw_table"])) as copy:  # type: ignore[arg-type]
                for block in encode_blocks(run_id=run_id, evidence_id=evidence_id,
                                           params=params, path=path, counts=counts,
                                           rejects=rejects):
                    content.update(block)
                    copy.write(block)
            _finish_object(cur, run_id=run_id, evidence_id=evidence_id, params=params,
                           counts=counts, rejects=rejects, content_sha256=content.hexdigest())
    except _NotText:
        conn.rollback()  # the COPY was abandoned: start the object again, row by row
        return copy_object(conn, run_id=run_id, evidence_id=evidence_id, params=params,
                           path=path)
    return counts


# engine: spark. The raw rows of an object go to its Parquet file under the warehouse
# (soxtrail.kernel.spark), parsed by the same code into the same COPY lines, which are read
# back into columns: no second parser. Load stats and rejects stay in PostgreSQL, in the
# transaction the caller commits after the file is in place (a resumed load rewrites it).
# The run's own evidence list reads raw.included_evidence from PostgreSQL (the report's
# rows: soxtrail.kernel.evidence): its rows are written there too.
KEPT_IN_POSTGRES = frozenset({"raw.included_evidence"})


def spark_raw_tables() -> list[tuple[str, tuple[str, ...]]]:
    """(name without `raw.`, columns) of every raw table the Spark warehouse holds."""
    return [(name.removeprefix("raw."), shape.columns) for name, shape in RAW_TABLES.items()
            ] + [("source_settings", tuple(SOURCE_SETTINGS_COLUMNS))]


def object_blocks(*, run_id: str, evidence_id: str, params: dict[str, Any], path: Path,
                  counts: LoadCounts, rejects: list[tuple[str, str, str | None]]
                  ) -> tuple[list[bytes], str]:
    """The object's COPY lines (blocks) and content hash, as copy_object_text writes them."""
    head = _head_text(run_id, evidence_id, params)
    content = ContentHash(head)
    blocks: list[bytes] = []
    try:
        for block in encode_blocks(run_id=run_id, evidence_id=evidence_id, params=params,
                                   path=path, counts=counts, rejects=rejects):
            content.update(block)
            blocks.append(block)
    except _NotText:
        fresh = LoadCounts()
        counts.__dict__.update(fresh.__dict__)
        rejects.clear()
        content, blocks = ContentHash(head), []
        for row in _rows(params, path, run_id=run_id, evidence_id=evidence_id, counts=counts,
                         rejects=rejects):
            assert type(row) is tuple  # no `head`: no pre-encoded rows
            content.update_row(row)
            text = [v if v is None or type(v) is str else str(v) for v in row]
            blocks.append((copy_fields(text) + "\n").encode("utf-8"))
    return blocks, content.hexdigest()


@dataclass
class ParquetObject:
    """What writing one object's Parquet file gave: its counts, rejects, content hash, and
    the COPY lines (for the raw tables kept in PostgreSQL)."""

    counts: LoadCounts
    rejects: list[tuple[str, str, str | None]]
    content_sha256: str
    blocks: list[bytes]


def write_parquet(*, warehouse: Path, run_id: str, evidence_id: str, params: dict[str, Any],
                  path: Path) -> ParquetObject:
    """Write one object's rows as its Parquet file (every column text), in place at once."""
    from soxtrail.kernel import spark

    counts = LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    table_name = params["raw_table"]
    columns = RAW_TABLES[table_name].columns
    blocks, digest = object_blocks(run_id=run_id, evidence_id=evidence_id, params=params,
                                   path=path, counts=counts, rejects=rejects)
    spark.write_text_table(
        spark.raw_object_path(warehouse, table_name.removeprefix("raw."), run_id, evidence_id),
        columns, copy_lines_columns(b"".join(blocks), len(columns)))
    return ParquetObject(counts, rejects, digest, blocks)


def parquet_object(conn: psycopg.Connection[Any], *, warehouse: Path, run_id: str,
                   evidence_id: str, params: dict[str, Any], path: Path) -> LoadCounts:
    """Write one object's rows as its Parquet file, then its rejects and load stats inside
    the caller's transaction (engine: spark)."""
    written = write_parquet(warehouse=warehouse, run_id=run_id, evidence_id=evidence_id,
                            params=params, path=path)
    table_name = params["raw_table"]
    with conn.cursor() as cur:
        if table_name in KEPT_IN_POSTGRES:
            with cur.copy(copy_sql(table_name)) as copy:  # type: ignore[arg-type]
                for block in written.blocks:
                    copy.write(block)
        _finish_object(cur, run_id=run_id, evidence_id=evidence_id, params=params,
                       counts=written.counts, rejects=written.rejects,
                       content_sha256=written.content_sha256)
    return written.counts


def load_one(conn: psycopg.Connection[Any], *, warehouse: Path | None, run_id: str,
             evidence_id: str, params: dict[str, Any], path: Path) -> LoadCounts:
    """Load one object into PostgreSQL (no warehouse) or the Spark warehouse."""
    if warehouse is None:
        return copy_object_text(conn, run_id=run_id, evidence_id=evidence_id, params=params,
                                path=path)
    return parquet_object(conn, warehouse=warehouse, run_id=run_id, evidence_id=evidence_id,
                          params=params, path=path)


@dataclass
class Derivation:
    """What loading one object writes, derived without writing it (derive_object)."""

    counts: LoadCounts
    rejects: list[tuple[str, str, str | None]]
    context: tuple[Any, ...]  # the context column values of every row (source, cluster, …)
    content_sha256: str
    lines: list[bytes]  # blocks of whole COPY lines of locator and payload, in load order


def derive_object(*, run_id: str, evidence_id: str, params: dict[str, Any],
                  path: Path) -> Derivation:
    """The rows, rejects, counts and content hash loading the object writes, through the
    load's own code (encode_blocks, or copy_object's row by row path for an object holding
    a value that is not text): verify re-derives the raw tables with it. Holds the
    object's rows in memory."""
    head = _head_text(run_id, evidence_id, params)
    counts = LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    content = ContentHash(head, keep=True)
    try:
        for block in encode_blocks(run_id=run_id, evidence_id=evidence_id, params=params,
                                   path=path, counts=counts, rejects=rejects):
            content.update(block)
    except _NotText:
        counts, rejects, content = LoadCounts(), [], ContentHash(head, keep=True)
        for row in _rows(params, path, run_id=run_id, evidence_id=evidence_id, counts=counts,
                         rejects=rejects):
            assert type(row) is tuple  # no `head`: no pre-encoded rows
            content.update_row(row)
    return Derivation(counts, rejects, _context(params, evidence_id), content.hexdigest(),
                      content.kept or [])


_WORKER: dict[str, Any] = {}


def _init_worker(parent: int, dsn: str, warehouse: str | None = None) -> None:
    """Worker initializer: follow the parent's death; connect on the first object."""
    die_with_parent(parent)
    _WORKER["dsn"] = dsn
    _WORKER["warehouse"] = Path(warehouse) if warehouse else None


def load_object(*, run_id: str, evidence_id: str, params: dict[str, Any],
                path: str) -> LoadCounts:
    """In a worker: COPY one object and commit it (its rows, rejects and load stats)."""
    conn = _WORKER.get("conn")
    if conn is None or conn.closed:
        conn = _WORKER["conn"] = psycopg.connect(_WORKER["dsn"])
        # An object's commit need not wait for its WAL to reach the disk: a crash loses
        # at most the last objects whole (rows, rejects and load stats are one
        # transaction), `resume` loads again every object without a load-stats row, and
        # the phase's own commit (synchronous, on the run's connection) flushes the WAL
        # of every object before it.
        conn.execute("set synchronous_commit = off")
        conn.commit()
    try:
        counts = load_one(conn, warehouse=_WORKER.get("warehouse"), run_id=run_id,
                          evidence_id=evidence_id, params=params, path=Path(path))
        conn.commit()
    except BaseException:
        if conn.broken:
            conn.close()
        else:
            conn.rollback()
        raise
    return counts


def die_with_parent(parent: int) -> None:
    """Worker initializer: exit when the loading process is gone (e.g. SIGKILLed).

    Orphaned workers would otherwise live on, holding the caller's stdout/stderr pipes
    (a CI step waiting for them never ends) and their spool files.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="soxtrail-parent-watch", daemon=True).start()


def load_workers(objects: int) -> int:
    """Load worker processes: SOXTRAIL_LOAD_WORKERS, else one more than the CPUs, at most 3.

    Each worker alternates between parsing (its own CPU) and waiting for its COPY stream's
    server process; one more worker than CPUs fills those waits. Each worker holds an
    object's parse (a CloudTrail file: ~15 MB) besides its ~40 MB interpreter: at most 3
    keep the run's processes under 500 MB together (docs/performance.md).
    """
    configured = os.environ.get(LOAD_WORKERS_ENV, "").strip()
    try:
        workers = int(configured) if configured else min((os.cpu_count() or 1) + 1, 3)
    except ValueError as exc:
        raise PipelineError(f"{LOAD_WORKERS_ENV}={configured!r}: expected a number") from exc
    return max(1, min(workers, objects))


def load_settings(conn: psycopg.Connection[Any], run_id: str, sources: Iterable[Source],
                  warehouse: Path | None = None) -> int:
    """Write the non-secret per-source settings staging needs (idempotent): into
    raw.source_settings, or with `warehouse` (engine: spark) as the run's Parquet file."""
    rows = []
    for source in sources:
        module = connector_module(source.connector)
        settings = getattr(module, "settings", None)
        if settings is None:
            continue
        for setting, key, value in settings(source):
            rows.append((run_id, source.name, source.connector, setting, key,
                         None if value is None else secrets.redact(str(value))))
    if warehouse is not None:
        from soxtrail.kernel import spark

        spark.write_text_table(
            spark.raw_object_path(warehouse, "source_settings", run_id, "settings"),
            SOURCE_SETTINGS_COLUMNS,
            [[None if r[i] is None else str(r[i]) for r in rows]
             for i in range(len(SOURCE_SETTINGS_COLUMNS))])
        return len(rows)
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into raw.source_settings ({', '.join(SOURCE_SETTINGS_COLUMNS)})"
            f" values ({', '.join(['%s'] * len(SOURCE_SETTINGS_COLUMNS))}) on conflict do nothing",
            rows)
    return len(rows)


def load_run(conn: psycopg.Connection[Any], *, run_id: str, store: Store, spool_dir: Path,
             sources: Iterable[Source], progress: Any = None,
             dsn: str | None = None, warehouse: Path | None = None) -> LoadReport:
    """Load every not-yet-loaded snapshot object of the run; one transaction per object.

    With `dsn`, worker processes (load_workers) load objects over their own connections;
    without, this connection loads them one after another. With `warehouse` (engine:
    spark) the rows go to Parquet files there instead of the raw tables.
    """
    report = LoadReport()
    pending = evidence.objects_to_load(conn, run_id)
    with conn.cursor() as cur:
        cur.execute("select count(*) from soxtrail.sox_load_stats where run_id = %s", (run_id,))
        report.objects_already_loaded = cur.fetchone()[0]  # type: ignore[index]
    conn.commit()
    workers = load_workers(len(pending))
    if workers > 1 and dsn is not None:
        _load_parallel(dsn, pending, workers, run_id=run_id, store=store,
                       spool_dir=spool_dir, report=report, progress=progress,
                       warehouse=warehouse)
        pending = []
    for evidence_id, params, key, query_name in pending:
        local = store.fetch(key, spool_dir / "load" / Path(key).name)
        try:
            counts = load_one(conn, warehouse=warehouse, run_id=run_id,
                              evidence_id=evidence_id, params=params, path=local)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if local.parent == spool_dir / "load":
                local.unlink(missing_ok=True)
        report.tables.setdefault(params["raw_table"], LoadCounts()).add(counts)
        report.objects_loaded += 1
        if progress is not None:
            progress(query_name, counts)
    load_settings(conn, run_id, sources, warehouse)
    conn.commit()
    return report


def _load_parallel(dsn: str, pending: list[Any], workers: int, *, run_id: str, store: Store,
                   spool_dir: Path, report: LoadReport, progress: Any,
                   warehouse: Path | None = None) -> None:
    """Workers load objects over their own connections; this process fetches the next
    objects from the store (LOAD_AHEAD per worker in flight, so that a large object never
    leaves a worker idle) and reports each one as it finishes."""
    work = spool_dir / "load"
    work.mkdir(parents=True, exist_ok=True)
    items = iter(pending)
    in_flight: dict[Future[LoadCounts], tuple[Any, Path]] = {}
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(os.getpid(), dsn, str(warehouse) if warehouse else None))

    def submit() -> None:
        item = next(items, None)
        if item is None:
            return
        evidence_id, params, key, _ = item
        # one folder per object: objects of two clusters share file names, and several
        # are fetched ahead at once (the file name stays: it is the locators' file name)
        local = store.fetch(key, work / evidence_id / Path(key).name)
        in_flight[pool.submit(load_object, run_id=run_id, evidence_id=evidence_id,
                              params=params, path=str(local))] = (item, local)

    def discard(local: Path) -> None:
        if local.parent.parent == work:  # a fetched copy (a LocalStore hands its own file)
            local.unlink(missing_ok=True)
            shutil.rmtree(local.parent, ignore_errors=True)

    try:
        for _ in range(workers * LOAD_AHEAD):
            submit()
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                (_, params, _, query_name), local = in_flight.pop(future)
                discard(local)
                counts = future.result()
                submit()
                report.tables.setdefault(params["raw_table"], LoadCounts()).add(counts)
                report.objects_loaded += 1
                if progress is not None:
                    progress(query_name, counts)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for _, local in in_flight.values():
            discard(local)
