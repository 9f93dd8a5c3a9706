"""Connector `file`: a CSV or JSONL export (IAM events, tickets, backups) with a column mapping."""

from __future__ import annotations

import csv
import fnmatch
import functools
import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    DOC_TABLE,
    ConnectorSpec,
    LoadItem,
    RawRow,
    Reject,
    Skipped,
    Source,
    iter_file,
)
from soxtrail.kernel.store import safe_name

RAW_TABLE_BY_SYSTEM = {"iam": "raw.iam_events", "tickets": "raw.tickets", "backups": "raw.backups"}
FORMATS = ("csv", "jsonl")

# normalised fields per system: (required, optional)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "iam": (("identity", "deactivated_at"), ("event",)),
    "backups": (("cluster", "completed_at"), ("backup_id", "status")),
    "tickets": (("ticket_key",), (
        "ticket_type", "status", "requester", "approver", "approved_at", "subject_user",
        "cluster", "role", "window_start", "window_end")),
}

SPEC = ConnectorSpec(
    name="file",
    systems=frozenset({"iam", "tickets", "backups"}),
    required=frozenset({"path", "format", "columns"}),
    optional=frozenset({"timezone", "types", "approved_statuses"}),
    raw_tables={"raw.iam_events": DOC_TABLE, "raw.tickets": DOC_TABLE, "raw.backups": DOC_TABLE},
    # a tickets file: a field `columns:` does not map is read from the column of its own name
    ticket_fields={name: name for part in FIELDS["tickets"] for name in part},
)

TICKET_KINDS = ("access", "change")

# ---------------------------------------------------------------------------
# Shared reading helpers (also used by the other file-reading connectors).
# ---------------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"
MAX_RECORD_BYTES = 128 << 20  # a record (e.g. one quoted statement) larger than this is rejected
REJECT_TEXT_BYTES = 10_000  # the loader keeps 10,000 characters of a reject's raw text
READ_ERRORS = (EOFError, OSError, zlib.error)
RECORD_TOO_LONG = f"unterminated quoted field: record exceeds {MAX_RECORD_BYTES >> 20} MiB"
UNTERMINATED_AT_END = "unterminated quoted field at end of file"

csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))


def open_bytes(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping it when it is gzip data."""
    handle = path.open("rb")
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def preview(data: bytes) -> str:
    """A reject's raw text: the first bytes of a record, invalid UTF-8 shown as \\xNN."""
    return data[:REJECT_TEXT_BYTES].decode("utf-8", "backslashreplace")


def decode_problem(exc: UnicodeDecodeError) -> str:
    """The reject reason for a record that is not UTF-8."""
    return f"invalid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def split_csv_records(handle: Iterable[bytes], first_line: int = 1
                      ) -> Iterator[tuple[int, bytes, str | None]]:
    """Split CSV bytes into records: (line where it starts, its bytes, problem or None).

    A record ends at the first newline outside double quotes (quote parity, exact for
    valid CSV), so quoted newlines never split a record. Blank lines are no record.
    An unterminated quote is reported once it passes MAX_RECORD_BYTES or at the end of
    the file; a truncated or corrupt gzip stream ends the file with one problem record.
    `handle` yields lines; the first is line `first_line`.
    """
    line_no = first_line - 1
    start = 0
    parts: list[bytes] = []
    size = 0
    try:
        for raw in handle:
            line_no += 1
            odd = raw.count(b'"') & 1
            if not parts:
                if not odd:
                    if raw != b"\n" and raw != b"\r\n":
                        yield line_no, raw, None
                    continue
                start, parts, size = line_no, [raw], len(raw)
                continue
            parts.append(raw)
            size += len(raw)
            if odd:
                yield start, b"".join(parts), None
                parts = []
            elif size > MAX_RECORD_BYTES:
                yield start, parts[0][:REJECT_TEXT_BYTES], RECORD_TOO_LONG
                parts = []
    except READ_ERRORS as exc:
        data = b"".join(parts)[:REJECT_TEXT_BYTES] if parts else b""
        problem = f"unreadable file after line {line_no}: {exc}"
        yield (start if parts else line_no + 1), data, problem
        return
    if parts:
        yield start, b"".join(parts)[:REJECT_TEXT_BYTES], UNTERMINATED_AT_END


