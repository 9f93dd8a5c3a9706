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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from extract.connectors.formats import GZIP_MAGIC, READ_ERRORS
from extract.connectors.pgaudit_prefix import compile_prefix
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import Completeness, Finding

DEFAULT_LOG_FILENAME = "postgresql-%Y-%m-%d_%H%M%S.log"  # PostgreSQL's default
DEFAULT_ROTATION_AGE = "1d"  # PostgreSQL's default (1440 min)
DEFAULT_LOG_TIMEZONE = "UTC"  # the zone of the names when the source does not say
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


def to_utc(text: str | None, zone: tzinfo | None = None) -> datetime | None:
    """A log time (`2024-07-05 10:00:00.123 UTC`, `... +02`) as UTC, or None (no time, or
    a zone abbreviation other than UTC/GMT that is not one of `zone`'s: the server writes
    its log times in its log_timezone, `... EDT`, and the abbreviation picks the occurrence
    of a time that a DST fold repeats)."""
    if not text:
        return None
    match = _LOG_TIME.match(text.strip())
    if match is None:
        return None
    day, clock, fraction, written = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}")
    except ValueError:
        return None
    if written is None or written.upper() in _UTC_NAMES:
        return moment.replace(tzinfo=UTC)
    if written[0] in "+-":
        digits = written[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        return (moment - offset if written[0] == "+" else moment + offset).replace(tzinfo=UTC)
    return _abbreviated(moment, written, zone) if zone is not None else None


def _abbreviated(moment: datetime, abbreviation: str, zone: tzinfo) -> datetime | None:
    """`moment` (naive) in `zone` where `zone` calls it `abbreviation` (`EDT`), as UTC."""
    for fold in (0, 1):
        local = moment.replace(tzinfo=zone, fold=fold)
        name = local.tzname()
        if name is not None and name.upper() == abbreviation.upper():
            return local.astimezone(UTC)
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


def log_zone(name: Any) -> tzinfo:
    """The IANA zone `name` (`log_timezone`); ValueError if it is not one."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"not a zone name: {name!r}")
    if name in _UTC_NAMES:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def local_to_utc(local: datetime, zone: tzinfo, first_at: datetime | None = None) -> datetime:
    """A name's local time (naive, in `zone`) as UTC. A time that occurs twice (a DST fold)
    is its first occurrence unless the file's first record is at or after the second; a time
    that never occurs (a DST gap: the server names no file there) takes the offset before
    the change."""
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if late > early and first_at is not None and first_at >= late - ROTATION_SLACK:
        return late
    return early


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


def _records(fmt: str, data: bytes, prefix: str | None, *,
             backward: bool = False) -> Iterator[tuple[str | None, str]]:
    """(log time text, message) of the records starting in `data` that can be read, in
    order (`backward`: last first), parsed only as far as they are asked for: a file's
    edges need its first HEAD_RECORDS records and its last one, not the whole window."""
    lines = data.split(b"\n")
    if fmt == "jsonlog":
        for line in reversed(lines) if backward else lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                stamp = doc.get("timestamp")
                yield (stamp if isinstance(stamp, str) else None, doc["message"])
        return
    if fmt == "csvlog":
        # a record: a line that starts with a log time, and the lines up to the next one
        for start, end in _csv_spans(lines, backward):
            text = b"\n".join(lines[start:end]).decode("utf-8", "replace")
            try:
                fields = next(csv.reader(io.StringIO(text)))
            except (csv.Error, StopIteration):
                continue
            if len(fields) >= 14:
                yield (fields[0], fields[13])
        return
    parser = compile_prefix(prefix or "")
    if "log_time" not in parser.fields:
        return
    for line in reversed(lines) if backward else lines:
        if line[:1] == b"\t":
            continue
        match = parser.regex.match(line.decode("utf-8", "replace").rstrip("\r"))
        if match is not None:
            yield (match.group("log_time"), match.group("message"))


def _csv_spans(lines: list[bytes], backward: bool) -> Iterator[tuple[int, int]]:
    """[start, end) line spans of the csvlog records in `lines` (lines before the first
    record's start belong to none), first to last or last to first."""
    if backward:
        end = len(lines)
        for index in range(len(lines) - 1, -1, -1):
            if _CSV_START.match(lines[index]):
                yield index, end
                end = index
        return
    start: int | None = None
    for index, line in enumerate(lines):
        if _CSV_START.match(line):
            if start is not None:
                yield start, index
            start = index
    if start is not None:
        yield start, len(lines)


def _timed(records: Iterator[tuple[str | None, str]], zone: tzinfo | None
           ) -> Iterator[tuple[datetime, tuple[str | None, str]]]:
    """The records whose log time reads (to_utc), with that time as UTC."""
    for record in records:
        at = to_utc(record[0], zone)
        if at:
            yield at, record


def _may_hold_startup(head: bytes) -> bool:
    """Whether a head window can hold a startup line (STARTUP, SHUT_DOWN_AT): its words are
    in it once quotes are taken out (the csv module drops a stray quote inside a field), or
    could be spelled otherwise (a JSON `\\u` escape; NUL bytes, which json reads as UTF-16
    or UTF-32)."""
    return (b"database system" in head.replace(b'"', b"") or b"\\u" in head
            or b"\x00" in head)


def file_edges(path: Path, fmt: str, prefix: str | None,
               zone: tzinfo | None = None) -> FileEdges:
    """The edges of one captured log file (its log times written in `zone`, the server's
    log_timezone, where they carry its abbreviation)."""
    head, tail = _read_edges(path)
    edges = FileEdges()
    # the head's first HEAD_RECORDS records are searched for startup lines; in a head that
    # cannot hold one, its first record is all that is read
    wanted = HEAD_RECORDS if _may_hold_startup(head) else 1
    first = list(itertools.islice(_timed(_records(fmt, head, prefix), zone), wanted))
    # the last record of the tail window that reads (the window's first may be cut)
    last = next(_timed(_records(fmt, tail, prefix, backward=True), zone), None)
    if first:
        edges.first_at, edges.first_text = first[0][0], first[0][1][0]
        for _, (_, message) in first:
            if message.startswith(STARTUP):
                edges.starts_with_startup = True
            match = SHUT_DOWN_AT.match(message)
            if match is not None and edges.shut_down_at is None:
                edges.shut_down_at = to_utc(match.group(1), zone)
                edges.starts_with_startup = True
    if last is not None:
        edges.last_at, edges.last_text = last[0], last[1][0]
        edges.ends_with_shutdown = last[1][1] == SHUTDOWN
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
              age: timedelta, quarter_start: datetime, quarter_end: datetime,
              log_timezone: str = DEFAULT_LOG_TIMEZONE) -> Completeness:
    """The source's completeness statement (basis `file_sequence`); the names' times are
    read in `log_timezone` and compared to the quarter in UTC."""
    files = list(files)
    pattern = name_pattern(log_filename, fmt)
    zone = log_zone(log_timezone)
    findings: list[Finding] = []
    named: dict[str, datetime] = {}
    for f in files:
        local = pattern.named_at(f.file)
        if local is not None:
            named[f.file] = local_to_utc(local, zone, f.edges.first_at)
    dated: list[tuple[datetime, LogFileFacts]] = sorted(
        ((named[f.file], f) for f in files if f.file in named), key=lambda x: (x[0], x[1].file))
    present = {f.file[:-3] if f.file.endswith(".gz") else f.file for f in files}
    unmatched = sorted(f.file for f in files if not pattern.matches(f.file))
    missing: list[dict[str, str | None]] = []
    down: list[dict[str, str | None]] = []
    linked: set[tuple[str, str]] = set()  # consecutive files of the sequence, no hole
    if not pattern.dated:
        findings.append(Finding("UNVERIFIED", f"log_filename {log_filename!r} names no full "
                                "date: the rotation sequence of the files cannot be checked",
                                exception=False))
    else:
        # a rotation whose name is a captured file's (the repeated hour of a DST fold, a
        # name without the hour) reopened that file: it is not missing
        for (at_a, a), (at_b, b) in itertools.pairwise(dated):
            expected = [(moment, name) for moment in _rotations(at_a, at_b, age, zone)
                        if (name := moment.astimezone(zone).strftime(pattern.pattern))
                        not in present]
            if not expected:
                linked.add((a.file, b.file))
                continue
            if _explained_by_down(a.edges, b.edges):
                down.append({"from": iso(a.edges.last_at), "to": iso(b.edges.first_at),
                             "after_file": a.file, "before_file": b.file})
                continue
            names = [name for _, name in expected]
            for moment, name in expected:
                missing.append({"file": name, "rotation_at": iso(moment),
                                "after_file": a.file, "before_file": b.file})
            findings.append(Finding(
                "LOG_GAP", f"{len(names)} log file(s) of the rotation sequence missing between "
                f"{a.file} and {b.file}: {', '.join(names[:5])}"
                f"{' …' if len(names) > 5 else ''} (the file before does not end with a "
                "shutdown that the file after starts from)"))
        if dated:
            findings += _edge_gaps(dated, age, zone, quarter_start.astimezone(UTC),
                                   quarter_end.astimezone(UTC))
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
            "log_timezone": log_timezone, "sequence_checked": pattern.dated,
            "files": [{"object": f.object_name, "file": f.file, "records": f.records,
                       "named_at": iso(named.get(f.file)),
                       "first_record_at": iso(f.edges.first_at),
                       "last_record_at": iso(f.edges.last_at),
                       "starts_with_startup": f.edges.starts_with_startup,
                       "startup_says_shut_down_at": iso(f.edges.shut_down_at),
                       "ends_with_shutdown": f.edges.ends_with_shutdown}
                      for f in sorted(files, key=lambda f: f.file)],
            "missing_files": missing, "down_periods": down, "unmatched_files": unmatched,
        })


