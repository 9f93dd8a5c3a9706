"""`python -m bench.run --engine spark`'s report: PostgreSQL and Spark side by side per phase,
Spark's scaling from local[1] to local[2], and the estimate for 100M and 1B audit-log lines,
computed from a synthetic result (no run, no database)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

# bench/ is no installed package (it runs from the checkout: python -m bench.run), and
# pytest's importlib mode does not put the checkout on sys.path
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import master_cores  # noqa: E402
from bench.report import spark_figures, spark_markdown, spark_status  # noqa: E402
from bench.run import spark_failures  # noqa: E402

LINES = 1_000_000  # audit-log lines of the synthetic workload


def _phases(**seconds: float) -> dict[str, dict[str, Any]]:
    return {phase: {"seconds": s} for phase, s in seconds.items()}


def _result() -> dict[str, Any]:
    """One size: its PostgreSQL run, Spark at local[2] and local[1], every run correct."""
    mb = 1_000_000
    pg = {"wall_seconds": 57.0,
          "phases": _phases(snapshot=2, load=40, reconcile=10, render=3, bundle=1),
          "peak_rss_soxtrail": {"snapshot": 100 * mb, "load": 200 * mb, "reconcile": 150 * mb,
                                "render": 120 * mb, "bundle": 90 * mb}}
    two = {"wall_seconds": 98.0,
           "phases": _phases(snapshot=3, load=50, reconcile=40, render=3, bundle=1),
           "peak_rss_soxtrail": {"snapshot": 110 * mb, "load": 250 * mb,
                                 "reconcile": 1500 * mb, "render": 130 * mb, "bundle": 95 * mb},
           "cpu_seconds": {"load": {"soxtrail": 5.0, "workers": 75.0, "postgres": 3.0},
                           "reconcile": {"soxtrail": 2.0, "workers": 70.0, "postgres": 4.0}}}
    one = {"wall_seconds": 133.0,
           "phases": _phases(snapshot=3, load=55, reconcile=70, render=3, bundle=1),
           "peak_rss_soxtrail": {"reconcile": 1200 * mb},
           "cpu_seconds": {"reconcile": {"soxtrail": 2.0, "workers": 66.0, "postgres": 2.0}}}
    return {
        "size": "synthetic", "workload": {"log_lines": LINES}, "run": pg, "problems": [],
        "engines": {"spark": {
            "masters": ["local[2]", "local[1]"], "pyspark": "4.0.0", "dbt_spark": "1.9.0",
            "load_workers": 3,
            "runs": {
                "local[2]": {"master": "local[2]", "cores": 2, "run": two, "problems": [],
                             "error": None},
                "local[1]": {"master": "local[1]", "cores": 1, "run": one, "problems": [],
                             "error": None},
            }}},
    }


def _with_figures(result: dict[str, Any]) -> dict[str, Any]:
    result["engines"]["spark"]["figures"] = spark_figures(result)
    return result


def test_the_phases_side_by_side_with_their_ratio() -> None:
    fig = spark_figures(_result())
    rows = {r["phase"]: r for r in fig["phases"]}
    assert list(rows) == ["snapshot", "load", "reconcile", "render", "bundle", "total"]
    assert rows["reconcile"]["postgres_seconds"] == 10.0
    assert rows["reconcile"]["spark_seconds"] == 40.0
    assert rows["reconcile"]["ratio"] == pytest.approx(4.0)
    assert rows["load"]["ratio"] == pytest.approx(1.25)
    assert rows["snapshot"]["ratio"] == pytest.approx(1.5)
    assert rows["total"]["ratio"] == pytest.approx(98 / 57)
    assert rows["reconcile"]["spark_peak_rss_mb"] == pytest.approx(1500)
    assert rows["total"]["spark_peak_rss_mb"] == pytest.approx(1500)
    assert rows["total"]["postgres_peak_rss_mb"] == pytest.approx(200)


def test_the_scaling_from_one_core_to_two() -> None:
    fig = spark_figures(_result())
    one, two = fig["scaling"]  # fewest cores first
    assert (one["master"], two["master"]) == ("local[1]", "local[2]")
    assert one["reconcile_lines_per_core_s"] == pytest.approx(LINES / 70)
    assert two["reconcile_lines_per_core_s"] == pytest.approx(LINES / (40 * 2))
    assert two["load_lines_per_s"] == pytest.approx(LINES / 50)
    assert (one["reconcile_speedup"], two["reconcile_speedup"]) == (1.0, pytest.approx(1.75))
    assert two["reconcile_efficiency"] == pytest.approx(0.875)
    assert two["load_speedup"] == pytest.approx(55 / 50)
    assert two["reconcile_cpus_busy"] == pytest.approx(76 / 40)
    assert one["status"] == two["status"] == "ok"


def test_the_estimate_from_the_lowest_per_core_rate() -> None:
    est = spark_figures(_result())["estimate"]
    assert est["rate_from"] == "local[2]"
    assert est["reconcile_lines_per_core_s"] == pytest.approx(12_500)
    assert est["speedup"] == pytest.approx(1.75)
    # t = F + W / cores through (1 core, 70 s) and (2 cores, 40 s)
    assert est["parallel_core_seconds"] == pytest.approx(60)
    assert est["serial_seconds"] == pytest.approx(10)
    small, large = est["targets"]
    assert small["lines"] == 100_000_000
    assert small["reconcile_core_seconds"] == pytest.approx(8_000)
    assert small["reconcile_cores"] == 9  # 8,000 core-seconds / 900 s = 8.9
    assert small["executors"] == 3  # of 4 cores
    assert (large["reconcile_cores"], large["executors"]) == (89, 23)
    # the load apart: 20,000 lines/s measured, 12,500 lines per CPU-second
    assert small["load_seconds_at_measured_rate"] == pytest.approx(5_000)
    assert small["load_times_measured"] == pytest.approx(100_000_000 / 900 / 20_000)
    assert (small["load_cores"], large["load_cores"]) == (9, 89)


def test_the_markdown_tables() -> None:
    text = spark_markdown(_with_figures(_result()))
    assert "| phase | PostgreSQL s | Spark local[2] s | Spark / PostgreSQL |" in text
    assert "| reconcile | 10.0 | 40.0 | 4.00 | 150 | 1,500 |" in text
    assert "| total | 57.0 | 98.0 | 1.72 | 200 | 1,500 |" in text
    assert "| local[1] | 1 | ok | 55.0 | 70.0 | 14,286 | 18,182 | 1.00 | 1.00 | 1.00 |" in text
    assert "| local[2] | 2 | ok | 50.0 | 40.0 | 12,500 | 20,000 | 1.90 | 1.75 | 1.10 |" in text
    assert "| 100,000,000 | 8,000 | 9 | 3 | 1.4 h | 111,111 lines/s (5.6x) | 9 |" in text
    assert "| 1,000,000,000 | 80,000 | 89 | 23 | 13.9 h |" in text
    assert "linearly" in text and "1.75x (88% of linear)" in text
    assert "F = 10.0 s" in text


def test_a_spark_run_that_failed_at_reconcile() -> None:
    result = _result()
    runs = result["engines"]["spark"]["runs"]
    runs["local[2]"] = {"master": "local[2]", "cores": 2, "problems": [], "error": "exit 3",
                        "phases_logged": {"snapshot": {"seconds": 5.4},
                                          "load": {"seconds": 5.7, "loaded": 15_148},
                                          "failed": {"phase": "reconcile", "error": "dbt"}}}
    runs["local[1]"] = {"master": "local[1]", "cores": 1, "problems": [], "error": None,
                        "skipped": "the local[2] run failed"}
    fig = spark_figures(result)
    rows = {r["phase"]: r for r in fig["phases"]}
    assert rows["load"]["spark_seconds"] == pytest.approx(5.7)
    assert rows["snapshot"]["ratio"] == pytest.approx(5.4 / 2)
    assert rows["reconcile"]["spark_seconds"] is None and rows["total"]["ratio"] is None
    assert fig["estimate"] is None
    assert [r["status"] for r in fig["scaling"]] == ["skipped", "failed at reconcile"]
    # no speed-up against itself when the one-core run has no figures
    assert [r["load_speedup"] for r in fig["scaling"]] == [None, None]
    result["engines"]["spark"]["figures"] = fig
    text = spark_markdown(result)
    assert "| reconcile | 10.0 | - | - |" in text
    assert "No Spark run finished its reconcile" in text
    assert spark_failures(result) == ["Spark local[2]: failed at reconcile",
                                      "Spark local[1]: skipped"]


def test_wrong_spark_results_fail_the_bench() -> None:
    result = copy.deepcopy(_result())
    result["engines"]["spark"]["runs"]["local[1]"]["problems"] = ["AC-01: 1 wrong items"]
    assert spark_status(result["engines"]["spark"]["runs"]["local[1]"]) == "WRONG"
    assert spark_failures(result) == ["Spark local[1]: WRONG"]
    assert spark_failures(_result()) == []
    assert spark_failures({"size": "postgres only"}) == []


@pytest.mark.parametrize(("master", "cores"), [
    ("local", 1), ("local[1]", 1), ("local[2]", 2), ("local[4,2]", 4),
    ("spark://host:7077", None)])
def test_the_cores_of_a_master(master: str, cores: int | None) -> None:
    assert master_cores(master) == cores
