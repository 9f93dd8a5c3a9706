"""pgaudit_files.file_edges parses a file's edge windows only as far as it needs (the first
HEAD_RECORDS records of its head, the last readable record of its tail, read backwards):
the edges must be those of a full parse of both windows, whatever the records look like."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from extract.connectors import pgaudit_files
from extract.connectors.pgaudit_files import FileEdges, file_edges, to_utc
from extract.connectors.pgaudit_prefix import compile_prefix

PREFIX = "%m [%p] %q%u@%d "


def _all_records(fmt: str, data: bytes, prefix: str | None) -> list[tuple[str | None, str]]:
    """Every readable record of a window, first to last: the eager parse the edges stand for."""
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
        starts = [i for i, line in enumerate(lines) if pgaudit_files._CSV_START.match(line)]
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


def _reference(path: Path, fmt: str, prefix: str | None) -> FileEdges:
    head, tail = pgaudit_files._read_edges(path)
    edges = FileEdges()
    first = [r for r in _all_records(fmt, head, prefix) if to_utc(r[0]) is not None]
    last = [r for r in _all_records(fmt, tail, prefix) if to_utc(r[0]) is not None]
    if first:
        edges.first_at, edges.first_text = to_utc(first[0][0]), first[0][0]
        for _, message in first[:pgaudit_files.HEAD_RECORDS]:
            if message.startswith(pgaudit_files.STARTUP):
                edges.starts_with_startup = True
            match = pgaudit_files.SHUT_DOWN_AT.match(message)
            if match is not None and edges.shut_down_at is None:
                edges.shut_down_at = to_utc(match.group(1))
                edges.starts_with_startup = True
    if last:
        edges.last_at, edges.last_text = to_utc(last[-1][0]), last[-1][0]
        edges.ends_with_shutdown = last[-1][1] == pgaudit_files.SHUTDOWN
    return edges


MESSAGES = [
    "checkpoint starting: time",
    "starting PostgreSQL 15.8",
    "database system is ready to accept connections",
    "database system was shut down at 2024-08-14 22:00:00 UTC",
    "database system was shut down in recovery at 2024-08-14 21:00:00 +02",
    "database system is shut down",
    'AUDIT: SESSION,1,1,READ,SELECT,,,"select 1\nfrom t",<not logged>',
    "a message\nover\nthree lines",
    "quote \" and comma , inside",
]
BAD_TIMES = ["2024-08-16 10:00:00 CEST", "not a time", ""]


def _time(rng: random.Random, second: int) -> str:
    if rng.random() < 0.08:
        return rng.choice(BAD_TIMES)
    return f"2024-08-16 {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}.123 UTC"


def _record(fmt: str, rng: random.Random, second: int) -> str:
    at, message = _time(rng, second), rng.choice(MESSAGES)
    if fmt == "csvlog":
        quoted = '"' + message.replace('"', '""') + '"'
        fields = [at, "", "", "100", "", "66e0.64", "1", "", at, "", "0", "LOG", "00000", quoted]
        if rng.random() < 0.05:
            return ",".join(fields[:10]) + "\n"  # too few fields: not a record
        return ",".join(fields) + ',,,,,,,,,,"postmaster",,0\n'
    if fmt == "jsonlog":
        if rng.random() < 0.05:
            return "{not json\n"
        doc: dict[str, object] = {"timestamp": at, "pid": 100, "message": message}
        if rng.random() < 0.05:
            doc["message"] = 7  # not a text message
        return json.dumps(doc) + "\n"
    first, *rest = message.split("\n")
    return f"{at} [100] alice@db LOG:  {first}\n" + "".join(f"\t{x}\n" for x in rest)


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
@pytest.mark.parametrize("seed", range(12))
def test_file_edges_equal_the_edges_of_a_full_parse(tmp_path: Path, fmt: str,
                                                     seed: int) -> None:
    rng = random.Random(seed)
    records = rng.choice([0, 1, 3, 40, 63, 64, 65, 200, 2000])
    text = "".join(_record(fmt, rng, n * 7) for n in range(records))
    if rng.random() < 0.5:  # a cut record or stray bytes at either end
        text = rng.choice(["", "garbage\n", '"quoted\n', "\n\n"]) + text
        text += rng.choice(["", "2024-08-16 23:59:59.000 UTC,cut", "{\"timestamp\":", "\t"])
    path = tmp_path / "postgresql-2024-08-16_000000.log"
    path.write_bytes(text.encode())
    prefix = PREFIX if fmt == "stderr" else None
    assert file_edges(path, fmt, prefix) == _reference(path, fmt, prefix)


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
def test_a_file_of_one_record_has_it_at_both_edges(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "postgresql-2024-08-16_000000.log"
    path.write_text(_record(fmt, random.Random(3), 30).replace("\n", "", 1)
                    if fmt == "csvlog" else _record(fmt, random.Random(3), 30))
    prefix = PREFIX if fmt == "stderr" else None
    edges = file_edges(path, fmt, prefix)
    assert edges.first_text == edges.last_text == "2024-08-16 00:00:30.123 UTC"
    assert edges == _reference(path, fmt, prefix)


def test_a_startup_line_past_the_head_records_does_not_count(tmp_path: Path) -> None:
    rows = ([f"2024-08-16 08:00:{n % 60:02d}.000 UTC [1] a@b LOG:  checkpoint starting: time"
             for n in range(pgaudit_files.HEAD_RECORDS)]
            + ["2024-08-16 08:01:00.000 UTC [1] a@b LOG:  database system was shut down at "
               "2024-08-14 22:00:00 UTC"]
            + ["not a record", "2024-08-16 09:00:00.000 UTC [1] a@b LOG:  "
               "database system is shut down", "\tits continuation", "trailing junk"])
    path = tmp_path / "postgresql-2024-08-16_000000.log"
    path.write_text("\n".join(rows) + "\n")
    edges = file_edges(path, "stderr", PREFIX)
    assert not edges.starts_with_startup and edges.shut_down_at is None
    assert edges.ends_with_shutdown and edges.last_text == "2024-08-16 09:00:00.000 UTC"
    assert edges == _reference(path, "stderr", PREFIX)
    # one record fewer before it: the startup line is within the head's records
    path.write_text("\n".join(rows[1:]) + "\n")
    edges = file_edges(path, "stderr", PREFIX)
    assert edges.starts_with_startup and edges.shut_down_at is not None


def test_a_multi_line_csv_record_at_the_end_is_the_last_record(tmp_path: Path) -> None:
    at = "2024-08-16 23:00:00.000 UTC"
    last = (f'{at},,,100,,66e0.64,1,,{at},,0,LOG,00000,"database system is shut down"'
            ',,,,,,,,,,"line one\nline two\n2024-08-16 not a start",,0\n')
    first = (f'2024-08-16 08:00:00.000 UTC,,,100,,66e0.64,1,,{at},,0,LOG,00000,"checkpoint"'
             ',,,,,,,,,,"postmaster",,0\n')
    path = tmp_path / "postgresql-2024-08-16_000000.csv"
    path.write_text(first * 3 + last)
    edges = file_edges(path, "csvlog", None)
    assert edges.last_text == at and edges.ends_with_shutdown
    assert edges == _reference(path, "csvlog", None)


def _with_startup_spelled(fmt: str, spelled: str) -> str:
    """A file of 20 checkpoints, a startup line whose message is `spelled` (as its format
    writes it) and 20 more."""
    def row(n: int, message: str) -> str:
        at = f"2024-08-16 08:00:{n:02d}.000 UTC"
        if fmt == "csvlog":
            return f'{at},,,100,,66e0.64,1,,{at},,0,LOG,00000,{message},,,,,,,,,,"pm",,0\n'
        return '{"timestamp": "' + at + '", "message": ' + message + "}\n"
    plain = '"checkpoint starting: time"'
    return "".join(row(n, spelled if n == 20 else plain) for n in range(41))


@pytest.mark.parametrize(("fmt", "spelled"), [
    # a stray quote inside a csv field: the csv module drops it
    ("csvlog", '"data"base system was shut down at 2024-08-14 22:00:00 UTC"'),
    ("csvlog", '"database sys"tem is ready to accept connections"'),
    # JSON escapes
    ("jsonlog", '"\\u0064atabase system was shut down at 2024-08-14 22:00:00 UTC"'),
    ("jsonlog", '"database\\u0020system is ready to accept connections"'),
])
def test_a_startup_line_spelled_otherwise_is_still_found(tmp_path: Path, fmt: str,
                                                          spelled: str) -> None:
    path = tmp_path / "postgresql-2024-08-16_000000.log"
    path.write_text(_with_startup_spelled(fmt, spelled))
    assert b"database system" not in path.read_bytes()
    edges = file_edges(path, fmt, None)
    assert edges.starts_with_startup
    assert edges == _reference(path, fmt, None)


def test_jsonlog_lines_in_utf16_are_read_as_json_reads_them(tmp_path: Path) -> None:
    docs = [{"timestamp": "2024-08-16 08:00:00.000 UTC", "message": "checkpoint starting"},
            {"timestamp": "2024-08-16 08:00:01.000 UTC",
             "message": "database system is ready to accept connections"}]
    path = tmp_path / "postgresql-2024-08-16_000000.json"
    path.write_bytes(b"\n".join(json.dumps(doc).encode("utf-16-le") for doc in docs))
    edges = file_edges(path, "jsonlog", None)
    assert edges.starts_with_startup and edges.last_text == "2024-08-16 08:00:01.000 UTC"
    assert edges == _reference(path, "jsonlog", None)
