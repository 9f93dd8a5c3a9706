"""`soxtrail verify --store` from an auditor's own copy: the store copied, the database dumped
with `pg_dump` and restored under another name, verify run as a read-only role."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from soxtrail.audit.auditor import AUDITED_SCHEMAS, AUDITOR_ROLE
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import EXIT_EXCEPTIONS_FOUND
from tests.conftest import ADMIN_URL, _with_dbname
from tests.support.cli import Result, soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                       reason="the auditor's path needs the pg_dump and pg_restore binaries"),
]

# a relation named with its database: "db"."schema"."table"
THREE_PART = re.compile(r'"[^"]+"\."[^"]+"\."[^"]+"')


@dataclass
class Original:
    """The run as the platform team made it: its database, store and public key."""

    run_id: str
    home: Path
    store: Path
    public_key: Path
    db: Database

    @property
    def dbname(self) -> str:
        return str(psycopg.conninfo.conninfo_to_dict(self.db.dsn)["dbname"])


@dataclass
class AuditorsCopy:
    """What the auditor holds: a restored database under another name, a copy of the store,
    and a read-only login to the copy."""

    dbname: str
    store: Path
    home: Path  # the auditor's own: nothing of the run's home
    dsn: str  # the read-only login


@pytest.fixture(scope="module")
def original(demo_run: DemoRun) -> Original:
    """The shared demo run of 2024Q3 (tests/support/demo_quarter.py), signed with its home's
    key, whose public half the auditor holds."""
    return Original(demo_run.run_id, demo_run.home, demo_run.store.root, demo_run.public_key,
                    demo_run.db)


def _dump_and_restore(original: Original, target: str, scratch: Path) -> None:
    """The commands docs/auditor-guide.md gives: pg_dump of the audited schemas, restored
    without owners or grants into a new database."""
    dump = scratch / "soxtrail.dump"
    schemas = [arg for schema in AUDITED_SCHEMAS for arg in ("--schema", schema)]
    subprocess.run(["pg_dump", "--format", "custom", "--no-owner", "--no-privileges", *schemas,
                    "--file", str(dump), "--dbname", original.db.dsn],
                   check=True, capture_output=True, text=True)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(target)))
    subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                    "--dbname", _with_dbname(ADMIN_URL, target), str(dump)],
                   check=True, capture_output=True, text=True)


def _login(dsn: str, user: str, password: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(user=user, password=password)
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="module")
def copy(original: Original, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[AuditorsCopy]:
    """The auditor's copy: the store copied, the database restored under another name, a
    login role made read-only with `soxtrail grant-auditor`."""
    root = tmp_path_factory.mktemp("auditor")
    store = root / "store-copy"
    shutil.copytree(original.store, store)
    name = f"{original.dbname}_audit"
    login = f"audit_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    _dump_and_restore(original, name, root)
    owner_dsn = _with_dbname(ADMIN_URL, name)
    try:
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("create role {} login password {}").format(
                sql.Identifier(login), sql.Literal(password)))
        granted = soxtrail("grant-auditor", login, home=root / "home", database_url=owner_dsn)
        assert granted.code == 0, granted.stderr
        yield AuditorsCopy(name, store, root / "home", _login(owner_dsn, login, password))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))
            try:  # other databases on the server may still hold grants to it
                admin.execute(sql.SQL("drop role if exists {}").format(
                    sql.Identifier(AUDITOR_ROLE)))
            except psycopg.Error:
                pass


def _verify_copy(original: Original, copy: AuditorsCopy, store: Path) -> Result:
    return soxtrail("verify", original.run_id, "--store", str(store), "--public-key",
                    str(original.public_key), home=copy.home, database_url=copy.dsn)


def _lines(result: Result, status: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.split()[:1] == [status]]


def _raw_object(original: Original) -> tuple[str, str, str]:
    """(evidence id, store key, recorded sha256) of the run's pgaudit log snapshot named
    first."""
    with original.db.connect() as conn:
        row = conn.execute(
            "select id::text, raw_output_s3_key, result_hash from soxtrail.sox_evidence"
            " where run_id = %s and source_system = 'db_audit'"
            " and raw_output_s3_key like %s order by raw_output_s3_key limit 1",
            (original.run_id, "%/raw/%")).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_controls_stored_sql_names_no_database(original: Original) -> None:
    with original.db.connect() as conn:
        rows = conn.execute("select query_name, query_text from soxtrail.sox_evidence"
                            " where run_id = %s and source_system = 'reconcile'",
                            (original.run_id,)).fetchall()
    assert len(rows) >= 6  # six controls, and the completeness, summary, register marts
    for name, text in rows:
        assert f'"{original.dbname}"' not in text, name
        assert not THREE_PART.search(text), (name, THREE_PART.search(text))
        assert '"raw".' in text or '"marts".' in text, name  # schema-qualified still


def test_the_restored_copy_verifies_from_the_copied_store_as_a_read_only_role(
        original: Original, copy: AuditorsCopy) -> None:
    result = _verify_copy(original, copy, copy.store)
    assert result.code == 0, "\n".join(result.stdout.splitlines()[-30:]) + result.stderr
    assert "PASSED" in result.stdout.splitlines()[-1]
    # the differences of place are notes: the database name, and the store read
    [origin] = [line for line in _lines(result, "NOTE") if line.split()[1:3] == [
        "bundle", "origin"]]
    assert f"made in database '{original.dbname}', now '{copy.dbname}'" in origin
    assert f"made with store {original.store}, objects read from {copy.store} (--store)" \
        in origin
    # every control re-ran in the copy under its other name, and matched
    controls = [line for line in _lines(result, "OK") if line.split()[1] == "control"]
    assert len(controls) >= 6 and all("re-run:" in line for line in controls)
    # the read-only role really is: it cannot change what it verified
    with psycopg.connect(copy.dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("delete from soxtrail.sox_runs")


def test_one_byte_changed_in_the_copy_fails_naming_the_object(
        original: Original, copy: AuditorsCopy, tmp_path: Path) -> None:
    tampered = tmp_path / "store-tampered"
    shutil.copytree(copy.store, tampered)
    evidence_id, key, _ = _raw_object(original)
    victim = tampered / key
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = _verify_copy(original, copy, tampered)
    assert result.code == EXIT_EXCEPTIONS_FOUND, result.stdout[-2000:] + result.stderr
    assert "FAILED" in result.stdout.splitlines()[-1]
    failing = [line for line in result.stdout.splitlines()
               if line.split()[:1] in (["MISMATCH"], ["MISSING"], ["EXTRA"], ["FAIL"])]
    assert len(failing) == 1, failing
    assert failing[0].split()[:4] == ["MISMATCH", "object", evidence_id, key]
    assert f"object {_sha256(victim)}" in failing[0]


def test_the_original_store_is_untouched_and_still_verifies(
        original: Original, copy: AuditorsCopy) -> None:
    _, key, recorded = _raw_object(original)
    assert _sha256(original.store / key) == _sha256(copy.store / key) == recorded
    result = soxtrail("verify", original.run_id, "--public-key", str(original.public_key),
                      home=original.home, database_url=original.db.dsn)
    assert result.code == 0, "\n".join(result.stdout.splitlines()[-30:]) + result.stderr
    assert "PASSED" in result.stdout.splitlines()[-1]
