"""Connector `pgaudit_log`: PostgreSQL server logs (csvlog, jsonlog, stderr) with pgaudit lines."""

from __future__ import annotations

import abc
import csv
import glob
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

import extract.connectors.file as file_module
from extract.connectors.file import (
    GZIP_MAGIC,
    MAX_RECORD_BYTES,
    READ_ERRORS,
    RECORD_TOO_LONG,
    REJECT_TEXT_BYTES,
    UNTERMINATED_AT_END,
    CsvRecordParser,
    decode_problem,
    json_needs_check,
    jsonb_problem,
    open_bytes,
    parse_json,
    preview,
    s3_chunks,
    s3_list,
    split_csv_records,
)
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    ConnectorSpec,
    CopyRows,
    JsonDoc,
    LoadItem,
    RawRow,
    RawTable,
    Reject,
    RowCounter,
    Skipped,
    Source,
    copy_escape,
    copy_fields,
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
    optional=frozenset({"log_line_prefix"}),
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
DEFAULT_PREFIX = "%m [%p] %q%u@%d "
AUDIT = "AUDIT: "
AUDIT_BYTES = b"AUDIT: "

CSVLOG_WIDTH = 26  # PostgreSQL 14+
CSVLOG_PG13_WIDTH = 24  # before leader_pid and query_id
CSVLOG_MESSAGE = 13

_LOG_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?"
    r"(?: ?([A-Za-z]{1,6}|[+-]\d\d(?::?\d\d)?))?"
)


_VALID_DAYS: dict[tuple[str, str, str], bool] = {}


def _valid_day(year: str, month: str, day: str) -> bool:
    key = (year, month, day)
    valid = _VALID_DAYS.get(key)
    if valid is None:
        try:
            datetime(int(year), int(month), int(day))
            valid = True
        except ValueError:
            valid = False
        if len(_VALID_DAYS) < 100_000:  # a log spans few days: the cache stays small
            _VALID_DAYS[key] = valid
    return valid


# after the first 16 characters (date, hour, minute): seconds and a time zone
_LOG_TIME_REST = re.compile(r":[0-5]\d(?:\.\d{1,9})? ?(?:[A-Za-z]{1,6}|[+-]\d\d(?::?\d\d)?)")
_GOOD_MINUTES: set[str] = set()


def log_time_problem(value: Any) -> str | None:
    """Why a log time cannot become a timestamptz (missing, unparseable, no zone), or None."""
    if not isinstance(value, str) or not value:
        return "missing log time"
    # fast path: a minute already seen in a good log time (the first 16 characters are
    # fixed-width in _LOG_TIME), and the rest with seconds and a zone
    if value[:16] in _GOOD_MINUTES and _LOG_TIME_REST.fullmatch(value, 16):
        return None
    match = _LOG_TIME.fullmatch(value)
    if match is None:
        return f"unparseable log time {value[:80]!r}"
    year, month, day, hour, minute, second, zone = match.groups()
    # two-digit fields compare as text; the date part is checked once per day
    if hour > "23" or minute > "59" or second > "59" or not _valid_day(year, month, day):
        return f"unparseable log time {value!r}"
    if zone is None:
        return f"log time {value!r} has no time zone"
    if len(_GOOD_MINUTES) < 1_000_000:  # a quarter has ~130k minutes
        _GOOD_MINUTES.add(value[:16])
    return None


# ---------------------------------------------------------------------------
# stderr: the log_line_prefix as a regular expression
# ---------------------------------------------------------------------------

_TIME_PATTERN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [^ ]+)?"
# escape -> (raw table column, pattern); other escapes match anything (non-greedy)
_ESCAPES: dict[str, tuple[str, str]] = {
    "m": ("log_time", _TIME_PATTERN),
    "t": ("log_time", _TIME_PATTERN),
    "u": ("user_name", ".*?"),
    "d": ("database_name", ".*?"),
    "p": ("process_id", r"\d+"),
    "c": ("session_id", r"[0-9a-fA-F]+\.[0-9a-fA-F]+"),
    "l": ("session_line_num", r"\d+"),
    "a": ("application_name", ".*?"),
    "h": ("remote_host", ".*?"),
    "r": ("remote_host", ".*?"),
}
_PREFIX_TOKEN = re.compile(r"%(-?\d+)?(.)|[^%]+|%$", re.DOTALL)
STDERR_FIELDS = ("log_time", "user_name", "database_name", "process_id", "session_id",
                 "session_line_num", "application_name", "remote_host")
