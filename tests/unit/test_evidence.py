"""The evidence module without a database: query_params layouts and canonical form 2."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from soxtrail.kernel import canonical, evidence
from soxtrail.kernel.errors import PipelineError

RUN = uuid.UUID("0b8f3c2e-5d4a-4e6f-9a1b-2c3d4e5f6a7b")


def _line(kind: str, value: object) -> str:
    return canonical.encode_lines([("v", kind)], [(value,)])[0]


def test_a_line_is_one_json_object_whose_keys_follow_the_select_not_the_alphabet() -> None:
    columns = [("run_id", "uuid"), ("item_key", "text"), ("approved", "bool"),
               ("count", "int4")]
    lines = canonical.encode_lines(columns, [(RUN, "k1", True, 3)])
    assert lines == [f'{{"run_id":"{RUN}","item_key":"k1","approved":true,"count":3}}']
    assert list(json.loads(lines[0])) == ["run_id", "item_key", "approved", "count"]


def test_rows_keep_the_order_they_are_given_in() -> None:
    lines = canonical.encode_lines([("item_key", "text")], [("b",), ("a",), ("B",)])
    assert lines == ['{"item_key":"b"}', '{"item_key":"a"}', '{"item_key":"B"}']


def test_null_is_null_whatever_the_type() -> None:
    kinds = ["text", "uuid", "bool", "int8", "numeric", "float8", "date", "timestamp",
             "timestamptz", "_text", "_uuid"]
    columns = [(f"c{i}", kind) for i, kind in enumerate(kinds)]
    line = canonical.encode_lines(columns, [tuple(None for _ in kinds)])[0]
    assert line == "{" + ",".join(f'"c{i}":null' for i in range(len(kinds))) + "}"


def test_text_is_a_json_string_with_short_escapes_and_literal_utf8() -> None:
    assert _line("text", 'say "hi"\\ now\n\t\r\b\f') == r'{"v":"say \"hi\"\\ now\n\t\r\b\f"}'
    assert _line("text", "\x01\x1f\x7f") == '{"v":"\\u0001\\u001f\x7f"}'
    assert _line("varchar", "Zürich ✓ 𝄞") == '{"v":"Zürich ✓ 𝄞"}'


def test_a_uuid_is_its_lowercase_hyphenated_text() -> None:
    assert _line("uuid", RUN) == f'{{"v":"{RUN}"}}'
    assert _line("uuid", str(RUN)) == f'{{"v":"{RUN}"}}'


def test_booleans_and_integers_are_json_literals() -> None:
    assert _line("bool", True) == '{"v":true}'
    assert _line("bool", False) == '{"v":false}'
    assert _line("int4", -42) == '{"v":-42}'
    assert _line("int8", 9007199254740993) == '{"v":9007199254740993}'


def test_a_numeric_is_its_decimal_text_with_its_trailing_zeros() -> None:
    assert _line("numeric", Decimal("1.50")) == '{"v":1.50}'
    assert _line("numeric", Decimal("100")) == '{"v":100}'
    assert _line("numeric", Decimal("0.0000001")) == '{"v":0.0000001}'  # not 1E-7
    assert _line("numeric", Decimal("-12.000")) == '{"v":-12.000}'
    assert _line("numeric", Decimal("NaN")) == '{"v":"NaN"}'
    assert _line("numeric", Decimal("-Infinity")) == '{"v":"-Infinity"}'


def test_a_float_is_its_shortest_round_trip_text() -> None:
    assert _line("float8", 0.1) == '{"v":0.1}'
    assert _line("float8", 1e-07) == '{"v":1e-07}'
    assert _line("float4", float("inf")) == '{"v":"Infinity"}'
    assert _line("float8", float("nan")) == '{"v":"NaN"}'


def test_a_date_is_iso() -> None:
    assert _line("date", date(2024, 7, 1)) == '{"v":"2024-07-01"}'


def test_a_timestamp_with_a_zone_is_utc_with_microseconds_and_z() -> None:
    berlin = datetime(2024, 7, 1, 14, 30, 5, tzinfo=ZoneInfo("Europe/Berlin"))
    assert _line("timestamptz", berlin) == '{"v":"2024-07-01T12:30:05.000000Z"}'
    minus = datetime(2024, 12, 31, 23, 0, 0, 123, tzinfo=timezone(timedelta(hours=-5)))
    assert _line("timestamptz", minus) == '{"v":"2025-01-01T04:00:00.000123Z"}'
    utc = datetime(2024, 7, 1, 0, 0, tzinfo=ZoneInfo("Etc/UTC"))
    assert _line("timestamptz", utc) == '{"v":"2024-07-01T00:00:00.000000Z"}'


def test_postgresqls_utc_text_of_a_timestamp_becomes_the_same_line_as_its_value() -> None:
    assert _line("timestamptz", "2024-07-01 12:30:05.5+00") == (
        '{"v":"2024-07-01T12:30:05.500000Z"}')
    assert _line("timestamptz", "2024-07-01 12:30:05+00") == '{"v":"2024-07-01T12:30:05.000000Z"}'
    assert _line("timestamptz", "2024-07-01 12:30:05.000123+00") == (
        _line("timestamptz", datetime(2024, 7, 1, 12, 30, 5, 123, tzinfo=timezone.utc)))
    for outside in ("infinity", "0001-01-01 00:00:00+00 BC", "10000-01-01 00:00:00+00",
                    "2024-07-01 12:30:05+02"):
        with pytest.raises(PipelineError, match="no canonical encoding"):
            _line("timestamptz", outside)


def test_a_timestamp_without_a_zone_keeps_its_wall_time_and_has_no_z() -> None:
    assert _line("timestamp", datetime(2024, 7, 1, 9, 5)) == '{"v":"2024-07-01T09:05:00.000000"}'


def test_arrays_are_json_arrays_of_their_elements_encoding() -> None:
    assert _line("_text", ["b", None, 'a"']) == '{"v":["b",null,"a\\""]}'
    assert _line("_text", []) == '{"v":[]}'
    assert _line("_uuid", [RUN, None]) == f'{{"v":["{RUN}",null]}}'
    assert _line("_uuid", [str(RUN)]) == f'{{"v":["{RUN}"]}}'
    assert _line("_int4", [[1, 2], [3, None]]) == '{"v":[[1,2],[3,null]]}'
    assert _line("_text", [["a"], ["b"]]) == '{"v":[["a"],["b"]]}'
    assert _line("_numeric", [Decimal("2.10")]) == '{"v":[2.10]}'
    assert _line("_timestamptz", [datetime(2024, 7, 1, tzinfo=timezone.utc)]) == (
        '{"v":["2024-07-01T00:00:00.000000Z"]}')


def test_column_names_are_json_strings_and_a_percent_sign_stays_literal() -> None:
    assert canonical.encode_lines([('50% "share"', "int4")], [(1,)]) == [
        '{"50% \\"share\\"":1}']


def test_a_type_without_a_canonical_encoding_is_refused_naming_the_column() -> None:
    with pytest.raises(PipelineError, match="'doc' has type jsonb"):
        canonical.encode_lines([("doc", "jsonb")], [])


def test_every_line_is_valid_json_that_reads_back_to_the_values() -> None:
    columns = [("run_id", "uuid"), ("when", "timestamptz"), ("hours", "numeric"),
               ("reasons", "_text"), ("ok", "bool")]
    row = (RUN, datetime(2024, 7, 1, tzinfo=timezone.utc), Decimal("2.50"), ["x", "y"], False)
    decoded = json.loads(canonical.encode_lines(columns, [row])[0], parse_float=Decimal)
    assert decoded == {"run_id": str(RUN), "when": "2024-07-01T00:00:00.000000Z",
                       "hours": Decimal("2.50"), "reasons": ["x", "y"], "ok": False}


def test_the_canonical_version_recorded_is_read_back_and_absent_means_1() -> None:
    assert evidence.canonical_version(None) == 1
    assert evidence.canonical_version({"model": "m"}) == 1
    params = evidence.control_params(control_id="AC-01", model="m", unique_id="model.p.m",
                                     checksum="ab" * 32, git_commit=None, variables={"a": 1},
                                     canonical=canonical.CANONICAL_VERSION)
    assert evidence.canonical_version(params) == canonical.CANONICAL_VERSION == 2
    assert params["control_id"] == "AC-01" and params["vars"] == {"a": 1}


def test_snapshot_params_add_the_loader_keys_and_redact_the_connectors_own() -> None:
    params = evidence.snapshot_params({"format": "csvlog", "cluster": "own"}, source="s",
                                      connector="pgaudit_log", raw_table="raw.pgaudit_csvlog",
                                      cluster="c1")
    assert params == {"format": "csvlog", "cluster": "own", "source": "s",
                      "connector": "pgaudit_log", "raw_table": "raw.pgaudit_csvlog"}
    assert "cluster" not in evidence.snapshot_params({}, source="s", connector="jira",
                                                     raw_table="raw.tickets", cluster=None)


def test_a_chain_link_hashes_the_previous_link_and_the_row_text() -> None:
    expected = hashlib.sha256(f"{evidence.GENESIS}|[1]".encode()).hexdigest()
    assert evidence.chain_link(evidence.GENESIS, "[1]") == expected
