"""The loader's fast paths give what the general path gives (COPY text, rejects, counts)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from extract import loader, pgaudit_log
from extract.base import JsonDoc, RawRow

TEXT = st.text(alphabet=st.sampled_from(list("ab\\\n\r\t\x00é\"{},:")), max_size=12)


@given(st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=6))
def test_copy_escape_is_translate(values: list[str | None]) -> None:
    for value in values:
        if value is not None:
            assert loader._copy_escape(value) == value.translate(loader._COPY_ESCAPE)
    row = tuple(values)
    if "\x00" not in "".join(v for v in values if v is not None):
        expected = "\t".join("\\N" if v is None else v.translate(loader._COPY_ESCAPE)
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

    original = loader.connector_module
    loader.connector_module = lambda name: Fake  # type: ignore[assignment]
    try:
        counts = loader.LoadCounts()
        rejects: list[tuple[str, str, str | None]] = []
        rows = list(loader._rows({"raw_table": "raw.applications", "connector": "fake"},
                                 Path("x"), run_id="r", evidence_id="e", counts=counts,
                                 rejects=rejects))
    finally:
        loader.connector_module = original
    out, problem = _general(tuple(values), locator)
    if problem is None:
        assert rows == [("r", "e", locator, *(out or ()))] and not rejects
    else:
        assert rows == [] and rejects == [(locator.replace("\x00", ""), problem, None)]
    assert counts.read == 1 == counts.loaded + counts.rejected


def test_jsonlog_passes_the_line_through_only_when_exact(tmp_path: Path) -> None:
    lines = [
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: a","pid":1,"x":null}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: b","f":1.10}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: c","n":{"a":1}}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: d \\"q\\" \\\\ é"}',
        # a duplicate key hides a value jsonb would refuse: re-serialised, as before
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: g","a":1e400000,"a":1}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: h \\u00e9"}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: e\\u0000"}',
        '{"timestamp":"2024-07-05 10:00:00.123 UTC","message":"AUDIT: f","x":NaN}',
    ]
    path = tmp_path / "log.json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(pgaudit_log.load({"format": "jsonlog", "file": "log.json"}, path))
    rows = [i for i in items if isinstance(i, RawRow)]
    assert [type(r.values[0]) for r in rows] == [JsonDoc, dict, dict, JsonDoc, dict, dict]
    for row in rows:
        doc = row.values[0]
        if isinstance(doc, JsonDoc):
            assert json.loads(doc.text) == doc  # the text is the object
    assert len(items) == 8  # the NUL and NaN lines are rejected, as before
    out = tmp_path / "out.copy"
    encoded = loader.encode_object(run_id="r", evidence_id="e", path=path, out=out, params={
        "raw_table": "raw.pgaudit_jsonlog", "connector": "pgaudit_log", "format": "jsonlog",
        "file": "log.json", "source": "s", "cluster": "c"})
    assert encoded is not None
    assert (encoded.counts.read, encoded.counts.loaded, encoded.counts.rejected) == (8, 6, 2)
    copied = out.read_text(encoding="utf-8").splitlines()
    assert copied[0].split("\t")[-1] == lines[0]  # passed through
    assert json.loads(copied[1].split("\t")[-1]) == json.loads(lines[1])  # re-serialised