_PORT_SUFFIX = re.compile(r"\(\d+\)$")
# PostgreSQL prints `[unknown]` for an unset %u, %d or %a; csvlog/jsonlog leave them empty
_UNKNOWN_AS_NULL = ("user_name", "database_name", "application_name")


# the steps of a log_line_prefix for the C scanner (extract/connectors/_pgaudit_scan.pyx), each the
# same pattern as the regex's part: a literal, `.*?`, `\d+`, %c's pattern, _TIME_PATTERN,
# and the %q group (optional, to the end of the prefix)
STEP_LITERAL, STEP_LAZY, STEP_DIGITS, STEP_SESSION, STEP_TIME, STEP_OPTIONAL = range(6)
_STEP_KINDS = {".*?": STEP_LAZY, r"\d+": STEP_DIGITS, _ESCAPES["c"][1]: STEP_SESSION,
               _TIME_PATTERN: STEP_TIME}


@dataclass(frozen=True)
class PrefixParser:
    """A compiled log_line_prefix: which fields it names and the regex of an entry's first line.

    `program` is the same pattern as steps for the C scanner: (kind, literal, index in
    STDERR_FIELDS or -1, padded).
    """

    prefix: str
    regex: re.Pattern[str]
    fields: tuple[str, ...]
    padded: frozenset[str]
    port_in_host: bool
    program: tuple[tuple[int, bytes, int, bool], ...] = ()

    @property
    def has_time(self) -> bool:
        return "log_time" in self.fields


def compile_prefix(prefix: str) -> PrefixParser:
    """Turn a log_line_prefix into a regex for `<prefix><SEVERITY>:  <message>`.

    Named escapes capture their raw-table column; `%q` makes the rest optional (non-session
    processes stop the prefix there); unknown escapes match anything, non-greedily.
    """
    parts: list[str] = []
    program: list[tuple[int, bytes, int, bool]] = []  # one step per part
    fields: list[str] = []
    padded: set[str] = set()
    port_in_host = False
    optional_from: int | None = None
    for match in _PREFIX_TOKEN.finditer(prefix):
        token = match.group(0)
        if not token.startswith("%"):
            parts.append(re.escape(token))
            program.append((STEP_LITERAL, token.encode("utf-8"), -1, False))
            continue
        escape = match.group(2)
        if escape is None or escape == "%":
            parts.append("%")
            program.append((STEP_LITERAL, b"%", -1, False))
        elif escape == "q":
            if optional_from is None:
                optional_from = len(parts)
        elif escape in _ESCAPES and _ESCAPES[escape][0] not in fields:
            column, pattern = _ESCAPES[escape]
            fields.append(column)
            if match.group(1):
                padded.add(column)
                pattern = ".*?"
            port_in_host = port_in_host or escape == "r"
            parts.append(f"(?P<{column}>{pattern})")
            program.append((_STEP_KINDS[pattern], b"", STDERR_FIELDS.index(column),
                            column in padded))
        else:
            parts.append(".*?")
            program.append((STEP_LAZY, b"", -1, False))
    if optional_from is not None:
        parts[optional_from:] = ["(?:" + "".join(parts[optional_from:]) + ")?"]
        program.insert(optional_from, (STEP_OPTIONAL, b"", -1, False))
    body = ("".join(parts) + r"(?P<error_severity>[A-Z][A-Z0-9]*):  "
            r"(?:[0-9A-Z]{5}: (?=AUDIT: ))?(?P<message>.*)")
    return PrefixParser(prefix, re.compile(body, re.DOTALL), tuple(fields), frozenset(padded),
                        port_in_host, tuple(program))


# ---------------------------------------------------------------------------
# Records: split a file into records (shared by count_rows and load)
# ---------------------------------------------------------------------------


def _split_lines(handle: Iterable[bytes], first_line: int = 1
                 ) -> Iterator[tuple[int, bytes, str | None]]:
    """jsonlog: every non-blank line is a record."""
    line_no = first_line - 1
    try:
        for raw in handle:
            line_no += 1
            if raw != b"\n" and raw != b"\r\n":
                yield line_no, raw, None
    except READ_ERRORS as exc:
        yield line_no + 1, b"", f"unreadable file after line {line_no}: {exc}"


