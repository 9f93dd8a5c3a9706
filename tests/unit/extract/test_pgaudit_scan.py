"""The C scanner of pgaudit logs (extract/connectors/_pgaudit_scan.pyx) loads exactly what the
Python path loads: the same COPY bytes, rejects and counts, whatever the input and block size."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract import loader
from extract.connectors import (
    formats,
    pgaudit_classify,
    pgaudit_log,
    pgaudit_prefix,
    pgaudit_records,
)
from soxtrail.kernel.sources import CopyRows, RawRow, Reject

HEAD = "run\tevidence\tsource\tcluster\t"
BLOCK_SIZES = [1, 7, 64, 1 << 20]
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PREFIXES = [
    "%m [%p] %q%u@%d ",
    "%m [%p] %c %l %q%u@%d %a ",
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%m %r %-10u %q[%d] ",
    "%t:%r:%u@%d:[%p]:",
    "%m [%p] %q%u@%d",  # no space before the severity
    "%%%m %x %u %u ",  # a literal %, an unknown escape, a repeated one
    "[%p] %q%m %u ",  # the time inside the %q group
    # a greedy field right before one that can match its last characters: the regex
    # backtracks into the greedy one (%p%l: pid 1234 and line 5 of "12345")
    "%m [%p%l] %q%u@%d ",
    "%m%u@%d ",
    "%m %c%l %q%u@%d ",
]


def _canonical(items: Iterator[Any]) -> tuple[bytes, tuple[int, int, int, int], list[Any]]:
    """The loader's view of a connector's items: COPY bytes (as encode_blocks writes them),
    counts (read, loaded, rejected, skipped) and rejects."""
    out = []
    read = loaded = rejected = skipped = 0
    rejects = []
    for item in items:
        if type(item) is CopyRows:
            out.append(item.data)
            read += item.count
            loaded += item.count
        elif type(item) is str:
            out.append((HEAD + item + "\n").encode("utf-8"))
            read += 1
            loaded += 1
        elif isinstance(item, RawRow):
            values, problem, _ = loader._payload(item.values)
            assert problem is None
            out.append(("RAW\t" + loader._copy_line((item.locator, *values))).encode("utf-8"))
            read += 1
            loaded += 1
        elif isinstance(item, Reject):
            rejects.append((item.locator, item.reason, item.raw_text))
            read += 1
            rejected += 1
        else:
            read += item.count
            skipped += item.count
    return b"".join(out), (read, loaded, rejected, skipped), rejects


@contextlib.contextmanager
def _block_size(size: int) -> Iterator[None]:
    saved = pgaudit_log.SCAN_BLOCK
    pgaudit_log.SCAN_BLOCK = size
    try:
        yield
    finally:
        pgaudit_log.SCAN_BLOCK = saved


def _params(fmt: str, prefix: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"format": fmt, "file": "log"}
    if prefix is not None:
        params["log_line_prefix"] = prefix
    return params


def _reference(params: dict[str, Any], data: bytes) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log"
        path.write_bytes(data)
        return _canonical(pgaudit_log._load(params, path, as_copy_text=True))


def _fast(params: dict[str, Any], data: bytes, block: int) -> Any:
    with _block_size(block):
        return _canonical(pgaudit_log.scan_handle(params, io.BytesIO(data), "log", HEAD))


def _check(params: dict[str, Any], data: bytes) -> None:
    expected = _reference(params, data)
    for block in BLOCK_SIZES:
        assert _fast(params, data, block) == expected, (block, data)


# ---------------------------------------------------------------------------
# generated inputs

def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any],
           odds: int = 4) -> st.SearchStrategy[Any]:
    """`common` most of the time (what the scanner loads itself), `rare` once in `odds`."""
    return st.integers(1, odds).flatmap(lambda n: rare if n == 1 else common)


ANY_LOG_TIME = st.builds(
    lambda date, sep, clock, fraction, space, zone, tail: date + sep + clock + fraction + space
    + zone + tail,
    st.sampled_from(["2024-07-05", "2024-02-29", "2023-02-29", "0000-01-01", "2024-13-01",
                     "2024-00-10", "2024-04-31", "9999-12-31", "2024-7-05", "1900-02-29",
                     "2000-02-29"]),
    st.sampled_from([" ", " ", "T", "_"]),
    st.sampled_from(["10:00:00", "23:59:59", "24:00:00", "10:60:00", "10:00:60", "1:00:00"]),
    st.sampled_from(["", ".123", ".1", ".123456789", ".1234567890", "."]),
    st.sampled_from(["", " ", " ", "  "]),
    st.sampled_from(["UTC", "UTC", "CEST", "ABCDEF", "ABCDEFG", "+02", "+0200", "+02:00", "-05",
                     "+2", "Z", "+02:0", "+020", ""]),
    st.sampled_from(["", "", "", " ", "x"]),
)
GOOD_LOG_TIME = st.builds(
    "{}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}{} {}".format,
    st.sampled_from(["2024", "2023", "2000", "1900"]), st.integers(1, 12), st.integers(1, 31),
    st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
    st.sampled_from(["", ".123", ".5"]), st.sampled_from(["UTC", "+02", "-0530"]))
LOG_TIMES = mostly(GOOD_LOG_TIME, ANY_LOG_TIME)
# text the scanner takes (ASCII, no NUL or CR) and text it must leave to Python
CLEAN_TEXT = st.text(alphabet='ab ,"\n\t\\:.e1', max_size=8)
PLAIN_TEXT = st.text(alphabet="ab \t\\:.e1-", max_size=8)  # no quote, comma or newline
EDGY_TEXT = st.text(alphabet='ab ,"\n\r\t\\\x00é:.', max_size=8)
MESSAGES = st.one_of(
    st.builds(lambda cls, stmt: f"AUDIT: SESSION,1,1,{cls},GRANT,,,{stmt},<not logged>",
              st.sampled_from(["ROLE", "DDL", "READ"]), mostly(CLEAN_TEXT, EDGY_TEXT)),
    st.builds(lambda cls, stmt: f"AUDIT: SESSION,1,1,{cls},GRANT,,,{stmt},<not logged>",
              st.sampled_from(["ROLE", "DDL", "READ"]), mostly(CLEAN_TEXT, EDGY_TEXT)),
    st.sampled_from(["", "connection received", " AUDIT: x", "AUDIT:", "AUDIT: "]),
    # server events LG-01 reads (loaded), and near misses (skipped) around the byte hint
    st.sampled_from([
        "database system is ready to accept connections", "database system is shut down",
        "database system was shut down at 2024-07-05 09:00:00 UTC",
        "database system was interrupted; last known up at 2024-07-05 09:00:00 UTC",
        "received fast shutdown request", "received SIGHUP, reloading configuration files",
        "received immediate shutdown request", "received smart shutdown", "received fas",
        "terminating any other active server processes", "terminating any other",
        'parameter "pgaudit.log" changed to "none"', "parameter x", "parameter ",
        'parameter "log_line_prefix" removed from configuration file, reset to default',
        "statement: ALTER SYSTEM SET pgaudit.log = 'none'", "statement: set PGAUDIT.LOG to ddl",
        "statement: SET pgaudit.log_level = log", "pgaudit.lo", "pgaudit\x0elog",
        "x database system y", "connection received: host=10.0.0.1 port=5432",
        "database\\u0020system is ready", "Database system is ready",
    ]),
)


def _csv_field(value: str, style: str) -> str:
    if style == "quoted":
        return '"' + value.replace('"', '""') + '"'
    if style == "broken":
        return '"' + value + '"x'
    if style == "unterminated":
        return '"' + value
    return value  # raw: malformed when it holds a quote, comma or newline


@st.composite
def csvlog_records(draw: st.DrawFn) -> str:
    width = draw(mostly(st.sampled_from([26, 26, 24]), st.sampled_from([25, 27, 1])))
    fields = []
    for _ in range(width):
        kind = draw(st.sampled_from(["empty", "empty", "plain", "quoted", "quoted"]))
        if kind == "empty":
            fields.append(draw(st.sampled_from(["", '""'])))
        elif kind == "plain":
            fields.append(_csv_field(draw(PLAIN_TEXT), "plain"))
        else:
            fields.append(_csv_field(draw(CLEAN_TEXT), "quoted"))
    if draw(st.integers(0, 4)) == 0:  # what the scanner must leave to Python: CR, NUL,
        # UTF-8, broken quoting, a quote in an unquoted field
        fields[draw(st.integers(0, width - 1))] = _csv_field(draw(EDGY_TEXT), draw(
            st.sampled_from(["plain", "quoted", "broken", "unterminated"])))
    fields[0] = _csv_field(draw(LOG_TIMES), draw(st.sampled_from(["plain", "plain", "quoted"])))
    if width > 13:
        message = draw(MESSAGES)
        plain = not any(c in message for c in ',"\n\r') and draw(st.booleans())
        fields[13] = _csv_field(message, "plain" if plain else "quoted")
    return ",".join(fields)


def _join(records: list[str], endings: list[str], final_newline: bool) -> str:
    text = "".join(r + e for r, e in zip(records, endings, strict=True))
    if not final_newline and text.endswith("\n"):
        text = text[:-1]
    return text


@st.composite
def files(draw: st.DrawFn, records: st.SearchStrategy[str]) -> bytes:
    items = draw(st.lists(mostly(records, st.sampled_from(["", "\r", "\t", "x"]), 12),
                          max_size=12))
    endings = [draw(mostly(st.just("\n"), st.just("\r\n"))) for _ in items]
    data = _join(items, endings, draw(st.booleans())).encode("utf-8", "surrogatepass")
    if data and draw(st.integers(0, 19)) == 0:  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    return data


JSON_CLEAN = st.text(alphabet='ab "\\/:e12345\n\t', max_size=8)
JSON_EDGY = st.text(alphabet='ab "\\/\n\t\x01é\ud800:e12345', max_size=8)
JSON_VALUES = mostly(
    st.one_of(JSON_CLEAN.map(json.dumps), st.integers(-10**20, 10**20).map(str),
              st.sampled_from(["-0", "0", "true", "false", "null", '"e12345"', '"a\\\\b"',
                               '"x\\":"', '"y\\" :"'])),
    st.one_of(JSON_EDGY.map(lambda s: json.dumps(s, ensure_ascii=False)),
              st.sampled_from(["1.5", "1e5", "1E-99999", "01", "-", "NaN", '{"a":1}', "[1]",
                               "tru", '"unterminated'])),
)


@st.composite
def json_lines(draw: st.DrawFn) -> str:
    pairs = []
    if draw(st.integers(0, 9)):
        pairs.append(("timestamp", json.dumps(draw(LOG_TIMES))))
    if draw(st.integers(0, 9)):
        pairs.append(("message", json.dumps(draw(MESSAGES))))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(mostly(st.sampled_from(["user", "pid", "session_id", "a", "message",
                                           "timestamp", "e12345"]),
                          st.sampled_from(["mess\\u0061ge", 'q\\"', "", "a b"])))
        pairs.append((key, draw(JSON_VALUES)))
    pairs = draw(st.permutations(pairs))
    colon = draw(mostly(st.just(":"), st.sampled_from([" : ", ":\t", " :"]), 8))
    comma = draw(mostly(st.just(","), st.just(", "), 8))
    text = "{" + comma.join(f'"{k}"{colon}{v}' for k, v in pairs) + "}"
    mutation = draw(st.integers(0, 30))
    if mutation == 0:
        text = text[:-1]
    elif mutation == 1:
        text = text + " "
    elif mutation == 2:
        text = "\ufeff" + text
    elif mutation == 3:
        text = " " + text
    elif mutation == 4:
        text = text[:-1] + ',"long":"' + "x" * 8200 + '"}'
    return text


def _stderr_value(draw: st.DrawFn, escape: str) -> str:
    if escape in "mt":
        return draw(LOG_TIMES)
    if escape in "pl":
        return draw(st.sampled_from(["101", "7", "x", ""]))
    if escape == "c":
        return draw(st.sampled_from(["6681f324.1a", "6681f324.", "zz.1", "abc.def.12"]))
    if escape in "hr":
        return draw(st.sampled_from(["10.0.0.1", "10.0.0.1(5432)", "h(1)(2)", "(5)", "[local]",
                                     "a b"]))
    return draw(mostly(st.sampled_from(["alice", "a@b", "a@b@c", "[unknown]", "", "x y",
                                        "  pad  ", "a:b", "db]", "a\\b", "x\ty"]),
                       st.sampled_from(["é", "LOG:  ", "a\x00b", "a\rb"])))


@st.composite
def stderr_entries(draw: st.DrawFn, prefix: str) -> str:
    out = []
    in_group = False
    parts = pgaudit_prefix._PREFIX_TOKEN.finditer(prefix)
    non_session = draw(st.integers(0, 15)) == 0
    for match in parts:
        token = match.group(0)
        if not token.startswith("%"):
            if not (in_group and non_session):
                out.append(token)
            continue
        escape = match.group(2) or "%"
        if escape == "q":
            in_group = True
            continue
        if in_group and non_session:
            continue
        out.append("%" if escape == "%" else _stderr_value(draw, escape))
    severity = draw(mostly(st.sampled_from(["LOG", "ERROR", "WARNING", "L0G"]),
                           st.sampled_from(["log", "", "0LOG"])))
    colon = draw(mostly(st.just(":  "), st.just(": ")))
    state = draw(mostly(st.sampled_from(["", "00000: "]), st.sampled_from(["4260: ", "42601: "])))
    lines = ["".join(out) + severity + colon + state + draw(MESSAGES).replace("\n", "\n\t")]
    for _ in range(draw(st.integers(0, 2))):
        lines.append("\t" + draw(mostly(CLEAN_TEXT, EDGY_TEXT)).replace("\n", ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# the tests


def test_the_scanner_is_built() -> None:
    """The installed package has the compiled scanner: without it the loader would quietly
    take the (correct, 7x slower) Python path."""
    assert pgaudit_log._pgaudit_scan is not None


def test_simple_entries_of_every_format_are_loaded_in_c() -> None:
    """The common entries never leave C: one CopyRows, no deferred record."""
    cases = {
        "csvlog": '2024-07-05 10:00:00.123 UTC,"alice","db",101,"10.0.0.1:5000",6681f324.1,3,'
                  '"GRANT",2024-07-05 10:00:00 UTC,3/4,0,LOG,00000,"AUDIT: SESSION,1,1,ROLE,'
                  'GRANT,,,""GRANT dba\nTO bob"",<not logged>",,,,,,,,,"psql","client backend"'
                  ',,0\n2024-07-05 10:00:01.000 UTC,,,101,,6681f324.1,4,,2024-07-05 10:00:00 '
                  'UTC,,0,LOG,00000,"checkpoint starting",,,,,,,,,"","checkpointer",,0\n',
        "jsonlog": '{"timestamp":"2024-07-05 10:00:00.123 UTC","user":"alice","pid":101,'
                   '"session_id":"66e00355.ae8f","message":"AUDIT: SESSION,1,1,ROLE,GRANT,,,'
                   '\\"GRANT dba TO bob\\",<not logged>","query_id":0}\n'
                   '{"timestamp":"2024-07-05 10:00:01.000 UTC","message":"checkpoint"}\n',
        "stderr": '2024-07-05 10:00:00.123 UTC [101] alice@db LOG:  AUDIT: SESSION,1,1,DDL,'
                  'CREATE TABLE,TABLE,t,"create table t (a int,\n\tb text)",<not logged>\n'
                  '2024-07-05 10:00:01.000 UTC [101] LOG:  checkpoint starting\n',
    }
    for fmt, text in cases.items():
        params = _params(fmt, "%m [%p] %q%u@%d " if fmt == "stderr" else None)
        items = list(pgaudit_log.scan_handle(params, io.BytesIO(text.encode()), "log", HEAD))
        assert [type(i).__name__ for i in items] == ["CopyRows", "Skipped"], fmt
        assert items[0].count == 1
        _check(params, text.encode())


JSONLOG_PASS_THROUGH_CASES = [
    # a long-exponent look-alike: passed through only when the key count rules out a
    # duplicate key (pgaudit_classify._passes_through), else re-serialised
    '{"timestamp":"2024-07-05 10:00:00 UTC","session_id":"66e00355.ae8f","message":"AUDIT: a"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","s":"66e00355\\\\x","message":"AUDIT: b"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","s":"66e00355 \\" :","message":"AUDIT: c"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","s":"66e00355 \\":","message":"AUDIT: d"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","s":"e12345","t":"x\\\\","message":"AUDIT: e"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","s":"E-12345","message":"AUDIT: f","s":"g"}',
    '{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: g e+99999"}',
]


def test_jsonlog_pass_through_matches_the_python_rules() -> None:
    data = ("\n".join(JSONLOG_PASS_THROUGH_CASES) + "\n").encode()
    expected = _reference(_params("jsonlog"), data)
    assert expected[1] == (7, 7, 0, 0)
    assert expected[0].count(b"RAW\t") >= 3  # some are re-serialised, some are not
    assert expected[0].count(b"RAW\t") < 7
    _check(_params("jsonlog"), data)


@pytest.mark.parametrize(("prefix", "line", "fields"), [
    # `\d+` gives back digits to the `\d+` after it: pid 1234, line 5
    ("%m [%p%l] %q%u@%d ", "2024-07-05 10:00:00.123 UTC [12345] alice@db LOG:  AUDIT: x",
     {"process_id": "1234", "session_line_num": "5", "user_name": "alice"}),
    # the time's zone (`[^ ]+`, greedy) keeps all it can: the user is what `.*?` is left
    ("%m%u@%d ", "2024-07-05 10:00:00.123 UTCbob@db LOG:  AUDIT: x",
     {"log_time": "2024-07-05 10:00:00.123 UTCbob", "user_name": None}),
    # %c's second hex run gives back one digit to %l
    ("%m %c%l %q%u@%d ", "2024-07-05 10:00:00 UTC 66e00355.ae8f17 bob@db LOG:  AUDIT: x",
     {"session_id": "66e00355.ae8f1", "session_line_num": "7"}),
    # `.*?` takes the shortest: the user stops at the first @ that lets the rest match
    ("%m %u@%d ", "2024-07-05 10:00:00 UTC a@b@c LOG:  AUDIT: x",
     {"user_name": "a", "database_name": "b@c"}),
])
def test_the_prefix_match_backtracks_as_the_regex_does(prefix: str, line: str,
                                                       fields: dict[str, str | None]) -> None:
    regex = pgaudit_log.compile_prefix(prefix).regex.match(line)
    assert regex is not None
    for column, value in fields.items():
        if column == "user_name" and value is None:
            assert not regex.group(column)
        else:
            assert regex.group(column) == value
    data = (line + "\n").encode()
    items = list(pgaudit_log.scan_handle(_params("stderr", prefix), io.BytesIO(data), "log",
                                         HEAD))
    assert [type(i).__name__ for i in items] == ["CopyRows"]  # C matched it itself
    _check(_params("stderr", prefix), data)


@SETTINGS
@given(files(csvlog_records()))
def test_csvlog_scan_equals_the_python_path(data: bytes) -> None:
    _check(_params("csvlog"), data)


@SETTINGS
@given(files(json_lines()))
def test_jsonlog_scan_equals_the_python_path(data: bytes) -> None:
    _check(_params("jsonlog"), data)


@SETTINGS
@given(st.sampled_from(PREFIXES).flatmap(
    lambda prefix: st.tuples(st.just(prefix), files(stderr_entries(prefix)))))
def test_stderr_scan_equals_the_python_path(case: tuple[str, bytes]) -> None:
    prefix, data = case
    _check(_params("stderr", prefix), data)


@SETTINGS
@given(st.sampled_from(["csvlog", "jsonlog", "stderr"]).flatmap(
    lambda fmt: st.tuples(st.just(fmt), files(
        {"csvlog": csvlog_records(), "jsonlog": json_lines(),
         "stderr": stderr_entries(PREFIXES[0])}[fmt]), st.integers(0, 10_000))))
def test_a_read_error_ends_the_file_as_in_the_python_path(case: tuple[str, bytes, int]
                                                         ) -> None:
    """The bytes read before the error load as the Python splitter would load them, then
    the error's own reject (its line: after the last complete line)."""
    fmt, data, at = case
    at = min(at, len(data))
    params = _params(fmt, PREFIXES[0] if fmt == "stderr" else None)

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0

        def read(self, size: int = -1) -> bytes:
            if self.pos >= at:
                raise OSError("device error")
            chunk = data[self.pos:min(at, self.pos + size)]
            self.pos += len(chunk)
            return chunk

    complete = data[:at]
    lines_read = pgaudit_log._lines_then_raise(complete, OSError("device error"))
    expected = _canonical(pgaudit_classify.classified(
        pgaudit_classify.classifier(params, "log", True),
        pgaudit_records.split_records(fmt, lines_read)))
    for block in BLOCK_SIZES:
        with _block_size(block):
            got = _canonical(pgaudit_log.scan_handle(params, Failing(), "log", HEAD))  # type: ignore[arg-type]
        assert got == expected, (block, data[:at])
    lines = complete.count(b"\n")
    assert expected[2][-1][1] == f"unreadable file after line {lines}: device error"


@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_a_record_over_the_size_limit_is_the_same_reject(monkeypatch: pytest.MonkeyPatch,
                                                         block: int) -> None:
    monkeypatch.setattr(formats, "MAX_RECORD_BYTES", 40)
    good = ('2024-07-05 10:00:00.123 UTC,,,1,,a.1,1,,2024-07-05 10:00:00 UTC,,0,LOG,00000,'
            '"AUDIT: S,1,1,ROLE,GRANT,,,x,<none>",,,,,,,,,"","client backend",,0\n')
    data = (good + '2024,"open quote\n' + "line\n" * 12 + good + '"closes",x\n' + good
            + '2024,"never closed\nat the end\n').encode()
    expected = _reference(_params("csvlog"), data)
    reasons = [reject[1] for reject in expected[2]]
    assert reasons.count(pgaudit_log.RECORD_TOO_LONG) == 1
    assert reasons[-1] == pgaudit_log.UNTERMINATED_AT_END
    assert expected[1][1] == 3  # the good records around them
    assert _fast(_params("csvlog"), data, block) == expected
