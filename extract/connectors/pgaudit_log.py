"""Connector `pgaudit_log`: PostgreSQL server logs (csvlog, jsonlog, stderr) with pgaudit lines."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import extract.connectors.formats as formats
from extract.connectors import completeness
from extract.connectors.formats import (
    GZIP_MAGIC,
    READ_ERRORS,
    RECORD_TOO_LONG,
    REJECT_TEXT_BYTES,
    UNTERMINATED_AT_END,
    open_bytes,
)
from extract.connectors.pgaudit_classify import StderrClassifier, classified, classifier
from extract.connectors.pgaudit_files import (
    DEFAULT_LOG_FILENAME,
    DEFAULT_LOG_TIMEZONE,
    LogFileFacts,
    file_edges,
    log_zone,
    rotation_age,
    statement,
)
from extract.connectors.pgaudit_prefix import DEFAULT_PREFIX, compile_prefix
from extract.connectors.pgaudit_records import python_counter, split_records
from extract.connectors.s3 import s3_chunks, s3_list
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    ConnectorSpec,
    CopyRows,
    LoadItem,
    RawTable,
    RowCounter,
    Skipped,
    Source,
    copy_escape,
    iter_file,
)
from soxtrail.kernel.store import safe_name

try:  # compiled at install (pyproject.toml ext-modules); without it, the Python path
    from extract.connectors import _pgaudit_scan
except ImportError:  # pragma: no cover - a source tree that was never built
    _pgaudit_scan = None  # type: ignore[assignment]

# the 26 csvlog columns (PostgreSQL 14+; 24-column PG13 files get leader_pid, query_id null)
CSVLOG_COLUMNS = (
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "session_line_num", "command_tag", "session_start_time",
    "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
    "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
    "query", "query_pos", "location", "application_name", "backend_type",
    "leader_pid", "query_id",
)

SPEC = ConnectorSpec(
    name="pgaudit_log",
    systems=frozenset({"db_audit"}),
    required=frozenset({"cluster", "format", "paths"}),
    # log_filename, log_rotation_age and log_timezone (the zone the names are in): the
    # rotation sequence of the completeness statement
    optional=frozenset({"log_line_prefix", "log_filename", "log_rotation_age", "log_timezone"}),
    raw_tables={
        "raw.pgaudit_csvlog": RawTable(("source_name", "cluster"), CSVLOG_COLUMNS),
        "raw.pgaudit_jsonlog": RawTable(("source_name", "cluster"), ("doc",)),
        "raw.pgaudit_stderr": RawTable(("source_name", "cluster"), (
            "log_time", "user_name", "database_name", "process_id", "session_id",
            "session_line_num", "application_name", "remote_host", "error_severity",
            "message", "raw_entry")),
    },
)

# the raw table of each log format
FORMAT_TABLES = {
    "csvlog": "raw.pgaudit_csvlog",
    "jsonlog": "raw.pgaudit_jsonlog",
    "stderr": "raw.pgaudit_stderr",
}
DEFAULT_EXT = {"csvlog": "csv", "jsonlog": "json", "stderr": "log"}


# ---------------------------------------------------------------------------
# Counting: the records of a file (pgaudit_records splits and counts them)
# ---------------------------------------------------------------------------


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of log records in the file, audit or not (a read error counts as one record)."""
    with open_bytes(path) as handle:
        return sum(1 for _ in split_records(str(params.get("format")), handle))


def count_stream(params: Mapping[str, Any]) -> RowCounter | None:
    """A RowCounter giving count_rows' number from the bytes as they are captured (the C
    LineCounter where extract/connectors/_pgaudit_scan.pyx is built)."""
    fmt = str(params.get("format"))
    if fmt in FORMAT_TABLES and _pgaudit_scan is not None:
        return _pgaudit_scan.LineCounter(fmt, formats.MAX_RECORD_BYTES)
    return python_counter(fmt)


