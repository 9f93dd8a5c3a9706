"""pgaudit_log completeness: each file's first and last record, the rotation sequence of the
file names (`log_filename`), and the statement built from them (kernel.sources.Completeness).

What it relies on (PostgreSQL's syslogger, src/backend/postmaster/syslogger.c): while the
logging collector runs, a time-based rotation (`log_rotation_age`, default 1d) opens a new
file named by `log_filename` at every rotation time, aligned to multiples of the age in
`log_timezone`, whether or not anything is written to it; a new file is also opened at
server start (named by the start time). So, with a name that holds the date, every
rotation period in which the server ran has a file, even an empty one; a period with no
file is either a period the server was down (the file before it ends with `database system
is shut down` and the one after it starts with `database system was shut down at`) or a
missing file. A name without a full date (`postgresql-%a.log`, overwritten weekly) makes
no sequence knowable: the statement says UNVERIFIED, not an exception.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from extract.connectors.formats import GZIP_MAGIC, READ_ERRORS
from extract.connectors.pgaudit_prefix import compile_prefix
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import Completeness, Finding

DEFAULT_LOG_FILENAME = "postgresql-%Y-%m-%d_%H%M%S.log"  # PostgreSQL's default
DEFAULT_ROTATION_AGE = "1d"  # PostgreSQL's default (1440 min)
EDGE_BYTES = 1 << 16  # bytes read at each end of a file for its first and last records
HEAD_RECORDS = 64  # records of a file's head searched for its startup lines
SHUTDOWN = "database system is shut down"
SHUT_DOWN_AT = re.compile(r"database system was shut down(?: in recovery)? at (.+)$")
STARTUP = "database system is ready to accept"
# a shutdown line and the next startup line's `was shut down at` time agree within this
SHUTDOWN_SLACK = timedelta(minutes=5)
# a file named a little later than one age after the one before is still the next one
ROTATION_SLACK = timedelta(minutes=1)

_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d{1,9})?"
                       r" ?([A-Za-z]{1,6}|[+-]\d\d(?::?\d\d)?)?$")
_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UCT"})
_CSV_START = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_NAME_FIELDS = {"Y": r"(?P<Y>\d{4})", "m": r"(?P<m>\d\d)", "d": r"(?P<d>\d\d)",
                "H": r"(?P<H>\d\d)", "M": r"(?P<M>\d\d)", "S": r"(?P<S>\d\d)"}
_AGE = re.compile(r"\s*(\d+)\s*(min|h|d|s)?\s*$")
_AGE_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, None: 60}  # bare number: minutes


def to_utc(text: str | None) -> datetime | None:
    """A log time (`2024-07-05 10:00:00.123 UTC`, `... +02`) as UTC, or None (no time, or
    a zone abbreviation other than UTC/GMT, which cannot be resolved without its rules)."""
    if not text:
        return None
    match = _LOG_TIME.match(text.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}")
    except ValueError:
        return None
    if zone is None or zone.upper() in _UTC_NAMES:
        return moment.replace(tzinfo=UTC)
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        return (moment - offset if zone[0] == "+" else moment + offset).replace(tzinfo=UTC)
    return None


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and `Z`, as the statement writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rotation_age(value: Any) -> timedelta:
    """`log_rotation_age` as PostgreSQL writes it (`1d`, `60min`, `1h`, a bare number of
    minutes)."""
    match = _AGE.match(str(value if value is not None else DEFAULT_ROTATION_AGE))
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"log_rotation_age {value!r}: expected e.g. 1d, 1h, 60min")
    return timedelta(seconds=int(match.group(1)) * _AGE_UNITS[match.group(2)])


@dataclass(frozen=True)
class NamePattern:
    """`log_filename` as a regex over the file names of one format (csvlog names end in
    .csv, jsonlog in .json, as PostgreSQL derives them), and whether a name gives a date."""

    pattern: str
    regex: re.Pattern[str]
    dated: bool

    def named_at(self, name: str) -> datetime | None:
        """The rotation time a name gives (naive, in log_timezone), or None."""
        match = self.regex.fullmatch(name[:-3] if name.endswith(".gz") else name)
        if match is None or not self.dated:
            return None
        fields = match.groupdict()
        try:
            return datetime(int(fields["Y"]), int(fields["m"]), int(fields["d"]),
                            int(fields.get("H") or 0), int(fields.get("M") or 0),
                            int(fields.get("S") or 0))
        except ValueError:
            return None

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name[:-3] if name.endswith(".gz") else name) is not None


def name_pattern(pattern: str, fmt: str) -> NamePattern:
    """The NamePattern of `log_filename` for log format `fmt`."""
    suffix = {"csvlog": ".csv", "jsonlog": ".json"}.get(fmt)
    if suffix is not None:
        pattern = pattern[:-4] + suffix if pattern.endswith(".log") else pattern + suffix
    parts: list[str] = []
    seen: set[str] = set()
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%" and index + 1 < len(pattern):
            escape = pattern[index + 1]
            index += 2
            if escape in _NAME_FIELDS and escape not in seen:
                seen.add(escape)
                parts.append(_NAME_FIELDS[escape])
            elif escape == "%":
                parts.append("%")
            else:  # %a, %b, %j, a repeated field, ...: any text
                parts.append(".+?")
            continue
        parts.append(re.escape(char))
        index += 1
    return NamePattern(pattern, re.compile("".join(parts)), {"Y", "m", "d"} <= seen)


# ---------------------------------------------------------------------------
# A file's edges: its first and last records' times and messages
# ---------------------------------------------------------------------------


@dataclass
class FileEdges:
    """What a file's first and last records say."""

    first_at: datetime | None = None
    last_at: datetime | None = None
    first_text: str | None = None
    last_text: str | None = None
    starts_with_startup: bool = False
    shut_down_at: datetime | None = None  # a head line `database system was shut down at`
    ends_with_shutdown: bool = False


