"""SIGKILL in the middle of every phase; `soxtrail resume` finishes with the uninterrupted results.

One run is killed five times, once inside each phase (SOXTRAIL_TEST_KILL_AT, read by the
test launcher tests/support/faulty_cli.py), and resumed after each kill. What the database
holds after each kill is recorded, then the finished run is compared with the baseline run.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from extract.loader import LOAD_AHEAD
from soxtrail.kernel.controls import EVIDENCED_MARTS
from soxtrail.kernel.database import Database
from tests.reliability.checks import (
    count,
    integrity_problems,
    load_totals,
    only_run_id,
    run_row,
    stable_results,
)
from tests.reliability.conftest import QUARTER, SCOPE
from tests.support.cli import soxtrail
from tests.support.faults import FAULTY_CLI, processes_with_env, wait_for

# (phase, point): a point inside the phase, after some of its work is committed or stored
KILLS = [
    ("snapshot", "put40"),      # 40 raw objects in the store, no evidence row committed
    ("load", "object200"),      # 200 of ~520 objects loaded and committed
    ("reconcile", "control2"),  # dbt built the marts, 2 of 5 control evidence rows written
    ("render", "rendered"),     # the report rendered in the work folder, phase not recorded
    ("bundle", "put3"),         # 3 bundle files uploaded
]


def _state(db: Database, run_id: str) -> dict[str, Any]:
    return {
        "phase_reached": run_row(db, run_id)["phase_reached"],
        "snapshot_evidence": count(db, "select count(*) from soxtrail.sox_evidence where"
                                   " run_id = %s and source_system <> 'reconcile'", run_id),
        "control_evidence": count(db, "select count(*) from soxtrail.sox_evidence where"
                                  " run_id = %s and source_system = 'reconcile'", run_id),
        "objects_loaded": count(db, "select count(*) from soxtrail.sox_load_stats"
                                " where run_id = %s", run_id),
        "problems": integrity_problems(db, run_id, loaded=False),
    }


@pytest.fixture(scope="module")
def killed_run(rel_db: Database, rel_demo: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home-killed")
    states: dict[str, dict[str, Any]] = {}
    run_id = ""
    for number, (phase, point) in enumerate(KILLS):
        env = {"SOXTRAIL_TEST_KILL_AT": f"{phase}:{point}", "SOXTRAIL_LOAD_WORKERS": "2"}
        if number == 0:
            result = soxtrail("run", "--quarter", QUARTER, "--config",
                              str(rel_demo / "soxtrail.yml"), "--clusters", SCOPE, "--quiet",
                              home=home, database_url=rel_db.dsn, env=env, launcher=FAULTY_CLI)
            run_id = only_run_id(home)
        else:
            result = soxtrail("resume", run_id, "--quiet", home=home, database_url=rel_db.dsn,
                              env=env, launcher=FAULTY_CLI)
        assert result.code == -signal.SIGKILL, (phase, result.code, result.stderr[-2000:])
        # nothing of the killed process lives on (e.g. the loader's worker processes)
        wait_for(lambda: not processes_with_env("SOXTRAIL_HOME", str(home)), 10,
                 "every process of the killed run to exit")
        states[phase] = _state(rel_db, run_id)
    final = soxtrail("resume", run_id, "--json", "--quiet", home=home, database_url=rel_db.dsn)
    assert final.code == 0, final.stderr
    return {"run_id": run_id, "home": home, "states": states, "final": final.json()}


def test_a_kill_during_snapshot_leaves_no_evidence_row(killed_run: dict[str, Any]) -> None:
    state = killed_run["states"]["snapshot"]
    assert state["phase_reached"] is None
    assert state["snapshot_evidence"] == 0  # objects were stored, but no row points to any
    stored = list((killed_run["home"] / "store" / QUARTER / killed_run["run_id"]).rglob("*"))
    assert any(p.is_file() for p in stored), "the kill came before any object was stored"


def test_a_kill_during_load_keeps_whole_objects_only(killed_run: dict[str, Any]) -> None:
    state = killed_run["states"]["load"]
    assert state["phase_reached"] == "snapshot"
    # killed as the 200th object was reported: the two load workers commit objects on their
    # own connections, and those already handed to them may have committed too
    assert 200 <= state["objects_loaded"] <= 200 + 2 * LOAD_AHEAD
    assert 200 < state["snapshot_evidence"]
    assert state["problems"] == []  # raw rows per object = its load stats, no half object


def test_a_kill_during_reconcile_keeps_the_control_rows_written(
        killed_run: dict[str, Any]) -> None:
    state = killed_run["states"]["reconcile"]
    assert state["phase_reached"] == "load"
    assert state["control_evidence"] == 2
    assert state["problems"] == []


@pytest.mark.parametrize("phase,before", [("render", "reconcile"), ("bundle", "render")])
def test_a_kill_during_render_or_bundle_leaves_the_phase_to_redo(
        killed_run: dict[str, Any], phase: str, before: str) -> None:
    state = killed_run["states"][phase]
    assert state["phase_reached"] == before
    assert state["control_evidence"] == len(EVIDENCED_MARTS)  # the controls and the summary
    assert state["problems"] == []


def test_resume_completes_the_killed_run(killed_run: dict[str, Any], rel_db: Database) -> None:
    row = run_row(rel_db, killed_run["run_id"])
    assert (row["status"], row["phase_reached"]) == ("completed", "bundle")
    assert killed_run["final"]["status"] == "completed"
    assert Path(killed_run["final"]["report"]).is_file()


def test_the_killed_run_has_the_uninterrupted_results(
        killed_run: dict[str, Any], baseline: dict[str, Any], rel_db: Database) -> None:
    assert killed_run["final"]["controls"] == baseline["controls"]
    assert stable_results(rel_db, killed_run["run_id"]) == \
        stable_results(rel_db, baseline["run_id"])
    assert load_totals(rel_db, killed_run["run_id"]) == load_totals(rel_db, baseline["run_id"])


def test_the_killed_run_has_nothing_twice_and_no_orphans(
        killed_run: dict[str, Any], baseline: dict[str, Any], rel_db: Database) -> None:
    assert integrity_problems(rel_db, killed_run["run_id"]) == []
    per_run = "select count(*) from soxtrail.sox_evidence where run_id = %s"
    assert count(rel_db, per_run, killed_run["run_id"]) == count(rel_db, per_run,
                                                                 baseline["run_id"])
    rejects = "select count(*) from soxtrail.sox_rejects where run_id = %s"
    assert count(rel_db, rejects, killed_run["run_id"]) == count(rel_db, rejects,
                                                                 baseline["run_id"])


def test_the_killed_run_verifies(killed_run: dict[str, Any], rel_db: Database) -> None:
    result = soxtrail("verify", killed_run["run_id"], home=killed_run["home"],
                      database_url=rel_db.dsn)
    assert result.code == 0, result.stdout[-3000:] + result.stderr
