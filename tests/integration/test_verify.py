"""`soxtrail verify`: a fresh run passes; every kind of tampering is named exactly."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from render import signing
from render.bundle import generate_signing_key
from soxtrail.audit import verify
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import LocalStore
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoQuarter

pytestmark = pytest.mark.integration


@dataclass
class SignedRun:
    run_id: str
    quarter: str
    home: Path
    store: LocalStore
    public_key: Path
    db: Database


@pytest.fixture(scope="module")
def signed_run(demo_quarter: DemoQuarter,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRun]:
    """One full demo run of 2024Q3 with a signed bundle (tests/support/demo_quarter.py: this
    module's to tamper with). Its key pair is also at signing.pem / signing.pub side by side
    (modules reusing this fixture sign with `public_key.with_name("signing.pem")`)."""
    root = tmp_path_factory.mktemp("verify")
    with demo_quarter.checkout() as run:
        shutil.copy2(run.signing_key, root / "signing.pem")
        shutil.copy2(run.public_key, root / "signing.pub")
        yield SignedRun(run.run_id, run.quarter, run.home, run.store, root / "signing.pub",
                        run.db)


def _verify(run: SignedRun, kinds: tuple[str, ...] = verify.KINDS) -> verify.VerifyReport:
    with verify.connect_read_only(run.db) as conn:
        return verify.verify_run(conn, run.run_id, public_key=run.public_key, kinds=kinds)


# Re-running every control takes seconds: tamperings that cannot touch a control result
# are checked without that step (the full verify runs in the other tests).
NO_RERUN = ("object", "chain", "bundle", "links")


def _failures(report: verify.VerifyReport) -> list[tuple[str, str, str]]:
    return [(v.status, v.kind, v.subject) for v in report.failures()]


def _evidence(run: SignedRun, where: str) -> dict[str, Any]:
    with run.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select * from soxtrail.sox_evidence where run_id = %s and {where}"
                    " order by raw_output_s3_key limit 1", (run.run_id,))
        row = cur.fetchone()
    assert row is not None, where
    return row


@contextmanager
def _trigger_disabled(run: SignedRun, table: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection with the append-only trigger of `table` off (back on after)."""
    with run.db.connect(autocommit=True) as conn:
        conn.execute(f"alter table {table} disable trigger append_only")
        try:
            yield conn
        finally:
            conn.execute(f"alter table {table} enable trigger append_only")


def _database_state(run: SignedRun) -> Any:
    with run.db.connect() as conn:
        return conn.execute(
            "select (select count(*) from soxtrail.sox_evidence),"
            " (select count(*) from soxtrail.sox_evidence_chain),"
            " (select json_agg(json_build_array(id, status, finished_at) order by id)"
            "  from soxtrail.sox_runs)").fetchone()


def test_a_fresh_run_verifies_with_exit_0_and_one_ok_line_per_check(signed_run: SignedRun) -> None:
    before = _database_state(signed_run)
    result = soxtrail("verify", signed_run.run_id, "--public-key", str(signed_run.public_key),
                      home=signed_run.home, database_url=signed_run.db.dsn)
    assert result.code == 0, result.stdout + result.stderr
    assert _database_state(signed_run) == before  # verify wrote nothing
    lines = result.stdout.splitlines()
    assert "PASSED" in lines[-1]
    # a folder has no Object Lock: one NOTE says the anchor is not write-protected by it
    assert [line.split()[:4] for line in lines[:-1] if not line.startswith(("OK ", "UNSIGNED"))] \
        == [["NOTE", "bundle", "anchor.json", "lock"]]
    with signed_run.db.connect() as conn:
        evidence_ids = [str(r[0]) for r in conn.execute(
            "select id from soxtrail.sox_evidence where run_id = %s", (signed_run.run_id,))]
    for evidence_id in evidence_ids:  # every evidence row: its object and its chain link
        assert sum(1 for line in lines if line.split()[1:3] == ["object", evidence_id]) == 1
        assert sum(1 for line in lines if line.split()[1:3] == ["chain", evidence_id]) == 1
    for control_id in CONTROLS:
        assert any(line.split()[1:3] == ["control", control_id] for line in lines)
    assert any("MANIFEST.sha256.sig" in line for line in lines)
    assert any(line.split()[1] == "links" for line in lines)


def test_json_output_lists_every_check(signed_run: SignedRun) -> None:
    result = soxtrail("verify", signed_run.run_id, "--json", home=signed_run.home,
                      database_url=signed_run.db.dsn)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] is True
    assert {c["kind"] for c in doc["checks"]} == {"object", "raw", "chain", "control", "mart",
                                                  "bundle", "links"}


