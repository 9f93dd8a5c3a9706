"""pgaudit_log classification: each record becomes exactly one RawRow, Reject or skipped count."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from extract.connectors.formats import (
    CsvRecordParser,
    decode_problem,
    json_needs_check,
    jsonb_problem,
    parse_json,
    preview,
)
from extract.connectors.pgaudit_prefix import (
    DEFAULT_PREFIX,
    STDERR_FIELDS,
    PrefixParser,
    compile_prefix,
)
from soxtrail.kernel.sources import JsonDoc, LoadItem, RawRow, Reject, Skipped, copy_fields

AUDIT = "AUDIT: "
AUDIT_BYTES = b"AUDIT: "

# The server lines LG-01 reads (docs/controls.md) are loaded beside the audit entries, in
# the same raw table; every other non-audit record is skipped. A non-audit record is a
# *server event* when its message starts with one of these, or mentions pgaudit.log (a
# `statement: ALTER SYSTEM SET pgaudit.log ...` of log_statement, an invalid-value error).
SERVER_EVENT_STARTS = (
    "database system ",  # is ready / is shut down / was shut down at / was interrupted / ...
    "received fast shutdown request",
    "received smart shutdown request",
    "received immediate shutdown request",
    "received SIGHUP, reloading configuration files",
    "terminating any other active server processes",
    'parameter "',  # "pgaudit.log" changed to "..." / removed from configuration file / ...
)
SETTING_MENTION = "pgaudit.log"
# A cheap test on a record's bytes that every server event passes (a superset, also what
# the C scanner tests): a record that fails it is skipped unread.
SERVER_HINT = re.compile(
    rb"database system |received (?:fast|smart|immediate|SIGHUP)|terminating any other"
    rb"|parameter |[pP][gG][aA][uU][dD][iI][tT]\.[lL][oO][gG]")


def is_server_event(message: str) -> bool:
    """Whether a non-audit message is one of the server lines LG-01 reads."""
    return message.startswith(SERVER_EVENT_STARTS) or SETTING_MENTION in message.lower()


CSVLOG_WIDTH = 26  # PostgreSQL 14+
CSVLOG_PG13_WIDTH = 24  # before leader_pid and query_id
CSVLOG_MESSAGE = 13

# ---------------------------------------------------------------------------
# Log times: what becomes a timestamptz
# ---------------------------------------------------------------------------

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
# Classifiers, one per format (called once per record: the load's hot path)
# ---------------------------------------------------------------------------


def copy_text(locator: str, values: Sequence[str | None]) -> str | Reject:
    """A row's locator and payload as one COPY text line (no newline), as the loader's
    generic path would encode them (None and '' -> \\N), or the loader's NUL reject."""
    line = copy_fields(values, empty_as_null=True)
    if "\x00" in line:
        return Reject(locator, "NUL byte in value", None)
    return locator + "\t" + line


class CsvlogClassifier:
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
            if not message:
                return Reject(f"{self.name}:{line}", "missing message", preview(data))
            if not is_server_event(message):
                return None
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


class JsonlogClassifier:
    """jsonlog lines: one JSON object each (`as_copy_text`: as for CsvlogClassifier)."""

    def __init__(self, name: str, as_copy_text: bool = False) -> None:
        self.name = name
        self.as_copy_text = as_copy_text

    def __call__(self, line: int, raw: bytes, problem: str | None) -> LoadItem | str | None:
        if problem is not None:
            return Reject(f"{self.name}:{line}", problem, preview(raw))
        data = raw.rstrip(b"\r\n")
        if AUDIT_BYTES not in data and data[:1] == b"{" and data[-1:] == b"}" \
                and SERVER_HINT.search(data) is None:
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
        if not message.startswith(AUDIT) and not is_server_event(message):
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


_PORT_SUFFIX = re.compile(r"\(\d+\)$")
# PostgreSQL prints `[unknown]` for an unset %u, %d or %a; csvlog/jsonlog leave them empty
_UNKNOWN_AS_NULL = ("user_name", "database_name", "application_name")


class StderrClassifier:
    """stderr entries: the log_line_prefix parsed only for entries that hold `AUDIT: `."""

    def __init__(self, name: str, prefix: PrefixParser, as_copy_text: bool = False) -> None:
        self.name = name
        self.prefix = prefix
        self.as_copy_text = as_copy_text

    def __call__(self, line: int, lines: list[bytes], problem: str | None) -> LoadItem | str | None:
        locator = f"{self.name}:{line}"
        if problem is not None:
            return Reject(locator, problem, None)
        audit = AUDIT_BYTES in lines[0]
        if not audit and not any(SERVER_HINT.search(raw) for raw in lines):
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
            if not audit:  # not a server line of this log's prefix: skipped, as before
                return None
            return Reject(locator, f"entry does not match log_line_prefix {prefix.prefix!r}",
                          entry)
        message = match.group("message")
        if len(texts) > 1:
            message = "\n".join([message, *(text[1:] for text in texts[1:])])
        if not message.startswith(AUDIT) and not is_server_event(message):
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


def classifier(params: Mapping[str, Any], name: str,
               as_copy_text: bool) -> Callable[[int, Any, str | None], LoadItem | str | None]:
    """The classifier of the file `name` in the format of `params` (stderr: its prefix)."""
    fmt = str(params.get("format"))
    if fmt == "csvlog":
        return CsvlogClassifier(name, as_copy_text)
    if fmt == "jsonlog":
        return JsonlogClassifier(name, as_copy_text)
    return StderrClassifier(
        name, compile_prefix(str(params.get("log_line_prefix") or DEFAULT_PREFIX)), as_copy_text)


def classified(classify: Callable[[int, Any, str | None], LoadItem | str | None],
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