def _split_stderr(handle: Iterable[bytes], first_line: int = 1
                  ) -> Iterator[tuple[int, list[bytes], str | None]]:
    """stderr: an entry is a line plus the tab-led continuation lines after it."""
    line_no = first_line - 1
    start = 0
    lines: list[bytes] = []
    try:
        for raw in handle:
            line_no += 1
            if raw[:1] == b"\t" and lines:
                lines.append(raw)
                continue
            if lines:
                yield start, lines, None
                lines = []
            if raw != b"\n" and raw != b"\r\n":
                start, lines = line_no, [raw]
    except READ_ERRORS as exc:
        if lines:
            yield start, lines, None
        yield line_no + 1, [], f"unreadable file after line {line_no}: {exc}"
        return
    if lines:
        yield start, lines, None


def _records(fmt: str, handle: Iterable[bytes], first_line: int = 1
             ) -> Iterator[tuple[int, Any, str | None]]:
    if fmt == "csvlog":
        return split_csv_records(handle, first_line)
    if fmt == "jsonlog":
        return _split_lines(handle, first_line)
    if fmt == "stderr":
        return _split_stderr(handle, first_line)
    raise ConfigError(f"pgaudit_log: format {fmt!r} unknown (expected csvlog, jsonlog or stderr)")


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of log records in the file, audit or not (a read error counts as one record)."""
    with open_bytes(path) as handle:
        return sum(1 for _ in _records(str(params.get("format")), handle))


# ---------------------------------------------------------------------------
# Counting while the bytes stream past (snapshot): the same number as count_rows
# ---------------------------------------------------------------------------


class _StreamCounter(abc.ABC):
    """A RowCounter splitting the stream into lines (on b"\\n", as file iteration does).

    Subclasses count complete lines (`_lines`, each without its b"\\n") and the last line
    when it has no newline (`_last`). Gzip data is not counted (None: count_rows reads it).
    """

    def __init__(self) -> None:
        self.rows = 0
        self._carry: list[bytes] = []
        self._head = b""  # the first bytes, until the gzip magic can be ruled out
        self._gzip: bool | None = None

    def feed(self, chunk: bytes) -> None:
        """Count the complete lines of `carry + chunk`; keep the partial last line."""
        if self._gzip is None:
            self._head += chunk
            if len(self._head) < len(GZIP_MAGIC):
                return
            self._gzip = self._head.startswith(GZIP_MAGIC)
            chunk, self._head = self._head, b""
        if self._gzip or not chunk:
            return
        if b"\n" not in chunk:
            self._carry.append(chunk)
            return
        if self._carry:
            self._carry.append(chunk)
            chunk = b"".join(self._carry)
        lines = chunk.split(b"\n")
        tail = lines.pop()
        self._carry = [tail] if tail else []
        self._lines(lines)

    def total(self) -> int | None:
        """The record count (after the last chunk), or None for gzip data."""
        if self._gzip is None:  # fewer bytes than the magic: a plain (tiny) file
            self._gzip = False
            head, self._head = self._head, b""
            self.feed(head)
        if self._gzip:
            return None
        if self._carry:
            last = b"".join(self._carry)
            self._carry = []
            self._last(last)
        self._end()
        return self.rows

    @abc.abstractmethod
    def _lines(self, lines: list[bytes]) -> None:
        """Count complete lines (each without its newline)."""

    @abc.abstractmethod
    def _last(self, line: bytes) -> None:
        """Count the final line that has no newline."""

    def _end(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once after the last line."""


class _JsonlogCounter(_StreamCounter):
    """As _split_lines: every line but b"\\n" and b"\\r\\n" is a record."""

    def _lines(self, lines: list[bytes]) -> None:
        self.rows += len(lines) - lines.count(b"") - lines.count(b"\r")

    def _last(self, line: bytes) -> None:
        self.rows += 1  # not empty, and no newline: never blank


class _StderrCounter(_StreamCounter):
    """As _split_stderr: a non-blank line starts an entry unless it is a tab-led line
    continuing one (the line before it not blank)."""

    def __init__(self) -> None:
        super().__init__()
        self._open = False  # an entry is open: the previous line was not blank

    def _lines(self, lines: list[bytes]) -> None:
        rows = self.rows
        open_ = self._open
        for line in lines:
            if not line or line == b"\r":
                open_ = False
            elif not open_ or line[:1] != b"\t":
                rows += 1
                open_ = True
        self.rows, self._open = rows, open_

    def _last(self, line: bytes) -> None:
        if not self._open or line[:1] != b"\t":
            self.rows += 1