def test_a_raw_object_changed_by_one_byte_is_a_mismatch_naming_the_row(
        signed_run: SignedRun) -> None:
    row = _evidence(signed_run, "source_system = 'tickets'")
    path = signed_run.store.root / row["raw_output_s3_key"]
    original = path.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    path.write_bytes(bytes(changed))
    try:
        report = _verify(signed_run, NO_RERUN)
    finally:
        path.write_bytes(original)
    assert _failures(report) == [("MISMATCH", "object",
                                  f"{row['id']} {row['raw_output_s3_key']}")]
    assert row["result_hash"] in report.failures()[0].detail


def test_a_deleted_raw_object_is_missing(signed_run: SignedRun) -> None:
    row = _evidence(signed_run, "source_system = 'db_audit'")
    path = signed_run.store.root / row["raw_output_s3_key"]
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        report = _verify(signed_run, NO_RERUN)
    finally:
        aside.rename(path)
    assert _failures(report) == [("MISSING", "object", f"{row['id']} {row['raw_output_s3_key']}")]


def test_a_raw_row_changed_with_the_trigger_disabled_breaks_the_control_rerun(
        signed_run: SignedRun) -> None:
    with signed_run.db.connect() as conn:
        evidence_id, locator = conn.execute(
            f"select evidence_id, evidence_locator from marts.{CONTROLS['AC-03']}"
            " where run_id = %s and granted_role not in ('SUPERUSER', 'CREATEROLE')"
            " order by item_key limit 1", (signed_run.run_id,)).fetchone()
    with _trigger_disabled(signed_run, "raw.catalog_memberships") as conn:
        changed = conn.execute(
            "update raw.catalog_memberships set granted_role = granted_role || '_x'"
            " where run_id = %s and evidence_id = %s and locator = %s",
            (signed_run.run_id, evidence_id, locator)).rowcount
        assert changed == 1
        try:
            report = _verify(signed_run)
        finally:
            conn.execute("update raw.catalog_memberships set granted_role ="
                         " left(granted_role, -2) where run_id = %s and evidence_id = %s"
                         " and locator = %s", (signed_run.run_id, evidence_id, locator))
    failures = _failures(report)
    assert ("MISMATCH", "control",
            f"AC-03 {CONTROLS['AC-03']} (evidence "
            f"{verify.controls.control_evidence_id(signed_run.run_id, CONTROLS['AC-03'])})"
            ) in failures
    # the objects, the chain, the stored marts and the bundle are untouched; the raw table
    # no longer matches its object (re-derived, issue 17), naming the row
    assert {kind for _, kind, _ in failures} == {"control", "raw"}
    raw = [v for v in report.failures() if v.kind == "raw"]
    assert len(raw) == 1 and raw[0].subject.startswith(str(evidence_id))
    assert f"locator {locator!r} changed in granted_role" in raw[0].detail


