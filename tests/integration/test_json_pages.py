"""JSON pages split with msgspec (extract.connectors.formats.raw_json_items) load what the json
module's path loads: the same records, rejects and counts, each doc equal as jsonb."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract import loader
from extract.connectors import formats
from soxtrail.kernel.database import Database

pytestmark = pytest.mark.integration

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

STRINGS = st.text(alphabet='ab "\\/\n\t\x01é€\U0001f600\x00:', max_size=6)
SCALARS = st.one_of(
    STRINGS.map(json.dumps),  # \u escapes: NUL, control characters, astral pairs
    STRINGS.map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["1.10", "1e5", "1E-5", "-0.0", "0.1e1", "-0", "2.5e-300", "true",
                     "false", "null", '"\\ud800"', '"\\udc00\\ud800"', "1e99999"]),
)


def _object(pairs: list[tuple[str, str]], spaced: bool) -> str:
    colon, comma = (" : ", ", ") if spaced else (":", ",")
    return "{" + comma.join(json.dumps(k) + colon + v for k, v in pairs) + "}"


@st.composite
def json_values(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 2 or draw(st.integers(0, 3)):
        return draw(SCALARS)
    if draw(st.booleans()):
        return "[" + ",".join(draw(st.lists(json_values(depth + 1), max_size=3))) + "]"
    return _object(draw(st.lists(st.tuples(st.sampled_from(["a", "b", "é"]),
                                           json_values(depth + 1)), max_size=3)), False)


@st.composite
def records(draw: st.DrawFn, source_key: str | None) -> str:
    if draw(st.integers(0, 9)) == 0:  # not an object
        return draw(st.sampled_from(["1", '"x"', "[1]", "null"]))
    keys = st.sampled_from(["eventName", "key", "fields", "a", "a", "uuid"])
    pairs = draw(st.lists(st.tuples(keys, json_values()), max_size=4))
    if source_key is not None:
        pairs.insert(draw(st.integers(0, len(pairs))), (source_key, json.dumps(draw(
            st.sampled_from(["iam.amazonaws.com", "iam.amazonaws.com", "s3.amazonaws.com"])))))
    return _object(pairs, draw(st.integers(0, 5)) == 0)


@st.composite
def pages(draw: st.DrawFn, key: str | None, source_key: str | None = None) -> bytes:
    items = ",".join(draw(st.lists(records(source_key), max_size=6)))
    text = f"[{items}]" if key is None else '{"x":1,' + json.dumps(key) + f":[{items}]}}"
    mutation = draw(st.integers(0, 12))
    data = text.encode("utf-8", "surrogatepass")
    if mutation == 0:
        data = data.replace(b"null", b"NaN", 1)
    elif mutation == 1:
        data = data[:-1] + b",}"
    elif mutation == 2:
        data = b"\xef\xbb\xbf" + data
    elif mutation == 3:
        data = data.replace(b"a", b"\xff", 1)
    elif mutation == 4:
        data = data[: len(data) // 2]
    elif mutation == 5:
        data = b" \n" + data + b"\n"
    return data


@contextmanager
def _json_path_only() -> Iterator[None]:
    """Every page through the json module, as before msgspec."""
    saved = formats.raw_json_items
    modules = [m for m in _connector_modules() if getattr(m, "raw_json_items", None) is saved]
    for module in modules:
        module.raw_json_items = lambda data, key: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in modules:
            module.raw_json_items = saved  # type: ignore[attr-defined]


def _connector_modules() -> list[Any]:
    from extract.connectors import aws_backup, aws_cloudtrail, jira, okta_system_log, pages

    return [aws_backup, aws_cloudtrail, jira, okta_system_log, pages]


def _load(params: dict[str, Any], path: Path) -> tuple[list[Any], tuple[int, ...], list[Any]]:
    counts = loader.LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    rows = list(loader._rows(params, path, run_id="r", evidence_id="e", counts=counts,
                             rejects=rejects))
    return rows, (counts.read, counts.loaded, counts.rejected, counts.skipped), rejects


def _same_load(conn: psycopg.Connection[Any], params: dict[str, Any], data: bytes,
               name: str) -> None:
    from extract.connectors.registry import connector_module

    module = connector_module(params["connector"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        fast = _load(params, path)
        fast_count = module.count_rows(params, path)
        with _json_path_only():
            slow = _load(params, path)
            slow_count = module.count_rows(params, path)
    assert fast_count == slow_count == fast[1][0]
    assert fast[1] == slow[1], data
    assert fast[2] == slow[2], data
    assert [row[:-1] for row in fast[0]] == [row[:-1] for row in slow[0]]
    for got, want in zip(fast[0], slow[0], strict=True):
        equal = conn.execute("select %s::jsonb = %s::jsonb", (got[-1], want[-1])).fetchone()
        assert equal == (True,), (got[-1], want[-1])


@pytest.fixture(scope="module")
def conn(pg_database: Database) -> Iterator[psycopg.Connection[Any]]:
    with pg_database.connect(autocommit=True) as connection:
        yield connection


@SETTINGS
@given(pages("Records", "eventSource"))
def test_cloudtrail_files(conn: psycopg.Connection[Any], data: bytes) -> None:
    params = {"connector": "aws_cloudtrail", "raw_table": "raw.iam_events", "source": "ct",
              "file": "t.json.gz"}
    _same_load(conn, params, gzip.compress(data), "t.json.gz")


@SETTINGS
@given(pages("issues"))
def test_jira_pages(conn: psycopg.Connection[Any], data: bytes) -> None:
    params = {"connector": "jira", "raw_table": "raw.tickets", "source": "jira"}
    _same_load(conn, params, data, "search-001.json")


@SETTINGS
@given(pages(None))
def test_okta_pages(conn: psycopg.Connection[Any], data: bytes) -> None:
    params = {"connector": "okta_system_log", "raw_table": "raw.iam_events", "source": "okta"}
    _same_load(conn, params, data, "logs-001.json")


def test_an_item_is_stored_as_its_own_text_where_jsonb_reads_it_the_same(tmp_path: Path
                                                                          ) -> None:
    """The doc is the source's text (numbers as written); with a \\u escape, a long exponent
    or over 16 KiB it is decoded and re-serialised, and jsonb_problem guards it."""
    items = ['{"key":"A-1","n":1.10}', '{"key":"A-2","s":"\\u00e9"}', '{"key":"A-3","n":1e99999}',
             '{"key":"A-4","s":"' + "x" * (16 << 10) + '"}', '{"key":"A-5","s":"\\u0000"}']
    path = tmp_path / "search-001.json"
    path.write_text('{"issues":[' + ",".join(items) + "]}", encoding="utf-8")
    rows, counts, rejects = _load({"connector": "jira", "raw_table": "raw.tickets",
                                   "source": "jira"}, path)
    assert counts == (5, 3, 2, 0)
    assert rows[0][-1] == items[0]  # as written: 1.10, not 1.1
    assert json.loads(rows[1][-1]) == {"key": "A-2", "s": "é"}
    assert [r[1] for r in rejects] == ["NaN or Infinity (jsonb cannot store it)",
                                       "NUL character (jsonb cannot store \\u0000)"]
