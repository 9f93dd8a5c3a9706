"""file connector: CSV / JSONL exports with a column mapping, rows keyed by their own columns."""

from __future__ import annotations

import csv
import io
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extract.connectors import file as file_connector
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore

HR_CSV = (
    "\ufeffEmployee,Termination Date,Reason\n"
    "alice,2024-07-15 17:00,\"resigned, moved\"\n"
    'bob,2024-08-01 09:00,"multi\nline note"\n'
    "carol,2024-09-30 23:59,\n"
)
HR_COLUMNS = {"identity": "Employee", "deactivated_at": "Termination Date"}


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def source(tmp_path: Path, system: str = "iam", **values: object) -> Source:
    return Source(name="hr-terminations", system=system, connector="file",
                  values={"path": "hr.csv", "format": "csv", "columns": HR_COLUMNS, **values},
                  base_dir=tmp_path)


def test_csv_export_is_captured_as_is_and_rows_keyed_by_file_columns(tmp_path: Path) -> None:
    (tmp_path / "hr.csv").write_text(HR_CSV, encoding="utf-8")
    run = make_run(tmp_path)
    file_connector.snapshot(source(tmp_path, timezone="Europe/Paris"), run)
    (record,) = run.records
    assert record.query_params["raw_table"] == "raw.iam_events"
    assert record.query_params["columns"] == HR_COLUMNS
    assert record.query_params["timezone"] == "Europe/Paris"
    assert record.result_row_count == 3
    stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
    assert stored.read_text(encoding="utf-8") == HR_CSV
    items = list(file_connector.load(record.query_params, stored))
    assert [i.locator for i in items] == ["hr.csv:2", "hr.csv:3", "hr.csv:5"]
    assert items[0] == RawRow("hr.csv:2", ({"Employee": "alice",
                                            "Termination Date": "2024-07-15 17:00",
                                            "Reason": "resigned, moved"},))
    assert isinstance(items[1], RawRow) and items[1].values[0]["Reason"] == "multi\nline note"
    assert isinstance(items[2], RawRow) and items[2].values[0]["Reason"] is None


def test_system_picks_the_raw_table(tmp_path: Path) -> None:
    (tmp_path / "hr.csv").write_text("cluster,finished,state\npg-fin-01,2024-07-01,ok\n")
    run = make_run(tmp_path)
    file_connector.snapshot(source(tmp_path, system="backups", columns={
        "cluster": "cluster", "completed_at": "finished", "status": "state"}), run)
    assert run.records[0].query_params["raw_table"] == "raw.backups"


def test_mapped_column_missing_from_the_header_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "hr.csv").write_text(HR_CSV)
    with pytest.raises(ConfigError, match="'Left On' \\(for deactivated_at\\) not in the header"):
        file_connector.snapshot(source(tmp_path, columns={"identity": "Employee",
                                                          "deactivated_at": "'Left On'"}),
                                make_run(tmp_path))


def test_unknown_normalised_field_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "hr.csv").write_text(HR_CSV)
    with pytest.raises(ConfigError, match="unknown field 'email'"):
        file_connector.snapshot(source(tmp_path, columns={**HR_COLUMNS, "email": "Mail"}),
                                make_run(tmp_path))


@pytest.mark.parametrize(("row", "reason"), [
    ("dave,2024-07-01\n", "expected 3 fields (header), found 2"),
    ('dave,"2024-07-01"x,y\n', "broken CSV quoting"),
    ("d\udcffve,2024-07-01,z\n", "invalid UTF-8"),
    ("d\x00ve,2024-07-01,z\n", "NUL"),
])
def test_broken_rows_are_rejected(tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "hr.csv"
    path.write_bytes((HR_CSV + row).encode("utf-8", "surrogateescape"))
    items = list(file_connector.load({"format": "csv", "file": "hr.csv"}, path))
    assert sum(isinstance(i, RawRow) for i in items) == 3
    reject = items[-1]
    assert isinstance(reject, Reject) and reject.locator == "hr.csv:6" and reason in reject.reason
    assert file_connector.count_rows({"format": "csv"}, path) == 4


def test_jsonl_rows_and_rejects(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(b'{"key": "CHG-1", "state": "Approved"}\n\n[1]\n{"key": \n'
                     b'{"key": "CHG-2", "state": null}\n')
    items = list(file_connector.load({"format": "jsonl", "file": "tickets.jsonl"}, path))
    assert [(type(i).__name__, i.locator) for i in items] == [
        ("RawRow", "tickets.jsonl:1"), ("Reject", "tickets.jsonl:3"),
        ("Reject", "tickets.jsonl:4"), ("RawRow", "tickets.jsonl:5")]
    assert file_connector.count_rows({"format": "jsonl"}, path) == 4


def test_ticket_settings_fields_types_and_approved_statuses(tmp_path: Path) -> None:
    src = source(tmp_path, system="tickets", path="t.jsonl", format="jsonl",
                 columns={"ticket_key": "key", "status": "state", "approver": "approved_by"},
                 types={"access": ["Access Request"], "Normal Change": "change"},
                 approved_statuses=["Approved", "Implemented"], timezone="UTC")
    got = set(file_connector.settings(src))
    assert {("column", "ticket_key", "key"), ("field", "ticket_key", "key"),
            ("field", "approver", "approved_by"), ("timezone", "", "UTC"),
            ("type", "Access Request", "access"), ("type", "Normal Change", "change"),
            ("approved_status", "Approved", "true"),
            ("approved_status", "Implemented", "true")} <= got


def test_iam_settings_and_bad_timezone(tmp_path: Path) -> None:
    assert list(file_connector.settings(source(tmp_path))) == [
        ("column", "identity", "Employee"), ("column", "deactivated_at", "Termination Date")]
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        list(file_connector.settings(source(tmp_path, timezone="Mars/Olympus")))
    with pytest.raises(ConfigError, match="types only applies to tickets"):
        list(file_connector.settings(source(tmp_path, types={"x": "access"})))


CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
               max_size=12)


@settings(max_examples=150, deadline=None)
@given(table=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=8))
def test_any_csv_written_by_a_csv_writer_loads_back_identically(
        table: list[list[str]]) -> None:
    header = ["a", "b, \"c\"", "d\ne"]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *table])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        path.write_text(out.getvalue(), encoding="utf-8")
        items = list(file_connector.load({"format": "csv", "file": "x.csv"}, path))
        assert all(isinstance(i, RawRow) for i in items)
        assert len(items) == len(table) == file_connector.count_rows({"format": "csv"}, path)
        assert [list(i.values[0].values()) for i in items] == [  # type: ignore[union-attr]
            [v if v != "" else None for v in row] for row in table]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_rows_or_rejects_that_add_up(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        path.write_bytes(b"a,b\n" + data)
        for fmt in ("csv", "jsonl"):
            items = list(file_connector.load({"format": fmt, "file": "x.csv"}, path))
            assert all(isinstance(i, RawRow | Reject) for i in items)
            assert len(items) == file_connector.count_rows({"format": fmt}, path)
