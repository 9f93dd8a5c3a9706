"""The loader's fast paths give what the general path gives (COPY text, rejects, counts)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from extract import loader
from extract.connectors import pgaudit_classify, pgaudit_log
from soxtrail.kernel.sources import JsonDoc, RawRow, copy_escape

COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})

TEXT = st.text(alphabet=st.sampled_from(list("ab\\\n\r\t\x00é\"{},:")), max_size=12)


@given(st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=6))
def test_copy_escape_is_translate(values: list[str | None]) -> None:
    for value in values:
        if value is not None:
            assert copy_escape(value) == value.translate(COPY_ESCAPE)
    row = tuple(values)
    if "\x00" not in "".join(v for v in values if v is not None):
        expected = "\t".join("\\N" if v is None else v.translate(COPY_ESCAPE)
                             for v in row) + "\n"
        assert loader._copy_line(row) == expected


def _general(values: tuple[object, ...], locator: str) -> tuple[tuple[object, ...] | None,
                                                                 str | None]:
    """The general path of loader._rows: _payload, then the NUL check."""
    out, problem, _ = loader._payload(values)
    if problem is None and (loader._has_nul(out) or "\x00" in locator):
        problem = "NUL byte in value"
    return (None if problem else out), problem


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), min_size=4, max_size=4),
       locator=st.sampled_from(["f:1", "f\x00:2"]))
def test_str_rows_fast_path_matches_general_path(values: list[str | None], locator: str) -> None:
    class Fake:
        @staticmethod
        def load(params: object, path: Path) -> list[RawRow]:
            return [RawRow(locator, tuple(values))]

    original = loader.object_module
    loader.object_module = lambda params: Fake  # type: ignore[assignment]
    try:
        counts = loader.LoadCounts()
        rejects: list[tuple[str, str, str | None]] = []
        rows = list(loader._rows({"raw_table": "raw.applications", "connector": "fake"},
                                 Path("x"), run_id="r", evidence_id="e", counts=counts,
                                 rejects=rejects))
    finally:
        loader.object_module = original
    out, problem = _general(tuple(values), locator)
    if problem is None:
        assert rows == [("r", "e", locator, *(out or ()))] and not rejects
    else:
        assert rows == [] and rejects == [(locator.replace("\x00", ""), problem, None)]
    assert counts.read == 1 == counts.loaded + counts.rejected


def _encode(params: dict[str, object], path: Path
            ) -> tuple[loader.LoadCounts, list[tuple[str, str, str | None]], str]:
    """What the loader COPYs for one object: counts, rejects and the COPY text."""
    counts = loader.LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    text = b"".join(loader.encode_blocks(run_id="r", evidence_id="e", params=params, path=path,
                                        counts=counts, rejects=rejects))
    return counts, rejects, text.decode("utf-8")


def test_jsonlog_passes_the_line_through_only_when_exact(tmp_path: Path) -> None:
    lines = [
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: a","pid":1,"x":null}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: b","f":1.10}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: c","n":{"a":1}}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: d \\"q\\" \\\\ é"}',
        # a duplicate key hides a value jsonb would refuse: re-serialised, as before
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: g","a":1e400000,"a":1}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: i","a" : 1E-99999,"a":1}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: h \\u00e9"}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: e\\u0000"}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: f","x":NaN}',
    ]
    path = tmp_path / "log.json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(pgaudit_log.load({"format": "jsonlog", "file": "log.json"}, path))
    rows = [i for i in items if isinstance(i, RawRow)]
    assert [type(r.values[0]) for r in rows] == [JsonDoc, dict, dict, JsonDoc, dict, dict, dict]
    for row in rows:
        doc = row.values[0]
        if isinstance(doc, JsonDoc):
            assert json.loads(doc.text) == doc  # the text is the object
    assert len(items) == 9  # the NUL and NaN lines are rejected, as before
    counts, _, text = _encode({
        "raw_table": "raw.pgaudit_jsonlog", "connector": "pgaudit_log", "format": "jsonlog",
        "file": "log.json", "source": "s", "cluster": "c"}, path)
    assert (counts.read, counts.loaded, counts.rejected) == (9, 7, 2)
    copied = text.splitlines()
    assert copied[0].split("\t")[-1] == lines[0]  # passed through
    assert json.loads(copied[1].split("\t")[-1]) == json.loads(lines[1])  # re-serialised


CSVLOG_LINES = [
    # PostgreSQL 16 (26 fields) and 13 (24 fields) records, audit and not
    '2024-07-05 10:00:00.123 UTC,"alice","db",101,"10.0.0.1:5000",6681f324.1,3,"GRANT",'
    '2024-07-05 10:00:00 UTC,3/4,0,LOG,00000,"AUDIT: SESSION,1,1,ROLE,GRANT,,,""GRANT dba'
    ' TO bob"",<none>",,,,,,,,,"psql","client backend",,0',
    '2024-07-05 10:00:01.123 UTC,"alice","db",101,"",6681f324.1,4,"",'
    '2024-07-05 10:00:00 UTC,3/5,0,LOG,00000,"AUDIT: SESSION,2,1,DDL,CREATE TABLE,TABLE,t,'
    '""create table t (a int,\n\tb text) -- \\ back"",<none>",,,,,,,,,"",,',
    '2024-07-05 10:00:02.123 UTC,,,101,,6681f324.1,5,,2024-07-05 10:00:00 UTC,,0,LOG,00000,'
    '"connection received",,,,,,,,,"","client backend",,0',
    '2024-07-05 10:00:03.123 UTC,"a\tb","db",101,,6681f324.1,6,,2024-07-05 10:00:00 UTC,,0,'
    'LOG,00000,"AUDIT: SESSION,3,1,READ,SELECT,,,select 1,<none>",,,,,,,,,"x\ry",'
    '"client backend",,0',
    '2024-07-05 10:00:04.123 UTC,"nul\x00","db",101,,6681f324.1,7,,2024-07-05 10:00:00 UTC,,'
    '0,LOG,00000,"AUDIT: SESSION,4,1,READ,SELECT,,,select 2,<none>",,,,,,,,,"",'
    '"client backend",,0',
    'not a time,"alice","db",101,,6681f324.1,8,,2024-07-05 10:00:00 UTC,,0,LOG,00000,'
    '"AUDIT: SESSION,5,1,READ,SELECT,,,select 3,<none>",,,,,,,,,"","client backend",,0',
    '2024-07-05 10:00:05.123 UTC,"too","few","fields"',
]
JSONLOG_LINES = [
    '{"timestamp":"2024-07-05 10:00:00.123 UTC","user":"a","pid":7,"message":"AUDIT: S,1,1,'
    'ROLE,GRANT,,,\\"GRANT x TO y\\",<none>"}',
    '{"timestamp":"2024-07-05 10:00:00.123 UTC","user":"a\\tb","message":"AUDIT: S,2,1,'
    'READ,SELECT,,,select \'\\\\\',<none>"}',
    '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"connection received"}',
    '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: S,3,1,READ,SELECT,,,x,<n>",'
    '"f":1.5}',
    '{"timestamp":"bad","message":"AUDIT: S,4,1,READ,SELECT,,,x,<none>"}',
    '{"message":"AUDIT: S,5,1,READ,SELECT,,,x,<none>"',
]
STDERR_LINES = [
    '2024-07-05 10:00:00.123 UTC [101] alice@db LOG:  AUDIT: SESSION,1,1,ROLE,GRANT,,,'
    'GRANT dba TO bob,<none>',
    '2024-07-05 10:00:01.123 UTC [101] alice@db LOG:  AUDIT: SESSION,2,1,DDL,CREATE TABLE,'
    'TABLE,t,"create table t (a int,',
    '\tb text) \\ x",<none>',
    '2024-07-05 10:00:02.123 UTC [101] alice@db LOG:  connection authorized',
    '2024-07-05 10:00:03.123 UTC [101] a\x00b@db LOG:  AUDIT: SESSION,3,1,READ,SELECT,,,'
    'select 1,<none>',
    'garbage AUDIT: line without a prefix',
]


def _general_encoding(params: dict[str, object], path: Path) -> tuple[str, tuple[int, ...],
                                                                     list[object]]:
    """What the loader wrote before connectors could hand COPY text: RawRows, _copy_line."""
    counts = loader.LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    rows = loader._rows(params, path, run_id="r", evidence_id="e", counts=counts,
                        rejects=rejects)
    text = "".join(loader._copy_line(row) for row in rows)  # type: ignore[arg-type]
    return text, (counts.read, counts.loaded, counts.rejected, counts.skipped), rejects


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a\\", 'a"']),
                          st.one_of(st.integers(), st.text(alphabet='ab":\\ ', max_size=6))),
                min_size=1, max_size=4),
       st.sampled_from([":", " :", ": "]))
def test_no_duplicate_keys_is_never_wrong(pairs: list[tuple[str, object]], colon: str) -> None:
    """The key-count shortcut never says "no duplicate" of a text that has one."""
    text = "{" + ",".join(json.dumps(k) + colon + json.dumps(v) for k, v in pairs) + "}"
    doc = json.loads(text)
    if pgaudit_classify._no_duplicate_keys(doc, text):
        assert len(doc) == len(pairs), text


def test_pgaudit_copy_text_equals_the_general_path(tmp_path: Path) -> None:
    """Every format: the COPY text, counts and rejects of the connector's COPY-text rows are
    exactly those of its RawRows, escapes, NULs, NULL fields and broken records included."""
    cases = [
        ("csvlog", "log.csv", CSVLOG_LINES, {}),
        ("jsonlog", "log.json", JSONLOG_LINES, {}),
        ("stderr", "log.log", STDERR_LINES, {"log_line_prefix": "%m [%p] %q%u@%d "}),
    ]
    for fmt, name, lines, extra in cases:
        path = tmp_path / name
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
        params = {"raw_table": f"raw.pgaudit_{fmt}", "connector": "pgaudit_log", "format": fmt,
                  "file": name, "source": "s\tx", "cluster": "c", **extra}
        expected_text, expected_counts, expected_rejects = _general_encoding(params, path)
        assert expected_counts[1] >= 2 and expected_counts[2] >= 1, fmt  # the cases bite
        counts, rejects, text = _encode(params, path)
        assert text == expected_text, fmt
        assert (counts.read, counts.loaded, counts.rejected, counts.skipped) == expected_counts
        assert rejects == expected_rejects, fmt
        fast = list(pgaudit_log.load_copy_text(params, path))
        assert any(type(item) is str for item in fast), fmt  # the fast path was taken


def test_a_file_name_that_needs_escaping_takes_the_general_path(tmp_path: Path) -> None:
    path = tmp_path / "we\tird.csv"  # the locators' name is the object's own
    path.write_text(CSVLOG_LINES[0] + "\n", encoding="utf-8")
    params = {"format": "csvlog", "file": "log.csv"}
    items = list(pgaudit_log.load_copy_text(params, path))
    assert [type(item) for item in items] == [RawRow]
    assert isinstance(items[0], RawRow) and items[0].locator == "we\tird.csv:1"
