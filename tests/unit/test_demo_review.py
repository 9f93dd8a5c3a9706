"""The demo's user access review: returned files the access review connector reads cleanly,
with the planted errors in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from extract import demo
from extract.connectors.access_review import review_files, review_rows
from extract.demo.plan_review import FORMULA_COMMENT
from soxtrail.kernel.quarter import Quarter

Q3 = Quarter.parse("2024Q3")


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "estate"
    demo.generate(out, Q3)
    return out


@pytest.fixture(scope="module")
def ac03(estate: Path) -> dict[str, list[str]]:
    expected = json.loads((estate / "expected.json").read_text())
    return {"|".join(i["key"]): i["reasons"] for i in expected["controls"]["AC-03"]}


def test_the_config_names_the_review_folder_and_its_deadline(estate: Path) -> None:
    config = yaml.safe_load((estate / "soxtrail.yml").read_text())
    assert config["access_review"] == "reviews/{quarter}"
    assert config["policy"]["access_review_deadline"] == "2024-09-25"


def test_one_file_per_owner_one_workbook_every_row_accepted(estate: Path,
                                                           ac03: dict[str, list[str]]) -> None:
    files = review_files(estate / "reviews" / "2024Q3")
    assert [f.name for f in files] == [f"access-review_2024Q3_{owner}" for owner in (
        "commerce-it.csv", "data-eng.csv", "finance-it.xlsx", "hr-it.csv", "payments-it.csv",
        "platform-dba.csv")]
    keys: list[str] = []
    for path in files:
        rows, problems = review_rows(path)
        assert problems == [], path.name
        assert {r["role_owner"] for r in rows} == {path.stem.removeprefix("access-review_2024Q3_")}
        keys += [str(r["item_key"]) for r in rows]
        for row in rows:
            if row["decision"]:  # decided in the quarter's last month
                assert str(row["reviewed_at"]).startswith("2024-09-")
    assert len(keys) == len(set(keys))
    # every item but those of the unknown roles (no owner) is in a file
    assert sorted(set(ac03) - set(keys)) == sorted(
        k for k, reasons in ac03.items() if "UNKNOWN_ROLE" in reasons)


def test_a_formula_looking_comment_is_neutralised_in_the_csv_and_read_back(
        estate: Path) -> None:
    path = estate / "reviews" / "2024Q3" / "access-review_2024Q3_payments-it.csv"
    assert "'" + FORMULA_COMMENT in path.read_text(encoding="utf-8")
    rows, _ = review_rows(path)
    assert FORMULA_COMMENT in [r["comment"] for r in rows]


def test_the_planted_review_errors(ac03: dict[str, list[str]]) -> None:
    assert ac03["pg-fin-01|svc_etl|etl_writer"] == ["REVIEW_MISSING"]  # left undecided
    assert ac03["pg-fin-01|kemal_adm|fin_admin"] == ["REVIEWER_IS_HOLDER"]
    assert ac03["pg-fin-01|sven|dba"] == ["REVIEWER_IS_HOLDER"]
    # removal decided 2024-09-03, still listed by the catalog of 2024-09-30 23:30
    assert ac03["pg-pay-01|xenia|pay_rw"] == ["REMOVE_NOT_ACTIONED"]
    # decided 2024-09-25: due 2024-10-02, after the catalog taken at quarter end ...
    assert ac03["pg-fin-01|alice|fin_rw"] == []
    # ... but not after pg-hr-02's, exported four weeks late
    assert ac03["pg-hr-02|wei|hr_ro"] == ["REMOVE_NOT_ACTIONED"]
    # commerce-it returned its file on 2024-09-28, after the deadline
    assert ac03["pg-ord-01|zoe|ord_admin"] == ["REVIEW_LATE"]
    assert ac03["pg-pay-01|pia|pay_admin"] == []

