"""Two runs of the same quarter at once: the second refuses (exit 3), or waits with --wait."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from soxtrail.kernel.database import Database
from tests.reliability.checks import count
from tests.reliability.conftest import QUARTER, SCOPE
from tests.support.cli import soxtrail
from tests.support.faults import FAULTY_CLI, start_cli, wait_for


def test_a_second_run_of_the_quarter_refuses_and_a_waiting_one_runs_after(
        rel_db: Database, rel_demo: Path, tmp_path: Path) -> None:
    config = str(rel_demo / "soxtrail.yml")
    marker = Path(tempfile.mkdtemp(prefix="soxtrail-lock-")) / "paused"
    args = ("run", "--quarter", QUARTER, "--config", config, "--clusters", SCOPE, "--quiet")
    first = start_cli(*args, home=tmp_path / "first", database_url=rel_db.dsn,
                      env={"SOXTRAIL_TEST_PAUSE_AT": f"snapshot:start={marker}"},
                      launcher=FAULTY_CLI)
    waiting = None
    try:
        wait_for(marker.exists, 60, "the first run holding the lock")
        first_run = next((tmp_path / "first" / "runs").iterdir()).name
        runs_before = count(rel_db, "select count(*) from soxtrail.sox_runs")

        second = soxtrail(*args, home=tmp_path / "second", database_url=rel_db.dsn)
        assert second.code == 3, second.stderr
        assert f"another soxtrail run of {QUARTER} is in progress" in second.stderr
        assert "--wait" in second.stderr
        assert "Traceback" not in second.stderr
        resumed = soxtrail("resume", first_run, home=tmp_path / "first", database_url=rel_db.dsn)
        assert resumed.code == 3 and "in progress" in resumed.stderr
        assert count(rel_db, "select count(*) from soxtrail.sox_runs") == runs_before

        waiting = start_cli(*args, "--wait", home=tmp_path / "third", database_url=rel_db.dsn,
                            env={"SOXTRAIL_TEST_KILL_AT": "snapshot:start"},
                            launcher=FAULTY_CLI)
        time.sleep(3)
        assert waiting.poll() is None, waiting.communicate()
        assert count(rel_db, "select count(*) from soxtrail.sox_runs") == runs_before

        os.kill(first.pid, signal.SIGKILL)  # the server drops its session and the lock
        first.wait(30)
        waiting.wait(60)
        # the waiting run got the lock, created its run and reached the snapshot
        assert waiting.returncode == -signal.SIGKILL, waiting.communicate()
        assert count(rel_db, "select count(*) from soxtrail.sox_runs") == runs_before + 1
        assert any((tmp_path / "third" / "runs").iterdir())
    finally:
        for process in (first, waiting):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
        marker.unlink(missing_ok=True)
