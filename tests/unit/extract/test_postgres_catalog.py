"""postgres_catalog offline: CSV exports captured as-is, validated at load; named query files."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from extract.connectors import postgres_catalog
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore

MEMBERSHIPS = (
    "member,granted_role,admin_option,rolsuper,rolcanlogin,rolcreaterole,rolvaliduntil\n"
    "alice,app_admin,f,f,t,f,\n"
    "bob,app_read,t,f,t,f,2024-12-31 00:00:00+00\n"
    '"odd, name",app_read,f,f,t,f,infinity\n'
)
ROLES = (
    "rolname,rolsuper,rolcreaterole,rolcanlogin,rolvaliduntil\n"
    "alice,f,f,t,\n"
    "dba,t,t,t,\n"
)


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def offline_source(tmp_path: Path) -> Source:
    (tmp_path / "exports").mkdir(exist_ok=True)
    (tmp_path / "exports" / "members.csv").write_text(MEMBERSHIPS)
    (tmp_path / "exports" / "roles.csv").write_text(ROLES)
    return Source(name="fin-catalog", system="db_catalog", connector="postgres_catalog",
                  values={"cluster": "pg-fin-01", "path": "exports/members.csv",
                          "roles_path": "exports/roles.csv"}, base_dir=tmp_path)


def test_query_files_select_the_raw_table_columns_in_order() -> None:
    for query, (table, _key) in postgres_catalog.QUERIES.items():
        sql = postgres_catalog.query_sql(query)
        assert "order by" in sql.lower()
        if table != "raw.catalog_settings":  # the role listings leave built-in roles out
            assert "pg\\_%" in sql
        payload = postgres_catalog.SPEC.raw_tables[table].payload
        positions = [sql.index(f"as {c}" if f"as {c}" in sql else f".{c}") for c in payload]
        assert positions == sorted(positions), query


def test_offline_exports_are_captured_byte_for_byte_as_two_evidence_rows(
        tmp_path: Path) -> None:
    run = make_run(tmp_path)
    postgres_catalog.snapshot(offline_source(tmp_path), run)
    # the two exports, then the completeness statement
    memberships, roles, statement = run.records
    assert statement.query_name == "completeness"
    assert memberships.query_params["raw_table"] == "raw.catalog_memberships"
    assert roles.query_params["raw_table"] == "raw.catalog_roles"
    assert memberships.query_params["cluster"] == "pg-fin-01"
    assert memberships.result_row_count == 3 and roles.result_row_count == 2
    stored = run.store.fetch(memberships.raw_output_s3_key, tmp_path)
    assert stored.read_text() == MEMBERSHIPS
    items = list(postgres_catalog.load(memberships.query_params, stored))
    # the locators name the object as stored, not the export it was read from
    assert stored.name == "catalog_memberships.csv"
    assert [item.locator for item in items] == ["catalog_memberships.csv:2",
                                                "catalog_memberships.csv:3",
                                                "catalog_memberships.csv:4"]
    assert items[0] == RawRow("catalog_memberships.csv:2",
                              ("alice", "app_admin", "f", "f", "t", "f", None))
    assert isinstance(items[2], RawRow) and items[2].values[0] == "odd, name"


SETTINGS = (
    "captured_at,name,setting,unit,source,pending_restart\n"
    "2024-09-30 23:30:00.123456+00,log_filename,postgresql-%Y-%m-%d_%H%M%S.log,,default,f\n"
    "2024-09-30 23:30:00.123456+00,pgaudit.log,\"role,ddl\",,configuration file,f\n"
    "2024-09-30 23:30:00.123456+00,pgaudit.log_level,,,,\n"
    ",shared_preload_libraries,pgaudit,,configuration file,f\n"
)


def test_the_settings_export_is_a_third_evidence_row_when_given(tmp_path: Path) -> None:
    source = offline_source(tmp_path)
    (tmp_path / "exports" / "settings.csv").write_text(SETTINGS)
    source.values["settings_path"] = "exports/settings.csv"
    run = make_run(tmp_path)
    postgres_catalog.snapshot(source, run)
    _memberships, _roles, settings, _statement = run.records
    assert settings.query_params["raw_table"] == "raw.catalog_settings"
    assert settings.query_params["query_file"] == "extract/connectors/queries/catalog_settings.sql"
    assert settings.result_row_count == 4
    items = list(postgres_catalog.load(settings.query_params,
                                       run.store.fetch(settings.raw_output_s3_key, tmp_path)))
    assert items[1] == RawRow("catalog_settings.csv:3", (
        "2024-09-30 23:30:00.123456+00", "pgaudit.log", "role,ddl", None, "configuration file",
        "f"))
    assert items[2] == RawRow("catalog_settings.csv:4", (
        "2024-09-30 23:30:00.123456+00", "pgaudit.log_level", None, None, None, None))
    # a settings row says what held at its moment: without captured_at it is rejected
    assert isinstance(items[3], Reject) and items[3].reason == "empty captured_at"


def test_without_a_settings_export_no_settings_are_captured(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    postgres_catalog.snapshot(offline_source(tmp_path), run)
    assert [r.query_params["raw_table"] for r in run.records] == [
        "raw.catalog_memberships", "raw.catalog_roles", "raw.source_completeness"]


def test_missing_export_fails_naming_the_source_and_file(tmp_path: Path) -> None:
    source = offline_source(tmp_path)
    (tmp_path / "exports" / "roles.csv").unlink()
    with pytest.raises(SourceError, match=r"fin-catalog: roles_path: file not found: .*roles\.csv"):
        postgres_catalog.snapshot(source, make_run(tmp_path))


def load_text(tmp_path: Path, text: str, table: str = "raw.catalog_memberships"
              ) -> list[RawRow | Reject]:
    path = tmp_path / "x.csv"
    path.write_text(text)
    items = list(postgres_catalog.load({"raw_table": table, "file": "x.csv"}, path))
    assert len(items) == postgres_catalog.count_rows({"raw_table": table}, path)
    return items  # type: ignore[return-value]


def test_columns_are_taken_by_header_name_whatever_their_order(tmp_path: Path) -> None:
    items = load_text(tmp_path, "rolcanlogin,rolname,rolsuper,rolcreaterole,rolvaliduntil\n"
                                "t,alice,f,f,\n", "raw.catalog_roles")
    assert items == [RawRow("x.csv:2", ("alice", "f", "f", "t", None))]


def test_a_header_missing_columns_rejects_every_row_naming_them(tmp_path: Path) -> None:
    items = load_text(tmp_path, "member,granted_role\nalice,app\nbob,app\n")
    assert all(isinstance(i, Reject) and "admin_option" in i.reason for i in items)
    assert len(items) == 2


@pytest.mark.parametrize(("row", "reason"), [
    ("alice,app,f,f,t\n", "expected 7 fields"),
    ("alice,app,maybe,f,t,f,\n", "admin_option is 'maybe'"),
    (",app,f,f,t,f,\n", "empty member"),
    ('alice,"app,f,f,t,f,\n', "unterminated quoted field"),
    ("al\udcffice,app,f,f,t,f,\n", "invalid UTF-8"),
])
def test_bad_rows_are_rejected_and_good_rows_still_load(tmp_path: Path, row: str,
                                                        reason: str) -> None:
    header = MEMBERSHIPS.splitlines(keepends=True)[0]
    path = tmp_path / "x.csv"
    path.write_bytes((header + "bob,app,t,f,t,f,\n" + row).encode("utf-8", "surrogateescape"))
    items = list(postgres_catalog.load({"raw_table": "raw.catalog_memberships",
                                        "file": "x.csv"}, path))
    assert isinstance(items[0], RawRow)
    assert isinstance(items[1], Reject) and reason in items[1].reason
    assert items[1].locator == "x.csv:3"


def test_describe_dsn_never_shows_the_password() -> None:
    url = "postgresql://auditor:s3cret@db.example:5433/postgres"
    assert postgres_catalog.describe_dsn(url) == "auditor@db.example:5433/postgres"
    assert "s3cret" not in postgres_catalog.describe_dsn(
        "host=db user=auditor password=s3cret dbname=postgres")


def test_unparseable_dsn_is_a_config_error_without_echoing_it(tmp_path: Path) -> None:
    source = Source(name="fin-catalog", system="db_catalog", connector="postgres_catalog",
                    values={"cluster": "pg-fin-01", "dsn": "host=db password='unclosed"})
    with pytest.raises(ConfigError, match="fin-catalog: dsn is not a valid") as caught:
        postgres_catalog.snapshot(source, make_run(tmp_path))
    assert "unclosed" not in str(caught.value)


def test_an_export_says_its_query_and_what_it_records_of_the_server(tmp_path: Path) -> None:
    source = offline_source(tmp_path)
    (tmp_path / "exports" / "settings.csv").write_text(SETTINGS)
    source.values["settings_path"] = "exports/settings.csv"
    run = make_run(tmp_path)
    postgres_catalog.snapshot(source, run)
    memberships, roles, settings, _statement = run.records
    for record, query, file in ((memberships, "catalog_memberships", "members.csv"),
                                (roles, "catalog_roles", "roles.csv"),
                                (settings, "catalog_settings", "settings.csv")):
        params = record.query_params
        assert params["file"] == file
        assert params["query"] == query
        text = (Path(postgres_catalog.__file__).parent / "queries" / f"{query}.sql").read_bytes()
        assert params["query_sha256"] == hashlib.sha256(text).hexdigest()
        # the settings export's captured_at is the server's now(); no export says its version
        assert params["server_now"] == "2024-09-30T23:30:00.123456Z"
        assert params["server_version"] == "unknown"


def test_without_a_settings_export_the_servers_time_is_unknown(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    postgres_catalog.snapshot(offline_source(tmp_path), run)
    memberships = run.records[0].query_params
    assert (memberships["server_now"], memberships["server_version"]) == ("unknown", "unknown")