def _read_edges(path: Path) -> tuple[bytes, bytes]:
    """The first and last EDGE_BYTES of the (decompressed) file."""
    with path.open("rb") as raw:
        gz = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        raw.seek(0)
        if not gz:
            head = raw.read(EDGE_BYTES)
            size = raw.seek(0, io.SEEK_END)
            raw.seek(max(0, size - EDGE_BYTES))
            return head, raw.read()
        head = tail = b""
        with gzip.open(raw) as stream:
            try:  # a broken archive: its edges as far as it reads (the load rejects the rest)
                head = tail = stream.read(EDGE_BYTES)
                while chunk := stream.read(1 << 20):
                    tail = (tail + chunk)[-EDGE_BYTES:]
            except READ_ERRORS:
                pass
            return head, tail


def _records(fmt: str, data: bytes, prefix: str | None) -> list[tuple[str | None, str]]:
    """(log time text, message) of the records starting in `data` that can be read."""
    out: list[tuple[str | None, str]] = []
    lines = data.split(b"\n")
    if fmt == "jsonlog":
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                stamp = doc.get("timestamp")
                out.append((stamp if isinstance(stamp, str) else None, doc["message"]))
        return out
    if fmt == "csvlog":
        starts = [i for i, line in enumerate(lines) if _CSV_START.match(line)]
        for n, start in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else len(lines)
            text = b"\n".join(lines[start:end]).decode("utf-8", "replace")
            try:
                fields = next(csv.reader(io.StringIO(text)))
            except (csv.Error, StopIteration):
                continue
            if len(fields) >= 14:
                out.append((fields[0], fields[13]))
        return out
    parser = compile_prefix(prefix or "")
    for line in lines:
        if line[:1] == b"\t":
            continue
        match = parser.regex.match(line.decode("utf-8", "replace").rstrip("\r"))
        if match is not None and "log_time" in parser.fields:
            out.append((match.group("log_time"), match.group("message")))
    return out


def file_edges(path: Path, fmt: str, prefix: str | None) -> FileEdges:
    """The edges of one captured log file."""
    head, tail = _read_edges(path)
    edges = FileEdges()
    first = [r for r in _records(fmt, head, prefix) if to_utc(r[0]) is not None]
    # the first record of the tail window may be cut: skip it unless the window is the file
    last = [r for r in _records(fmt, tail, prefix) if to_utc(r[0]) is not None]
    if first:
        edges.first_at, edges.first_text = to_utc(first[0][0]), first[0][0]
        for _, message in first[:HEAD_RECORDS]:
            if message.startswith(STARTUP):
                edges.starts_with_startup = True
            match = SHUT_DOWN_AT.match(message)
            if match is not None and edges.shut_down_at is None:
                edges.shut_down_at = to_utc(match.group(1))
                edges.starts_with_startup = True
    if last:
        edges.last_at, edges.last_text = to_utc(last[-1][0]), last[-1][0]
        edges.ends_with_shutdown = last[-1][1] == SHUTDOWN
    return edges


# ---------------------------------------------------------------------------
# The statement
# ---------------------------------------------------------------------------


@dataclass
class LogFileFacts:
    """One captured file of a source, for the statement."""

    object_name: str  # the evidence row's query name
    file: str
    records: int
    edges: FileEdges


