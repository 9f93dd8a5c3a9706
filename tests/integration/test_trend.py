"""`soxtrail trend`: quarter over quarter, per control, checked against the control marts
themselves (an independent computation of new / recurring / resolved by recurrence key)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from soxtrail.audit.trend import quarter_range
from soxtrail.kernel import controls, runs
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import ConfigError, PipelineError
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = pytest.mark.integration


@dataclass
class TwoQuarters:
    run: DemoRun
    q2_run_id: str


@pytest.fixture(scope="module")
def two_quarters(demo_run: DemoRun) -> Iterator[TwoQuarters]:
    """The shared 2024Q3 demo run and a 2024Q2 demo run in the same database (the demo's
    people, roles and planted cases are the same in every quarter, so exceptions recur)."""
    result = soxtrail("run", "--quarter", "2024Q2", "--json", "--quiet",
                      home=demo_run.home, database_url=demo_run.db.dsn)
    assert result.code == 0, result.stderr
    yield TwoQuarters(demo_run, str(result.json()["run_id"]))


def _trend(two: TwoQuarters, *args: str) -> Any:
    result = soxtrail("trend", "--quarters", "2024Q1..2024Q3", *args, home=two.run.home,
                      database_url=two.run.db.dsn)
    assert result.code == 0, result.stderr
    return result


def _exception_keys(two: TwoQuarters, run_id: str) -> dict[str, set[str]]:
    """Each control's exceptions' recurrence keys, straight from its mart: the recur_by
    columns joined with '|', an empty text for null (the register's rule, recomputed)."""
    keys: dict[str, set[str]] = {}
    with two.run.db.connect() as conn:
        for control in controls.registry():
            if control.kind != "control":
                continue
            columns = ", ".join(f"{c}::text" for c in control.recur_by)
            rows = conn.execute(f"select {columns} from marts.{control.model}"
                                " where run_id = %s and result = 'EXCEPTION'",
                                (run_id,)).fetchall()
            keys[control.id] = {"|".join(v or "" for v in row) for row in rows}
    return keys


def _population(two: TwoQuarters, run_id: str) -> dict[str, tuple[int, int]]:
    counts = {}
    with two.run.db.connect() as conn:
        for control in controls.registry():
            if control.kind == "control":
                counts[control.id] = conn.execute(
                    f"select count(*), count(*) filter (where result = 'EXCEPTION')"
                    f" from marts.{control.model} where run_id = %s", (run_id,)).fetchone()
    return counts


def test_each_quarter_counts_what_its_run_s_marts_hold(two_quarters: TwoQuarters) -> None:
    doc = _trend(two_quarters, "--json").json()
    assert doc["quarters"] == ["2024Q1", "2024Q2", "2024Q3"]
    assert doc["runs"]["2024Q1"] is None  # no run: shown, never invented
    assert doc["runs"]["2024Q2"] == {"run_id": two_quarters.q2_run_id, "signoff": "draft"}
    assert doc["runs"]["2024Q3"]["run_id"] == two_quarters.run.run_id
    by_run = {"2024Q2": two_quarters.q2_run_id, "2024Q3": two_quarters.run.run_id}
    for quarter, run_id in by_run.items():
        counts = _population(two_quarters, run_id)
        for control in doc["controls"]:
            row = control["quarters"][quarter]
            assert (row["population"], row["exceptions"]) == counts[control["control_id"]]
    assert all(c["quarters"]["2024Q1"] is None for c in doc["controls"])


def test_new_recurring_and_resolved_follow_the_recurrence_keys(two_quarters: TwoQuarters) -> None:
    doc = _trend(two_quarters, "--json").json()
    q2 = _exception_keys(two_quarters, two_quarters.q2_run_id)
    q3 = _exception_keys(two_quarters, two_quarters.run.run_id)
    recurring_somewhere = 0
    for control in doc["controls"]:
        cid = control["control_id"]
        first, second = control["quarters"]["2024Q2"], control["quarters"]["2024Q3"]
        # 2024Q1 has no run: every 2024Q2 exception identity is new, none recurs
        assert (first["new"], first["recurring"], first["resolved"]) == (len(q2[cid]), 0, 0)
        assert first["exception_identities"] == len(q2[cid])
        assert second["new"] == len(q3[cid] - q2[cid])
        assert second["recurring"] == len(q3[cid] & q2[cid])
        assert second["resolved"] == len(q2[cid] - q3[cid])
        assert control["recurring_exceptions"] == [
            {"recur_key": k, "quarters_in_a_row": 2} for k in sorted(q3[cid] & q2[cid])]
        recurring_somewhere += second["recurring"]
    assert recurring_somewhere > 0, "the demo's planted cases recur from quarter to quarter"


def test_the_register_and_the_trend_share_one_recurrence_key(two_quarters: TwoQuarters) -> None:
    with two_quarters.run.db.connect() as conn:
        rows = conn.execute("select control_id, recur_key from marts.fct_exceptions_register"
                            " where run_id = %s and recurrence <> 'resolved'",
                            (two_quarters.run.run_id,)).fetchall()
    register: dict[str, set[str]] = {}
    for control_id, key in rows:
        register.setdefault(control_id, set()).add(key)
    marts = _exception_keys(two_quarters, two_quarters.run.run_id)
    assert {c: k for c, k in marts.items() if k} == register


def test_a_reviewer_sign_off_makes_a_quarter_s_run_official(two_quarters: TwoQuarters) -> None:
    # the demo estate's reviewer (signers.yml and keys/ of the 2024Q2 demo the run read)
    estate = two_quarters.run.home / "demo" / "2024Q2"
    signed = soxtrail("signoff", two_quarters.q2_run_id, "--as", "rita.reviewer", "--role",
                      "reviewer", "--key", str(estate / "keys" / "rita.reviewer.pem"),
                      home=two_quarters.run.home, database_url=two_quarters.run.db.dsn)
    assert signed.code == 0, signed.stderr
    doc = _trend(two_quarters, "--json").json()
    assert doc["runs"]["2024Q2"] == {"run_id": two_quarters.q2_run_id, "signoff": "official"}
    assert doc["runs"]["2024Q3"]["signoff"] == "draft"


def test_the_workbook_has_the_figures_and_a_chart_per_control(two_quarters: TwoQuarters,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "trend.xlsx"
    result = _trend(two_quarters, "--xlsx", str(path))
    assert "AC-03" in result.stdout and str(path) in result.stdout
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Trend", "Recurring", "Charts"]
    figures = list(book["Trend"].iter_rows(values_only=True))
    control_ids = [c.id for c in controls.registry() if c.kind == "control"]
    assert len(figures) == 1 + 3 * len(control_ids)
    header = figures[0]
    q3 = [dict(zip(header, r, strict=True)) for r in figures[1:] if r[1] == "2024Q3"]
    counts = _population(two_quarters, two_quarters.run.run_id)
    assert {r["control_id"]: (r["population"], r["exceptions"]) for r in q3} == counts
    with zipfile.ZipFile(path) as archive:
        charts = [n for n in archive.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == len(control_ids)


@pytest.mark.parametrize("text", ["2024Q3", "2024Q3..2024Q1", "2024Q5..2025Q1", ""])
def test_a_bad_quarter_range_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--quarters"):
        quarter_range(text)


def test_a_quarter_range_crosses_years() -> None:
    assert quarter_range("2023Q4..2024Q2") == ["2023Q4", "2024Q1", "2024Q2"]


def test_latest_names_the_newest_completed_quarter_run(two_quarters: TwoQuarters,
                                                       pg_database: Database) -> None:
    with two_quarters.run.db.connect() as conn:
        assert runs.get_run(conn, "latest").id == two_quarters.q2_run_id  # made after 2024Q3
        assert runs.get_run(conn, " LATEST ").id == two_quarters.q2_run_id
    with pg_database.connect() as conn, pytest.raises(PipelineError, match="latest"):
        runs.get_run(conn, "latest")  # an empty database: no run to name
