"""The tester's workbook of a sample (render/sample_workbook.py), from a document alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import openpyxl

from render.sample_workbook import TESTER_COLUMNS, write_sample_workbook
from soxtrail.kernel import samples, sampling

POPULATION = [("k1", "PASS"), ("k2", "EXCEPTION"), ("=cmd|' /c calc'!A1", "PASS"), ("k4", "PASS")]
COLUMNS = {"item_key": "text", "result": "text", "population": "int4",
           "granted_at": "timestamptz", "is_ok": "bool"}


def _doc() -> dict[str, object]:
    drawn = sampling.draw(POPULATION, seed=3, size=10, stratify="result")  # all 4
    return samples.document(
        sample_id="00000000-0000-0000-0000-000000000001", run_id="r" * 8, quarter="2024Q3",
        control_id="AC-01", model="fct_x", sample=drawn, requested_by="tess",
        requested_at=datetime(2024, 10, 2, 9, 0, tzinfo=UTC), signer_key=None,
        run_key_fingerprint=None, previous=samples.GENESIS)


def _rows() -> dict[str, list[object]]:
    when = datetime(2024, 8, 1, 12, 0, tzinfo=UTC)
    return {key: [key, result, 7, when, True] for key, result in POPULATION}


def test_the_same_sample_gives_the_same_bytes(tmp_path: Path) -> None:
    first = write_sample_workbook(tmp_path / "a.xlsx", _doc(), COLUMNS, _rows())
    second = write_sample_workbook(tmp_path / "b.xlsx", _doc(), COLUMNS, _rows())
    assert first.read_bytes() == second.read_bytes()


def test_rows_in_rank_order_text_never_a_formula(tmp_path: Path) -> None:
    doc = _doc()
    path = write_sample_workbook(tmp_path / "s.xlsx", doc, COLUMNS, _rows())
    sheet = openpyxl.load_workbook(path)["Sample"]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == ["sample_rank", "rank_hash", "stratum", *COLUMNS, *TESTER_COLUMNS]
    items = doc["items"]
    assert isinstance(items, list)
    assert [r[3] for r in rows[1:]] == [i["item_key"] for i in items]
    assert [r[2] for r in rows[1:]] == [i["stratum"] for i in items]
    formula = next(r for r in rows[1:] if str(r[3]).startswith("="))
    assert sheet.cell(row=rows.index(formula) + 1, column=4).data_type == "s"
    assert rows[1][5:8] == (7, "2024-08-01 12:00:00", "Yes")