class _Feed:
    """An iterator handing the csv reader one record text at a time."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text: str | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        text = self.text
        if text is None:
            raise StopIteration
        self.text = None
        return text


class CsvRecordParser:
    """Parse one CSV record text at a time with a persistent (C, strict) csv reader."""

    def __init__(self) -> None:
        self._feed = _Feed()
        self._reader = csv.reader(self._feed, strict=True)

    def parse(self, text: str) -> list[str]:
        """The fields of one record; raises csv.Error on broken quoting."""
        self._feed.text = text
        try:
            return next(self._reader)
        except StopIteration:
            raise csv.Error("unexpected end of data") from None


def csv_rows(handle: IO[bytes]) -> Iterator[tuple[int, list[str] | None, str | None, bytes]]:
    """(start line, fields or None, problem or None, raw bytes) for every CSV record."""
    parser = CsvRecordParser()
    for line, data, problem in split_csv_records(handle):
        if problem is not None:
            yield line, None, problem, data
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line, None, decode_problem(exc), data
            continue
        try:
            yield line, parser.parse(text), None, data
        except csv.Error as exc:
            yield line, None, f"broken CSV quoting: {exc}", data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity (jsonb cannot hold them)."""
    if type(text) is str and not text.startswith("\ufeff"):
        return _DECODER.decode(text)  # json.loads without building a decoder per call
    return json.loads(text, parse_constant=_no_constant)


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "NUL character (jsonb cannot store \\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "unpaired surrogate escape (not valid Unicode)"
    return None


def jsonb_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored as jsonb (NUL, lone surrogates), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = _bad_string(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _bad_string(key)
                if problem:
                    return problem
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return None


def json_needs_check(text: str | bytes) -> bool:
    """Whether a JSON text may decode to NUL or surrogates (only via \\u escapes)."""
    return ("\\u" in text) if isinstance(text, str) else (b"\\u" in text)


# An item's own JSON text is stored as jsonb when jsonb reads it as it reads the item
# re-serialised by Python: no \u escape (it may be NUL or a lone surrogate, which jsonb
# refuses), no exponent of five digits or more (numeric overflow) and at most 16 KiB (no
# number long enough to overflow numeric without one). Numbers then stay as the source
# wrote them (Python would re-print `1.10` as `1.1`).
RAW_TEXT_BYTES = 16 << 10
# `[eE][-+]?[0-9]{5}` as three substring searches after mapping E to e and digits to 0
# (a regex with a character class first scans at ~130 MB/s; this at several GB/s)
_EXPONENT_DIGITS = bytes.maketrans(b"E123456789", b"e000000000")


def has_long_exponent(data: bytes) -> bool:
    """Whether `[eE][-+]?[0-9]{5}` occurs in `data` (it may be a number numeric refuses)."""
    mapped = data.translate(_EXPONENT_DIGITS)
    return b"e00000" in mapped or b"e+00000" in mapped or b"e-00000" in mapped


@functools.cache
def _page_decoder(key: str | None) -> msgspec.json.Decoder[Any]:
    if key is None:
        return msgspec.json.Decoder(list[msgspec.Raw])
    return msgspec.json.Decoder(msgspec.defstruct("Page", [(key, list[msgspec.Raw])]))


def raw_json_items(data: bytes, key: str | None) -> list[msgspec.Raw] | None:
    """The items of a JSON page, each as its own bytes (the list under `key` in the top
    object, or the top array when `key` is None), without decoding them into Python objects.

    None when only the json module can say exactly what the page holds: not UTF-8, not
    strict JSON (msgspec refuses NaN, control characters and bad escapes, as jsonb does),
    or not that shape. The caller then takes its json path, with its own error messages.
    """
    if not data.isascii():  # msgspec does not check UTF-8 inside the values it skips
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        page = _page_decoder(key).decode(data)
    except msgspec.DecodeError:  # malformed JSON, or not the expected shape
        return None
    items: list[msgspec.Raw] = page if key is None else getattr(page, key)
    return items


def raw_json_text(item: msgspec.Raw) -> str | None:
    """An object item's own JSON text when it can be stored as jsonb as it is, else None
    (the caller decodes it and checks it with jsonb_problem)."""
    data = bytes(item)
    if data[:1] != b"{" or len(data) > RAW_TEXT_BYTES or b"\\u" in data \
            or has_long_exponent(data):
        return None
    return data.decode("utf-8")


def jsonl_records(handle: IO[bytes]) -> Iterator[tuple[int, Any, str | None, bytes]]:
    """(line, parsed object or None, problem or None, raw bytes) for every non-blank line."""
    line_no = 0
    try:
        for raw in handle:
            line_no += 1
            data = raw.rstrip(b"\r\n")
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, None, decode_problem(exc), data
                continue
            try:
                doc = parse_json(text)
            except ValueError as exc:
                yield line_no, None, f"invalid JSON: {exc}", data
                continue
            if not isinstance(doc, dict):
                yield line_no, None, "not a JSON object", data
                continue
            problem = jsonb_problem(doc) if json_needs_check(text) else None
            yield line_no, (None if problem else doc), problem, data
    except READ_ERRORS as exc:
        yield line_no + 1, None, f"unreadable file after line {line_no}: {exc}", b""


def s3_client() -> Any:
    """A boto3 S3 client honouring SOXTRAIL_S3_ENDPOINT_URL (any S3-compatible endpoint)."""
    import boto3
    from botocore.config import Config

    # a fresh session: credentials come from the environment as it is now
    return boto3.session.Session().client(
        "s3", endpoint_url=os.environ.get("SOXTRAIL_S3_ENDPOINT_URL") or None,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"},
                      connect_timeout=10, read_timeout=60))


