"""Connector `access_review`: the returned user access review files (CSV and XLSX), read row
by row with one rule set for `soxtrail review import` and the load."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from extract.connectors import access_review
from extract.connectors.access_review import COLUMNS, review_rows
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import Config
from soxtrail.kernel.csvcells import neutralise
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore
from soxtrail.pipeline.context import access_review_sources


def _row(login: str, decision: str = "keep", reviewer: str = "dave",
         reviewed_at: str = "2024-09-20", **cells: str) -> dict[str, str]:
    row = {name: "" for name in COLUMNS}
    row.update(item_key=f"pg-fin-01|{login}|fin_ro", cluster="pg-fin-01", login_role=login,
               holder_identity=login, identity_status="active", granted_role="fin_ro",
               role_owner="finance-it", decision=decision, reviewer=reviewer,
               reviewed_at=reviewed_at)
    row.update(cells)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS,
              *, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([neutralise(row.get(name, "")) for name in columns])
    return path


def write_xlsx(path: Path, rows: list[list[Any]], header: tuple[str, ...] = COLUMNS,
               sheet: str = "Review") -> Path:
    book = openpyxl.Workbook()
    about = book.active
    assert about is not None
    about.title = "About"
    about.append(["owner", "finance-it"])
    review = book.create_sheet(sheet)
    review.append(list(header))
    for row in rows:
        review.append(row)
    book.save(path)
    return path


def test_a_csv_review_reads_every_row_with_neutralised_cells_given_back(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "finance-it.csv", [
        _row("alice", comment="=SUM(A1:A2) is what she runs"),
        _row("bruno", decision="REMOVE", comment="-- left the team"),
        _row("carla", decision="", reviewer="", reviewed_at=""),
    ], bom=True)
    rows, problems = review_rows(path)
    assert problems == []
    assert [r["line"] for r in rows] == ["2", "3", "4"]
    assert rows[0]["comment"] == "=SUM(A1:A2) is what she runs"
    assert rows[1]["comment"] == "-- left the team"
    assert rows[1]["decision"] == "remove"  # case-insensitive, stored lower-case
    assert rows[2]["decision"] is None and rows[2]["reviewer"] is None
    assert set(rows[0]) == {"line", *COLUMNS}


def test_extra_columns_and_any_column_order_are_accepted(tmp_path: Path) -> None:
    columns = ("my notes", *reversed(COLUMNS))
    path = write_csv(tmp_path / "r.csv", [_row("alice", **{"my notes": "x"})], columns)
    rows, problems = review_rows(path)
    assert problems == []
    assert rows[0]["item_key"] == "pg-fin-01|alice|fin_ro"
    assert "my notes" not in rows[0]


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    columns = tuple(c for c in COLUMNS if c != "reviewed_at")
    path = write_csv(tmp_path / "hr-it.csv", [_row("alice")], columns)
    with pytest.raises(ConfigError, match=r"hr-it\.csv: .*lacks column\(s\) reviewed_at"):
        review_rows(path)


def test_a_file_that_is_neither_csv_nor_xlsx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "review.ods"
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"review\.ods: a review file is CSV or XLSX"):
        review_rows(path)


@pytest.mark.parametrize(("cells", "problem"), [
    ({"decision": "maybe"}, "decision: 'maybe' is not one of keep, remove (or empty)"),
    ({"reviewer": ""}, "reviewer: required with a decision"),
    ({"reviewed_at": ""}, "reviewed_at: required with a decision"),
    ({"reviewed_at": "2024-09-20T10:00:00"},
     "reviewed_at: '2024-09-20T10:00:00' has no UTC offset (e.g. 2024-09-20T10:00:00+00:00)"),
    ({"reviewed_at": "20/09/2024"},
     "reviewed_at: '20/09/2024' is not a date (YYYY-MM-DD) or an ISO timestamp with an offset"),
    ({"reviewed_at": "2024-02-30"}, "reviewed_at: '2024-02-30' is not a valid date or time"),
    ({"item_key": ""}, "item_key: required"),
    ({"item_key": "pg-fin-01|alice"}, "item_key: 'pg-fin-01|alice' is not "
                                      "cluster|login_role|granted_role"),
    ({"login_role": "bob"}, "login_role: 'bob' differs from the item_key's 'alice'"),
])
def test_each_row_problem_names_its_line_and_field(tmp_path: Path, cells: dict[str, str],
                                                    problem: str) -> None:
    path = write_csv(tmp_path / "r.csv", [_row("zed"), _row("alice", **cells)])
    rows, problems = review_rows(path)
    assert len(rows) == 2
    assert problems == [(3, problem)]


def test_a_second_decision_on_an_item_in_one_file_is_refused_naming_the_first(
        tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [
        _row("alice"), _row("bruno", decision="", reviewer="", reviewed_at=""),
        _row("bruno"), _row("alice", decision="remove")])
    _, problems = review_rows(path)
    assert problems == [(5, "item_key: a second decision on pg-fin-01|alice|fin_ro "
                            "(first on line 2)")]


def test_a_record_that_is_not_csv_is_a_row_problem(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [_row("alice")])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("pg-fin-01|bruno|fin_ro,pg-fin-01\n")
    rows, problems = review_rows(path)
    assert len(rows) == 2
    assert problems == [(3, f"row: expected {len(COLUMNS)} fields (header), found 2")]


def test_an_xlsx_review_is_read_from_its_review_sheet(tmp_path: Path) -> None:
    good = _row("alice", comment="'=not a formula")
    path = write_xlsx(tmp_path / "finance-it.xlsx", [
        [good[c] for c in COLUMNS],
        [],  # an empty row is no data row
        [_row("bruno", decision="Keep", reviewer="Dave", reviewed_at="")[c] for c in COLUMNS],
    ])
    rows, problems = review_rows(path)
    assert [r["line"] for r in rows] == ["2", "4"]
    assert rows[0]["comment"] == "=not a formula"
    assert rows[1]["decision"] == "keep" and rows[1]["reviewer"] == "Dave"
    assert problems == [(4, "reviewed_at: required with a decision")]


def test_an_xlsx_date_cell_reads_as_the_date_typed(tmp_path: Path) -> None:
    import datetime as dt

    cells: list[Any] = [_row("alice")[c] for c in COLUMNS]
    cells[COLUMNS.index("reviewed_at")] = dt.datetime(2024, 9, 20)
    rows, problems = review_rows(write_xlsx(tmp_path / "r.xlsx", [cells]))
    assert problems == []
    assert rows[0]["reviewed_at"] == "2024-09-20"


def test_an_xlsx_without_a_review_sheet_or_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"r\.xlsx: no sheet named 'Review'"):
        review_rows(write_xlsx(tmp_path / "r.xlsx", [], sheet="Sheet1"))
    header = tuple(c for c in COLUMNS if c != "decision")
    with pytest.raises(ConfigError, match=r"s\.xlsx: .*lacks column\(s\) decision"):
        review_rows(write_xlsx(tmp_path / "s.xlsx", [], header=header))


# ---------------------------------------------------------------- snapshot and load


@pytest.fixture
def run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id="run-1", quarter=Quarter(2024, 3), executed_by="ci",
                       store=LocalStore(tmp_path / "store"), spool_dir=tmp_path / "spool")


def _source(base: Path) -> Source:
    config = Config(path=None, raw={}, sources=[], catalogs={}, policy={}, base_dir=base,
                    access_review="reviews/{quarter}")
    (source,) = access_review_sources(config)
    return source


def _loaded(run: SnapshotRun) -> list[tuple[str, list[Any]]]:
    out = []
    for record in run.records:
        path = Path(run.store.location(record.raw_output_s3_key))  # type: ignore[attr-defined]
        items = list(access_review.load(record.query_params, path))
        assert access_review.count_rows(record.query_params, path) == record.result_row_count
        # rows read = loaded + rejected
        assert len(items) == record.result_row_count
        out.append((record.query_name, items))
    return out


def test_each_review_file_is_one_capture_loaded_row_by_row(tmp_path: Path,
                                                           run: SnapshotRun) -> None:
    folder = tmp_path / "reviews" / "2024Q3"
    folder.mkdir(parents=True)
    write_csv(folder / "b-hr-it.csv", [_row("alice"), _row("bruno", decision="perhaps")])
    write_xlsx(folder / "a-finance-it.xlsx", [[_row("carla")[c] for c in COLUMNS]])
    (folder / "notes.txt").write_text("not a review file")
    access_review.snapshot(_source(tmp_path), run)
    loaded = dict(_loaded(run))
    assert list(loaded) == ["access_review/2024Q3/a-finance-it.xlsx",
                            "access_review/2024Q3/b-hr-it.csv"]
    xlsx_items = loaded["access_review/2024Q3/a-finance-it.xlsx"]
    assert xlsx_items == [RawRow("a-finance-it.xlsx:2", tuple(
        _row("carla")[c] or None for c in COLUMNS))]
    csv_items = loaded["access_review/2024Q3/b-hr-it.csv"]
    assert isinstance(csv_items[0], RawRow) and csv_items[0].locator == "b-hr-it.csv:2"
    assert csv_items[1] == Reject(
        "b-hr-it.csv:3", "decision: 'perhaps' is not one of keep, remove (or empty)",
        csv_items[1].raw_text)
    assert csv_items[1].raw_text is not None and "perhaps" in csv_items[1].raw_text
    params = run.records[1].query_params
    assert (params["file"], params["format"], params["raw_table"]) == (
        "b-hr-it.csv", "csv", "raw.access_reviews")


def test_no_review_file_is_captured_as_a_statement_that_none_exists(
        tmp_path: Path, run: SnapshotRun) -> None:
    access_review.snapshot(_source(tmp_path), run)
    (record,) = run.records
    assert record.query_name == "access_review/2024Q3"
    assert record.result_row_count == 0
    assert record.query_params["file_exists"] is False
    assert record.query_params["folder_exists"] is False
    assert _loaded(run) == [("access_review/2024Q3", [])]


def test_a_broken_review_file_stops_the_snapshot_naming_it(tmp_path: Path,
                                                           run: SnapshotRun) -> None:
    folder = tmp_path / "reviews" / "2024Q3"
    folder.mkdir(parents=True)
    write_csv(folder / "hr-it.csv", [_row("alice")], COLUMNS[:-1])
    with pytest.raises(ConfigError, match=r"hr-it\.csv: .*lacks column\(s\) comment"):
        access_review.snapshot(_source(tmp_path), run)
