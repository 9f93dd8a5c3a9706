"""The benchmark at the small size: it runs end to end and its results match the ground truth.

Times are only printed (benchmarks measure, tests do not time); `make bench` gives figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_URL

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_runs_and_checks_its_results(tmp_path: Path) -> None:
    # no CI: its runs sign with the bench home's own key, as tests.support.cli.soxtrail's
    env = {k: v for k, v in os.environ.items()
           if k not in ("SOXTRAIL_STORE", "SOXTRAIL_HOME", "CI")}
    env["SOXTRAIL_DATABASE_URL"] = ADMIN_URL  # the bench makes (and drops) its own database
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "small", "--workdir", str(tmp_path / "work"),
         "--results-dir", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [saved] = results.glob("*.json")
    result = json.loads(saved.read_text())["results"][0]
    assert result["problems"] == []
    phases = result["run"]["phases"]
    assert set(phases) == {"snapshot", "load", "reconcile", "render", "bundle"}
    assert phases["load"]["loaded"] > 0
    assert {"hash", "copy_hash", "load", "reconcile", "render"} <= set(result["limits"])
    assert [row["phase"] for row in result["table"]][-1] == "end to end"
    assert "| load |" in proc.stdout
    with __import__("psycopg").connect(ADMIN_URL) as conn:
        left = conn.execute("select count(*) from pg_database"
                            " where datname like 'soxtrail_bench_%'").fetchone()[0]
    assert left == 0, "the bench left its database behind"
