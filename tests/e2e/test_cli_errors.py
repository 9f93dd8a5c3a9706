"""Usage and configuration errors: exit 2, one clear line, no half-created run."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from soxtrail.kernel.database import Database
from tests.support.cli import soxtrail

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _running(db: Database) -> int:
    with psycopg.connect(db.dsn) as conn:
        return conn.execute("select count(*) from soxtrail.sox_runs").fetchone()[0]


def test_a_bad_quarter_exits_2_naming_the_form(tmp_path: Path, pg_database: Database) -> None:
    before = _running(pg_database)
    result = soxtrail("run", "--quarter", "2024Q5", home=tmp_path, database_url=pg_database.dsn)
    assert result.code == 2
    assert "2024Q5" in result.stderr and "YYYYQn" in result.stderr
    assert "Traceback" not in result.stderr
    assert _running(pg_database) == before


def test_an_unknown_config_key_exits_2_naming_key_and_file(tmp_path: Path,
                                                           pg_database: Database) -> None:
    config = tmp_path / "soxtrail.yml"
    config.write_text("sources: []\nstorage: s3://x\n")
    before = _running(pg_database)
    result = soxtrail("run", "--quarter", "2024Q3", "--config", str(config), home=tmp_path,
                      database_url=pg_database.dsn)
    assert result.code == 2
    assert "storage" in result.stderr and str(config) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _running(pg_database) == before


def test_an_unreachable_database_exits_2_without_the_password(tmp_path: Path) -> None:
    config = tmp_path / "soxtrail.yml"
    config.write_text("sources: []\n")
    result = soxtrail("run", "--quarter", "2024Q3", "--config", str(config), home=tmp_path,
                      database_url="postgresql://sox:hunter2secret@127.0.0.1:1/nowhere")
    assert result.code == 2
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_makefile_refuses_a_bad_quarter(tmp_path: Path) -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["make", "-s", "-C", str(repo), "quarter", "Q=2024Q5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "expected YYYYQn" in proc.stderr
