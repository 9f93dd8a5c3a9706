"""`soxtrail db status|stop` and the end-of-run line, against a real embedded PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from soxtrail import pipeline
from soxtrail.cli.db import still_running_note
from soxtrail.cli.main import app
from soxtrail.cli.run import print_result
from soxtrail.kernel import runs
from soxtrail.kernel.database import resolve_database
from tests.support.cli import stop_embedded
from tests.support.debian import postgres_scratch

pytestmark = pytest.mark.integration  # the embedded server, not the suite's

runner = CliRunner()


@pytest.fixture()
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SOXTRAIL_HOME outside pytest's 0700 tmp folder (the server runs as its own user)."""
    with postgres_scratch("dbcli") as folder:
        monkeypatch.setenv("SOXTRAIL_HOME", str(folder))
        monkeypatch.delenv("SOXTRAIL_DATABASE_URL", raising=False)
        try:
            yield folder
        finally:
            stop_embedded(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _outcome() -> pipeline.Outcome:
    now = datetime.now(UTC)
    run = runs.Run(id="0" * 32, quarter="2024Q3", clusters=None, config={}, config_hash="",
                   tool_version="", git_commit=None, triggered_by="test", started_at=now,
                   finished_at=now, status="completed", phase_reached="bundle", error=None,
                   summary={})
    return pipeline.Outcome(run=run, controls=[], report=None, bundle=None, phases={})


def test_status_and_stop_when_nothing_runs(home: Path) -> None:
    status = runner.invoke(app, ["db", "status"])
    assert status.exit_code == 0
    assert f"embedded PostgreSQL: not running (data {home / 'pg'})" in status.stdout
    stop = runner.invoke(app, ["db", "stop"])
    assert stop.exit_code == 0 and "not running" in stop.stdout
    assert still_running_note() is None


def test_status_says_where_the_embedded_server_runs_and_stop_stops_it(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = resolve_database()
    assert db.embedded

    status = runner.invoke(app, ["db", "status", "--json"])
    assert status.exit_code == 0, status.output
    state = json.loads(status.stdout)
    assert state["running"] is True and state["pgdata"] == str(home / "pg")
    pid = state["pid"]
    assert _alive(pid)
    with psycopg.connect(state["dsn"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    text = runner.invoke(app, ["db", "status"]).stdout
    assert f"running, pid {pid}, data {home / 'pg'}" in text and "soxtrail db stop" in text

    note = still_running_note()
    assert note is not None and f"pid {pid}" in note and "`soxtrail db stop`" in note
    # the run's closing lines end with it, on stderr; never in --json output
    print_result(_outcome(), as_json=False)
    captured = capsys.readouterr()
    assert note in captured.err and "soxtrail db stop" not in captured.out
    print_result(_outcome(), as_json=True)
    captured = capsys.readouterr()
    assert "still running" not in captured.out + captured.err
    assert json.loads(captured.out)["run_id"] == "0" * 32
    monkeypatch.setenv("SOXTRAIL_DATABASE_URL", "postgresql://u:pw@db.example/x")
    assert still_running_note() is None  # that run did not use the embedded server
    assert "runs use SOXTRAIL_DATABASE_URL" in runner.invoke(app, ["db", "status"]).stdout
    monkeypatch.delenv("SOXTRAIL_DATABASE_URL")

    stop = runner.invoke(app, ["db", "stop"])
    assert stop.exit_code == 0, stop.output
    assert f"embedded PostgreSQL: stopped (pid {pid}" in stop.stdout
    assert not _alive(pid)
    assert "not running" in runner.invoke(app, ["db", "status"]).stdout
    assert resolve_database().embedded  # the next run starts it again