def statement(files: Iterable[LogFileFacts], *, fmt: str, log_filename: str,
              age: timedelta, quarter_start: datetime, quarter_end: datetime) -> Completeness:
    """The source's completeness statement (basis `file_sequence`)."""
    files = list(files)
    pattern = name_pattern(log_filename, fmt)
    findings: list[Finding] = []
    dated: list[tuple[datetime, LogFileFacts]] = sorted(
        ((at, f) for f in files if (at := pattern.named_at(f.file)) is not None),
        key=lambda x: (x[0], x[1].file))
    unmatched = sorted(f.file for f in files if not pattern.matches(f.file))
    missing: list[dict[str, str]] = []
    down: list[dict[str, str | None]] = []
    linked: set[tuple[str, str]] = set()  # consecutive files of the sequence, no hole
    if not pattern.dated:
        findings.append(Finding("UNVERIFIED", f"log_filename {log_filename!r} names no full "
                                "date: the rotation sequence of the files cannot be checked",
                                exception=False))
    else:
        step = age.total_seconds()
        for (at_a, a), (at_b, b) in itertools.pairwise(dated):
            expected = _rotations(at_a, at_b, step)
            if not expected:
                linked.add((a.file, b.file))
                continue
            names = [t.strftime(pattern.pattern) for t in expected]
            if _explained_by_down(a.edges, b.edges):
                down.append({"from": iso(a.edges.last_at), "to": iso(b.edges.first_at),
                             "after_file": a.file, "before_file": b.file})
                continue
            for moment, name in zip(expected, names, strict=True):
                missing.append({"file": name, "rotation_at": moment.isoformat(),
                                "after_file": a.file, "before_file": b.file})
            findings.append(Finding(
                "LOG_GAP", f"{len(names)} log file(s) of the rotation sequence missing between "
                f"{a.file} and {b.file}: {', '.join(names[:5])}"
                f"{' …' if len(names) > 5 else ''} (the file before does not end with a "
                "shutdown that the file after starts from)"))
        if dated:
            slack = timedelta(days=1)  # names are in log_timezone, the quarter in UTC
            start, end = quarter_start.replace(tzinfo=None), quarter_end.replace(tzinfo=None)
            if dated[0][0] > start + age + slack:
                findings.append(Finding(
                    "LOG_GAP", f"no log file from the quarter's start {start:%Y-%m-%d} until "
                    f"the first file {dated[0][1].file}"))
            if dated[-1][0] + age < end - slack:
                findings.append(Finding(
                    "LOG_GAP", f"no log file after {dated[-1][1].file} until the quarter's "
                    f"end {end:%Y-%m-%d}"))
    if unmatched:
        findings.append(Finding(
            "UNVERIFIED", f"{len(unmatched)} file(s) do not match log_filename "
            f"{log_filename!r} and are outside the sequence check: {', '.join(unmatched[:5])}",
            exception=False))
    return Completeness(
        basis="file_sequence", captured=len(files),
        findings=findings, covered=_covered(files, dated, linked),
        facts={
            "log_filename": log_filename, "log_rotation_age_seconds": int(age.total_seconds()),
            "sequence_checked": pattern.dated,
            "files": [{"object": f.object_name, "file": f.file, "records": f.records,
                       "named_at": (pattern.named_at(f.file).isoformat()  # type: ignore[union-attr]
                                    if pattern.named_at(f.file) else None),
                       "first_record_at": iso(f.edges.first_at),
                       "last_record_at": iso(f.edges.last_at),
                       "starts_with_startup": f.edges.starts_with_startup,
                       "startup_says_shut_down_at": iso(f.edges.shut_down_at),
                       "ends_with_shutdown": f.edges.ends_with_shutdown}
                      for f in sorted(files, key=lambda f: f.file)],
            "missing_files": missing, "down_periods": down, "unmatched_files": unmatched,
        })


def _rotations(at_a: datetime, at_b: datetime, step: float) -> list[datetime]:
    """The files due between file A's and file B's names: none when B follows A within the
    rotation age (rotation times are aligned to multiples of the age, and a file opened at
    startup is followed by the next rotation within one age); else one every age after A."""
    age = timedelta(seconds=step)
    due: list[datetime] = []
    moment = at_a + age
    while moment < at_b - ROTATION_SLACK and len(due) < 1000:
        due.append(moment)
        moment += age
    return due


def _explained_by_down(before: FileEdges, after: FileEdges) -> bool:
    """The files around a hole say the server was down throughout it: the first ends with a
    clean shutdown, the next starts from that shutdown."""
    if not before.ends_with_shutdown or before.last_at is None or after.shut_down_at is None:
        return False
    return abs(after.shut_down_at - before.last_at) <= SHUTDOWN_SLACK


def _covered(files: list[LogFileFacts], dated: list[tuple[datetime, LogFileFacts]],
             linked: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """[first, last record] of each file, merged where they overlap or where the files are
    one unbroken stretch of the rotation sequence (empty files included)."""
    stretch: dict[str, int] = {}
    number = 0
    for index, (_, item) in enumerate(dated):
        if index and (dated[index - 1][1].file, item.file) not in linked:
            number += 1
        stretch[item.file] = number
    spans = sorted((f.edges.first_at, f.edges.last_at, f.file) for f in files
                   if f.edges.first_at is not None and f.edges.last_at is not None)
    merged: list[list[Any]] = []
    for first, last, name in spans:
        if merged and (first <= merged[-1][1] or stretch.get(merged[-1][2], -1)
                       == stretch.get(name, -2)):
            merged[-1][1] = max(merged[-1][1], last)
            merged[-1][2] = name
            continue
        merged.append([first, last, name])
    return [(str(iso(a)), str(iso(b))) for a, b, _ in merged]