class _CsvlogCounter(_StreamCounter):
    """As split_csv_records: a record ends at a newline with an even number of quotes
    since its start (or once an unterminated record passes MAX_RECORD_BYTES)."""

    def __init__(self) -> None:
        super().__init__()
        self._quoted = False  # inside a record whose quote is still open
        self._size = 0

    def _lines(self, lines: list[bytes]) -> None:
        self._scan(lines, 1)

    def _scan(self, lines: list[bytes], newline: int) -> None:
        rows, quoted, size = self.rows, self._quoted, self._size
        for line in lines:
            odd = line.count(b'"') & 1
            if not quoted:
                if not odd:
                    if line and line != b"\r":
                        rows += 1
                else:
                    quoted, size = True, len(line) + newline
                continue
            size += len(line) + newline
            if odd or size > MAX_RECORD_BYTES:
                rows += 1
                quoted = False
        self.rows, self._quoted, self._size = rows, quoted, size

    def _last(self, line: bytes) -> None:
        # the last line has no newline: never blank (even b"\r" is a record there)
        if not self._quoted and not line.count(b'"') & 1:
            self.rows += 1
        else:
            self._scan([line], 0)

    def _end(self) -> None:
        if self._quoted:  # an unterminated quoted field at the end of the file: one record
            self.rows += 1
            self._quoted = False


def count_stream(params: Mapping[str, Any]) -> RowCounter | None:
    """A RowCounter giving count_rows' number from the bytes as they are captured (the C
    LineCounter where extract/connectors/_pgaudit_scan.pyx is built)."""
    fmt = str(params.get("format"))
    if fmt in FORMAT_TABLES and _pgaudit_scan is not None:
        return _pgaudit_scan.LineCounter(fmt, file_module.MAX_RECORD_BYTES)
    return python_counter(fmt)


def python_counter(fmt: str) -> RowCounter | None:
    """The Python RowCounter of a format (the C one's reference)."""
    if fmt == "csvlog":
        return _CsvlogCounter()
    if fmt == "jsonlog":
        return _JsonlogCounter()
    if fmt == "stderr":
        return _StderrCounter()
    return None


# ---------------------------------------------------------------------------
# Classification: each record becomes exactly one RawRow, Reject or skipped count
# ---------------------------------------------------------------------------


def copy_text(locator: str, values: Sequence[str | None]) -> str | Reject:
    """A row's locator and payload as one COPY text line (no newline), as the loader's
    generic path would encode them (None and '' -> \\N), or the loader's NUL reject."""
    line = copy_fields(values, empty_as_null=True)
    if "\x00" in line:
        return Reject(locator, "NUL byte in value", None)
    return locator + "\t" + line


