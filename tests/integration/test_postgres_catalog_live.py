"""postgres_catalog live: real roles and memberships over a DSN, CSV exactly as psql --csv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from extract.connectors import postgres_catalog
from extract.loader import copy_object
from extract.snapshot import SnapshotRun
from soxtrail.kernel.database import Database, resolve_database
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Source
from soxtrail.kernel.store import LocalStore
from tests.support.debian import postgres_scratch
from tests.support.runs import running

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-s3cret-pw"


def create_roles(dsn: str, prefix: str) -> dict[str, str]:
    names = {k: f"{prefix}_{k}" for k in ("dba", "alice", "app", "nologin")}
    statements = [
        "create role {dba} login superuser createrole",
        "create role {alice} login valid until '2030-01-01 00:00:00+00'",
        "create role {app} nologin",
        "create role {nologin} nologin",
        "grant {app} to {alice} with admin option",
        "grant pg_read_all_data to {alice}",
        "grant {app} to {nologin}",
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(sql.SQL(statement).format(
                **{k: sql.Identifier(v) for k, v in names.items()}))
    return names


def drop_roles(dsn: str, names: dict[str, str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def snapshot_live(tmp_path: Path, dsn: str) -> tuple[SnapshotRun, dict[str, list[RawRow]]]:
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    source = Source(name="fin-catalog", system="db_catalog", connector="postgres_catalog",
                    values={"cluster": "pg-fin-01", "dsn": dsn})
    postgres_catalog.snapshot(source, run)
    loaded: dict[str, list[RawRow]] = {}
    for record in run.records:
        if record.query_name == "completeness":  # the statement: completeness.load's
            continue
        stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
        items = list(postgres_catalog.load(record.query_params, stored))
        assert all(isinstance(i, RawRow) for i in items)
        assert len(items) == record.result_row_count
        loaded[record.query_params["raw_table"]] = items  # type: ignore[assignment]
    return run, loaded


def check_listing(loaded: dict[str, list[RawRow]], names: dict[str, str]) -> None:
    memberships = {(r.values[0], r.values[1]): r.values
                   for r in loaded["raw.catalog_memberships"]
                   if str(r.values[0]).startswith(names["dba"][:-4])}
    alice, app, nologin = names["alice"], names["app"], names["nologin"]
    assert memberships == {
        (alice, app): (alice, app, "t", "f", "t", "f", "2030-01-01 00:00:00+00"),
        (alice, "pg_read_all_data"): (alice, "pg_read_all_data", "f", "f", "t", "f",
                                      "2030-01-01 00:00:00+00"),
        (nologin, app): (nologin, app, "f", "f", "f", "f", None),
    }
    roles = {r.values[0]: r.values for r in loaded["raw.catalog_roles"]}
    assert roles[names["dba"]] == (names["dba"], "t", "t", "t", None)
    assert roles[alice] == (alice, "f", "f", "t", "2030-01-01 00:00:00+00")
    assert not any(str(name).startswith("pg_") for name in roles)


@pytest.fixture()
def roles(pg_database: Database) -> Iterator[dict[str, str]]:
    names = create_roles(pg_database.dsn, f"sxt_{uuid.uuid4().hex[:8]}")
    try:
        yield names
    finally:
        drop_roles(pg_database.dsn, names)


def test_live_catalog_lists_real_roles_and_memberships(tmp_path: Path, pg_database: Database,
                                                       roles: dict[str, str]) -> None:
    run, loaded = snapshot_live(tmp_path, pg_database.dsn)
    assert [r.query_name for r in run.records] == ["fin-catalog/catalog_memberships",
                                                   "fin-catalog/catalog_roles",
                                                   "fin-catalog/catalog_settings",
                                                   "completeness"]
    assert run.records[0].query_text == postgres_catalog.query_sql("catalog_memberships")
    check_listing(loaded, roles)
    with pg_database.connect() as conn:
        running(conn, run.run_id)
        for record in run.records:
            counts = copy_object(conn, run_id=run.run_id, evidence_id=record.id,
                                 params=record.query_params,
                                 path=run.store.fetch(record.raw_output_s3_key, tmp_path))
            assert counts.loaded == record.result_row_count and counts.rejected == 0
        conn.commit()
        admin = conn.execute(
            "select admin_option::boolean, rolvaliduntil::timestamptz from raw.catalog_memberships"
            " where run_id = %s and member = %s and granted_role = %s",
            (run.run_id, roles["alice"], roles["app"])).fetchone()
    assert admin is not None and admin[0] is True and admin[1].year == 2030


def test_capture_is_byte_identical_to_psql_csv(tmp_path: Path, pg_database: Database,
                                               roles: dict[str, str]) -> None:
    psql = shutil.which("psql")
    assert psql is not None, "psql (postgresql-client) is needed"
    run, _loaded = snapshot_live(tmp_path, pg_database.dsn)
    for record in run.records[:-1]:  # the last: the completeness statement, no query file
        query_file = Path(postgres_catalog.__file__).parents[2] / record.query_params[
            "query_file"]
        env = {**os.environ, "PGOPTIONS": "-c timezone=UTC -c datestyle=ISO,YMD"}
        expected = subprocess.run([psql, "--csv", "-X", "-q", "-d", pg_database.dsn, "-f",
                                   str(query_file)], env=env, capture_output=True, check=True,
                                  text=True).stdout
        got = run.store.fetch(record.raw_output_s3_key, tmp_path).read_text()
        if record.query_params["query"] == "catalog_settings":
            # every line but its captured_at (the server's now(), a moment later for psql)
            # (COPY's CSV quotes an empty string, psql --csv does not)
            assert [line.split(",", 1)[1].replace(',"",', ",,") for line in got.splitlines()] \
                == [line.split(",", 1)[1] for line in expected.splitlines()]
            continue
        ours = [line for line in got.splitlines() if line.startswith(roles["dba"][:-4])]
        theirs = [line for line in expected.splitlines()
                  if line.startswith(roles["dba"][:-4])]
        assert got.splitlines()[0] == expected.splitlines()[0]
        assert ours == theirs and ours


def test_the_statement_dates_a_live_catalog_by_the_servers_own_clock(
        tmp_path: Path, pg_database: Database, roles: dict[str, str]) -> None:
    with pg_database.connect() as conn:
        before = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
    run, loaded = snapshot_live(tmp_path, pg_database.dsn)
    with pg_database.connect() as conn:
        after = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
    settings_time = {row.values[0] for row in loaded["raw.catalog_settings"]}
    assert len(settings_time) == 1  # one now() for the whole capture
    statement = json.loads(run.store.fetch(run.records[-1].raw_output_s3_key,
                                           tmp_path).read_text())
    taken = datetime.fromisoformat(statement["facts"]["captured_at"])
    assert taken == datetime.fromisoformat(settings_time.pop())
    assert before <= taken <= after and statement["facts"]["captured_at_from"] == "server"
    # taken today, it describes no moment of 2024Q3's end
    assert [f["code"] for f in statement["findings"]] == ["SNAPSHOT_NOT_AT_QUARTER_END"]
    assert run.records[-1].query_params["completeness"]["findings"] == [
        "SNAPSHOT_NOT_AT_QUARTER_END"]


def test_dsn_password_never_reaches_the_evidence(tmp_path: Path, pg_database: Database,
                                                 roles: dict[str, str]) -> None:
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("alter role {} password {}").format(
            sql.Identifier(roles["dba"]), sql.Literal(PASSWORD)))
    params = conninfo.conninfo_to_dict(pg_database.dsn)
    params.update(user=roles["dba"], password=PASSWORD)
    run, _loaded = snapshot_live(tmp_path, conninfo.make_conninfo(**params))
    for record in run.records:
        assert PASSWORD not in repr(record)
        if record.query_name == "completeness":
            continue
        assert record.query_params["database"].startswith(f"{roles['dba']}@")


def test_unreachable_server_fails_naming_the_source_without_the_password(tmp_path: Path) -> None:
    dsn = f"postgresql://auditor:{PASSWORD}@127.0.0.1:1/postgres"
    with pytest.raises(SourceError) as caught:
        snapshot_live(tmp_path, dsn)
    assert "fin-catalog: cannot connect to auditor@127.0.0.1:1/postgres" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_same_listing_from_the_embedded_server(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the embedded server runs as its own OS user: its home must be outside pytest's
    # 0700 tmp folder
    with postgres_scratch("embedded") as home:
        monkeypatch.setenv("SOXTRAIL_HOME", str(home))
        monkeypatch.delenv("SOXTRAIL_DATABASE_URL", raising=False)
        embedded_listing(tmp_path, home)


def embedded_listing(tmp_path: Path, home: Path) -> None:
    db = resolve_database()
    assert db.embedded and (home / "pg" / "PG_VERSION").is_file()
    try:
        names = create_roles(db.dsn, f"sxt_{uuid.uuid4().hex[:8]}")
        _run, loaded = snapshot_live(tmp_path, db.dsn)
        check_listing(loaded, names)
    finally:
        import pgserver

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(home / "pg")
        server.cleanup_mode = "stop"
        server.cleanup()