def split_s3_uri(uri: str, source_name: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix); ConfigError naming the source otherwise."""
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ConfigError(f"source {source_name}: {uri!r}: expected s3://bucket/prefix")
    return bucket, prefix


def s3_list(uri: str, source_name: str, client: Any = None) -> Iterator[tuple[str, str]]:
    """(bucket, key) of every object under `s3://bucket/prefix`, sorted by key.

    A glob in the last path segment (`s3://b/logs/*.csv`) filters the keys.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_uri(uri, source_name)
    pattern = None
    head, _, tail = prefix.rpartition("/")
    if any(ch in tail for ch in "*?["):
        pattern, prefix = prefix, (head + "/" if head else "")
    client = client or s3_client()
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/") and (pattern is None or fnmatch.fnmatchcase(key,
                                                                                     pattern)):
                    keys.append(key)
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source_name}: cannot list {uri}: {exc}") from exc
    for key in sorted(keys):
        yield bucket, key


def s3_chunks(bucket: str, key: str, source_name: str, client: Any = None) -> Iterator[bytes]:
    """The bytes of one S3 object, streamed in 1 MiB chunks."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or s3_client()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        yield from body.iter_chunks(1 << 20)
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source_name}: cannot read s3://{bucket}/{key}: {exc}") from exc


def header_names(fields: list[str]) -> list[str]:
    """Header names as written, without a UTF-8 byte order mark on the first."""
    names = list(fields)
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    return names


# ---------------------------------------------------------------------------
# The `file` connector.
# ---------------------------------------------------------------------------


def _columns(source: Source) -> dict[str, str]:
    columns = source.get("columns")
    where = f"source {source.name}: columns"
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError(f"{where}: expected a mapping of normalised field to file column")
    required, optional = FIELDS[source.system]
    for field_name, column in columns.items():
        if field_name not in required and field_name not in optional:
            raise ConfigError(f"{where}: unknown field {field_name!r} for system {source.system} "
                              f"(allowed: {', '.join(required + optional)})")
        if not isinstance(column, str) or not column:
            raise ConfigError(f"{where}.{field_name}: expected a column name")
    missing = [f for f in required if f not in columns]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)} "
                          f"for system {source.system}")
    return {str(k): str(v) for k, v in columns.items()}


def _format(source: Source) -> str:
    fmt = str(source.get("format"))
    if fmt not in FORMATS:
        raise ConfigError(f"source {source.name}: format {fmt!r} unknown "
                          f"(expected {' or '.join(FORMATS)})")
    return fmt


def _check_csv_header(source: Source, path: Path, columns: dict[str, str]) -> None:
    with open_bytes(path) as handle:
        first = next(csv_rows(handle), None)
    if first is None:
        raise SourceError(f"source {source.name}: {path}: empty file (expected a header line)")
    _line, fields, problem, _raw = first
    if fields is None:
        raise SourceError(f"source {source.name}: {path}: unreadable header: {problem}")
    names = header_names(fields)
    absent = [f"{column} (for {field_name})" for field_name, column in columns.items()
              if column not in names]
    if absent:
        raise ConfigError(f"source {source.name}: {path}: column(s) {', '.join(absent)} "
                          f"not in the header ({', '.join(names)})")


def snapshot(source: Source, ctx: Any) -> None:
    """Capture the export file byte for byte (one evidence row)."""
    fmt = _format(source)
    columns = _columns(source)
    path = source.path("path")
    if not path.is_file():
        raise SourceError(f"source {source.name}: file not found: {path}")
    if fmt == "csv":
        _check_csv_header(source, path, columns)
    list(settings(source))  # validate types / approved_statuses / timezone now
    params: dict[str, Any] = {"format": fmt, "path": str(path), "file": path.name,
                              "columns": columns}
    if source.get("timezone"):
        params["timezone"] = str(source.get("timezone"))
    ctx.capture(
        source,
        query_name=f"{source.name}/{safe_name(path.name)}",
        query_text=f"file {path}",
        params=params,
        ext=fmt,
        raw_table=RAW_TABLE_BY_SYSTEM[source.system],
        chunks=iter_file(path),
        count_rows=partial(count_rows, params),
    )


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of records (CSV data rows after the header, or JSONL lines)."""
    return sum(item.count if isinstance(item, Skipped) else 1 for item in load(params, path))


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(doc keyed by the file's column names) per record; broken records → Reject."""
    name = str(params.get("file") or path.name)
    with open_bytes(path) as handle:
        if params.get("format") == "jsonl":
            for line, doc, problem, raw in jsonl_records(handle):
                if problem is not None:
                    yield Reject(f"{name}:{line}", problem, preview(raw))
                else:
                    yield RawRow(f"{name}:{line}", (doc,))
            return
        yield from _load_csv(name, handle)


def _load_csv(name: str, handle: IO[bytes]) -> Iterator[LoadItem]:
    header: list[str] | None = None
    header_problem: str | None = None
    first = True
    for line, fields, problem, raw in csv_rows(handle):
        if first:
            first = False
            if fields is None:
                header_problem = f"unreadable header (line {line}): {problem}"
            else:
                header = header_names(fields)
                if len(set(header)) != len(header) or "" in header:
                    header_problem = "header has empty or duplicate column names"
            if header_problem is None:
                continue
            yield Reject(f"{name}:{line}", header_problem, preview(raw))
            continue
        locator = f"{name}:{line}"
        if header_problem is not None or header is None:
            yield Reject(locator, header_problem or "no header", preview(raw))
        elif fields is None:
            yield Reject(locator, problem or "unreadable record", preview(raw))
        elif len(fields) != len(header):
            yield Reject(locator, f"expected {len(header)} fields (header), found {len(fields)}",
                         preview(raw))
        elif any("\x00" in value for value in fields):
            yield Reject(locator, "NUL character in a value", preview(raw))
        else:
            yield RawRow(locator, ({k: (v if v != "" else None) for k, v in zip(header, fields,
                                                                                 strict=True)},))


def check_timezone(source: Source, name: str) -> str:
    """An IANA zone name, or ConfigError naming the source."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"source {source.name}: timezone {name!r} is not an IANA zone "
                          f"(e.g. Europe/Paris)") from exc
    return name


def _ticket_types(source: Source) -> Iterator[tuple[str, str, str]]:
    types = source.get("types")
    if types is None:
        return
    where = f"source {source.name}: types"
    if not isinstance(types, Mapping):
        raise ConfigError(f"{where}: expected a mapping (ticket type: access|change, "
                          f"or access/change: [ticket types])")
    for key, value in types.items():
        if key in TICKET_KINDS and isinstance(value, list):
            for ticket_type in value:
                yield ("type", str(ticket_type), str(key))
        elif value in TICKET_KINDS:
            yield ("type", str(key), str(value))
        else:
            raise ConfigError(f"{where}.{key}: expected access or change")


def settings(source: Source) -> Iterator[tuple[str, str, str]]:
    """Column mapping, time zone, and for tickets the type and approved-status maps."""
    columns = _columns(source)
    for field_name, column in columns.items():
        yield ("column", field_name, column)
        if source.system == "tickets":
            yield ("field", field_name, column)  # the ticket staging reads `field` for every source
    if source.system == "tickets":
        for field_name, column in SPEC.ticket_fields.items():
            if field_name not in columns:
                yield ("field", field_name, column)
    timezone = source.get("timezone")
    if timezone:
        yield ("timezone", "", check_timezone(source, str(timezone)))
    if source.system != "tickets":
        for key in ("types", "approved_statuses"):
            if source.get(key) is not None:
                raise ConfigError(f"source {source.name}: {key} only applies to tickets")
        return
    yield from _ticket_types(source)
    statuses = source.get("approved_statuses")
    if statuses is not None:
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise ConfigError(f"source {source.name}: approved_statuses: expected a list of "
                              f"status names")
        for status in statuses:
            yield ("approved_status", status, "true")
