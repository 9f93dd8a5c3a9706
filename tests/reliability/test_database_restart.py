"""PostgreSQL restarted in the middle of load: the phase fails cleanly, `soxtrail load` finishes it.

A throwaway PG15 cluster (tests/support/debian.py) so the restart hurts nobody else; the
run pauses after 50 objects (SOXTRAIL_TEST_PAUSE_AT, tests/support/faulty_cli.py) while the
server restarts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soxtrail.kernel.database import Database
from tests.reliability.checks import count, integrity_problems, load_totals, run_row
from tests.reliability.conftest import QUARTER, SCOPE
from tests.support.cli import soxtrail
from tests.support.debian import PG_BIN, Cluster, postgres_scratch
from tests.support.faults import FAULTY_CLI, start_cli, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    with postgres_scratch("pgrestart") as root:
        server = Cluster(root).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def restarted(cluster: Cluster, rel_demo: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home-restart")
    marker = Path(tempfile.mkdtemp(prefix="soxtrail-restart-")) / "paused"
    process = start_cli("run", "--quarter", QUARTER, "--config", str(rel_demo / "soxtrail.yml"),
                        "--clusters", SCOPE, "--quiet", home=home, database_url=cluster.dsn(),
                        env={"SOXTRAIL_TEST_PAUSE_AT": f"load:object50={marker}"},
                        launcher=FAULTY_CLI)
    try:
        wait_for(marker.exists, 90, "the load pausing after 50 objects")
        cluster.run([str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), "-l",
                     str(cluster.root / "server.log"), "-m", "fast", "-w", "restart"])
        marker.unlink()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    run_id = next((home / "runs").iterdir()).name
    db = Database(dsn=cluster.dsn(), embedded=False)
    observed = {"code": process.returncode, "stderr": stderr, "run_id": run_id,
                "row": run_row(db, run_id), "home": home, "db": db,
                "loaded_before": count(db, "select count(*) from soxtrail.sox_load_stats"
                                       " where run_id = %s", run_id),
                "problems_before": integrity_problems(db, run_id, loaded=False)}
    observed["finish"] = soxtrail("load", "--run", run_id, "--quiet", home=home,
                                  database_url=cluster.dsn())
    return observed


def test_the_load_fails_cleanly_when_the_server_restarts(restarted: dict[str, Any]) -> None:
    assert restarted["code"] == 3, restarted["stderr"]
    assert "load: database error" in restarted["stderr"]
    assert f"soxtrail resume {restarted['run_id']}" in restarted["stderr"]
    assert "Traceback" not in restarted["stderr"]
    assert restarted["row"]["status"] == "failed"
    assert restarted["row"]["phase_reached"] == "snapshot"


def test_what_was_loaded_before_the_restart_is_whole(restarted: dict[str, Any]) -> None:
    assert restarted["loaded_before"] >= 50
    assert restarted["problems_before"] == []


def test_the_load_phase_finishes_after_the_restart(restarted: dict[str, Any],
                                                    baseline: dict[str, Any],
                                                    rel_db: Database) -> None:
    assert restarted["finish"].code == 0, restarted["finish"].stderr
    db = restarted["db"]
    assert run_row(db, restarted["run_id"])["phase_reached"] == "load"
    assert integrity_problems(db, restarted["run_id"]) == []
    assert load_totals(db, restarted["run_id"]) == load_totals(rel_db, baseline["run_id"])