class _Csvlog:
    """csvlog records: decoded strictly, parsed with the C csv reader.

    With `as_copy_text`, a loadable record comes out as its COPY text line (a str)
    instead of a RawRow: same values, same rejects, fewer steps per row.
    """

    def __init__(self, name: str, as_copy_text: bool = False) -> None:
        self.name = name
        self.parser = CsvRecordParser()
        self.as_copy_text = as_copy_text

    def __call__(self, line: int, data: bytes, problem: str | None) -> LoadItem | str | None:
        if problem is not None:
            return Reject(f"{self.name}:{line}", problem, preview(data))
        try:
            fields = self.parser.parse(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return Reject(f"{self.name}:{line}", decode_problem(exc), preview(data))
        except csv.Error as exc:
            return Reject(f"{self.name}:{line}", f"broken CSV quoting: {exc}", preview(data))
        width = len(fields)
        if width == CSVLOG_PG13_WIDTH:
            fields.extend(("", ""))
        elif width != CSVLOG_WIDTH:
            return Reject(f"{self.name}:{line}", _width_problem(width), preview(data))
        message = fields[CSVLOG_MESSAGE]
        if not message.startswith(AUDIT):
            if message:
                return None
            return Reject(f"{self.name}:{line}", "missing message", preview(data))
        problem = log_time_problem(fields[0])
        if problem is not None:
            return Reject(f"{self.name}:{line}", problem, preview(data))
        if self.as_copy_text:
            return copy_text(f"{self.name}:{line}", fields)
        return RawRow(f"{self.name}:{line}", tuple([value or None for value in fields]))


def _width_problem(width: int) -> str:
    return (f"wrong column count: {width} (expected {CSVLOG_WIDTH} for PostgreSQL 14+ "
            f"or {CSVLOG_PG13_WIDTH} for PostgreSQL 13)")


_PLAIN_JSON = frozenset({str, int, bool, type(None)})
# an exponent of five digits or more: jsonb's numeric refuses 1e131072 and 1e-16384 (a
# match inside a string, or a harmless exponent, only costs the pass-through); a number
# with a shorter exponent is read by Python as a float, which `doc` would show
_LONG_EXPONENT = re.compile(r"[eE][-+]?[0-9]{5}")
PASS_THROUGH_CHARS = 8192


def _passes_through(doc: dict[str, Any], text: str) -> bool:
    """Whether jsonb reads `text` exactly as it reads the re-serialised `doc`, so the line
    itself can be stored.

    `doc` must be flat without floats (Python re-prints floats differently), and `text`
    must hold nothing jsonb could refuse in a value that `doc` no longer shows (a
    duplicate key keeps only its last value): no \\u escape (NUL, lone surrogates) and no
    exponent of five digits or more (numeric overflow; at most 8 KiB of text, no number
    is long enough to overflow without one). Otherwise the object is re-serialised.
    """
    if len(text) > PASS_THROUGH_CHARS or "\\u" in text:
        return False
    if not _PLAIN_JSON.issuperset(map(type, doc.values())):
        return False
    return _no_duplicate_keys(doc, text) or not _LONG_EXPONENT.search(text)


def _no_duplicate_keys(doc: dict[str, Any], text: str) -> bool:
    """True when `text` (a flat object) certainly holds each key once, so nothing is hidden.

    Without an escaped backslash, a quote after a backslash is an escaped quote inside a
    string and any other quote is a real one; a real quote followed by a colon closes a
    key. Without whitespace between a quote and a colon, every key is closed that way:
    then the `":` not after a backslash count the keys.
    """
    return ("\\\\" not in text
            and text.count('":') - text.count('\\":') == len(doc)
            and '" :' not in text and '"\t:' not in text and '"\n:' not in text
            and '"\r:' not in text)


class _Jsonlog:
    """jsonlog lines: one JSON object each (`as_copy_text`: as for _Csvlog)."""

    def __init__(self, name: str, as_copy_text: bool = False) -> None:
        self.name = name
        self.as_copy_text = as_copy_text

    def __call__(self, line: int, raw: bytes, problem: str | None) -> LoadItem | str | None:
        if problem is not None:
            return Reject(f"{self.name}:{line}", problem, preview(raw))
        data = raw.rstrip(b"\r\n")
        if AUDIT_BYTES not in data and data[:1] == b"{" and data[-1:] == b"}":
            # a well-formed-looking non-audit line: skipped without parsing (speed)
            if data.isascii():
                return None
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Reject(f"{self.name}:{line}", decode_problem(exc), preview(data))
            return None
        try:
            text = data.decode("utf-8")
            doc = parse_json(text)
        except UnicodeDecodeError as exc:
            return Reject(f"{self.name}:{line}", decode_problem(exc), preview(data))
        except ValueError as exc:
            return Reject(f"{self.name}:{line}", f"invalid JSON: {exc}", preview(data))
        if not isinstance(doc, dict):
            return Reject(f"{self.name}:{line}", "not a JSON object", preview(data))
        message = doc.get("message")
        if not isinstance(message, str) or not message:
            return Reject(f"{self.name}:{line}", "missing message", preview(data))
        if not message.startswith(AUDIT):
            return None
        problem = log_time_problem(doc.get("timestamp"))
        if problem is None and json_needs_check(text):
            problem = jsonb_problem(doc)
        if problem is not None:
            return Reject(f"{self.name}:{line}", problem, preview(data))
        if not _passes_through(doc, text):
            return RawRow(f"{self.name}:{line}", (doc,))
        if self.as_copy_text:
            return copy_text(f"{self.name}:{line}", (text,))
        return RawRow(f"{self.name}:{line}", (JsonDoc(doc, text),))


class _Stderr:
    """stderr entries: the log_line_prefix parsed only for entries that hold `AUDIT: `."""

    def __init__(self, name: str, prefix: PrefixParser, as_copy_text: bool = False) -> None:
        self.name = name
        self.prefix = prefix
        self.as_copy_text = as_copy_text

    def __call__(self, line: int, lines: list[bytes], problem: str | None) -> LoadItem | str | None:
        locator = f"{self.name}:{line}"
        if problem is not None:
            return Reject(locator, problem, None)
        if AUDIT_BYTES not in lines[0]:
            bad = _undecodable(lines)
            return None if bad is None else Reject(locator, bad, preview(b"".join(lines)))
        try:
            texts = [raw.decode("utf-8").rstrip("\r\n") for raw in lines]
        except UnicodeDecodeError as exc:
            return Reject(locator, decode_problem(exc), preview(b"".join(lines)))
        entry = "\n".join(texts)
        prefix = self.prefix
        match = prefix.regex.match(texts[0])
        if match is None:
            return Reject(locator, f"entry does not match log_line_prefix {prefix.prefix!r}",
                          entry)
        message = match.group("message")
        if len(texts) > 1:
            message = "\n".join([message, *(text[1:] for text in texts[1:])])
        if not message.startswith(AUDIT):
            return None
        values = {column: match.group(column) for column in prefix.fields}
        for column in prefix.padded:
            if values[column] is not None:
                values[column] = values[column].strip()
        for column in _UNKNOWN_AS_NULL:
            if values.get(column) == "[unknown]":
                values[column] = None
        if prefix.port_in_host and values.get("remote_host"):
            values["remote_host"] = _PORT_SUFFIX.sub("", values["remote_host"])
        problem = (log_time_problem(values.get("log_time")) if prefix.has_time
                   else f"log_line_prefix {prefix.prefix!r} has no %m or %t: no log time")
        if problem is not None:
            return Reject(locator, problem, entry)
        row = (*[values.get(column) or None for column in STDERR_FIELDS],
               match.group("error_severity"), message, entry)
        if self.as_copy_text:
            return copy_text(locator, row)
        return RawRow(locator, row)


def _undecodable(lines: list[bytes]) -> str | None:
    for raw in lines:
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return decode_problem(exc)
    return None


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
    name = str(params.get("file") or path.name)
    as_copy_text = copy_escape(name) == name and "\x00" not in name
    if as_copy_text and head is not None and _pgaudit_scan is not None \
            and params.get("format") in FORMAT_TABLES and not _is_gzip(path):
        return _scan(params, path, name, head)
    return _load(params, path, as_copy_text=as_copy_text)


def _classifier(params: Mapping[str, Any], name: str,
                as_copy_text: bool) -> Callable[[int, Any, str | None], LoadItem | str | None]:
    fmt = str(params.get("format"))
    if fmt == "csvlog":
        return _Csvlog(name, as_copy_text)
    if fmt == "jsonlog":
        return _Jsonlog(name, as_copy_text)
    return _Stderr(name, compile_prefix(str(params.get("log_line_prefix") or DEFAULT_PREFIX)),
                   as_copy_text)


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
    defers go to the classifier as `_records` would have handed them over."""
    fmt = str(params.get("format"))
    classify = _classifier(params, name, True)
    prefix = classify.prefix if isinstance(classify, _Stderr) else None
    scanner = _pgaudit_scan.Scanner(
        fmt, head.encode("utf-8"), name.encode("utf-8"), file_module.MAX_RECORD_BYTES,
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
            # what `_records` yields for the bytes left when the read fails: the complete
            # lines not yet scanned, then the error's problem record
            yield from _classified(classify, _records(fmt, _lines_then_raise(carry, exc),
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


def _classified(classify: Callable[[int, Any, str | None], LoadItem | str | None],
                records: Iterator[tuple[int, Any, str | None]]) -> Iterator[LoadItem | str]:
    """Each record's item; the records the classifier skips as Skipped counts."""
    skipped = 0
    for record in records:
        item = classify(*record)
        if item is None:
            skipped += 1
            continue
        if skipped:
            yield Skipped(skipped)
            skipped = 0
        yield item
    if skipped:
        yield Skipped(skipped)


def _load(params: Mapping[str, Any], path: Path, *,
          as_copy_text: bool) -> Iterator[LoadItem | str]:
    fmt = str(params.get("format"))
    name = str(params.get("file") or path.name)
    classify = _classifier(params, name, as_copy_text)
    with open_bytes(path) as handle:
        yield from _classified(classify, _records(fmt, handle))


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
    """Capture every matched log file byte for byte, one evidence row per file (sorted)."""
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
    files = _match(source, patterns)
    if not files:
        raise SourceError(f"source {source.name}: no log file matches {', '.join(patterns)}")
    for item, object_name in zip(files, _object_names(files), strict=True):
        file_params = {**params, "file": item.name}
        if item.local is not None:
            chunks = iter_file(item.local)
        else:
            chunks = s3_chunks(item.bucket, item.key, source.name)
        ctx.capture(
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