# ---------------------------------------------------------------------------
# Load: each record classified (pgaudit_classify), in Python or through the C scanner
# ---------------------------------------------------------------------------


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow per pgaudit entry; Skipped for other log records; Reject for broken ones."""
    return _load(params, path, as_copy_text=False)  # type: ignore[return-value]


def load_copy_text(params: Mapping[str, Any], path: Path,
                   head: str | None = None) -> Iterator[LoadItem | str | CopyRows]:
    """As `load`, but a pgaudit entry comes as its COPY text line (locator and payload
    columns, escaped, no newline) where it can: what the loader's generic path would write
    for its RawRow, without building one. A RawRow still comes where it cannot (a jsonlog
    object that must be re-serialised), or for every entry of a file whose name needs COPY
    escaping.

    Given `head` (the COPY text of the columns before the locator, ending in a tab), an
    uncompressed file is scanned in C (extract/connectors/_pgaudit_scan.pyx) where that module is
    built: runs of simple entries come as CopyRows, whole lines; every other record goes
    through the same classifier as `load`, so the rows, rejects and counts are the same.
    """
    name = path.name  # the object as stored (the loader keeps its store name)
    as_copy_text = copy_escape(name) == name and "\x00" not in name
    if as_copy_text and head is not None and _pgaudit_scan is not None \
            and params.get("format") in FORMAT_TABLES and not _is_gzip(path):
        return _scan(params, path, name, head)
    return _load(params, path, as_copy_text=as_copy_text)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


SCAN_BLOCK = 1 << 20  # bytes read per scan (more while one record is longer)


def _scan(params: Mapping[str, Any], path: Path, name: str,
          head: str) -> Iterator[LoadItem | str | CopyRows]:
    """load_copy_text through the C scanner."""
    with path.open("rb") as handle:
        yield from scan_handle(params, handle, name, head)


def scan_handle(params: Mapping[str, Any], handle: IO[bytes], name: str,
                head: str) -> Iterator[LoadItem | str | CopyRows]:
    """The items of an uncompressed log read from `handle`, through the C scanner: blocks
    of SCAN_BLOCK bytes, each starting at a record boundary; the records the scanner
    defers go to the classifier as `split_records` would have handed them over."""
    fmt = str(params.get("format"))
    classify = classifier(params, name, True)
    prefix = classify.prefix if isinstance(classify, StderrClassifier) else None
    scanner = _pgaudit_scan.Scanner(
        fmt, head.encode("utf-8"), name.encode("utf-8"), formats.MAX_RECORD_BYTES,
        REJECT_TEXT_BYTES, RECORD_TOO_LONG, UNTERMINATED_AT_END,
        # without a log time in the prefix, every entry is a reject: Python's to say
        prefix.program if prefix is not None and prefix.has_time else None,
        prefix is not None and prefix.port_in_host)
    block_size = SCAN_BLOCK
    line = 1
    carry = b""
    size = block_size
    while True:
        try:
            chunk = handle.read(size)
        except READ_ERRORS as exc:
            # what `split_records` yields for the bytes left when the read fails: the complete
            # lines not yet scanned, then the error's problem record
            yield from classified(classify, split_records(fmt, _lines_then_raise(carry, exc),
                                                          line))
            return
        final = not chunk
        block = carry + chunk if carry else chunk
        consumed, lines, skipped, items = scanner.scan(block, line, final)
        for item in items:
            if isinstance(item, CopyRows):
                yield item
                continue
            result = classify(*item)  # a record the scanner left to the classifier
            if result is None:
                skipped += 1
            else:
                yield result
        if skipped:
            yield Skipped(skipped)
        if final:
            return
        carry = block[consumed:]
        line += lines
        size = max(block_size, len(carry))  # a long record: read as much again


def _lines_then_raise(data: bytes, exc: BaseException) -> Iterator[bytes]:
    """The complete lines of `data` (a partial last line is lost, as in a failed
    readline), then `exc`."""
    lines = data.split(b"\n")
    lines.pop()
    for line in lines:
        yield line + b"\n"
    raise exc


def _load(params: Mapping[str, Any], path: Path, *,
          as_copy_text: bool) -> Iterator[LoadItem | str]:
    fmt = str(params.get("format"))
    name = path.name  # the object as stored (the loader keeps its store name)
    classify = classifier(params, name, as_copy_text)
    with open_bytes(path) as handle:
        yield from classified(classify, split_records(fmt, handle))


# ---------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFile:
    """One matched log file, local or in S3."""

    location: str  # full path or s3:// URI
    name: str  # basename
    local: Path | None = None
    bucket: str = ""
    key: str = ""


def _patterns(source: Source) -> list[str]:
    paths = source.get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p
                                                              for p in paths):
        raise ConfigError(f"source {source.name}: paths: expected a list of globs "
                          f"or an s3://bucket/prefix")
    return paths


def _match(source: Source, patterns: list[str]) -> list[LogFile]:
    found: dict[str, LogFile] = {}
    for pattern in patterns:
        if pattern.startswith("s3://"):
            for bucket, key in s3_list(pattern, source.name):
                uri = f"s3://{bucket}/{key}"
                found[uri] = LogFile(uri, key.rsplit("/", 1)[-1], bucket=bucket, key=key)
            continue
        full = Path(pattern).expanduser()
        if not full.is_absolute():
            full = source.base_dir / full
        for match in glob.glob(str(full), recursive=True):
            path = Path(match)
            if path.is_file():
                found[str(path)] = LogFile(str(path), path.name, local=path)
    return [found[k] for k in sorted(found)]


def _object_names(files: list[LogFile]) -> list[str]:
    """Store-safe, unique object names (the basename, the parent folder added on a clash)."""
    used: set[str] = set()
    names = []
    for item in files:
        parent = Path(item.location.split("://", 1)[-1]).parent.name
        candidates = [safe_name(item.name), safe_name(f"{parent}_{item.name}")]
        name = next((c for c in candidates if c not in used), None)
        counter = 2
        while name is None:
            candidate = safe_name(f"{counter}_{item.name}")
            name = candidate if candidate not in used else None
            counter += 1
        used.add(name)
        names.append(name)
    return names


def _ext(name: str, fmt: str) -> str:
    gz = name.endswith(".gz")
    stem = name[:-3] if gz else name
    suffix = Path(stem).suffix.lstrip(".")
    ext = suffix if suffix and safe_name(suffix) == suffix else DEFAULT_EXT[fmt]
    return f"{ext}.gz" if gz else ext


def snapshot(source: Source, ctx: Any) -> None:
    """Capture every matched log file byte for byte, one evidence row per file (sorted), then
    the source's completeness statement (pgaudit_files: the rotation sequence)."""
    fmt = str(source.get("format"))
    if fmt not in FORMAT_TABLES:
        raise ConfigError(f"source {source.name}: format {fmt!r} unknown "
                          f"(expected csvlog, jsonlog or stderr)")
    patterns = _patterns(source)
    params: dict[str, Any] = {"cluster": str(source.get("cluster")), "format": fmt,
                              "paths": patterns}
    if fmt == "stderr":
        prefix = str(source.get("log_line_prefix") or DEFAULT_PREFIX)
        if not compile_prefix(prefix).has_time:
            raise ConfigError(f"source {source.name}: log_line_prefix {prefix!r} has no %m or "
                              f"%t: pgaudit entries would have no time")
        params["log_line_prefix"] = prefix
    elif source.get("log_line_prefix") is not None:
        raise ConfigError(f"source {source.name}: log_line_prefix only applies to format stderr")
    log_filename = str(source.get("log_filename") or DEFAULT_LOG_FILENAME)
    age = rotation_age(source.get("log_rotation_age"))
    log_timezone = _log_timezone(source)
    zone = log_zone(log_timezone)  # log times are written in it too (`... EDT`)
    files = _match(source, patterns)
    if not files:
        raise SourceError(f"source {source.name}: no log file matches {', '.join(patterns)}")
    facts = []
    for item, object_name in zip(files, _object_names(files), strict=True):
        file_params = {**params, "file": item.name}
        if item.local is not None:
            chunks = iter_file(item.local)
        else:
            chunks = s3_chunks(item.bucket, item.key, source.name)
        captured = ctx.capture(
            source,
            query_name=f"{source.name}/{object_name}",
            query_text=f"paths: {', '.join(patterns)}\nfile: {item.location}",
            params=file_params,
            ext=_ext(object_name, fmt),
            raw_table=FORMAT_TABLES[fmt],
            chunks=chunks,
            count_rows=partial(count_rows, file_params),
            counter=count_stream(file_params),
        )
        facts.append(LogFileFacts(captured.query_name, item.name, captured.row_count,
                                  file_edges(captured.path, fmt,
                                             params.get("log_line_prefix"), zone)))
    completeness.record(source, ctx, statement(
        facts, fmt=fmt, log_filename=log_filename, age=age, log_timezone=log_timezone,
        quarter_start=ctx.quarter.start, quarter_end=ctx.quarter.end))


def _log_timezone(source: Source) -> str:
    """The source's `log_timezone` (the server's, in which it names its log files): an IANA
    zone name, default UTC; ConfigError naming the source otherwise."""
    value = source.get("log_timezone")
    if value is None:
        return DEFAULT_LOG_TIMEZONE
    try:
        log_zone(value)
    except ValueError as exc:
        raise ConfigError(f"source {source.name}: log_timezone {value!r} is not an IANA time "
                          "zone (e.g. UTC, America/New_York): the server's log_timezone, in "
                          "which it names its log files") from exc
    return str(value)
