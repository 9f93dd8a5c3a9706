"""catalog_file: role_catalog / applications / identity_map CSVs captured with their git commit."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from extract.connectors import catalog_file
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore

IDENTITY_MAP = ("login_role,identity,identity_type\n"
                "svc_etl,etl-team,service\nalice_adm,alice,person\n")
ROLE_CATALOG = ("cluster_pattern,role_name,is_privileged,description,owner,allowed_holders\n"
                "pg-fin-*,fin_admin,true,\"Finance admin, full DDL\",dba,dba-team\n")


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def source(tmp_path: Path, catalog: str, path: str) -> Source:
    return Source(name=f"catalog:{catalog}", system="role_catalog", connector="catalog_file",
                  values={"path": path, "catalog": catalog}, base_dir=tmp_path)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@example.invalid", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_catalog_in_git_is_captured_with_its_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "identity_map.csv").write_text(IDENTITY_MAP)
    git(repo, "add", "identity_map.csv")
    git(repo, "commit", "-q", "-m", "identity map")
    commit = git(repo, "rev-parse", "HEAD")
    run = make_run(tmp_path)
    catalog_file.snapshot(source(tmp_path, "identity_map", "repo/identity_map.csv"), run)
    (record,) = run.records
    assert record.query_params["catalog"] == "identity_map"
    assert record.query_params["git_commit"] == commit
    assert record.query_params["git_modified"] is False
    assert record.query_params["raw_table"] == "raw.identity_map"
    assert record.result_row_count == 2
    stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
    assert stored.read_text() == IDENTITY_MAP
    assert list(catalog_file.load(record.query_params, stored)) == [
        RawRow("identity_map.csv:2", ("svc_etl", "etl-team", "service", None)),
        RawRow("identity_map.csv:3", ("alice_adm", "alice", "person", None)),
    ]


def test_catalog_outside_git_has_no_commit(tmp_path: Path) -> None:
    (tmp_path / "roles.csv").write_text(ROLE_CATALOG)
    run = make_run(tmp_path)
    catalog_file.snapshot(source(tmp_path, "role_catalog", "roles.csv"), run)
    assert "git_commit" not in run.records[0].query_params


def test_columns_come_out_in_raw_table_order_whatever_the_file_order(tmp_path: Path) -> None:
    path = tmp_path / "roles.csv"
    path.write_text(ROLE_CATALOG)
    (row,) = catalog_file.load({"catalog": "role_catalog", "file": "roles.csv"}, path)
    assert row == RawRow("roles.csv:2", ("fin_admin", "pg-fin-*", "true",
                                         "Finance admin, full DDL", "dba", "dba-team"))


def test_missing_required_column_is_refused_at_snapshot_and_rejected_at_load(
        tmp_path: Path) -> None:
    path = tmp_path / "apps.csv"
    path.write_text("application,cluster\nledger,pg-fin-01\n")
    with pytest.raises(ConfigError, match="lacks required column\\(s\\) sox_in_scope"):
        catalog_file.snapshot(source(tmp_path, "applications", "apps.csv"), make_run(tmp_path))
    (reject,) = catalog_file.load({"catalog": "applications", "file": "apps.csv"}, path)
    assert isinstance(reject, Reject) and "sox_in_scope" in reject.reason


def test_bad_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "apps.csv"
    path.write_text("application,cluster,sox_in_scope\nledger,pg-fin-01,true\nhr,pg-hr-02\n")
    items = list(catalog_file.load({"catalog": "applications", "file": "apps.csv"}, path))
    assert items[0] == RawRow("apps.csv:2", ("ledger", "pg-fin-01", "true", None))
    assert isinstance(items[1], Reject) and "expected 3 fields" in items[1].reason
    assert catalog_file.count_rows({}, path) == 2


def test_unknown_catalog_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(ConfigError, match="catalog 'roles' unknown"):
        catalog_file.snapshot(source(tmp_path, "roles", "x.csv"), make_run(tmp_path))