def test_compiled_sql_altered_in_the_evidence_table_breaks_chain_and_control(
        signed_run: SignedRun) -> None:
    model = CONTROLS["AC-01"]
    evidence_id = verify.controls.control_evidence_id(signed_run.run_id, model)
    with _trigger_disabled(signed_run, "soxtrail.sox_evidence") as conn:
        original = conn.execute("select query_text from soxtrail.sox_evidence where id = %s",
                                (evidence_id,)).fetchone()[0]
        # hide the exceptions: the kind of edit the evidence must expose
        altered = f"select * from ({original.rstrip().rstrip(';')}) as shown where result = 'PASS'"
        conn.execute("update soxtrail.sox_evidence set query_text = %s where id = %s",
                     (altered, evidence_id))
        try:
            report = _verify(signed_run)
        finally:
            conn.execute("update soxtrail.sox_evidence set query_text = %s where id = %s",
                         (original, evidence_id))
    failures = _failures(report)
    assert ("MISMATCH", "chain", evidence_id) in failures
    assert ("MISMATCH", "control", f"AC-01 {model} (evidence {evidence_id})") in failures
    # and the bundle's copy of that SQL no longer matches the evidence row it came from
    [bundled] = [f for f in failures if f[1] == "bundle"]
    assert bundled[0] == "MISMATCH" and bundled[2].startswith(f"bundle/queries/controls/{model}_")
    assert len(failures) == 3, failures


def test_a_changed_bundle_file_is_a_mismatch_naming_the_file(signed_run: SignedRun) -> None:
    bundle = signed_run.store.root / signed_run.quarter / signed_run.run_id / "bundle"
    path = bundle / "run.json"
    original = path.read_bytes()
    path.write_bytes(original + b" ")
    try:
        report = _verify(signed_run, NO_RERUN)
    finally:
        path.write_bytes(original)
    assert _failures(report) == [("MISMATCH", "bundle", "run.json")]


def test_a_manifest_resigned_with_another_key_fails_against_the_auditors_key(
        signed_run: SignedRun, tmp_path: Path) -> None:
    bundle = signed_run.store.root / signed_run.quarter / signed_run.run_id / "bundle"
    saved = tmp_path / "saved"
    shutil.copytree(bundle, saved)
    other = tmp_path / "other.pem"
    generate_signing_key(other)
    key = signing.load_private_key(other)
    # a forger with write access swaps the key files, re-hashes them and re-signs
    (bundle / "signing-key.pub").write_bytes(signing.public_key_pem(key.public_key()))
    (bundle / "signing-key.fingerprint").write_text(signing.fingerprint(key.public_key()) + "\n")
    lines = []
    for line in (bundle / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name.startswith("signing-key."):
            digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}\n")
    manifest = "".join(lines).encode()
    (bundle / "MANIFEST.sha256").write_bytes(manifest)
    (bundle / "MANIFEST.sha256.sig").write_bytes(signing.sign(key, manifest))
    try:
        result = soxtrail("verify", signed_run.run_id, "--public-key",
                          str(signed_run.public_key), home=signed_run.home,
                          database_url=signed_run.db.dsn)
        with verify.connect_read_only(signed_run.db) as conn:
            unchecked = verify.verify_run(conn, signed_run.run_id, kinds=("bundle",))
    finally:
        shutil.rmtree(bundle)
        shutil.copytree(saved, bundle)
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert "FAILED" in lines[-1]
    failing = [line.split()[:3] for line in lines[:-1] if not line.startswith("OK ")]
    assert ["FAIL", "bundle", "signing-key.pub"] in failing
    assert {kind for _, kind, _ in failing} == {"bundle"}
    # without the auditor's own copy of the key, a re-signed bundle verifies under its own key
    assert unchecked.passed


def test_an_unknown_run_is_a_clear_error(signed_run: SignedRun) -> None:
    result = soxtrail("verify", "00000000-0000-4000-8000-000000000000", home=signed_run.home,
                      database_url=signed_run.db.dsn)
    assert result.code == 3
    assert "no run with id" in result.stderr


def test_evidence_command_names_the_object_and_the_commands_to_check_it(
        signed_run: SignedRun) -> None:
    row = _evidence(signed_run, "source_system = 'iam'")
    result = soxtrail("evidence", str(row["id"]), "--json", home=signed_run.home,
                      database_url=signed_run.db.dsn)
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    location = str(signed_run.store.root / row["raw_output_s3_key"])
    assert doc["location"] == location
    assert doc["commands"][0] == f"sha256sum {location}"
    assert row["result_hash"] in doc["commands"][1]
    text = soxtrail("evidence", str(row["id"]), home=signed_run.home,
                    database_url=signed_run.db.dsn)
    assert text.code == 0
    assert f"sha256sum {location}" in text.stdout
