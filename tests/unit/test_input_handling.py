"""Input handling (issue 17): each way a config, a scope or a store key could go wrong."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from extract.connectors.registry import SPECS
from render.workbook.layout import Column
from render.workbook.writer import ControlCsv, csv_cell
from soxtrail.kernel import secrets
from soxtrail.kernel.config import Config, load_config, parse_config
from soxtrail.kernel.csvcells import neutralise, unneutralise
from soxtrail.kernel.errors import EXIT_USAGE, ConfigError, StoreError
from soxtrail.kernel.store import LocalStore, open_store
from soxtrail.pipeline.context import config_for_run
from soxtrail.pipeline.runs import check_clusters

REPO = Path(__file__).resolve().parents[2]


def _parse(data: dict[str, Any], tmp_path: Path) -> Config:
    return parse_config(data, path=tmp_path / "soxtrail.yml", base_dir=tmp_path, specs=SPECS)


def _okta(name: str, token: str = "literal-okta-token") -> dict[str, Any]:
    return {"name": name, "system": "iam", "connector": "okta_system_log",
            "url": "https://acme.okta.com", "token": token}


# ---------------------------------------------------------------- --clusters


def test_a_cluster_no_application_lists_is_refused_naming_the_known_ones(
        tmp_path: Path) -> None:
    applications = tmp_path / "applications.csv"
    applications.write_text("application,cluster,sox_in_scope\n"
                            "general-ledger,pg-fin-01,true\nhris,pg-hr-01,false\n")
    config = _parse({"catalogs": {"applications": str(applications)}}, tmp_path)
    check_clusters(config, ("pg-fin-01", "pg-hr-01"))  # known, in scope or not
    with pytest.raises(ConfigError) as info:
        check_clusters(config, ("pg-fin-01", "pg-fin-1"))
    message = str(info.value)
    assert "pg-fin-1 not listed" in message
    assert "known clusters: pg-fin-01, pg-hr-01" in message
    assert info.value.exit_code == EXIT_USAGE


# ---------------------------------------------------------------- CSV formulas


@pytest.mark.parametrize("text", ["=1+2", "+1", "-x", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://evil\")"])
def test_a_csv_cell_that_looks_like_a_formula_is_neutralised(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["=1+2", "+1", "-x", "@SUM(A1)", "\tx", "alice", "'quoted",
                                  "'=already", ""])
def test_reading_a_cell_back_undoes_the_neutralising_and_nothing_else(text: str) -> None:
    assert unneutralise(neutralise(text)) == text
    assert unneutralise("'plain") == "'plain"  # a quote the writer did not add stays


def test_numbers_and_ordinary_text_are_written_as_they_are() -> None:
    assert csv_cell(-5) == "-5"
    assert csv_cell(Decimal("-1.50")) == csv_cell(Decimal("-1.50"), "numeric") != "'-1.50"
    assert csv_cell(-0.5) == "-0.5"
    assert csv_cell("alice") == "alice"
    assert csv_cell("a=b") == "a=b"
    assert csv_cell(None) == ""


def test_the_control_csv_writes_neutralised_rows_that_read_back() -> None:
    columns = [Column(name="grantee", header="Grantee", udt="text"),
               Column(name="delta", header="Delta", udt="int4")]
    handle = io.StringIO(newline="")
    writer = ControlCsv(handle)
    writer.header(columns)
    writer.row(columns, ["=cmd|' /C calc'!A0", -3])
    rows = list(csv.reader(io.StringIO(handle.getvalue(), newline="")))
    assert rows == [["Grantee", "Delta"], ["'=cmd|' /C calc'!A0", "-3"]]


# ---------------------------------------------------------------- store keys


def test_two_sources_whose_names_make_the_same_store_key_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _parse({"sources": [_okta("../../evil"), _okta("evil")]}, tmp_path)
    assert "'../../evil' and 'evil'" in str(info.value)


def test_a_store_key_is_written_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("q/run/report/a.csv", b"same")
    store.put_bytes("q/run/report/a.csv", b"same")  # a resumed phase: a no-op
    spool = tmp_path / "spool.bin"
    spool.write_bytes(b"same")
    store.put_file("q/run/report/a.csv", spool, move=True)
    assert not spool.exists()  # moved: the identical object stays, the spool is gone
    with pytest.raises(StoreError, match=r"q/run/report/a\.csv.*different bytes"):
        store.put_bytes("q/run/report/a.csv", b"other")
    spool.write_bytes(b"other")
    with pytest.raises(StoreError, match="different bytes"):
        store.put_file("q/run/report/a.csv", spool)
    assert store.open("q/run/report/a.csv").read() == b"same"
    assert sorted(store.list("q")) == ["q/run/report/a.csv"]  # no partial left behind


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize("key,value", [
    ("revocation_sla_hours", "24 hours' * 1000 + interval '0"),
    ("revocation_sla_hours", 0),
    ("revocation_sla_hours", True),
    ("approval_validity_days", 1.5),
    ("approval_validity_days", "30"),
    ("approved_statuses", "Approved"),
    ("approved_statuses", ["Approved", 3]),
    ("default_backup_policy", "hourly"),
    ("ticket_key_pattern", "[A-Z"),
])
def test_a_policy_value_of_the_wrong_type_is_refused_at_load(
        tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"policy\.{key}: "):
        _parse({"policy": {key: value}}, tmp_path)


def test_valid_policy_values_load_as_written(tmp_path: Path) -> None:
    policy = {"revocation_sla_hours": 36.5, "approval_validity_days": 14,
              "approved_statuses": ["Approved", "Done"], "default_backup_policy": "weekly",
              "ticket_key_pattern": "[A-Z]+-[0-9]+"}
    assert _parse({"policy": policy}, tmp_path).policy == policy


def test_the_models_use_policy_vars_only_as_typed_or_quoted_literals() -> None:
    used = re.compile(r"var\(\s*[\"'](revocation_sla_hours|approval_validity_days|"
                      r"default_backup_policy|ticket_key_pattern)[\"']\s*\)(\s*\|\s*\w+)?")
    found = [(path.name, match.group(1), match.group(2))
             for path in (REPO / "models").rglob("*.sql")
             for match in used.finditer(path.read_text())]
    assert {name for _, name, _ in found} == {
        "revocation_sla_hours", "approval_validity_days", "default_backup_policy",
        "ticket_key_pattern"}
    assert all(cast for _, _, cast in found), found


# ---------------------------------------------------------------- literal secrets


def test_a_literal_secret_is_kept_for_the_run_and_redacted_in_the_record(
        tmp_path: Path) -> None:
    config = _parse({"sources": [_okta("okta", token="literal-token-123")]}, tmp_path)
    assert config.sources[0].get("token") == "literal-token-123"  # sent as itself
    assert config.redacted()["sources"][0]["token"] == secrets.REDACTED
    assert secrets.redact("401 for literal-token-123") == "401 for ***"


def test_a_secret_too_short_to_redact_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\] \(okta\)\.token: the secret is "
                                          r"shorter than 4 characters"):
        _parse({"sources": [_okta("okta", token="abc")]}, tmp_path)
    monkeypatch.setenv("OKTA_TOKEN", "xyz")
    with pytest.raises(ConfigError, match=r"environment variable OKTA_TOKEN is shorter"):
        _parse({"sources": [_okta("okta", token="${OKTA_TOKEN}")]}, tmp_path)
    dsn = {"name": "fin", "system": "db_catalog", "connector": "postgres_catalog",
           "cluster": "pg-fin-01", "dsn": "postgresql://sox:pw@db:5432/postgres"}
    with pytest.raises(ConfigError, match=r"\.dsn: the password is shorter"):
        _parse({"sources": [dsn]}, tmp_path)


def test_a_run_with_literal_secrets_cannot_redo_its_snapshot_from_the_record(
        tmp_path: Path) -> None:
    config = _parse({"sources": [_okta("okta", token="literal-token-123")]}, tmp_path)

    class Recorded:
        id = "0000-run"

    run: Any = Recorded()
    run.config = config.redacted()
    with pytest.raises(ConfigError, match=r"sources\[0\] \(okta\)\.token"):
        config_for_run(run, resolve_secrets=True)
    config_for_run(run, resolve_secrets=False)  # load, reconcile, render: no secret needed


# ---------------------------------------------------------------- store URIs


def test_a_file_uri_store_is_a_local_folder(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOXTRAIL_STORE", f"file://{tmp_path}/evidence")
    store = open_store(None, tmp_path / "default")
    assert isinstance(store, LocalStore) and store.root == tmp_path / "evidence"
    assert not (tmp_path / "file:").exists()
    assert _parse({"store": f"file://{tmp_path}/e2"}, tmp_path).store == str(tmp_path / "e2")
    for uri in ("ftp://host/evidence", "gs://bucket/prefix", "file://host/evidence"):
        with pytest.raises(ConfigError, match="store"):
            open_store(uri, tmp_path / "default")
    with pytest.raises(ConfigError, match=r"soxtrail\.yml: store: .*unknown scheme 'gs'"):
        _parse({"store": "gs://bucket/prefix"}, tmp_path)


# ---------------------------------------------------------------- YAML


def test_a_duplicate_yaml_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "soxtrail.yml"
    path.write_text("policy:\n  revocation_sla_hours: 24\n"
                    "  approval_validity_days: 30\n  revocation_sla_hours: 48\n")
    with pytest.raises(ConfigError,
                       match=r"duplicate key 'revocation_sla_hours' at line 2 and line 4"):
        load_config(path, specs=SPECS)
    path.write_text("policy: &p {approval_validity_days: 30}\n"  # a merge may be overridden
                    "version: {<<: *p, approval_validity_days: 14}\n")
    assert load_config(path, specs=SPECS).raw["version"] == {"approval_validity_days": 14}
