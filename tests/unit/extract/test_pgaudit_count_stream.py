"""pgaudit_log.count_stream: counting while the bytes stream gives count_rows' number."""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract.connectors import formats, pgaudit_log, pgaudit_records
from extract.snapshot import SnapshotRun
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Source
from soxtrail.kernel.store import LocalStore

FORMATS = ("csvlog", "jsonlog", "stderr")
# pieces that stress the record splitters: newlines, CR, tabs, quotes, blank lines
PIECES = [b"\n", b"\r\n", b"\r", b"\t", b'"', b'""', b"a", b"AUDIT: x", b"{}", b",", b" ",
          b'"q\nq"', b"\n\n", b"\n\t", b"\xff"]



def log_records(run: SnapshotRun) -> list[Any]:
    """The log files' evidence records of a pgaudit_log snapshot; the source's completeness
    statement comes after them (pgaudit_files)."""
    *logs, statement = run.records
    assert statement.query_name == "completeness"
    assert statement.query_params["raw_table"] == "raw.source_completeness"
    return logs

def streamed(fmt: str, data: bytes, cuts: list[int], *, python: bool = False) -> int | None:
    """count_stream's total with `data` fed in pieces cut at `cuts` (with `python`, the
    Python counter's, which the C LineCounter must match)."""
    counter = (pgaudit_log.python_counter(fmt) if python
               else pgaudit_log.count_stream({"format": fmt}))
    assert counter is not None
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        counter.feed(data[start:cut])
        start = max(start, cut)
    return counter.total()


def test_every_format_is_counted_in_c() -> None:
    for fmt in FORMATS:
        assert type(pgaudit_log.count_stream({"format": fmt})).__name__ == "LineCounter"


def counted(tmp_path: Path, fmt: str, data: bytes) -> int:
    path = tmp_path / f"log.{fmt}"
    path.write_bytes(data)
    return pgaudit_log.count_rows({"format": fmt}, path)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=40),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
       fmt=st.sampled_from(FORMATS))
def test_stream_count_equals_count_rows(tmp_path: Path, pieces: list[bytes], cuts: list[int],
                                        fmt: str) -> None:
    data = b"".join(pieces)
    cuts = [c for c in cuts if c <= len(data)]
    expected = counted(tmp_path, fmt, data)
    assert streamed(fmt, data, cuts) == expected
    assert streamed(fmt, data, cuts, python=True) == expected


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("data", [
    b"", b"\n", b"\r", b"x", b"\t", b'"', b"\x1f", b"a\r\n\r\n\tb\n\tc\n\n\td",
    b'a,"b\nc",d\n\n"e\n', b"\t\n\tx\n\n\n\ty\r", b'"\n\n"\n"\r\n"\r', b'x\n"', b"\r\n\t",
])
def test_edge_cases(tmp_path: Path, fmt: str, data: bytes) -> None:
    for cuts in ([], list(range(len(data))), [1], [len(data) // 2]):
        for python in (False, True):
            assert streamed(fmt, data, cuts, python=python) == counted(tmp_path, fmt, data), \
                (data, cuts, python)


@pytest.mark.parametrize("fmt", ["csvlog", "stderr"])
def test_oversized_unterminated_records(tmp_path: Path, fmt: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_RECORD_BYTES", 16)
    monkeypatch.setattr(pgaudit_records, "MAX_RECORD_BYTES", 16)
    data = b'a,"' + b"0123456789\n" * 5 + b'x"\nb\n' + b'"' + b"y" * 40 + b"\nz\n"
    for cuts in ([], [3, 17, 30], list(range(len(data)))):
        for python in (False, True):
            assert streamed(fmt, data, cuts, python=python) == counted(tmp_path, fmt, data)


def test_gzip_is_left_to_count_rows() -> None:
    data = gzip.compress(b"a\nb\n")
    for fmt in FORMATS:
        assert streamed(fmt, data, [1]) is None
        assert streamed(fmt, data, [1], python=True) is None
    assert pgaudit_log.count_stream({"format": "nope"}) is None


def test_demo_like_logs(tmp_path: Path) -> None:
    rng = random.Random(7)
    lines = []
    for n in range(5000):
        kind = rng.random()
        if kind < 0.1:
            lines.append(f'2024-07-05 10:00:00 UTC,alice,"AUDIT: x,""y\n\tz""",{n}\n'.encode())
        elif kind < 0.15:
            lines.append(b"\n")
        elif kind < 0.2:
            lines.append(b"\tcontinued\r\n")
        else:
            lines.append(f'{{"n":{n},"message":"m"}}\n'.encode())
    data = b"".join(lines)
    for fmt in FORMATS:
        cuts = sorted(rng.randrange(len(data)) for _ in range(50))
        assert streamed(fmt, data, cuts) == counted(tmp_path, fmt, data)


@pytest.mark.parametrize("gz", [False, True])
def test_snapshot_counts_while_streaming(tmp_path: Path, gz: bool) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    body = b'2024-07-05 10:00:00.1 UTC,a,"AUDIT: SESSION,1\n2",x\n\n' * 3 + b"tail,no newline"
    name = "postgresql.csv.gz" if gz else "postgresql.csv"
    (logs / name).write_bytes(gzip.compress(body) if gz else body)
    store = LocalStore(tmp_path / "store")
    run = SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci", store=store,
                      spool_dir=tmp_path / "spool")
    source = Source(name="pg1", system="db_audit", connector="pgaudit_log",
                    values={"cluster": "pg1", "format": "csvlog", "paths": [str(logs / "*")]})
    pgaudit_log.snapshot(source, run)
    (record,) = log_records(run)
    stored = store.fetch(record.raw_output_s3_key, Path("unused"))
    assert record.result_row_count == 4 == pgaudit_log.count_rows(record.query_params, stored)
    # the object is the very bytes that were hashed, and the spool holds no copy
    assert stored.read_bytes() == (logs / name).read_bytes()
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == record.result_hash
    assert not any(p.is_file() for p in (tmp_path / "spool").rglob("*"))