def _edge_gaps(dated: list[tuple[datetime, LogFileFacts]], age: timedelta, zone: tzinfo,
               start: datetime, end: datetime) -> list[Finding]:
    """LOG_GAP at the quarter's edges (all times UTC). The first file must be the one open at
    the quarter's start (named at or before it) unless it starts the server from a
    shutdown at or before the start; the rotation due after the last file must fall at or
    after the quarter's end."""
    out: list[Finding] = []
    first_at, first = dated[0]
    down_at_start = (first.edges.shut_down_at is not None
                     and first.edges.shut_down_at <= start + ROTATION_SLACK)
    if first_at > start + ROTATION_SLACK and not down_at_start:
        out.append(Finding(
            "LOG_GAP", f"no log file from the quarter's start {iso(start)} until the first "
            f"file {first.file} (named {iso(first_at)})"))
    last_at, last = dated[-1]
    due = _next_rotation(last_at, age, zone)
    if due < end - ROTATION_SLACK:
        out.append(Finding(
            "LOG_GAP", f"no log file after {last.file} (named {iso(last_at)}; the next was "
            f"due {iso(due)}) until the quarter's end {iso(end)}"))
    return out


def _next_rotation(moment: datetime, age: timedelta, zone: tzinfo) -> datetime:
    """The rotation after a file named at `moment` (UTC), as the syslogger computes it:
    with an age that divides a day, the next multiple of the age in local time at the UTC
    offset in force at `moment` (`set_next_rotation_time`), so one age after an aligned
    rotation, in UTC, whatever DST does; with another age (7d: PostgreSQL aligns it to the
    epoch's weekday), one age after `moment`."""
    step = int(age.total_seconds())
    if step <= 0 or 86400 % step:
        return moment + age
    offset = moment.astimezone(zone).utcoffset() or timedelta(0)
    local = int(moment.timestamp()) + int(offset.total_seconds())
    return datetime.fromtimestamp(local - local % step + step - int(offset.total_seconds()), UTC)


def _rotations(at_a: datetime, at_b: datetime, age: timedelta, zone: tzinfo) -> list[datetime]:
    """The rotations (UTC) due between file A's and file B's names: none when B is the
    rotation after A or earlier (a restart); else each rotation after A until B."""
    due: list[datetime] = []
    moment = _next_rotation(at_a, age, zone)
    while moment < at_b - ROTATION_SLACK and len(due) < 1000:
        due.append(moment)
        moment = _next_rotation(moment, age, zone)
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
